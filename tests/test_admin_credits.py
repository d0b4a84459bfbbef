"""The admin: balances on the users list, the ledger inline, the grant_credits action, a read-only ledger."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages

from accounts.admin import GrantCreditsForm
from accounts.models import User
from credits.models import CreditTransaction
from credits.services import ledger_append
from tests.conftest import balance, logged_in
from tests.factories import UserFactory

Kind = CreditTransaction.Kind
USERS_URL = "/admin/accounts/user/"
LEDGER_URL = "/admin/credits/credittransaction/"

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _grants(user):
    return CreditTransaction.objects.filter(user=user, kind=Kind.ADMIN_GRANT)


def _start_grant(client, *users):
    return client.post(USERS_URL, {"action": "grant_credits", ACTION_CHECKBOX_NAME: [u.pk for u in users]})


def _apply_grant(client, users, *, amount, reason, token):
    return client.post(
        USERS_URL,
        {
            "action": "grant_credits",
            ACTION_CHECKBOX_NAME: [u.pk for u in users],
            "apply": "1",
            "amount": amount,
            "reason": reason,
            "token": token,
        },
    )


def test_it_shows_the_credits_column_on_the_users_list(admin_client, user):
    response = admin_client.get(USERS_URL)

    assert response.status_code == 200
    assert "credits" in response.context["cl"].list_display
    html = response.content.decode()
    assert 'class="sortable column-credits' in html
    assert f'<td class="field-credits">{user.credits}</td>' in html


def test_it_finds_users_by_email(admin_client, user, other_user):
    response = admin_client.get(USERS_URL, {"q": other_user.email})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [other_user]


def test_it_shows_the_ledger_read_only_on_the_user_page(admin_client, user, other_user):
    response = admin_client.get(f"{USERS_URL}{user.pk}/change/")

    assert response.status_code == 200
    (ledger,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is CreditTransaction]
    assert [form.original.pk for form in ledger] == list(
        CreditTransaction.objects.filter(user=user).values_list("pk", flat=True)
    )
    assert (ledger.has_add_permission, ledger.has_change_permission, ledger.formset.can_delete) == (False, False, False)
    html = response.content.decode()
    assert "Welcome bonus" in html
    assert 'name="credit_transactions-0-amount"' not in html
    assert 'name="credit_transactions-0-DELETE"' not in html
    assert 'name="credits"' not in html  # the cached balance is read-only too


def test_it_asks_for_the_grant_details_first(admin_client, user, other_user):
    response = _start_grant(admin_client, user, other_user)

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/accounts/user/grant_credits.html"
    assert set(response.context["users"]) == {user, other_user}
    assert response.context["form"].initial["token"]
    html = response.content.decode()
    assert 'name="apply" value="1"' in html
    assert f'name="{ACTION_CHECKBOX_NAME}" value="{user.pk}"' in html
    assert not _grants(user).exists()


def test_it_grants_through_the_ledger_to_each_selected_user(admin_client, user, other_user):
    bystander = UserFactory()
    starts = {u.pk: balance(u) for u in (user, other_user, bystander)}
    token = _start_grant(admin_client, user, other_user).context["form"].initial["token"]

    response = _apply_grant(
        admin_client, [user, other_user], amount="12.50", reason="Sorry for the outage", token=token
    )

    assert response.status_code == 302
    assert response["Location"] == USERS_URL
    for granted in (user, other_user):
        row = _grants(granted).get()
        assert row.amount == Decimal("12.50")
        assert row.balance_after == starts[granted.pk] + Decimal("12.50")
        assert "Sorry for the outage" in row.description
        assert "boss" in row.description
        assert balance(granted) == starts[granted.pk] + Decimal("12.50")
    assert balance(bystander) == starts[bystander.pk]
    assert not _grants(bystander).exists()
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Granted 12.50 credits to 2 user(s)."]


def test_it_grants_once_when_the_form_is_submitted_twice(admin_client, user):
    start = balance(user)
    token = _start_grant(admin_client, user).context["form"].initial["token"]

    _apply_grant(admin_client, [user], amount="5", reason="Goodwill", token=token)
    _apply_grant(admin_client, [user], amount="5", reason="Goodwill", token=token)

    assert _grants(user).count() == 1
    assert balance(user) == start + 5


@pytest.mark.parametrize("amount", ["0", "-5", "0.001", "lots"])
def test_it_reshows_the_form_for_a_bad_amount_and_grants_nothing(admin_client, user, amount):
    start = balance(user)

    response = _apply_grant(admin_client, [user], amount=amount, reason="Goodwill", token="t-1")

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/accounts/user/grant_credits.html"
    assert "amount" in response.context["form"].errors
    assert 'class="errorlist' in response.content.decode()
    assert not _grants(user).exists()
    assert balance(user) == start


def test_it_has_no_way_to_add_change_or_delete_ledger_rows(admin_client, user):
    row = CreditTransaction.objects.get(user=user)

    assert admin_client.get(f"{LEDGER_URL}add/").status_code == 403
    assert admin_client.get(f"{LEDGER_URL}{row.pk}/delete/").status_code == 403
    assert admin_client.post(f"{LEDGER_URL}{row.pk}/change/", {"amount": "1000"}).status_code == 403
    changelist = admin_client.get(LEDGER_URL)
    assert changelist.status_code == 200
    assert row in changelist.context["cl"].result_list
    html = changelist.content.decode()
    assert "delete_selected" not in html
    assert f"{LEDGER_URL}add/" not in html
    deleting = admin_client.post(
        LEDGER_URL, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [row.pk], "post": "yes"}
    )
    assert deleting.status_code in (200, 302)
    assert CreditTransaction.objects.filter(pk=row.pk, amount=row.amount).exists()


def test_it_sends_a_non_staff_user_to_the_admin_login(user, other_user):
    client = logged_in(user)
    start = balance(other_user)

    page = client.get(USERS_URL)
    grant = client.post(
        USERS_URL,
        {
            "action": "grant_credits",
            ACTION_CHECKBOX_NAME: [other_user.pk],
            "apply": "1",
            "amount": "9",
            "reason": "x",
            "token": "t",
        },
    )

    assert page.status_code == 302
    assert page["Location"] == f"/admin/login/?next={USERS_URL}"
    assert grant.status_code == 302
    assert grant["Location"].startswith("/admin/login/")
    assert balance(other_user) == start
    assert not _grants(other_user).exists()


def test_it_shows_only_the_latest_50_ledger_rows_inline(admin_client, user):
    for number in range(55):
        ledger_append(user_id=user.pk, amount=Decimal("1"), kind=Kind.ADMIN_GRANT, description=f"Grant {number}")
    newest = list(CreditTransaction.objects.filter(user=user).order_by("-id").values_list("pk", flat=True)[:50])

    response = admin_client.get(f"{USERS_URL}{user.pk}/change/")

    (ledger,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is CreditTransaction]
    assert [form.original.pk for form in ledger] == newest


def test_it_grants_with_the_longest_reason_the_form_allows(admin_client, user):
    # The description is "<reason> (granted by <username>)" in 255 characters: any reason the
    # form accepts must fit beside the longest username, or the grant dies with a database error.
    longest_reason = GrantCreditsForm.base_fields["reason"].max_length
    longest_username = User._meta.get_field("username").max_length
    operator = UserFactory(username="o" * longest_username, is_staff=True, is_superuser=True)
    admin_client.force_login(operator)
    start = balance(user)
    reason = "r" * longest_reason

    response = _apply_grant(admin_client, [user], amount="1", reason=reason, token="t-long")

    assert response.status_code == 302
    assert _grants(user).get().description == f"{reason} (granted by {operator.username})"
    assert balance(user) == start + 1
