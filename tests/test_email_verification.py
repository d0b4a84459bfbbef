"""Email verification: the link mailed on sign-up (page and API), following it, and the upload
gate while EMAIL_VERIFICATION=mandatory (403 email_not_verified in the API, a banner with a
resend button and a refused upload on the pages). Ends with one run through a real SMTP server."""

import io
import re
from decimal import Decimal
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import email_address_verify
from credits.models import CreditTransaction
from credits.services import ledger_append
from separation.models import Job
from testkit.audio import tone_bytes
from testkit.processes import free_port
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

LINK = re.compile(r"https?://[^\s\"<>]+/accounts/confirm-email/[^\s\"<>]+/")
BANNER = 'data-testid="verify-banner"'


# --- helpers ----------------------------------------------------------------------------


def song(name="song.wav"):
    file = io.BytesIO(tone_bytes())
    file.name = name
    return file


@pytest.fixture
def mandatory(settings):
    # As DEBUG=0 has it: allauth's sign-ups wait for the link too (test_signup_enumeration.py).
    settings.EMAIL_VERIFICATION = "mandatory"
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"


@pytest.fixture
def user(db):
    """Accounts here have not followed their link yet (UserFactory verifies by default)."""
    return UserFactory(email_verified=False)


def verify(user):
    """As following the mailed link does."""
    email_address_verify(address=EmailAddress.objects.get(user=user))


def bearer(client: APIClient, token: str) -> APIClient:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def api_upload(client):
    return client.post("/api/upload", {"file": song(), "model": "demo"}, format="multipart")


def the_link(message) -> str:
    """The verification link, the same in the text body and the HTML alternative."""
    text_links = LINK.findall(message.body)
    assert len(text_links) == 1, message.body
    html = dict((mime, body) for body, mime in message.alternatives)["text/html"]
    assert text_links[0] in html
    return text_links[0]


def follow(client, link: str):
    """GET shows the confirm page (ACCOUNT_CONFIRM_EMAIL_ON_GET is off), POST confirms."""
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = client.get(f"/{path}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'method="post"' in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(f"/{path}", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    return response


def signup(client, email="new.person@example.com", username="newperson"):
    return client.post(
        "/accounts/signup/",
        {"email": email, "username": username, "password1": PASSWORD, "password2": PASSWORD},
    )


def verified(user) -> bool:
    return EmailAddress.objects.filter(user=user, verified=True).exists()


# --- the mail and the link ----------------------------------------------------------------


def test_the_signup_page_mails_a_verification_link_in_text_and_html(client, settings):
    settings.SITE_NAME = "Stemtest"

    assert signup(client).status_code == 302

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.person@example.com"]
    assert "Stemtest" in message.subject
    link = the_link(message)
    assert link.startswith("http://testserver/accounts/confirm-email/")
    html = message.alternatives[0][0]
    assert "<html" in html and "Verify my email address" in html


def test_following_the_link_verifies_the_address(client):
    signup(client)
    user = User.objects.get(username="newperson")
    assert not verified(user)

    response = follow(client, the_link(mail.outbox[0]))

    assert response.status_code == 302
    assert verified(user)


def test_a_person_who_is_not_logged_in_can_follow_the_link(client):
    signup(Client())
    user = User.objects.get(username="newperson")

    follow(client, the_link(mail.outbox[0]))

    assert verified(user)


def test_api_registration_mails_the_same_link(api_client):
    response = api_client.post(
        "/api/auth/register",
        {"email": "Api.Person@Example.com", "username": "apiperson", "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["user"]["email_verified"] is False
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["api.person@example.com"]
    user = User.objects.get(username="apiperson")
    assert EmailAddress.objects.filter(user=user, email="api.person@example.com", primary=True).exists()

    follow(Client(), the_link(mail.outbox[0]))

    assert verified(user)
    me = bearer(APIClient(), response.json()["access_token"]).get("/api/auth/me").json()
    assert me["email_verified"] is True


# --- the gate in the API ------------------------------------------------------------------


def test_an_unverified_account_logs_in_and_sees_its_balance_but_cannot_upload(mandatory, api_client, user):
    login = api_client.post("/api/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    client = bearer(APIClient(), login.json()["access_token"])

    assert client.get("/api/credits/balance").status_code == 200
    assert client.get("/api/auth/me").json()["email_verified"] is False
    response = api_upload(client)

    assert response.status_code == 403
    assert response.json()["code"] == "email_not_verified"
    assert "verify" in response.json()["detail"].lower()
    assert not Job.objects.exists()
    user.refresh_from_db()
    assert user.credits == Decimal("0")  # the signup bonus waits for the address too


def test_a_verified_address_lifts_the_gate(mandatory, user):
    client = bearer(
        APIClient(),
        APIClient()
        .post("/api/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
        .json()["access_token"],
    )
    assert api_upload(client).status_code == 403

    verify(user)
    response = api_upload(client)

    assert response.status_code == 202, response.content
    assert Job.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("mode", ["optional", "none"])
def test_there_is_no_gate_unless_verification_is_mandatory(settings, user, mode):
    settings.EMAIL_VERIFICATION = mode
    ledger_append(user_id=user.pk, amount=Decimal("5"), kind=CreditTransaction.Kind.ADMIN_GRANT, description="x")
    client = bearer(
        APIClient(),
        APIClient()
        .post("/api/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
        .json()["access_token"],
    )

    assert api_upload(client).status_code == 202


def test_the_api_resends_the_link_and_respects_the_cooldown(user_client, user):
    first = user_client.post("/api/auth/verify-email/resend")
    second = user_client.post("/api/auth/verify-email/resend")

    assert first.status_code == 200 and first.json()["status"] == "sent"
    assert second.status_code == 200 and second.json()["status"] == "recently_sent"
    assert len(mail.outbox) == 1
    follow(Client(), the_link(mail.outbox[0]))
    assert user_client.post("/api/auth/verify-email/resend").json()["status"] == "already_verified"


# --- the pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dashboard/", "/credits/", "/accounts/profile/"])
def test_pages_show_the_banner_with_a_resend_button_to_unverified_users(mandatory, client, user, path):
    client.force_login(user)

    html = client.get(path).content.decode()

    assert BANNER in html
    banner = html[html.index(BANNER) :]
    assert 'action="/accounts/verify-email/resend/"' in banner
    assert 'name="csrfmiddlewaretoken"' in banner
    assert "Resend verification email" in banner


def test_no_banner_once_verified_or_when_not_mandatory(settings, client, user):
    client.force_login(user)
    settings.EMAIL_VERIFICATION = "optional"
    assert BANNER not in client.get("/dashboard/").content.decode()

    settings.EMAIL_VERIFICATION = "mandatory"
    assert BANNER in client.get("/dashboard/").content.decode()
    verify(user)
    assert BANNER not in client.get("/dashboard/").content.decode()
    assert BANNER not in Client().get("/").content.decode()


def test_the_resend_button_mails_a_new_link(mandatory, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    html = client.get("/credits/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    response = client.post(
        "/accounts/verify-email/resend/", {"csrfmiddlewaretoken": token, "next": "/credits/"}, follow=True
    )

    assert response.redirect_chain[-1][0] == "/credits/"
    assert f"We sent a new verification link to {user.email}" in response.content.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [user.email]
    follow(client, the_link(mail.outbox[0]))
    assert verified(user)
    assert BANNER not in client.get("/credits/").content.decode()


def test_resend_needs_a_post_with_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.get("/accounts/verify-email/resend/").status_code == 405
    assert client.post("/accounts/verify-email/resend/").status_code == 403
    assert mail.outbox == []


def test_resend_does_not_redirect_off_site(client, user):
    client.force_login(user)

    response = client.post("/accounts/verify-email/resend/", {"next": "https://evil.example/"})

    assert response["Location"] == "/dashboard/"


def test_the_dashboard_refuses_an_upload_with_a_message(mandatory, client, user):
    client.force_login(user)

    response = client.post("/upload/", {"file": song(), "model": "demo"}, follow=True)

    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert "Verify your email address before uploading" in response.content.decode()
    assert not Job.objects.exists()


# --- end to end through a real SMTP server ------------------------------------------------


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_inbox(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    yield inbox
    controller.stop()


def test_end_to_end_sign_up_verify_through_smtp_then_upload(mandatory, smtp_inbox, client, settings):
    settings.DEFAULT_FROM_EMAIL = "Stemfold <noreply@stemfold.test>"

    assert signup(client, email="e2e@example.com", username="e2e").status_code == 302
    # A sign-up waits for the link, but an unverified account may log in (and not upload).
    assert client.post("/accounts/login/", {"login": "e2e", "password": PASSWORD}).status_code == 302
    refused = client.post("/upload/", {"file": song(), "model": "demo"}, follow=True)
    assert "Verify your email address before uploading" in refused.content.decode()

    assert len(smtp_inbox.messages) == 1
    received = smtp_inbox.messages[0]
    assert received["To"] == "e2e@example.com"
    assert received["From"] == "Stemfold <noreply@stemfold.test>"
    text = received.get_body(preferencelist=("plain",)).get_content()
    html = received.get_body(preferencelist=("html",)).get_content()
    link = LINK.findall(text)[0]
    assert link in html

    follow(client, link)

    response = client.post("/upload/", {"file": song("e2e.wav"), "model": "demo"})
    job = Job.objects.get(user__username="e2e")
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.original_filename == "e2e.wav"
    assert BANNER not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_factory_users_are_verified_with_their_bonus_unless_asked_otherwise(user):
    # The tests above ask for unverified accounts; everywhere else they come as after the link.
    assert not verified(user)
    assert user.credits == 0
    made = UserFactory()
    assert verified(made)
    assert made.credits == Decimal("3")
    assert made.email_on_job_finished is True
