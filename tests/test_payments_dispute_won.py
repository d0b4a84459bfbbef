"""A dispute the merchant wins (charge.dispute.closed won, charge.dispute.funds_reinstated): the
credits taken for it come back once, what it left owing is cancelled, a lost one changes nothing."""

from decimal import Decimal

import pytest

from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.services import ledger_append
from credits.shortfalls import payment_shortfall_waive
from testkit.stripe import completed, deliver, disputed, new_id, refunded
from tests.conftest import balance

Kind = CreditTransaction.Kind
Status = Payment.Status
CREATED, CLOSED, REINSTATED = "charge.dispute.created", "charge.dispute.closed", "charge.dispute.funds_reinstated"

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("stripe_on")]


@pytest.fixture
def ids():
    return {"session": new_id("cs"), "intent": new_id("pi"), "charge": new_id("ch"), "dispute": new_id("dp")}


def _pay(user, ids):
    assert deliver(completed(user, ids["session"], ids["intent"])).status_code == 200


def _dispute(ids, kind=CREATED, status="needs_response"):
    payload = disputed(
        charge_id=ids["charge"], payment_intent=ids["intent"], dispute_id=ids["dispute"], kind=kind, status=status
    )
    response = deliver(payload)
    assert response.status_code == 200
    return response.json()["handled"]


def _won(ids, kind=CLOSED):
    return _dispute(ids, kind=kind, status="won")


def _spend(user, amount):
    ledger_append(user_id=user.pk, amount=-Decimal(amount), kind=Kind.JOB_CHARGE, description="A song")


def _payment(ids) -> Payment:
    return Payment.objects.get(provider_session_id=ids["session"])


def _rows(user, kind):
    return list(CreditTransaction.objects.filter(user=user, kind=kind).order_by("id").values_list("amount", flat=True))


def test_a_won_dispute_gives_back_the_credits_it_took(user, ids):
    _pay(user, ids)
    _dispute(ids)
    assert balance(user) == 3

    assert _won(ids) is True

    assert balance(user) == 28
    assert _rows(user, Kind.PAYMENT_REINSTATED) == [Decimal("25.00")]
    payment = _payment(ids)
    assert (payment.status, payment.amount_reversed, payment.credits_reinstated) == (Status.DISPUTE_WON, 0, 25)
    assert PaymentReversal.objects.get().outcome == PaymentReversal.Outcome.WON


@pytest.mark.parametrize(
    "order",
    [(REINSTATED,), (CLOSED, REINSTATED), (REINSTATED, CLOSED), (CLOSED, CLOSED, REINSTATED, REINSTATED, CLOSED)],
)
def test_both_events_in_any_order_and_repeated_give_back_once(user, ids, order):
    _pay(user, ids)
    _dispute(ids)

    for kind in order:
        assert _won(ids, kind=kind) is True

    assert balance(user) == 28
    assert _rows(user, Kind.PAYMENT_REINSTATED) == [Decimal("25.00")]


def test_a_shortfall_still_owed_is_cancelled_not_credited(user, ids):
    _pay(user, ids)
    _spend(user, "28")
    _dispute(ids)
    assert _payment(ids).credits_shortfall_open == 25

    _won(ids)

    payment = _payment(ids)
    assert (payment.credits_shortfall_open, payment.credits_shortfall_cancelled) == (0, 25)
    assert balance(user) == 0
    assert _rows(user, Kind.PAYMENT_REINSTATED) == []


def test_what_was_repaid_comes_back_and_the_rest_is_cancelled(user, ids):
    _pay(user, ids)
    _spend(user, "23")  # 5 left: the dispute takes 5, 20 owed
    _dispute(ids)
    ledger_append(user_id=user.pk, amount=Decimal("8"), kind=Kind.JOB_REFUND, description="Back", reference="j1")
    payment = _payment(ids)
    assert (payment.credits_reversed, payment.credits_shortfall_repaid, payment.credits_shortfall_open) == (5, 8, 12)
    assert balance(user) == 0

    _won(ids)
    _won(ids, kind=REINSTATED)

    payment = _payment(ids)
    assert (payment.credits_reinstated, payment.credits_shortfall_cancelled, payment.credits_shortfall_open) == (
        13,
        12,
        0,
    )
    assert balance(user) == 13  # the 5 taken and the 8 repaid
    assert _rows(user, Kind.PAYMENT_REINSTATED) == [Decimal("13.00")]


def test_the_credits_back_repay_another_payments_shortfall_first(user, ids):
    other = {"session": new_id("cs"), "intent": new_id("pi"), "charge": new_id("ch"), "dispute": new_id("dp")}
    _pay(user, ids)
    _dispute(ids)  # takes 25 of 28
    _pay(user, other)
    _spend(user, "28")
    _dispute(other)  # nothing left: 25 owed
    assert _payment(other).credits_shortfall_open == 25

    _won(ids)

    assert _payment(other).credits_shortfall_open == 0
    assert balance(user) == 0


def test_a_win_delivered_before_the_dispute_takes_nothing_when_the_dispute_arrives(user, ids):
    _pay(user, ids)

    _won(ids)
    _dispute(ids)

    assert balance(user) == 28
    assert _rows(user, Kind.PAYMENT_REVERSAL) == []
    assert _payment(ids).status == Status.DISPUTE_WON


def test_a_win_delivered_before_the_payment_leaves_the_purchase_whole(user, ids):
    _dispute(ids)
    _won(ids, kind=REINSTATED)

    _pay(user, ids)

    assert balance(user) == 28
    assert _payment(ids).status == Status.DISPUTE_WON


def test_a_lost_dispute_changes_nothing_more(user, ids):
    _pay(user, ids)
    _spend(user, "10")
    _dispute(ids)
    before = (balance(user), CreditTransaction.objects.count())

    assert _dispute(ids, kind=CLOSED, status="lost") is True

    assert (balance(user), CreditTransaction.objects.count()) == before
    payment = _payment(ids)
    assert (payment.status, payment.credits_reversed, payment.credits_shortfall_open) == (Status.DISPUTED, 18, 7)
    assert PaymentReversal.objects.get().outcome == PaymentReversal.Outcome.LOST


def test_a_lost_dispute_whose_opening_was_missed_takes_the_credits_back(user, ids):
    _pay(user, ids)

    _dispute(ids, kind=CLOSED, status="lost")

    assert balance(user) == 3
    assert _payment(ids).status == Status.DISPUTED


def test_an_inquiry_closed_without_a_dispute_gives_back(user, ids):
    _pay(user, ids)
    _dispute(ids, status="warning_needs_response")

    _dispute(ids, kind=CLOSED, status="warning_closed")

    assert balance(user) == 28


def test_a_refund_after_a_won_dispute_takes_back_again(user, ids):
    _pay(user, ids)
    _dispute(ids)
    _won(ids)

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))

    assert balance(user) == 3
    assert _rows(user, Kind.PAYMENT_REVERSAL) == [Decimal("-25.00"), Decimal("-25.00")]
    assert _payment(ids).status == Status.REFUNDED


def test_a_won_dispute_leaves_a_refund_of_other_money_taken(user, ids):
    _pay(user, ids)
    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=200))  # 12.50 back
    _dispute(ids, status="needs_response")  # the rest of the money: 12.50 more
    assert balance(user) == 3

    _won(ids)

    assert balance(user) == Decimal("15.50")
    assert _payment(ids).status == Status.PARTIALLY_REFUNDED


def test_a_waived_shortfall_stays_closed_and_gives_nothing_back(user, ids, admin_user):
    _pay(user, ids)
    _spend(user, "28")
    _dispute(ids)
    assert payment_shortfall_waive(payment=_payment(ids), reason="Lost cause", waived_by=admin_user) == 25

    _won(ids)

    payment = _payment(ids)
    assert (payment.credits_shortfall_open, payment.credits_shortfall_waived, payment.credits_shortfall_cancelled) == (
        0,
        0,
        25,
    )
    assert balance(user) == 0


def test_a_closed_dispute_with_another_status_is_ignored(user, ids):
    _pay(user, ids)
    _dispute(ids)

    assert _dispute(ids, kind=CLOSED, status="under_review") is False

    assert balance(user) == 3
