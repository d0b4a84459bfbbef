"""Purchases through a payment provider: start a checkout, and act on the provider's verified events.

Credits arrive only when the provider says the money is in (the checkout session id is the
purchase's ledger reference, so a delivery repeated, retried or raced credits once) and go back
through the ledger when the money is refunded or disputed, as far as the balance allows; the rest
is recorded on the Payment as a shortfall for an operator. Every event about one payment intent
is handled under one lock, so a refund that overtakes its payment's completion is kept and applied
when the completion arrives.
"""

import hashlib
import logging
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from credits import stripe_checkout
from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.packs import CreditPack, pack_get
from credits.payment_providers import (
    CheckoutClosed,
    CheckoutCompleted,
    EventIgnored,
    PaymentEvent,
    PaymentReversed,
)
from credits.services import ledger_append

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
Kind = CreditTransaction.Kind
Status = Payment.Status
UNPAID = (Status.OPEN, Status.PROCESSING, Status.FAILED, Status.EXPIRED)


def payment_checkout_start(
    *, user, pack: CreditPack, success_url: str, cancel_url: str, idempotency_key: str = ""
) -> tuple[Payment, str]:
    """Open a Stripe Checkout for a pack and record it; returns the Payment and the URL to send
    the customer to. No credits change here. The same idempotency_key gives the same checkout."""
    started = stripe_checkout.stripe_checkout_session_create(
        user=user,
        pack=pack,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"checkout:{user.pk}:{pack.id}:{idempotency_key}" if idempotency_key else "",
    )
    payment, _ = Payment.objects.get_or_create(
        provider=started.provider,
        provider_session_id=started.session_id,
        defaults={
            "user": user,
            "pack_id": pack.id,
            "credits": pack.credits,
            "amount": started.amount,
            "currency": started.currency,
        },
    )
    return payment, started.url


def payment_event_handle(*, event: PaymentEvent) -> bool:
    """Act on a verified provider event; False when it is not one we act on."""
    if isinstance(event, CheckoutCompleted):
        return payment_checkout_complete(event=event) is not None
    if isinstance(event, CheckoutClosed):
        return payment_checkout_close(event=event)
    if isinstance(event, PaymentReversed):
        return payment_reversal_record(event=event) is not None
    assert isinstance(event, EventIgnored)
    return False


def _payment_intent_lock(*, provider: str, payment_intent_id: str) -> None:
    """Serialise every event about one payment intent (its completion, refunds and disputes) until
    the transaction ends. SQLite runs one writer at a time, so it needs nothing."""
    if not payment_intent_id or connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"payment:{provider}:{payment_intent_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _payment_from_event(*, event: CheckoutCompleted) -> Payment | None:
    """The Payment a completed checkout belongs to, locked; recorded from the event's metadata when
    the checkout was opened elsewhere (or its row was lost)."""
    payments = Payment.objects.select_for_update()
    payment = payments.filter(provider=event.provider, provider_session_id=event.session_id).first()
    if payment is not None:
        return payment
    pack = pack_get(event.pack_id)
    credits = event.credits if event.credits is not None else (pack.credits if pack else None)
    if event.user_id is None or credits is None or not get_user_model().objects.filter(pk=event.user_id).exists():
        logger.error(
            "Checkout %s %s was paid but names no known user and pack (user %s, pack %r): not credited",
            event.provider,
            event.session_id,
            event.user_id,
            event.pack_id,
        )
        return None
    Payment.objects.get_or_create(
        provider=event.provider,
        provider_session_id=event.session_id,
        defaults={
            "user_id": event.user_id,
            "pack_id": event.pack_id,
            "credits": credits,
            "amount": event.amount,
            "currency": event.currency,
        },
    )
    return payments.get(provider=event.provider, provider_session_id=event.session_id)


def payment_checkout_complete(*, event: CheckoutCompleted) -> Payment | None:
    """Credit a paid checkout's pack, once, and apply any refund or dispute that arrived first."""
    with transaction.atomic():
        _payment_intent_lock(provider=event.provider, payment_intent_id=event.payment_intent_id)
        payment = _payment_from_event(event=event)
        if payment is None:
            return None
        if event.payment_intent_id:
            payment.payment_intent_id = event.payment_intent_id
        payment.amount = event.amount
        payment.currency = event.currency
        if not event.paid:
            if payment.status == Status.OPEN:
                payment.status = Status.PROCESSING
            payment.save()
            return payment
        ledger_append(
            user_id=payment.user_id,
            amount=payment.credits,
            kind=Kind.PURCHASE,
            description=(
                f"{payment.credits:g} credits bought for {payment.amount} {payment.currency.upper()} "
                f"({payment.get_provider_display()})"
            ),
            reference=payment.provider_session_id,
        )
        if payment.credited_at is None:
            payment.credited_at = timezone.now()
        if payment.status in UNPAID:
            payment.status = Status.PAID
        payment.save()
        _payment_reversals_apply(payment=payment)
    return payment


def payment_checkout_close(*, event: CheckoutClosed) -> bool:
    """A checkout that expired or whose payment failed: nothing to credit, only the status."""
    closed = Payment.objects.filter(
        provider=event.provider,
        provider_session_id=event.session_id,
        status__in=[Status.OPEN, Status.PROCESSING],
        credited_at__isnull=True,
    ).update(status=event.status, updated_at=timezone.now())
    return closed > 0


def payment_reversal_record(*, event: PaymentReversed) -> PaymentReversal | None:
    """Keep a refund or dispute and, when its payment has been credited, take the credits back."""
    if not event.payment_intent_id:
        logger.warning("%s %s names no payment intent: ignored", event.provider, event.reversal_id)
        return None
    with transaction.atomic():
        _payment_intent_lock(provider=event.provider, payment_intent_id=event.payment_intent_id)
        reversal, created = PaymentReversal.objects.select_for_update().get_or_create(
            provider=event.provider,
            provider_reversal_id=event.reversal_id,
            defaults={
                "kind": event.kind,
                "payment_intent_id": event.payment_intent_id,
                "charge_id": event.charge_id,
                "amount": event.amount,
                "currency": event.currency,
            },
        )
        # A charge's refunds arrive as running totals, perhaps out of order: keep the largest.
        if not created and event.amount > reversal.amount:
            reversal.amount = event.amount
            reversal.save(update_fields=["amount", "updated_at"])
        payment = (
            Payment.objects.select_for_update()
            .filter(provider=event.provider, payment_intent_id=event.payment_intent_id)
            .first()
        )
        if payment is None:
            logger.warning(
                "%s %s arrived before its payment %s: kept until the payment completes",
                event.provider,
                event.reversal_id,
                event.payment_intent_id,
            )
        else:
            _payment_reversals_apply(payment=payment)
    return reversal


def _payment_reversals_apply(*, payment: Payment) -> None:
    """Bring the credits taken back in line with the money refunded or disputed so far, in
    proportion to the amount paid; what the balance cannot cover becomes the shortfall.
    Runs inside the caller's transaction, with the payment row and its intent locked."""
    if payment.credited_at is None or not payment.payment_intent_id:
        return
    reversals = PaymentReversal.objects.filter(provider=payment.provider, payment_intent_id=payment.payment_intent_id)
    reversed_money = min(reversals.aggregate(total=Sum("amount"))["total"] or Decimal(0), payment.amount)
    if payment.amount > 0:
        target = (payment.credits * reversed_money / payment.amount).quantize(CENT, rounding=ROUND_HALF_UP)
    else:
        target = Decimal(0)
    due = min(target, payment.credits) - payment.credits_reversed - payment.credits_shortfall
    payment.amount_reversed = reversed_money
    if due > 0:
        balance = get_user_model().objects.select_for_update().values_list("credits", flat=True).get(pk=payment.user_id)
        take = min(balance, due)
        if take > 0:
            ledger_append(
                user_id=payment.user_id,
                amount=-take,
                kind=Kind.PAYMENT_REVERSAL,
                description=(
                    f"Payment refunded or disputed: {reversed_money} of {payment.amount} "
                    f"{payment.currency.upper()} ({payment.get_provider_display()})"
                ),
                reference=f"reversal:{payment.provider_session_id}:{target}",
            )
            payment.credits_reversed += take
        payment.credits_shortfall += due - take
        if due > take:
            logger.warning(
                "Payment %s: %s credits refunded or disputed could not be taken back (balance too low)",
                payment.pk,
                due - take,
            )
    if reversals.filter(kind=PaymentReversal.Kind.DISPUTE).exists():
        payment.status = Status.DISPUTED
    elif reversed_money >= payment.amount and reversed_money > 0:
        payment.status = Status.REFUNDED
    elif reversed_money > 0:
        payment.status = Status.PARTIALLY_REFUNDED
    payment.save()
