"""POST /api/payments/stripe/webhook: signed deliveries credit a paid checkout once, and refunds
and disputes take the credits back through the ledger as far as the balance allows."""

import json
import time
from decimal import Decimal

import pytest
from django.test import Client

from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.services import ledger_append
from testkit.stripe import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    checkout_session,
    completed,
    deliver,
    disputed,
    event,
    new_id,
    refunded,
    sign,
)
from tests.conftest import balance

Kind = CreditTransaction.Kind
Status = Payment.Status

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("stripe_on")]


@pytest.fixture
def ids():
    return {"session": new_id("cs"), "intent": new_id("pi"), "charge": new_id("ch")}


def _purchases(user):
    return CreditTransaction.objects.filter(user=user, kind=Kind.PURCHASE)


def _reversals(user):
    return CreditTransaction.objects.filter(user=user, kind=Kind.PAYMENT_REVERSAL)


def _spend(user, amount: str):
    ledger_append(user_id=user.pk, amount=-Decimal(amount), kind=Kind.JOB_CHARGE, description="A song")


def _pay(user, ids, **fields):
    response = deliver(completed(user, ids["session"], ids["intent"], **fields))
    assert response.status_code == 200
    return response


# Completion


def test_a_paid_checkout_credits_its_pack_with_the_session_as_reference(user, ids):
    start = balance(user)

    response = deliver(completed(user, ids["session"], ids["intent"]))

    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": True}
    assert balance(user) == start + 25
    row = _purchases(user).get()
    assert (row.amount, row.reference, row.balance_after) == (Decimal("25.00"), ids["session"], start + 25)
    assert "4.00 USD" in row.description
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.user_id, payment.pack_id, payment.credits, payment.amount, payment.currency) == (
        user.pk,
        "standard",
        Decimal("25.00"),
        Decimal("4.00"),
        "usd",
    )
    assert (payment.status, payment.payment_intent_id) == (Status.PAID, ids["intent"])
    assert payment.credited_at is not None


def test_a_replayed_delivery_credits_once(user, ids):
    start = balance(user)
    payload = completed(user, ids["session"], ids["intent"])
    header = sign(payload)

    responses = [deliver(payload, header) for _ in range(5)]

    assert [response.status_code for response in responses] == [200] * 5
    assert _purchases(user).count() == 1
    assert balance(user) == start + 25


def test_a_retried_event_and_the_async_success_for_the_same_session_credit_once(user, ids):
    start = balance(user)

    _pay(user, ids)
    _pay(user, ids)  # Stripe's retry: a new signature and timestamp
    _pay(user, ids, kind="checkout.session.async_payment_succeeded")

    assert _purchases(user).count() == 1
    assert balance(user) == start + 25


def test_an_unpaid_completion_waits_for_the_async_payment(user, ids):
    start = balance(user)

    _pay(user, ids, payment_status="unpaid")

    assert balance(user) == start
    assert Payment.objects.get(provider_session_id=ids["session"]).status == Status.PROCESSING

    _pay(user, ids, kind="checkout.session.async_payment_succeeded")

    assert balance(user) == start + 25
    assert Payment.objects.get(provider_session_id=ids["session"]).status == Status.PAID


@pytest.mark.parametrize(
    ("kind", "status"),
    [("checkout.session.async_payment_failed", Status.FAILED), ("checkout.session.expired", Status.EXPIRED)],
)
def test_a_failed_or_expired_checkout_credits_nothing(user, ids, kind, status):
    start = balance(user)
    _pay(user, ids, payment_status="unpaid")

    response = deliver(completed(user, ids["session"], ids["intent"], kind=kind, payment_status="unpaid"))

    assert response.json() == {"received": True, "handled": True}
    assert Payment.objects.get(provider_session_id=ids["session"]).status == status
    assert balance(user) == start
    assert not _purchases(user).exists()


def test_a_completion_for_an_unknown_user_is_acknowledged_and_credits_nobody(user, ids):
    payload = event(
        "checkout.session.completed",
        {**checkout_session(user=user, session_id=ids["session"], payment_intent=ids["intent"]), "metadata": {}}
        | {"client_reference_id": "999999"},
    )

    response = deliver(payload)

    assert response.json() == {"received": True, "handled": False}
    assert not CreditTransaction.objects.filter(kind=Kind.PURCHASE).exists()
    assert not Payment.objects.exists()


def test_unknown_events_are_acknowledged_and_ignored(user):
    rows = CreditTransaction.objects.count()

    response = deliver(event("customer.created", {"id": new_id("cus"), "object": "customer"}))

    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": False}
    assert CreditTransaction.objects.count() == rows


# Signatures


def _refused(response, user, start):
    assert response.status_code == 400
    assert "signature" in response.json()["detail"].lower()
    assert balance(user) == start
    assert not _purchases(user).exists()
    assert not Payment.objects.exists()


def test_a_payload_changed_after_signing_is_refused(user, ids):
    start = balance(user)
    payload = completed(user, ids["session"], ids["intent"])
    header = sign(payload)
    tampered = json.loads(payload)
    tampered["data"]["object"]["metadata"]["credits"] = "1000.00"

    _refused(deliver(json.dumps(tampered), header), user, start)


def test_a_delivery_signed_with_another_secret_is_refused(user, ids):
    start = balance(user)
    payload = completed(user, ids["session"], ids["intent"])

    _refused(deliver(payload, sign(payload, secret="whsec_someone_else")), user, start)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=123", "v1=abc"])
def test_a_delivery_without_a_valid_signature_header_is_refused(user, ids, header):
    start = balance(user)

    _refused(deliver(completed(user, ids["session"], ids["intent"]), header), user, start)


def test_an_old_signature_is_refused(user, ids):
    start = balance(user)
    payload = completed(user, ids["session"], ids["intent"])

    _refused(deliver(payload, sign(payload, timestamp=int(time.time()) - 3600)), user, start)


def test_a_signed_body_that_is_not_json_is_refused(user):
    response = deliver("not json")

    assert response.status_code == 400


def test_the_webhook_takes_only_post_and_no_csrf_token(user, ids):
    client = Client(enforce_csrf_checks=True)

    assert client.get(WEBHOOK_URL).status_code == 405
    assert deliver(completed(user, ids["session"], ids["intent"]), client=client).status_code == 200


def test_without_a_webhook_secret_deliveries_are_refused_for_a_retry(settings, user, ids):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    start = balance(user)

    response = deliver(completed(user, ids["session"], ids["intent"]))

    assert response.status_code == 503
    assert balance(user) == start


def test_the_signature_is_checked_with_the_configured_secret(settings, user, ids):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_rotated"
    payload = completed(user, ids["session"], ids["intent"])

    assert deliver(payload, sign(payload, secret=WEBHOOK_SECRET)).status_code == 400
    assert deliver(payload, sign(payload, secret="whsec_rotated")).status_code == 200


# Refunds and disputes


def test_a_full_refund_takes_the_credits_back(user, ids):
    start = balance(user)
    _pay(user, ids)

    response = deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))

    assert response.json() == {"received": True, "handled": True}
    assert balance(user) == start
    row = _reversals(user).get()
    assert row.amount == Decimal("-25.00")
    assert row.reference == f"reversal:{ids['session']}:25.00"
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.status, payment.amount_reversed, payment.credits_reversed, payment.credits_shortfall) == (
        Status.REFUNDED,
        Decimal("4.00"),
        Decimal("25.00"),
        Decimal("0.00"),
    )


def test_a_refund_delivered_again_takes_back_once(user, ids):
    start = balance(user)
    _pay(user, ids)
    payload = refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400)

    for _ in range(3):
        assert deliver(payload).status_code == 200

    assert _reversals(user).count() == 1
    assert balance(user) == start


def test_partial_refunds_take_back_in_proportion_to_the_money(user, ids):
    start = balance(user)
    _pay(user, ids)

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=100))

    assert balance(user) == start + Decimal("18.75")
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.status, payment.credits_reversed) == (Status.PARTIALLY_REFUNDED, Decimal("6.25"))

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))
    # The first partial refund's event delivered late changes nothing.
    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=100))

    assert balance(user) == start
    assert list(_reversals(user).order_by("id").values_list("amount", flat=True)) == [
        Decimal("-6.25"),
        Decimal("-18.75"),
    ]
    payment.refresh_from_db()
    assert (payment.status, payment.credits_reversed, payment.amount_reversed) == (
        Status.REFUNDED,
        Decimal("25.00"),
        Decimal("4.00"),
    )


def test_a_refund_after_the_credits_were_spent_takes_what_is_left_and_records_the_shortfall(user, ids):
    start = balance(user)
    _pay(user, ids)
    _spend(user, str(start + 20))  # 5 credits left of the 25 bought

    response = deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))

    assert response.status_code == 200
    assert balance(user) == 0
    assert _reversals(user).get().amount == Decimal("-5.00")
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.status, payment.credits_reversed, payment.credits_shortfall) == (
        Status.REFUNDED,
        Decimal("5.00"),
        Decimal("20.00"),
    )


def test_a_refund_with_nothing_left_records_it_all_as_shortfall(user, ids):
    start = balance(user)
    _pay(user, ids)
    _spend(user, str(start + 25))

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))
    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))

    assert balance(user) == 0
    assert not _reversals(user).exists()
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.credits_reversed, payment.credits_shortfall) == (Decimal("0.00"), Decimal("25.00"))


def test_a_dispute_takes_the_credits_back(user, ids):
    start = balance(user)
    _pay(user, ids)
    payload = disputed(charge_id=ids["charge"], payment_intent=ids["intent"])

    deliver(payload)
    deliver(payload)

    assert balance(user) == start
    assert _reversals(user).count() == 1
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.status, payment.credits_reversed, payment.credits_shortfall) == (
        Status.DISPUTED,
        Decimal("25.00"),
        Decimal("0.00"),
    )
    assert PaymentReversal.objects.get().kind == PaymentReversal.Kind.DISPUTE


def test_a_dispute_with_too_little_balance_records_the_shortfall(user, ids):
    start = balance(user)
    _pay(user, ids)
    _spend(user, str(start + 15))

    deliver(disputed(charge_id=ids["charge"], payment_intent=ids["intent"]))

    assert balance(user) == 0
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert (payment.credits_reversed, payment.credits_shortfall) == (Decimal("10.00"), Decimal("15.00"))


def test_a_refund_and_a_dispute_of_the_same_money_take_back_no_more_than_was_bought(user, ids):
    start = balance(user)
    _pay(user, ids)
    ledger_append(user_id=user.pk, amount=Decimal("50"), kind=Kind.ADMIN_GRANT, description="Gift")

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400))
    deliver(disputed(charge_id=ids["charge"], payment_intent=ids["intent"]))

    assert balance(user) == start + 50
    assert Payment.objects.get(provider_session_id=ids["session"]).credits_reversed == Decimal("25.00")


def test_a_refund_of_another_payment_leaves_this_one_alone(user, ids):
    start = balance(user)
    _pay(user, ids)

    response = deliver(refunded(charge_id=new_id("ch"), payment_intent=new_id("pi"), amount_refunded=400))

    assert response.status_code == 200
    assert balance(user) == start + 25
    assert Payment.objects.get(provider_session_id=ids["session"]).status == Status.PAID


# Out of order


@pytest.mark.parametrize("reversal", ["refund", "dispute"])
def test_a_reversal_that_overtakes_its_completion_is_kept_and_applied_when_the_payment_completes(user, ids, reversal):
    start = balance(user)
    if reversal == "refund":
        early = refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=400)
    else:
        early = disputed(charge_id=ids["charge"], payment_intent=ids["intent"])

    response = deliver(early)

    assert response.status_code == 200
    assert balance(user) == start
    assert PaymentReversal.objects.filter(payment_intent_id=ids["intent"]).count() == 1

    _pay(user, ids)
    _pay(user, ids)

    assert balance(user) == start
    assert _purchases(user).count() == 1
    assert _reversals(user).count() == 1
    payment = Payment.objects.get(provider_session_id=ids["session"])
    assert payment.credits_reversed == Decimal("25.00")
    assert payment.status == (Status.REFUNDED if reversal == "refund" else Status.DISPUTED)


def test_a_partial_refund_before_the_completion_takes_back_its_share(user, ids):
    start = balance(user)

    deliver(refunded(charge_id=ids["charge"], payment_intent=ids["intent"], amount_refunded=200))
    _pay(user, ids)

    assert balance(user) == start + Decimal("12.50")
    assert Payment.objects.get(provider_session_id=ids["session"]).status == Status.PARTIALLY_REFUNDED
