"""A payment taken back stays taken back: credits that come back to an account whose refunded or
disputed payment left a shortfall (credits already spent) repay it first, through the ledger."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import F

from credits.models import CreditTransaction, Payment
from credits.packs import pack_get
from credits.selectors import credit_statistics
from credits.services import credits_admin_grant, credits_purchase_simulated, ledger_append
from separation import catalog
from separation.services import job_cancel, job_refund_by_admin
from testkit.audio import tone_bytes
from testkit.stripe import completed, deliver, disputed, new_id, refunded
from tests.conftest import balance
from tests.jobs import make_job

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("stripe_on", "demo_model")]

# With one credit a second, this clip costs 7: four jobs spend the 28 of a bonus and a 25-pack.
SEVEN_CREDIT_SONG = tone_bytes(seconds=6.5)


@pytest.fixture(autouse=True)
def _a_credit_a_second(monkeypatch):
    monkeypatch.setattr(catalog, "PRICE_PERIOD_SECONDS", 1)


def _ids():
    return {"session": new_id("cs"), "intent": new_id("pi"), "charge": new_id("ch")}


def _buy(user, ids=None):
    ids = ids or _ids()
    assert deliver(completed(user, ids["session"], ids["intent"])).status_code == 200
    return ids


def _dispute(ids):
    assert deliver(disputed(charge_id=ids["charge"], payment_intent=ids["intent"])).status_code == 200
    return Payment.objects.get(provider_session_id=ids["session"])


def _spend_everything(user) -> list:
    """Jobs of 7 credits while the balance allows, then one costing what is left."""
    jobs = [make_job(user, f"Song {n}.wav", content=SEVEN_CREDIT_SONG) for n in range(int(balance(user)) // 7)]
    if balance(user):
        jobs.append(make_job(user, "Last song.wav", content=tone_bytes(seconds=float(balance(user)) - 0.5)))
    assert balance(user) == 0
    return jobs


def _owing_after_spending_a_disputed_pack(user):
    """The customer bought 25 credits, spent them, and disputed the payment: 25 owed."""
    ids = _buy(user)
    jobs = _spend_everything(user)
    payment = _dispute(ids)
    assert (payment.credits_reversed, payment.credits_shortfall, payment.credits_shortfall_open) == (0, 25, 25)
    return payment, jobs


def _repayments(user):
    return CreditTransaction.objects.filter(user=user, kind=Kind.SHORTFALL_REPAYMENT).order_by("id")


def _audit() -> str:
    out = StringIO()
    call_command("audit_ledger", stdout=out, stderr=StringIO())
    return out.getvalue()


# The scenario


def test_it_does_not_give_a_disputed_purchase_back_when_the_jobs_it_paid_for_are_cancelled(user):
    assert balance(user) == 3
    payment, jobs = _owing_after_spending_a_disputed_pack(user)
    assert len(jobs) == 4
    assert "open shortfalls (1, warning)" in _audit()

    opens = []
    for job in jobs:
        job_cancel(job=job)
        payment.refresh_from_db()
        opens.append((payment.credits_shortfall_open, balance(user)))

    # Each refund of 7 pays what is owed first; only the signup bonus, bought with no money, is left.
    assert opens == [(18, 0), (11, 0), (4, 0), (0, 3)]
    assert payment.credits_shortfall_repaid == 25
    assert [row.amount for row in _repayments(user)] == [-7, -7, -7, -4]
    assert CreditTransaction.objects.filter(user=user, kind=Kind.JOB_REFUND).count() == 4
    audit = _audit()
    assert "Ledger consistent" in audit
    assert "open shortfall" not in audit
    # The admin's statistics count the repaid credits as taken back for the dispute.
    assert credit_statistics().reversed == 25


def test_it_writes_each_repayment_right_after_its_credit_naming_both(user):
    payment, jobs = _owing_after_spending_a_disputed_pack(user)

    job_cancel(job=jobs[0])

    refund, repayment = CreditTransaction.objects.filter(user=user).order_by("-id")[:2][::-1]
    assert (refund.kind, refund.amount, refund.balance_after) == (Kind.JOB_REFUND, 7, 7)
    assert (repayment.kind, repayment.amount, repayment.balance_after) == (Kind.SHORTFALL_REPAYMENT, -7, 0)
    assert repayment.reference == f"shortfall:{payment.pk}:tx{refund.pk}"
    assert "Refund for Song 0.wav" in repayment.description


# Every way credits come back


def test_an_operators_job_refund_repays_first(user, admin_user):
    payment, jobs = _owing_after_spending_a_disputed_pack(user)

    assert job_refund_by_admin(job=jobs[0], admin=admin_user) is True

    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, balance(user)) == (18, 0)


def test_an_operators_grant_repays_first_and_the_rest_is_spendable(user, admin_user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    posting = credits_admin_grant(
        user=user, amount=Decimal("30"), reason="Goodwill", granted_by=admin_user, request_token="t"
    )

    assert (posting.repaid, posting.balance_after, balance(user)) == (25, 5, 5)
    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, payment.credits_shortfall_repaid) == (0, 25)


def test_a_later_purchase_repays_first(user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    _buy(user)

    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, balance(user)) == (0, 0)


def test_a_simulated_purchase_repays_first(user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    posting = credits_purchase_simulated(user=user, pack=pack_get("pro"), idempotency_key="k")

    assert (posting.repaid, balance(user)) == (25, 75)


def test_it_repays_the_oldest_payment_first(user):
    first, second = _buy(user), _buy(user)
    _spend_everything(user)
    older, newer = _dispute(first), _dispute(second)

    ledger_append(user_id=user.pk, amount=Decimal("30"), kind=Kind.ADMIN_GRANT, description="Gift")

    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.credits_shortfall_repaid, newer.credits_shortfall_repaid) == (25, 5)
    assert (newer.credits_shortfall_open, balance(user)) == (20, 0)


def test_a_credit_posted_again_repays_once(user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    for _ in range(3):
        ledger_append(user_id=user.pk, amount=Decimal("5"), kind=Kind.ADMIN_GRANT, description="Gift", reference="g1")

    assert _repayments(user).count() == 1
    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, balance(user)) == (20, 0)


def test_a_refund_that_takes_part_back_leaves_only_the_rest_owed(user):
    ids = _buy(user)
    ledger_append(user_id=user.pk, amount=Decimal("-18"), kind=Kind.JOB_CHARGE, description="A song")
    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.credits_reversed, payment.credits_shortfall_open, balance(user)) == (10, 15, 0)

    ledger_append(user_id=user.pk, amount=Decimal("18"), kind=Kind.JOB_REFUND, description="Back", reference="j")

    payment.refresh_from_db()
    assert (payment.credits_shortfall_open, balance(user)) == (0, 3)


def test_nothing_is_repaid_when_nothing_is_owed(user):
    _buy(user)

    posting = ledger_append(user_id=user.pk, amount=Decimal("5"), kind=Kind.ADMIN_GRANT, description="Gift")

    assert posting.repaid == 0
    assert not _repayments(user).exists()
    assert balance(user) == 33


def test_another_users_credits_never_repay_it(user, other_user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    ledger_append(user_id=other_user.pk, amount=Decimal("50"), kind=Kind.ADMIN_GRANT, description="Gift")

    payment.refresh_from_db()
    assert payment.credits_shortfall_open == 25
    assert balance(other_user) == 53


# The database as the last guard


def test_the_database_refuses_closing_more_than_the_shortfall(user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(credits_shortfall_repaid=F("credits_shortfall") + 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(credits_shortfall_repaid=20, credits_shortfall_waived=10)


def test_the_database_refuses_giving_back_more_than_was_taken(user):
    payment, _ = _owing_after_spending_a_disputed_pack(user)

    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(credits_reinstated=1)
