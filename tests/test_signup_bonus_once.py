"""Free credits once per person, not per alias: the signup bonus is granted when an address is
verified (whichever way: the mailed link, an operator in the admin), once per normalised address
(plus-tags removed; dots too at gmail.com/googlemail.com) and once per account. With
EMAIL_VERIFICATION=none it is granted at sign-up, still once per normalised address."""

import re
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from credits.services import ledger_append
from tests.conftest import balance
from tests.factories import PASSWORD
from tests.threads import run_together

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

BONUS = Decimal("3.00")
CONFIRM_LINK = re.compile(r"https?://[^\s\"<>]+(/accounts/confirm-email/[^\s\"<>]+/)")


def register(email, username) -> dict:
    response = APIClient().post(
        "/api/auth/register", {"email": email, "username": username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def follow_the_link(to: str, client=None):
    """Confirms the last verification link mailed to `to`, as a person does; the final page."""
    message = [message for message in mail.outbox if message.to == [to]][-1]
    path = CONFIRM_LINK.search(message.body).group(1)
    return (client or Client()).post(path, follow=True)


def bonus_rows(user=None):
    rows = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.SIGNUP_BONUS)
    return rows.filter(user=user) if user is not None else rows


def me(token: str) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/auth/me").json()


# --- normalising an address -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "normalised"),
    [
        ("Person@Example.com", "person@example.com"),
        ("person+music@example.com", "person@example.com"),
        ("person+a+b@example.com", "person@example.com"),
        ("first.last@example.com", "first.last@example.com"),
        ("First.Last+x@Gmail.com", "firstlast@gmail.com"),
        ("f.i.r.s.t.last@googlemail.com", "firstlast@gmail.com"),
        ("+only@example.com", "+only@example.com"),
    ],
)
def test_it_normalises_addresses(email, normalised):
    from accounts.email_identity import email_normalise

    assert email_normalise(email) == normalised


# --- granted at verification ----------------------------------------------------------------


def test_an_api_sign_up_gets_the_bonus_when_its_address_is_verified():
    body = register("newcomer@example.com", "newcomer")
    user = User.objects.get(username="newcomer")
    assert body["user"]["credits"] == "0.00"
    assert body["user"]["signup_bonus_pending"] == "3.00"
    assert not bonus_rows().exists()

    follow_the_link("newcomer@example.com")

    assert balance(user) == BONUS
    assert bonus_rows(user).count() == 1
    assert me(body["access_token"])["signup_bonus_pending"] is None
    assert ledger_violations() == []


def test_a_page_sign_up_gets_the_bonus_when_its_address_is_verified_and_is_told_so():
    client = Client()
    client.post(
        "/accounts/signup/",
        {"email": "page@example.com", "username": "pageuser", "password1": PASSWORD, "password2": PASSWORD},
    )
    user = User.objects.get(username="pageuser")
    assert balance(user) == 0

    page = follow_the_link("page@example.com", client)

    assert balance(user) == BONUS
    assert "3 free credits were added to your balance" in page.content.decode()


def test_aliases_of_one_mailbox_get_one_bonus():
    register("person+one@example.com", "one")
    register("Person+two@Example.com", "two")
    follow_the_link("person+one@example.com")

    page = follow_the_link("person+two@example.com")

    assert balance(User.objects.get(username="one")) == BONUS
    assert balance(User.objects.get(username="two")) == 0
    assert bonus_rows().count() == 1
    assert "already received its free credits" in page.content.decode()


def test_dotted_gmail_addresses_get_one_bonus():
    register("first.last@gmail.com", "dotted")
    register("firstlast+x@googlemail.com", "undotted")
    follow_the_link("first.last@gmail.com")
    follow_the_link("firstlast+x@googlemail.com")

    assert bonus_rows().count() == 1
    assert bonus_rows().get().user.username == "dotted"


def test_dots_count_elsewhere():
    register("first.last@example.com", "dotted")
    register("firstlast@example.com", "undotted")
    follow_the_link("first.last@example.com")
    follow_the_link("firstlast@example.com")

    assert bonus_rows().count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_aliases_verified_at_the_same_moment_get_one_bonus():
    from accounts.services import email_address_verify

    addresses = []
    for n in range(2):
        register(f"racer+{n}@example.com", f"racer{n}")
        addresses.append(EmailAddress.objects.get(email=f"racer+{n}@example.com"))

    results = run_together(*[lambda address=address: email_address_verify(address=address) for address in addresses])

    assert not any(isinstance(result, BaseException) for result in results), results
    assert bonus_rows().count() == 1
    assert EmailAddress.objects.filter(verified=True).count() == 2
    assert ledger_violations() == []


def test_a_second_verified_address_of_one_account_grants_nothing_more(user):
    from accounts.services import email_address_verify

    other = EmailAddress.objects.create(user=user, email="another.mailbox@example.net", verified=False)

    email_address_verify(address=other)

    assert bonus_rows(user).count() == 1
    assert balance(user) == BONUS


def test_an_account_that_got_its_bonus_at_creation_gets_no_second_one():
    # Accounts made before the bonus waited for verification hold a row with reference user:<pk>.
    from accounts.services import email_address_verify

    body = register("early@example.com", "early")
    user = User.objects.get(pk=body["user"]["id"])
    ledger_append(
        user_id=user.pk,
        amount=BONUS,
        kind=CreditTransaction.Kind.SIGNUP_BONUS,
        description="Welcome bonus",
        reference=f"user:{user.pk}",
    )

    email_address_verify(address=EmailAddress.objects.get(user=user))

    assert bonus_rows(user).count() == 1
    assert balance(user) == BONUS


# --- the admin -------------------------------------------------------------------------------


def test_an_operator_marking_addresses_verified_grants_their_bonus(admin_client):
    register("one@example.com", "one")
    register("one+alias@example.com", "alias")
    addresses = EmailAddress.objects.filter(user__username__in=["one", "alias"]).order_by("user__username")

    response = admin_client.post(
        "/admin/account/emailaddress/",
        {"action": "make_verified", "_selected_action": [address.pk for address in addresses]},
    )

    assert response.status_code == 302
    assert EmailAddress.objects.filter(pk__in=[a.pk for a in addresses], verified=True).count() == 2
    assert bonus_rows().filter(user__username__in=["one", "alias"]).count() == 1


def test_an_operator_ticking_verified_on_an_address_grants_its_bonus(admin_client):
    register("ticked@example.com", "ticked")
    address = EmailAddress.objects.get(email="ticked@example.com")

    response = admin_client.post(
        f"/admin/account/emailaddress/{address.pk}/change/",
        {"user": address.user_id, "email": address.email, "verified": "on", "primary": "on"},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert balance(address.user) == BONUS


# --- without verification ----------------------------------------------------------------------


def test_without_verification_the_bonus_comes_at_sign_up_once_per_address(settings):
    settings.EMAIL_VERIFICATION = "none"

    first = register("solo@example.com", "solo")
    second = register("solo+again@example.com", "soloagain")

    assert first["user"]["credits"] == "3.00"
    assert second["user"]["credits"] == "0.00"
    assert first["user"]["signup_bonus_pending"] is None
    assert second["user"]["signup_bonus_pending"] is None
    assert bonus_rows().count() == 1


# --- what people see -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["optional", "mandatory"])
@pytest.mark.parametrize("path", ["/dashboard/", "/credits/"])
def test_pages_tell_an_unverified_account_how_to_get_its_free_credits(settings, mode, path):
    settings.EMAIL_VERIFICATION = mode
    register("waiting@example.com", "waiting")
    client = Client()
    client.force_login(User.objects.get(username="waiting"))

    html = client.get(path).content.decode()

    assert "get your 3 free credits" in html
    follow_the_link("waiting@example.com")
    assert "get your 3 free credits" not in client.get(path).content.decode()


def test_the_pricing_page_says_the_bonus_is_once_per_address(client):
    html = client.get("/").content.decode()
    pricing = html[html.index('id="pricing"') :]

    assert "3 free credits" in pricing
    assert "once its email address is verified" in pricing
    assert "one welcome bonus per email address" in pricing
