"""Square delivers a notification more than once, sometimes at the same moment (payment.created
and payment.updated both COMPLETED, and retries): real threads on their own connections."""

import pytest

from credits.models import CreditTransaction, Payment
from testkit.stripe import assert_ledger_consistent
from tests.conftest import balance
from tests.factories import UserFactory
from tests.square import configure_square, deliver, new_id, payment, refund
from tests.threads import run_together

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

THREADS = 12


@pytest.fixture(autouse=True)
def _square(settings):
    configure_square(settings)
    yield
    assert_ledger_consistent()


def _order(user) -> str:
    """A payment link's order as purchase_start records it (the fake API is not needed here)."""
    order_id = new_id(27)
    Payment.objects.create(
        provider="square",
        provider_session_id=order_id,
        user=user,
        pack_id="standard",
        credits=25,
        amount=4,
        currency="usd",
    )
    return order_id


def test_concurrent_deliveries_of_one_completed_payment_credit_once():
    user = UserFactory()
    start = balance(user)
    order_id, payment_id = _order(user), new_id()
    payloads = [
        payment(order_id=order_id, payment_id=payment_id, kind="payment.created" if index % 2 else "payment.updated")
        for index in range(THREADS)
    ]

    results = run_together(*[(lambda payload=payload: deliver(payload).status_code) for payload in payloads])

    assert results == [200] * THREADS
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE).count() == 1
    assert balance(user) == start + 25


def test_concurrent_deliveries_of_a_refund_and_its_payment_take_back_once():
    user = UserFactory()
    start = balance(user)
    order_id, payment_id, refund_id = _order(user), new_id(), new_id()
    paid = payment(order_id=order_id, payment_id=payment_id)
    refunded = refund(payment_id=payment_id, refund_id=refund_id)
    workers = [(lambda payload=payload: deliver(payload).status_code) for payload in [paid, refunded] * (THREADS // 2)]

    results = run_together(*workers)

    assert results == [200] * THREADS
    assert balance(user) == start
    assert CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REVERSAL).count() == 1
    assert Payment.objects.get().status == Payment.Status.REFUNDED
