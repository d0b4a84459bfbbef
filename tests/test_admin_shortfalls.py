"""The admin and open shortfalls: operators see who owes credits (accounts and payments) and waive
a shortfall with a reason, or collect it from the balance, through the payments service."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from credits.models import CreditTransaction, Payment
from credits.services import ledger_append
from tests.conftest import balance, logged_in
from tests.factories import UserFactory, disputed_payment

Kind = CreditTransaction.Kind
PAYMENTS_URL = "/admin/credits/payment/"
OWING_URL = "/admin/credits/accountowing/"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _action(client, action, payments, **fields):
    return client.post(PAYMENTS_URL, {"action": action, ACTION_CHECKBOX_NAME: [p.pk for p in payments], **fields})


def test_the_payments_list_shows_what_is_still_owed_and_filters_on_it(admin_client, user, other_user):
    owing = disputed_payment(user, shortfall="25")
    settled = disputed_payment(other_user, shortfall="10")
    Payment.objects.filter(pk=settled.pk).update(credits_shortfall_waived=10)

    response = admin_client.get(PAYMENTS_URL, {"shortfall": "open"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [owing]
    assert '<td class="field-open_shortfall">25.00</td>' in response.content.decode()
    assert "Still owed" in admin_client.get(PAYMENTS_URL).content.decode()


def test_the_accounts_list_shows_only_users_who_owe_and_how_much(admin_client, user, other_user):
    disputed_payment(user, shortfall="25")
    disputed_payment(user, shortfall="5")
    disputed_payment(other_user)

    response = admin_client.get(OWING_URL)

    assert response.status_code == 200
    (row,) = response.context["cl"].result_list
    assert (row.pk, row.open_shortfall) == (user.pk, Decimal("30.00"))
    html = response.content.decode()
    assert f"{PAYMENTS_URL}?user__id__exact={user.pk}&amp;shortfall=open" in html
    assert admin_client.get(f"{OWING_URL}{user.pk}/change/").status_code == 200
    assert admin_client.post(f"{OWING_URL}{user.pk}/change/", {"username": "x"}).status_code == 403


def test_waiving_asks_for_a_reason_then_closes_the_shortfall_and_keeps_it(admin_client, user):
    payment = disputed_payment(user, shortfall="25")

    asked = _action(admin_client, "waive_shortfall", [payment])

    assert asked.status_code == 200
    assert [t.name for t in asked.templates][0] == "admin/credits/payment/waive_shortfall.html"
    assert "25.00 credits owed" in asked.content.decode()
    assert Payment.objects.get(pk=payment.pk).credits_shortfall_open == 25

    done = _action(admin_client, "waive_shortfall", [payment], apply="1", reason="Settled by bank transfer")
    _action(admin_client, "waive_shortfall", [payment], apply="1", reason="Settled by bank transfer")

    assert done.status_code == 302
    assert [str(m) for m in get_messages(done.wsgi_request)] == ["Waived 25.00 credits owed on 1 payment(s)."]
    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, payment.credits_shortfall_waived) == (0, 25)
    assert payment.shortfall_notes.endswith("boss waived 25.00: Settled by bank transfer")
    assert payment.shortfall_notes.count("waived") == 1
    # Credits that come back are the customer's again.
    ledger_append(user_id=user.pk, amount=Decimal("5"), kind=Kind.ADMIN_GRANT, description="Gift")
    assert balance(user) == 5


def test_waiving_without_a_reason_waives_nothing(admin_client, user):
    payment = disputed_payment(user, shortfall="25")

    response = _action(admin_client, "waive_shortfall", [payment], apply="1", reason="")

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert Payment.objects.get(pk=payment.pk).credits_shortfall_open == 25


def test_collecting_takes_what_the_balance_allows_through_the_ledger(admin_client, user):
    # An account from before credits repaid shortfalls by themselves: 3 credits and 25 owed.
    payment = disputed_payment(user, shortfall="25", spend=False)
    assert balance(user) == 3

    response = _action(admin_client, "collect_shortfall", [payment])

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Took 3.00 credits from the customers' balances."]
    assert balance(user) == 0
    row = CreditTransaction.objects.get(user=user, kind=Kind.SHORTFALL_REPAYMENT)
    assert (row.amount, row.reference) == (Decimal("-3.00"), f"shortfall:{payment.pk}:collected:3.00")
    payment.refresh_from_db()
    assert (payment.credits_shortfall_repaid, payment.credits_shortfall_open) == (3, 22)
    assert "boss collected 3.00" in payment.shortfall_notes


def test_a_staff_member_who_may_only_view_payments_gets_no_shortfall_actions(user):
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_payment"))
    payment = disputed_payment(user, shortfall="25")

    response = logged_in(clerk).get(PAYMENTS_URL)

    assert response.status_code == 200
    assert "waive_shortfall" not in response.content.decode()
    _action(logged_in(clerk), "waive_shortfall", [payment], apply="1", reason="No")
    assert Payment.objects.get(pk=payment.pk).credits_shortfall_open == 25


def test_waiving_refuses_a_post_without_its_csrf_token(admin_user, user):
    payment = disputed_payment(user, shortfall="25")

    response = _action(
        logged_in(admin_user, enforce_csrf_checks=True), "waive_shortfall", [payment], apply="1", reason="x"
    )

    assert response.status_code == 403
    assert Payment.objects.get(pk=payment.pk).credits_shortfall_open == 25
