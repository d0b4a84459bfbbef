"""Password reset by email link: the API (POST /api/auth/password-reset and /confirm) and
allauth's pages in our look. No account enumeration, single-use tokens, throttled."""

import re

import pytest
from django.contrib.auth import authenticate
from django.core import mail
from django.test import Client

from accounts.throttles import PasswordResetAccountThrottle, PasswordResetIPThrottle
from tests.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

RESET = "/api/auth/password-reset"
CONFIRM = "/api/auth/password-reset/confirm"
LINK = re.compile(r"https?://[^\s\"<>]+/accounts/password/reset/key/([0-9a-z]+)-([^/\s\"<>]+)/")
NEW_PASSWORD = "a-brand-new-passphrase-77"


def limit(throttle_class) -> int:
    return throttle_class().num_requests


def the_link(message) -> tuple[str, str, str]:
    """(link, uid, token) from the text body; the HTML alternative has the same link."""
    match = LINK.search(message.body)
    assert match, message.body
    html = dict((mime, body) for body, mime in message.alternatives)["text/html"]
    assert match.group(0) in html
    return match.group(0), match.group(1), match.group(2)


def ask(client, email, ip="10.0.0.1"):
    return client.post(RESET, {"email": email}, format="json", REMOTE_ADDR=ip)


def confirm(client, uid, token, password=NEW_PASSWORD, ip="10.0.0.1"):
    return client.post(CONFIRM, {"uid": uid, "token": token, "new_password": password}, format="json", REMOTE_ADDR=ip)


def can_log_in(user, password) -> bool:
    return authenticate(username=user.email, password=password) is not None


# --- the API ------------------------------------------------------------------------------


def test_it_mails_a_reset_link_in_text_and_html(api_client, user, settings):
    settings.SITE_NAME = "Stemtest"

    response = ask(api_client, user.email.upper())

    assert response.status_code == 202
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert "Stemtest" in message.subject
    link, _, _ = the_link(message)
    assert link.startswith("http://testserver/accounts/password/reset/key/")
    assert "Choose a new password" in message.alternatives[0][0]


def test_it_answers_the_same_for_an_unknown_address_and_sends_nothing(api_client, user):
    known = ask(api_client, user.email)
    mail.outbox.clear()

    unknown = ask(api_client, "nobody-here@example.com")

    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert mail.outbox == []


def test_it_validates_the_address(api_client):
    response = ask(api_client, "not an email")

    assert response.status_code == 400
    assert "email" in response.json()["errors"]


def test_the_mailed_token_sets_the_password_once(api_client, user):
    ask(api_client, user.email)
    _, uid, token = the_link(mail.outbox[0])

    first = confirm(api_client, uid, token)

    assert first.status_code == 200, first.content
    assert can_log_in(user, NEW_PASSWORD)
    assert not can_log_in(user, PASSWORD)
    login = api_client.post("/api/auth/login", {"email": user.email, "password": NEW_PASSWORD}, format="json")
    assert login.status_code == 200

    again = confirm(api_client, uid, token, password="yet-another-passphrase-88")

    assert again.status_code == 400
    assert "token" in again.json()["errors"]
    assert can_log_in(user, NEW_PASSWORD)


def test_a_weak_password_is_refused_naming_the_field_and_the_token_stays_usable(api_client, user):
    ask(api_client, user.email)
    _, uid, token = the_link(mail.outbox[0])

    weak = confirm(api_client, uid, token, password="12345678")

    assert weak.status_code == 400
    assert "new_password" in weak.json()["errors"]
    assert weak.json()["detail"].startswith("new_password:")
    assert can_log_in(user, PASSWORD)
    assert confirm(api_client, uid, token).status_code == 200


@pytest.mark.parametrize(
    "uid, token",
    [("zz", "bad-token"), ("", "x"), ("!!", "1-2"), ("999999999999999999999999999", "abc-def")],
)
def test_a_bad_uid_or_token_is_refused(api_client, user, uid, token):
    response = confirm(api_client, uid, token)

    assert response.status_code == 400
    assert can_log_in(user, PASSWORD)


def test_another_users_token_does_not_work(api_client, user, other_user):
    ask(api_client, user.email)
    _, _, token = the_link(mail.outbox[0])
    other_uid = the_link_for(api_client, other_user)[1]

    assert confirm(api_client, other_uid, token).status_code == 400
    assert can_log_in(other_user, PASSWORD)


def the_link_for(api_client, user):
    mail.outbox.clear()
    ask(api_client, user.email, ip="10.9.9.9")
    return the_link(mail.outbox[0])


def test_requests_are_throttled_per_ip(api_client, user):
    for n in range(limit(PasswordResetIPThrottle)):
        assert ask(api_client, f"person{n}@example.com").status_code == 202

    response = ask(api_client, user.email)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert mail.outbox == []
    assert ask(api_client, user.email, ip="10.0.0.2").status_code == 202


def test_requests_are_throttled_per_address_from_any_ip(api_client, user):
    for n in range(limit(PasswordResetAccountThrottle)):
        assert ask(api_client, user.email, ip=f"10.1.0.{n + 1}").status_code == 202
    sent = len(mail.outbox)

    response = ask(api_client, user.email.upper(), ip="10.1.1.1")

    assert response.status_code == 429
    assert len(mail.outbox) == sent


def test_confirm_is_throttled_per_ip(api_client, user):
    for _ in range(limit(PasswordResetIPThrottle)):
        assert confirm(api_client, "zz", "bad-token").status_code == 400

    assert confirm(api_client, "zz", "bad-token").status_code == 429


# --- the pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/accounts/password/reset/", "/accounts/password/reset/done/"])
def test_the_reset_pages_render_in_our_base_template(client, settings, path):
    settings.SITE_NAME = "Stemtest"

    html = client.get(path).content.decode()

    assert 'href="/static/css/app.css"' in html
    assert '<a class="brand" href="/">Stemtest</a>' in html


def test_the_login_page_links_to_the_reset_page(client):
    assert 'href="/accounts/password/reset/"' in client.get("/accounts/login/").content.decode()


def test_a_person_resets_the_password_on_the_pages(user):
    client = Client(enforce_csrf_checks=True)
    html = client.get("/accounts/password/reset/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    asked = client.post("/accounts/password/reset/", {"email": user.email, "csrfmiddlewaretoken": token})

    assert asked.status_code == 302
    link, _, _ = the_link(mail.outbox[0])
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200
    form_html = form_page.content.decode()
    assert 'name="password1"' in form_html
    assert '<a class="brand"' in form_html
    set_url = form_page.redirect_chain[-1][0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form_html).group(1)

    done = client.post(set_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "csrfmiddlewaretoken": token})

    assert done.status_code == 302
    assert can_log_in(user, NEW_PASSWORD)
    used = Client().get(path, follow=True).content.decode()
    assert 'name="password1"' not in used
    assert "invalid" in used.lower()


def test_the_page_sends_nothing_for_an_unknown_address_and_says_the_same(client, user, settings):
    settings.ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False

    known = client.post("/accounts/password/reset/", {"email": user.email})
    mail.outbox.clear()
    unknown = client.post("/accounts/password/reset/", {"email": "nobody-here@example.com"})

    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    assert mail.outbox == []
