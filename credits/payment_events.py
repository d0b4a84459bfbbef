"""What a payment provider's verified events do: a checkout paid, closed, refunded or disputed.

Credits arrive only when the provider says the money is in (the checkout session id is the
purchase's ledger reference, so a delivery repeated, retried or raced credits once) and go back
through the ledger when the money is refunded or disputed, as far as the balance allows; the rest
is the payment's shortfall, which credits coming back to the account repay first (services.py)
and an operator can waive. A won dispute gives back what its reversal took, once, and cancels
what it left owing. Every event about one payment intent is handled under one lock, so a refund
that overtakes its payment's completion is kept and applied when the completion arrives.

Lock order: the payment intent's advisory lock, the user's row, the Payment row (the ledger's
order: the user's row before any of their payments).
"""

import hashlib
import logging
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.packs import pack_get
from credits.payment_providers import (
    CheckoutClosed,
    CheckoutCompleted,
    EventIgnored,
    PaymentEvent,
    PaymentReinstated,
    PaymentReversed,
    SubscriptionChanged,
)
from credits.services import ledger_append, ledger_lock_payment, ledger_lock_user
from credits.subscriptions import subscription_event_record

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
Kind = CreditTransaction.Kind
Status = Payment.Status
Outcome = PaymentReversal.Outcome
UNPAID = (Status.OPEN, Status.PROCESSING, Status.FAILED, Status.EXPIRED)
# What the provider's events change on a Payment. Never credits_shortfall_repaid: only the
# ledger's repayments move it (services.shortfall_repay), so a stale object cannot undo one.
EVENT_FIELDS = [
    "payment_intent_id",
    "amount",
    "currency",
    "status",
    "credited_at",
    "amount_reversed",
    "credits_reversed",
    "credits_shortfall",
    "credits_shortfall_cancelled",
    "credits_shortfall_waived",
    "credits_reinstated",
    "updated_at",
]


def payment_event_handle(*, event: PaymentEvent) -> bool:
    """Act on a verified provider event; False when it is not one we act on."""
    if isinstance(event, CheckoutCompleted):
        return payment_checkout_complete(event=event) is not None
    if isinstance(event, CheckoutClosed):
        return payment_checkout_close(event=event)
    if isinstance(event, PaymentReversed):
        return payment_reversal_record(event=event) is not None
    if isinstance(event, PaymentReinstated):
        return payment_reinstatement_record(event=event) is not None
    if isinstance(event, SubscriptionChanged):
        return subscription_event_record(event=event) is not None
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
    """The Payment a completed checkout belongs to (not locked); recorded from the event's metadata
    when the checkout was opened elsewhere (or its row was lost)."""
    payments = Payment.objects.all()
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
        payment = ledger_lock_payment(payment=payment)
        if event.payment_intent_id:
            payment.payment_intent_id = event.payment_intent_id
        payment.amount = event.amount
        payment.currency = event.currency
        if not event.paid:
            if payment.status == Status.OPEN:
                payment.status = Status.PROCESSING
            payment.save(update_fields=EVENT_FIELDS)
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
        payment.save(update_fields=EVENT_FIELDS)
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
        reversal, created = _reversal_get_or_create(event=event, kind=event.kind, outcome=event.outcome)
        changed = []
        # A charge's refunds arrive as running totals, perhaps out of order: keep the largest.
        if not created and event.amount > reversal.amount:
            reversal.amount = event.amount
            changed.append("amount")
        # A lost dispute changes nothing more; it never undoes a win.
        if event.outcome == Outcome.LOST and reversal.outcome == Outcome.NONE:
            reversal.outcome = Outcome.LOST
            changed.append("outcome")
        if changed:
            reversal.save(update_fields=[*changed, "updated_at"])
        _payment_reversals_apply_for(reversal=reversal)
    return reversal


def payment_reinstatement_record(*, event: PaymentReinstated) -> PaymentReversal | None:
    """A dispute won: its money no longer counts as reversed, so the credits it took come back
    and what it left owing is cancelled, once. Recorded even before the dispute or the payment."""
    if not event.payment_intent_id:
        logger.warning("%s %s names no payment intent: ignored", event.provider, event.reversal_id)
        return None
    with transaction.atomic():
        _payment_intent_lock(provider=event.provider, payment_intent_id=event.payment_intent_id)
        reversal, _ = _reversal_get_or_create(event=event, kind=PaymentReversal.Kind.DISPUTE, outcome=Outcome.WON)
        if reversal.outcome != Outcome.WON:
            reversal.outcome = Outcome.WON
            reversal.save(update_fields=["outcome", "updated_at"])
        _payment_reversals_apply_for(reversal=reversal)
    return reversal


def _reversal_get_or_create(*, event: PaymentReversed | PaymentReinstated, kind: str, outcome: str):
    return PaymentReversal.objects.select_for_update().get_or_create(
        provider=event.provider,
        provider_reversal_id=event.reversal_id,
        defaults={
            "kind": kind,
            "outcome": outcome,
            "payment_intent_id": event.payment_intent_id,
            "charge_id": event.charge_id,
            "amount": event.amount,
            "currency": event.currency,
        },
    )


def _payment_reversals_apply_for(*, reversal: PaymentReversal) -> None:
    """Apply a payment intent's reversals to its payment, or keep them until it arrives."""
    payment = Payment.objects.filter(provider=reversal.provider, payment_intent_id=reversal.payment_intent_id).first()
    if payment is None:
        logger.warning(
            "%s %s arrived before its payment %s: kept until the payment completes",
            reversal.provider,
            reversal.provider_reversal_id,
            reversal.payment_intent_id,
        )
        return
    _payment_reversals_apply(payment=ledger_lock_payment(payment=payment))


def _payment_reversals_apply(*, payment: Payment) -> None:
    """Bring the credits taken back in line with the money refunded or disputed now (won disputes
    no longer count), in proportion to the amount paid. Runs inside the caller's transaction,
    with the payment's intent, user and row locked (in that order)."""
    if payment.credited_at is None or not payment.payment_intent_id:
        return
    reversals = PaymentReversal.objects.filter(provider=payment.provider, payment_intent_id=payment.payment_intent_id)
    standing = reversals.exclude(outcome=Outcome.WON)
    reversed_money = min(standing.aggregate(total=Sum("amount"))["total"] or Decimal(0), payment.amount)
    if payment.amount > 0:
        target = (payment.credits * reversed_money / payment.amount).quantize(CENT, rounding=ROUND_HALF_UP)
    else:
        target = Decimal(0)
    target = min(target, payment.credits)
    # Credits the reversals account for now: taken back and kept, or owed (open or waived).
    accounted = (
        payment.credits_reversed
        - payment.credits_reinstated
        + payment.credits_shortfall
        - payment.credits_shortfall_cancelled
    )
    payment.amount_reversed = reversed_money
    if target > accounted:
        _payment_credits_take(payment=payment, due=target - accounted, target=target, reversed_money=reversed_money)
    elif target < accounted:
        _payment_credits_give_back(payment=payment, excess=accounted - target)
    if standing.filter(kind=PaymentReversal.Kind.DISPUTE).exists():
        payment.status = Status.DISPUTED
    elif reversed_money >= payment.amount and reversed_money > 0:
        payment.status = Status.REFUNDED
    elif reversed_money > 0:
        payment.status = Status.PARTIALLY_REFUNDED
    elif reversals.filter(outcome=Outcome.WON).exists():
        payment.status = Status.DISPUTE_WON
    payment.save(update_fields=EVENT_FIELDS)


def _payment_credits_take(*, payment: Payment, due: Decimal, target: Decimal, reversed_money: Decimal) -> None:
    """Take `due` credits back as far as the balance allows; the rest becomes shortfall."""
    balance = ledger_lock_user(user_id=payment.user_id)
    take = min(balance, due)
    if take > 0:
        # Targets only grow between two give-backs, so with their count the reference is new.
        undone = payment.credits_reinstated + payment.credits_shortfall_cancelled
        posting = ledger_append(
            user_id=payment.user_id,
            amount=-take,
            kind=Kind.PAYMENT_REVERSAL,
            description=(
                f"Payment refunded or disputed: {reversed_money} of {payment.amount} "
                f"{payment.currency.upper()} ({payment.get_provider_display()})"
            ),
            reference=f"reversal:{payment.provider_session_id}:{target}" + (f":{undone}" if undone else ""),
        )
        if not posting.created:
            raise RuntimeError(f"Payment {payment.pk}: reversal {posting.transaction.reference} was already posted")
        payment.credits_reversed += take
    payment.credits_shortfall += due - take
    if due > take:
        logger.warning(
            "Payment %s: %s credits refunded or disputed could not be taken back (balance too low)",
            payment.pk,
            due - take,
        )


def _payment_credits_give_back(*, payment: Payment, excess: Decimal) -> None:
    """Money reversed before is back with us (a won dispute): `excess` credits no longer need to be
    taken. What is still owed is cancelled first; then what was taken (from the balance or as
    repayments) comes back through the ledger; what an operator had waived is moot."""
    cancel = min(excess, payment.credits_shortfall_open)
    left = excess - cancel
    give = min(left, payment.credits_reversed + payment.credits_shortfall_repaid - payment.credits_reinstated)
    moot = left - give  # at most the waived part (the CHECK constraints hold it)
    payment.credits_shortfall_cancelled += cancel + moot
    payment.credits_shortfall_waived -= moot
    if give <= 0:
        return
    payment.credits_reinstated += give
    # Saved before the credit: the repayments it makes must see this shortfall closed.
    payment.save(update_fields=EVENT_FIELDS)
    posting = ledger_append(
        user_id=payment.user_id,
        amount=give,
        kind=Kind.PAYMENT_REINSTATED,
        description=(
            f"Dispute won: {give} credits of a {payment.credits:g}-credit purchase back "
            f"({payment.get_provider_display()})"
        ),
        reference=f"reinstated:{payment.provider_session_id}:{payment.credits_reinstated}",
    )
    if not posting.created:
        raise RuntimeError(f"Payment {payment.pk}: reinstatement {posting.transaction.reference} was already posted")
