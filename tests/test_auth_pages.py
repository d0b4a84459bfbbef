"""The allauth sign-up, login and logout pages, in our look, and the account page."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client

from accounts.models import User
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _balance(html: str) -> str:
    match = re.search(r'<span data-testid="balance">([^<]*)</span>\s*credits', html)
    assert match, "the header has no balance"
    return match.group(1).strip()


def _logged_in_as(client) -> int | None:
    value = client.session.get(SESSION_KEY)
    return int(value) if value is not None else None


@pytest.mark.parametrize("path", ["/accounts/signup/", "/accounts/login/"])
def test_it_renders_the_allauth_pages_in_our_base_template(client, settings, path):
    settings.SITE_NAME = "Stemtest"
    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/static/css/app.css"' in html
    assert '<a class="brand" href="/">Stemtest</a>' in html
    assert "· Stemtest</title>" in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_it_shows_the_signup_fields(client):
    html = client.get("/accounts/signup/").content.decode()

    for field in ("email", "username", "password1", "password2"):
        assert f'name="{field}"' in html


def test_it_signs_up_logs_in_and_gets_three_credits_once_the_address_is_verified(client):
    # EMAIL_VERIFICATION=optional, as in development; production is in test_signup_enumeration.py.
    response = client.post(
        "/accounts/signup/",
        {"email": "New.Person@Example.com", "username": "newperson", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    user = User.objects.get(username="newperson")
    assert user.email == "new.person@example.com"
    assert user.credits == Decimal("0")
    assert _logged_in_as(client) == user.pk
    page = client.get("/credits/").content.decode()
    assert _balance(page) == "0"
    assert "get your 3 free credits" in page

    link = re.search(r"/accounts/confirm-email/[^\s\"<>]+/", mail.outbox[0].body).group(0)
    client.post(link)

    page = client.get("/credits/")
    assert page.status_code == 200
    assert _balance(page.content.decode()) == "3"
    assert list(user.credit_transactions.values_list("kind", "amount")) == [("signup_bonus", Decimal("3.00"))]


def test_it_refuses_a_signup_with_a_taken_email(client, user):
    response = client.post(
        "/accounts/signup/",
        {"email": user.email.upper(), "username": "someoneelse", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 200
    assert not User.objects.filter(username="someoneelse").exists()
    assert _logged_in_as(client) is None


def test_it_logs_in_with_the_email(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert _logged_in_as(client) == user.pk


def test_it_logs_in_with_the_username(client, user):
    response = client.post("/accounts/login/", {"login": user.username, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert _logged_in_as(client) == user.pk
    assert _balance(client.get("/credits/").content.decode()) == "3"


def test_it_reshows_the_login_form_with_an_error_on_a_wrong_password(client, user):
    response = client.post("/accounts/login/", {"login": user.email, "password": "not-the-password"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "are not correct" in html
    assert 'name="login"' in html
    assert _logged_in_as(client) is None


def test_it_does_not_log_out_on_get(client, user):
    client.force_login(user)

    response = client.get("/accounts/logout/")

    assert response.status_code == 200
    assert _logged_in_as(client) == user.pk


def test_it_logs_out_on_post(client, user):
    client.force_login(user)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _logged_in_as(client) is None
    assert client.get("/accounts/profile/").status_code == 302


def test_it_refuses_a_signup_post_without_a_csrf_token():
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        "/accounts/signup/",
        {"email": "csrf@example.com", "username": "csrf", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 403
    assert not User.objects.filter(username="csrf").exists()


def test_it_refuses_a_login_post_without_a_csrf_token(user):
    client = Client(enforce_csrf_checks=True)

    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})

    assert response.status_code == 403
    assert _logged_in_as(client) is None


def test_it_accepts_a_login_post_with_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    html = client.get("/accounts/login/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    response = client.post(
        "/accounts/login/", {"login": user.email, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 302
    assert _logged_in_as(client) == user.pk


def test_it_shows_username_and_email_on_the_account_page(client):
    user = UserFactory(username="profileperson", email="profile.person@example.com")
    client.force_login(user)

    response = client.get("/accounts/profile/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<dd>profileperson</dd>" in html
    assert "<dd>profile.person@example.com</dd>" in html
    assert _balance(html) == "3"


def test_it_requires_login_for_the_account_page(client):
    response = client.get("/accounts/profile/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/accounts/profile/"


def test_it_shows_the_pricing_packs_on_the_landing_page(client, settings):
    settings.CREDIT_PACKS = [
        {"id": "small", "credits": Decimal("7"), "price": Decimal("2.00")},
        {"id": "large", "credits": Decimal("40"), "price": Decimal("9.50")},
    ]
    settings.CREDIT_CURRENCY = "eur"

    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="pricing"' in html
    assert "<h3>7 credits</h3>" in html
    assert "2.00 EUR" in html
    assert "<h3>40 credits</h3>" in html
    assert "9.50 EUR" in html
    assert html.count('class="pack"') == 2
