"""credits.services.ledger_append: the one place balances change."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from accounts.models import User
from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from credits.services import InsufficientCredits, ledger_append
from tests.conftest import balance

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def _rows(user) -> int:
    return CreditTransaction.objects.filter(user=user).count()


def test_it_credits_and_writes_balance_after_and_the_cached_balance(user):
    start = balance(user)

    posting = ledger_append(
        user_id=user.pk, amount=Decimal("5.50"), kind=Kind.ADMIN_GRANT, description="Gift", reference="grant-1"
    )

    assert posting.created is True
    row = CreditTransaction.objects.get(pk=posting.transaction.pk)
    assert row.user_id == user.pk
    assert row.amount == Decimal("5.50")
    assert row.balance_after == start + Decimal("5.50")
    assert row.kind == Kind.ADMIN_GRANT
    assert row.description == "Gift"
    assert row.reference == "grant-1"
    assert balance(user) == start + Decimal("5.50")
    assert ledger_violations() == []


def test_it_debits_and_writes_balance_after_and_the_cached_balance(user):
    start = balance(user)
    ledger_append(user_id=user.pk, amount=Decimal("10"), kind=Kind.ADMIN_GRANT, description="Top up")

    posting = ledger_append(
        user_id=user.pk, amount=Decimal("-4.25"), kind=Kind.JOB_CHARGE, description="Job", reference="job-1"
    )

    assert posting.created is True
    assert posting.transaction.amount == Decimal("-4.25")
    assert posting.transaction.balance_after == start + Decimal("10") - Decimal("4.25")
    assert balance(user) == start + Decimal("5.75")
    assert ledger_violations() == []


def test_it_allows_a_debit_of_exactly_the_whole_balance(user):
    start = balance(user)
    assert start > 0

    posting = ledger_append(
        user_id=user.pk, amount=-start, kind=Kind.JOB_CHARGE, description="Job", reference="job-all"
    )

    assert posting.transaction.balance_after == Decimal("0")
    assert balance(user) == Decimal("0")


def test_it_refuses_a_debit_beyond_the_balance_and_changes_nothing(user):
    start = balance(user)
    rows = _rows(user)

    with pytest.raises(InsufficientCredits) as raised:
        ledger_append(
            user_id=user.pk, amount=-(start + Decimal("0.01")), kind=Kind.JOB_CHARGE, description="Job", reference="j"
        )

    assert raised.value.balance == start
    assert raised.value.required == start + Decimal("0.01")
    assert balance(user) == start
    assert _rows(user) == rows
    assert not CreditTransaction.objects.filter(kind=Kind.JOB_CHARGE, reference="j").exists()


def test_it_posts_the_same_kind_and_reference_once(user):
    start = balance(user)
    first = ledger_append(
        user_id=user.pk, amount=Decimal("7"), kind=Kind.PURCHASE, description="Buy", reference="pay-1"
    )
    rows = _rows(user)

    second = ledger_append(
        user_id=user.pk, amount=Decimal("7"), kind=Kind.PURCHASE, description="Buy", reference="pay-1"
    )

    assert first.created is True
    assert second.created is False
    assert second.transaction.pk == first.transaction.pk
    assert _rows(user) == rows
    assert balance(user) == start + Decimal("7")
    assert CreditTransaction.objects.filter(kind=Kind.PURCHASE, reference="pay-1").count() == 1


def test_it_posts_the_same_reference_under_another_kind(user):
    start = balance(user)
    ledger_append(user_id=user.pk, amount=Decimal("-1"), kind=Kind.JOB_CHARGE, description="Job", reference="job-9")

    refund = ledger_append(
        user_id=user.pk, amount=Decimal("1"), kind=Kind.JOB_REFUND, description="Refund", reference="job-9"
    )

    assert refund.created is True
    assert balance(user) == start


def test_it_refuses_a_reference_already_posted_for_another_user(user, other_user):
    ledger_append(user_id=user.pk, amount=Decimal("2"), kind=Kind.PURCHASE, description="Buy", reference="pay-x")
    other_start = balance(other_user)
    other_rows = _rows(other_user)

    with pytest.raises(ValueError):
        ledger_append(
            user_id=other_user.pk, amount=Decimal("2"), kind=Kind.PURCHASE, description="Buy", reference="pay-x"
        )

    assert balance(other_user) == other_start
    assert _rows(other_user) == other_rows


@pytest.mark.parametrize(
    "amount", [Decimal("0"), Decimal("0.00"), 0, Decimal("0.001"), Decimal("1.005"), Decimal("-2.999")]
)
def test_it_refuses_zero_and_sub_cent_amounts(user, amount):
    start = balance(user)
    rows = CreditTransaction.objects.count()

    with pytest.raises(ValueError):
        ledger_append(user_id=user.pk, amount=amount, kind=Kind.ADMIN_GRANT, description="Bad", reference="bad")

    assert balance(user) == start
    assert CreditTransaction.objects.count() == rows


def test_it_refuses_to_save_an_existing_row_through_the_orm(user):
    row = CreditTransaction.objects.get(user=user)
    row.amount = Decimal("1000")

    with pytest.raises(ValueError, match="append-only"):
        row.save()

    assert CreditTransaction.objects.get(pk=row.pk).amount != Decimal("1000")


def test_it_refuses_to_delete_a_row_through_the_orm(user):
    row = CreditTransaction.objects.get(user=user)

    with pytest.raises(ValueError, match="append-only"):
        row.delete()

    assert CreditTransaction.objects.filter(pk=row.pk).exists()


def test_it_refuses_a_queryset_update_or_delete_in_the_database(user):
    row = CreditTransaction.objects.get(user=user)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CreditTransaction.objects.filter(pk=row.pk).update(amount=Decimal("1000"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CreditTransaction.objects.filter(pk=row.pk).delete()

    assert CreditTransaction.objects.get(pk=row.pk).amount == row.amount


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE credits_credittransaction SET amount = 1000, balance_after = 1000 WHERE id = %s",
        "DELETE FROM credits_credittransaction WHERE id = %s",
    ],
)
def test_it_refuses_raw_sql_update_and_delete_on_postgres(user, sql):
    row = CreditTransaction.objects.get(user=user)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [row.pk])

    kept = CreditTransaction.objects.get(pk=row.pk)
    assert (kept.amount, kept.balance_after) == (row.amount, row.balance_after)


def test_it_rejects_a_negative_cached_balance_in_the_database(user):
    start = balance(user)

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=user.pk).update(credits=Decimal("-0.01"))

    assert balance(user) == start


def test_a_full_save_of_a_loaded_user_never_writes_back_its_old_balance(user):
    stale = User.objects.get(pk=user.pk)
    ledger_append(user_id=user.pk, amount=Decimal("25"), kind=Kind.PURCHASE, description="Buy", reference="pay-stale")

    stale.first_name = "Changed"
    stale.set_password("another-long-password-42")
    stale.save()  # what a password change or an admin edit does

    user.refresh_from_db()
    assert (user.first_name, user.credits) == ("Changed", Decimal("28.00"))
    assert ledger_violations() == []
