"""A dispute racing the refunds of the jobs its credits paid for, and its win racing them too: real
threads on their own database connections. Whatever the order, the customer never ends with more
than the money allows, and nothing is repaid or given back twice."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from credits.models import CreditTransaction, Payment
from separation import catalog
from separation.services import job_cancel, job_refund_by_admin
from testkit.audio import tone_bytes
from testkit.stripe import completed, deliver, disputed, new_id, sign
from tests.conftest import balance
from tests.factories import UserFactory
from tests.jobs import make_job, refunds
from tests.threads import run_together

Kind = CreditTransaction.Kind

pytestmark = [
    pytest.mark.unit,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("stripe_on", "demo_model"),
]

ROUNDS = 4
SEVEN_CREDIT_SONG = tone_bytes(seconds=6.5)  # at one credit a second


@pytest.fixture(autouse=True)
def _a_credit_a_second(monkeypatch):
    monkeypatch.setattr(catalog, "PRICE_PERIOD_SECONDS", 1)


def _delivery(payload):
    header = sign(payload)
    return lambda: deliver(payload, header).status_code


def _customer_who_spent_a_pack():
    """3 bonus credits and a 25-credit pack, all spent on four 7-credit jobs still waiting."""
    user, admin = UserFactory(), UserFactory(is_staff=True)
    ids = {"session": new_id("cs"), "intent": new_id("pi"), "charge": new_id("ch"), "dispute": new_id("dp")}
    assert deliver(completed(user, ids["session"], ids["intent"])).status_code == 200
    jobs = [make_job(user, f"Song {n}.wav", content=SEVEN_CREDIT_SONG) for n in range(4)]
    assert balance(user) == 0
    return user, admin, ids, jobs


def _dispute(ids, **fields):
    return disputed(charge_id=ids["charge"], payment_intent=ids["intent"], dispute_id=ids["dispute"], **fields)


def _cancels_and_operator_refunds(jobs, admin):
    """The owner cancels every job while an operator refunds two of them."""
    workers = [lambda job=job: job_cancel(job=job).status for job in jobs]
    workers += [lambda job=job: job_refund_by_admin(job=job, admin=admin) for job in jobs[:2]]
    return workers


def _repaid_in_rows(user) -> Decimal:
    rows = CreditTransaction.objects.filter(user=user, kind=Kind.SHORTFALL_REPAYMENT)
    return -(rows.aggregate(total=Sum("amount"))["total"] or Decimal(0))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_dispute_racing_the_refunds_never_leaves_the_customer_the_disputed_credits(round_):
    user, admin, ids, jobs = _customer_who_spent_a_pack()
    dispute = _dispute(ids)

    results = run_together(_delivery(dispute), _delivery(dispute), *_cancels_and_operator_refunds(jobs, admin))

    assert not [result for result in results if isinstance(result, BaseException)], results
    assert results[:2] == [200, 200]
    assert all(refunds(job).count() == 1 for job in jobs)
    # 28 refunded; 25 of it was paid for with money given back: only the bonus is left.
    assert balance(user) == 3
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert payment.credits_reversed + payment.credits_shortfall == 25
    assert payment.credits_shortfall_open == 0
    assert payment.credits_shortfall_repaid == payment.credits_shortfall == _repaid_in_rows(user)
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REVERSAL).count() <= 1


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_won_dispute_racing_the_refunds_gives_back_exactly_once(round_):
    user, admin, ids, jobs = _customer_who_spent_a_pack()
    assert deliver(_dispute(ids)).status_code == 200
    won = [_dispute(ids, kind="charge.dispute.closed", status="won")] * 2
    won += [_dispute(ids, kind="charge.dispute.funds_reinstated", status="won")] * 2

    results = run_together(*[_delivery(payload) for payload in won], *_cancels_and_operator_refunds(jobs, admin))

    assert not [result for result in results if isinstance(result, BaseException)], results
    assert results[:4] == [200] * 4
    # The money stayed with us and every job was refunded: everything is back, once.
    assert balance(user) == 28
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert payment.credits_shortfall_open == 0
    assert payment.credits_reinstated == payment.credits_shortfall_repaid == _repaid_in_rows(user)
    assert payment.credits_shortfall_repaid + payment.credits_shortfall_cancelled == 25
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REINSTATED).count() <= 1
