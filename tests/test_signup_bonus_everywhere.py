"""Every way of making an account gets the signup bonus exactly once, as a signup_bonus ledger row,
when its address is verified (at creation with EMAIL_VERIFICATION=none). The bonus is once per
mailbox too: test_signup_bonus_once.py."""

import io
from decimal import Decimal

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from accounts.services import email_address_verify
from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

BONUS = Decimal("3.00")


def _assert_no_bonus_until_verified_then_once(user):
    """The account has nothing; its address verified (as the link or an operator does), it has the
    bonus once, however often it is verified."""
    assert not CreditTransaction.objects.filter(user=user).exists()
    address, _ = EmailAddress.objects.get_or_create(user=user, email=user.email, defaults={"primary": True})
    email_address_verify(address=address)
    email_address_verify(address=address)
    _assert_bonus_granted_once(user)


def _assert_bonus_granted_once(user):
    user.refresh_from_db()
    assert settings.SIGNUP_BONUS_CREDITS == BONUS
    assert user.credits == BONUS
    rows = list(CreditTransaction.objects.filter(user=user).order_by("id"))
    assert [(row.kind, row.amount, row.balance_after) for row in rows] == [
        (CreditTransaction.Kind.SIGNUP_BONUS, BONUS, BONUS)
    ]
    assert ledger_violations() == []


def _sign_up_every_way(api_client, monkeypatch):
    """Accounts a to d: the API, the sign-up page, createsuperuser and create_user."""
    api_client.post(
        "/api/auth/register", {"email": "a@example.com", "username": "a", "password": PASSWORD}, format="json"
    )
    Client().post(
        "/accounts/signup/",
        {"email": "b@example.com", "username": "b", "password1": PASSWORD, "password2": PASSWORD},
    )
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", interactive=False, username="c", email="c@example.com", stdout=io.StringIO())
    User.objects.create_user(username="d", email="d@example.com", password=PASSWORD)


def test_it_grants_the_bonus_through_the_register_api(api_client):
    response = api_client.post(
        "/api/auth/register",
        {"email": "api@example.com", "username": "apiuser", "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 201, response.content
    _assert_no_bonus_until_verified_then_once(User.objects.get(username="apiuser"))


def test_it_grants_the_bonus_through_the_signup_page():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"email": "Page@Example.com", "username": "pageuser", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="pageuser")
    assert user.email == "page@example.com"
    assert user.check_password(PASSWORD)
    _assert_no_bonus_until_verified_then_once(user)


def test_it_grants_no_bonus_when_the_signup_page_rejects_the_form():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"email": "page@example.com", "username": "pageuser", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )

    assert response.status_code == 200
    assert "password2" in response.context["form"].errors
    assert not User.objects.exists()
    assert not CreditTransaction.objects.exists()


def test_it_grants_the_bonus_once_when_the_signup_page_repeats_an_email(user):
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"email": user.email.upper(), "username": "copycat", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert not User.objects.filter(username="copycat").exists()
    _assert_bonus_granted_once(user)


def test_it_grants_the_bonus_through_createsuperuser(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    call_command("createsuperuser", interactive=False, username="root", email="Root@Example.com", stdout=io.StringIO())

    user = User.objects.get(username="root")
    assert user.is_superuser and user.is_staff
    assert user.email == "root@example.com"
    assert user.check_password(PASSWORD)
    _assert_no_bonus_until_verified_then_once(user)


def test_it_grants_the_bonus_through_create_user():
    user = User.objects.create_user(username="plain", email="plain@example.com", password=PASSWORD)

    assert user.credits == 0
    assert user.check_password(PASSWORD)
    _assert_no_bonus_until_verified_then_once(user)


def test_it_grants_the_bonus_through_create_superuser():
    user = User.objects.create_superuser(username="boss", email="boss@example.com", password=PASSWORD)

    _assert_no_bonus_until_verified_then_once(user)


def test_it_grants_the_bonus_through_the_factory():
    _assert_bonus_granted_once(UserFactory())


def test_it_grants_the_bonus_at_creation_on_every_path_without_verification(settings, api_client, monkeypatch):
    settings.EMAIL_VERIFICATION = "none"
    _sign_up_every_way(api_client, monkeypatch)

    for user in User.objects.all():
        _assert_bonus_granted_once(user)


def test_it_grants_the_bonus_through_the_admin_add_user_form():
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/accounts/user/add/")
    assert page.status_code == 200
    management = {}
    for inline in page.context["inline_admin_formsets"]:
        form = inline.formset.management_form
        management.update({form.add_prefix(name): form[name].value() for name in form.fields})

    response = client.post(
        "/admin/accounts/user/add/",
        {
            "username": "staffmade",
            "email": "StaffMade@Example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
            **management,
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    user = User.objects.get(username="staffmade")
    assert user.email == "staffmade@example.com"
    assert user.check_password(PASSWORD)
    _assert_no_bonus_until_verified_then_once(user)
    _assert_bonus_granted_once(admin)


def test_it_does_not_grant_a_second_bonus_when_the_admin_edits_a_user(user):
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    data = {}
    for name in page.context["adminform"].form.fields:
        value = page.context["adminform"].form[name].value()
        if value is None or name == "password":
            continue
        data[name] = value
    data["first_name"] = "Edited"
    for inline in page.context["inline_admin_formsets"]:
        form = inline.formset.management_form
        data.update({form.add_prefix(name): form[name].value() for name in form.fields})
    data = {key: value for key, value in data.items() if not isinstance(value, bool) or value}

    response = client.post(f"/admin/accounts/user/{user.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    user.refresh_from_db()
    assert user.first_name == "Edited"
    _assert_bonus_granted_once(user)


def test_it_keeps_the_ledger_consistent_across_all_paths_together(api_client, monkeypatch):
    _sign_up_every_way(api_client, monkeypatch)

    assert not CreditTransaction.objects.exists()
    for user in User.objects.all():
        _assert_no_bonus_until_verified_then_once(user)

    assert User.objects.count() == 4
    assert CreditTransaction.objects.filter(kind=CreditTransaction.Kind.SIGNUP_BONUS).count() == 4
    assert CreditTransaction.objects.count() == 4
    assert ledger_violations() == []
