"""Stripe delivers the same event more than once, sometimes at the same moment, and a refund can
race its payment's completion: real threads on their own database connections."""

from decimal import Decimal

import pytest

from credits.models import CreditTransaction, Payment
from credits.services import InsufficientCredits, ledger_append
from testkit.stripe import completed, deliver, disputed, new_id, refunded, sign
from tests.conftest import balance
from tests.factories import UserFactory
from tests.threads import run_together

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("stripe_on")]

THREADS = 12
PAIRS = 16


def _delivery(payload, header=None):
    header = header or sign(payload)
    return lambda: deliver(payload, header).status_code


def test_concurrent_deliveries_of_one_completion_credit_once():
    user = UserFactory()
    start = balance(user)
    payload = completed(user, new_id("cs"), new_id("pi"))

    results = run_together(*[_delivery(payload) for _ in range(THREADS)])

    assert results == [200] * THREADS
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count() == 1
    assert balance(user) == start + 25
    assert Payment.objects.count() == 1


def test_concurrent_deliveries_of_one_refund_take_back_once():
    user = UserFactory()
    start = balance(user)
    session, intent, charge = new_id("cs"), new_id("pi"), new_id("ch")
    assert deliver(completed(user, session, intent)).status_code == 200
    payload = refunded(charge_id=charge, payment_intent=intent, amount_refunded=400)

    results = run_together(*[_delivery(payload) for _ in range(THREADS)])

    assert results == [200] * THREADS
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REVERSAL).count() == 1
    assert balance(user) == start


@pytest.mark.parametrize("reversal", ["refund", "dispute"])
def test_a_reversal_racing_its_completion_is_never_lost(reversal):
    """Completions and reversals of the same payments delivered at the same moment (a user each,
    so nothing else serialises them): whichever commits first, every payment ends credited and
    taken back."""
    users = [UserFactory() for _ in range(PAIRS)]
    starts = [balance(user) for user in users]
    workers = []
    for user in users:
        session, intent, charge = new_id("cs"), new_id("pi"), new_id("ch")
        workers.append(_delivery(completed(user, session, intent)))
        if reversal == "refund":
            workers.append(_delivery(refunded(charge_id=charge, payment_intent=intent, amount_refunded=400)))
        else:
            workers.append(_delivery(disputed(charge_id=charge, payment_intent=intent)))

    results = run_together(*workers)

    assert results == [200] * len(workers)
    assert [balance(user) for user in users] == starts
    payments = Payment.objects.all()
    assert payments.count() == PAIRS
    assert {(p.credits_reversed, p.credits_shortfall) for p in payments} == {(Decimal("25.00"), Decimal("0.00"))}


def test_a_refund_racing_spending_never_takes_the_balance_below_zero():
    user = UserFactory()
    session, intent, charge = new_id("cs"), new_id("pi"), new_id("ch")
    assert deliver(completed(user, session, intent)).status_code == 200
    spendable = balance(user)

    def spend():
        try:
            ledger_append(user_id=user.pk, amount=Decimal("-4"), kind=Kind.JOB_CHARGE, description="A song")
        except InsufficientCredits:
            return "short"
        return "spent"

    workers = [_delivery(refunded(charge_id=charge, payment_intent=intent, amount_refunded=400))]
    workers += [spend for _ in range(THREADS - 1)]

    results = run_together(*workers)

    assert results[0] == 200
    spent = 4 * results.count("spent")
    payment = Payment.objects.get(provider_session_id=session)
    assert balance(user) >= 0
    assert balance(user) == spendable - spent - payment.credits_reversed
    assert payment.credits_reversed + payment.credits_shortfall == Decimal("25.00")
