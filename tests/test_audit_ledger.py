"""manage.py audit_ledger: credits == sum(amounts) == last balance_after, for every user; payments
agree with their ledger rows; open shortfalls listed as warnings; every check in its list runs."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from accounts.models import User
from credits.management.commands import audit_ledger
from credits.models import CreditTransaction, Payment
from credits.services import ledger_append
from tests.factories import UserFactory, disputed_payment

pytestmark = pytest.mark.unit

Kind = CreditTransaction.Kind


def _audit():
    out, err = StringIO(), StringIO()
    call_command("audit_ledger", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _audit_failing():
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("audit_ledger", stdout=out, stderr=err)
    return raised.value, err.getvalue()


@pytest.mark.django_db
def test_it_passes_a_clean_ledger(user, other_user):
    ledger_append(user_id=user.pk, amount=Decimal("5"), kind=Kind.PURCHASE, description="Buy", reference="p1")
    ledger_append(user_id=user.pk, amount=Decimal("-2.50"), kind=Kind.JOB_CHARGE, description="Job", reference="j1")

    out, err = _audit()

    assert "Ledger consistent" in out
    assert err == ""


@pytest.mark.django_db
def test_it_fails_and_names_a_user_whose_cached_balance_is_corrupted(user, other_user):
    start = user.credits
    User.objects.filter(pk=user.pk).update(credits=F("credits") + Decimal("1"))

    error, err = _audit_failing()

    assert error.returncode == 1
    assert str(error) == "1 ledger violation(s)"
    assert err.splitlines() == [
        f"user {user.pk} ({user.username}): balance {start + 1:.2f}, "
        f"sum of transactions {start:.2f}, last balance_after {start:.2f}"
    ]
    assert f"user {other_user.pk} " not in err


@pytest.mark.django_db
def test_it_fails_on_a_row_inserted_behind_the_services_back(user):
    row = CreditTransaction.objects.create(
        user=user, amount=Decimal("2"), balance_after=Decimal("100"), kind=Kind.ADMIN_GRANT, description="Forged"
    )

    error, err = _audit_failing()

    lines = err.splitlines()
    assert str(error) == "2 ledger violation(s)"
    assert (
        f"user {user.pk} ({user.username}): balance {user.credits:.2f}, "
        f"sum of transactions {user.credits + 2:.2f}, last balance_after 100.00"
    ) in lines
    assert f"transaction {row.pk} (user {user.pk}): balance_after 100.00 is not {user.credits:.2f} + 2.00" in lines


@pytest.mark.django_db
def test_it_fails_on_a_broken_chain_even_when_the_totals_agree(user):
    # +2 then -2 keeps sum == balance == last balance_after, but the middle row is wrong.
    start = user.credits
    wrong = CreditTransaction.objects.create(
        user=user, amount=Decimal("2"), balance_after=start + 7, kind=Kind.ADMIN_GRANT, description="Forged"
    )
    back = CreditTransaction.objects.create(
        user=user, amount=Decimal("-2"), balance_after=start, kind=Kind.ADMIN_REFUND, description="Forged"
    )

    error, err = _audit_failing()

    assert str(error) == "2 ledger violation(s)"
    assert err.splitlines() == [
        f"transaction {wrong.pk} (user {user.pk}): balance_after {start + 7:.2f} is not {start:.2f} + 2.00",
        f"transaction {back.pk} (user {user.pk}): balance_after {start:.2f} is not {start + 7:.2f} + -2.00",
    ]


# Payments and shortfalls


@pytest.mark.django_db
def test_it_lists_an_open_shortfall_as_a_warning_and_still_passes(user):
    payment = disputed_payment(user, shortfall="25")

    out, err = _audit()

    assert err == ""
    assert "Ledger consistent" in out
    assert "open shortfalls (1, warning):" in out
    assert (
        f"user {user.pk} ({user.username}): payment {payment.pk} (stripe {payment.provider_session_id}) owes 25.00 "
        "of a 25.00 shortfall (repaid 0.00, waived 0.00, cancelled 0.00)"
    ) in out


@pytest.mark.django_db
def test_it_fails_on_an_open_shortfall_with_strict(user):
    disputed_payment(user, shortfall="25")
    err = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("audit_ledger", "--strict", stdout=StringIO(), stderr=err)

    assert str(raised.value) == "1 ledger violation(s)"
    assert "owes 25.00" in err.getvalue()


@pytest.mark.django_db
def test_it_passes_without_a_word_on_shortfalls_once_repaid(user):
    disputed_payment(user, shortfall="25")
    ledger_append(user_id=user.pk, amount=Decimal("30"), kind=Kind.ADMIN_GRANT, description="Gift", reference="g")

    out, err = _audit()

    assert "shortfall" not in out
    assert err == ""


@pytest.mark.django_db
def test_it_fails_on_credits_back_that_did_not_repay_an_open_shortfall(user):
    payment = disputed_payment(user, shortfall="25")
    # Credits posted behind the ledger service's back, skipping the repayment.
    User.objects.filter(pk=user.pk).update(credits=Decimal("5"))
    CreditTransaction.objects.create(
        user=user, amount=Decimal("5"), balance_after=Decimal("5"), kind=Kind.ADMIN_GRANT, description="Forged"
    )

    error, err = _audit_failing()

    assert str(error) == "1 ledger violation(s)"
    assert err.splitlines() == [
        f"user {user.pk} ({user.username}): balance 5.00 while payment {payment.pk} has an open shortfall "
        "of 25.00 (credits came back without repaying it)"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("credits_reversed", "payment_reversal"),
        ("credits_shortfall_repaid", "shortfall_repayment"),
        ("credits_reinstated", "payment_reinstated"),
    ],
)
def test_it_fails_on_a_payment_counter_that_is_not_the_sum_of_its_rows(user, field, kind):
    payment = disputed_payment(user, shortfall="20")
    # (credits_reinstated has a CHECK against what was taken: raise that too, in the same update.)
    Payment.objects.filter(pk=payment.pk).update(**{"credits_reversed": Decimal("5"), field: Decimal("5")})

    error, err = _audit_failing()

    assert f"payment {payment.pk} (user {user.pk}): {field} 5.00, but its {kind} rows sum to 0.00" in err.splitlines()


@pytest.mark.django_db
def test_it_runs_every_check_in_its_list(user, monkeypatch):
    checks = [*audit_ledger.CHECKS, audit_ledger.AuditCheck("jobs", lambda: ["job 7: COMPLETED without its files"])]
    monkeypatch.setattr(audit_ledger, "CHECKS", checks)

    error, err = _audit_failing()

    assert str(error) == "1 ledger violation(s)"
    assert err.splitlines() == ["job 7: COMPLETED without its files"]


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_model")
def test_it_reports_a_completed_job_without_its_files(settings):
    from separation.models import Job
    from separation.tasks import separate_next_job
    from tests.jobs import make_job

    job = make_job(UserFactory())
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    _audit()  # clean

    (Path(settings.MEDIA_ROOT) / job.stems[0]["file"]).unlink()

    error, said = _audit_failing()
    assert f"job {job.pk}" in said and "COMPLETED without its files" in said
    assert "1 ledger violation" in str(error)
