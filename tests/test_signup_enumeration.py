"""The sign-up page does not tell whether an address has an account: in production settings
(EMAIL_VERIFICATION=mandatory) a taken address gets the same answer as a new one, and its owner a
mail saying someone tried (allauth's enumeration prevention). The API register endpoint returns a
token, so it cannot hide a taken address: it keeps naming it, and is throttled per address."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.test import Client

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

CONFIRM_LINK = re.compile(r"https?://[^\s\"<>]+/accounts/confirm-email/[^\s\"<>]+/")


VERIFICATION_SETTINGS = ["EMAIL_VERIFICATION", "ACCOUNT_EMAIL_VERIFICATION", "ACCOUNT_PREVENT_ENUMERATION"]


def settings_with(tmp_path, **env) -> dict:
    from tests.settings_probe import PRODUCTION_SECRET, settings_values

    return settings_values(tmp_path, VERIFICATION_SETTINGS, SECRET_KEY=PRODUCTION_SECRET, **env)


@pytest.fixture(scope="module")
def production_values(tmp_path_factory) -> dict:
    return settings_with(tmp_path_factory.mktemp("production"), DEBUG="0")


@pytest.fixture
def production(settings, production_values):
    """The verification settings as DEBUG=0 makes them (tests run with EMAIL_VERIFICATION=optional)."""
    for name, value in production_values.items():
        setattr(settings, name, value)


def signup(client, email, username):
    return client.post(
        "/accounts/signup/",
        {"email": email, "username": username, "password1": PASSWORD, "password2": PASSWORD},
    )


def logged_in_as(client):
    return client.session.get(SESSION_KEY)


def page_text(client, response, email) -> str:
    """The page a sign-up lands on, without what differs anyway (the address, CSRF tokens)."""
    html = client.get(response["Location"]).content.decode()
    html = html.replace(email, "ADDRESS")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_the_signup_page_answers_a_taken_and_a_new_address_alike(production, user):
    new_client, taken_client = Client(), Client()

    new = signup(new_client, "someone.new@example.com", "someonenew")
    taken = signup(taken_client, user.email.upper(), "someoneelse")

    assert new.status_code == taken.status_code == 302
    assert new["Location"] == taken["Location"]
    assert page_text(new_client, new, "someone.new@example.com") == page_text(taken_client, taken, user.email)
    assert logged_in_as(new_client) is None and logged_in_as(taken_client) is None


def test_it_mails_the_owner_of_a_taken_address_instead_of_making_an_account(production, user):
    signup(Client(), user.email, "someoneelse")

    assert not User.objects.filter(username="someoneelse").exists()
    assert User.objects.filter(email=user.email).count() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert "already exists" in message.body
    assert "/accounts/password/reset/" in message.body
    assert not CONFIRM_LINK.search(message.body)


def test_a_new_address_gets_its_verification_link_and_the_link_logs_in(production):
    client = Client()
    signup(client, "someone.new@example.com", "someonenew")
    assert len(mail.outbox) == 1
    link = CONFIRM_LINK.search(mail.outbox[0].body).group(0)
    path = "/" + link.split("://", 1)[1].split("/", 1)[1]

    client.post(path)

    user = User.objects.get(username="someonenew")
    assert EmailAddress.objects.filter(user=user, verified=True).exists()
    assert logged_in_as(client) == str(user.pk)


def test_an_unverified_account_still_logs_in_on_the_page(production, client, user):
    # Unverified accounts log in and see their balance; only uploads wait for the address.
    EmailAddress.objects.filter(user=user).delete()

    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert logged_in_as(client) == str(user.pk)
    assert mail.outbox == []


def test_the_api_keeps_naming_a_taken_address(production, api_client, user):
    # It answers a new address with a token, so it could not hide a taken one; it is throttled
    # per address and per client instead (README, Email and accounts).
    response = api_client.post(
        "/api/auth/register", {"email": user.email, "username": "someoneelse", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 400
    assert "email" in response.json()["errors"]


@pytest.mark.parametrize(("debug", "expected"), [("0", "mandatory"), ("1", "optional")])
def test_allauth_verifies_as_the_product_does(tmp_path, debug, expected):
    found = settings_with(tmp_path, DEBUG=debug)

    assert found == {
        "EMAIL_VERIFICATION": expected,
        "ACCOUNT_EMAIL_VERIFICATION": expected,
        "ACCOUNT_PREVENT_ENUMERATION": True,
    }
