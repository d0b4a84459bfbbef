"""The one place where balances change.

Every change locks the user's row, appends a CreditTransaction and writes the
new cached balance, in one short transaction. (kind, reference) is unique, so a
change with a reference happens at most once however often it is asked for.

Credits that come back to an account (refunds, grants, purchases, bonuses, a won dispute) first
repay its open shortfalls: what refunds and disputes could not take back because the credits had
been spent. Lock order, everywhere: the user's row, then that user's Payment rows (payment_events.py
takes a payment intent's advisory lock before both; a job's row comes before both too).
"""

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from credits.models import OPEN_SHORTFALL, CreditTransaction, Payment, SubscriptionUse
from credits.packs import CreditPack

Kind = CreditTransaction.Kind
CENT = Decimal("0.01")


class IdempotencyConflict(Exception):
    """An idempotency key reused for a different request."""


class InsufficientCredits(Exception):
    def __init__(self, *, balance: Decimal, required: Decimal):
        super().__init__(f"Not enough credits: {required} needed, {balance} available")
        self.balance = balance
        self.required = required


@dataclass(frozen=True)
class LedgerPosting:
    transaction: CreditTransaction
    created: bool  # False when (kind, reference) had already been posted
    # Of a credit, what went straight to repay open shortfalls (in the same transaction).
    repaid: Decimal = Decimal(0)

    @property
    def balance_after(self) -> Decimal:
        """The balance once this posting and its repayments were made."""
        return self.transaction.balance_after - self.repaid


def ledger_lock_user(*, user_id: int) -> Decimal:
    """Lock the user's row until the transaction ends (the first lock of every balance change
    but a payment intent's or a job's) and return the balance."""
    return get_user_model().objects.select_for_update().values_list("credits", flat=True).get(pk=user_id)


def ledger_lock_payment(*, payment: Payment) -> Payment:
    """The payment read afresh under its user's lock and its own, in the ledger's lock order."""
    ledger_lock_user(user_id=payment.user_id)
    return Payment.objects.select_for_update().get(pk=payment.pk)


def ledger_append(
    *,
    user_id: int,
    amount: Decimal,
    kind: str,
    description: str,
    reference: str = "",
    exclusive_with: tuple[str, ...] = (),
) -> LedgerPosting:
    """Post one change. With a reference, it happens once per (kind, reference), or once across
    `kind` and the `exclusive_with` kinds (a job's automatic and operator refunds)."""
    amount = Decimal(amount)
    # A job covered by a subscription is the one zero row: the history shows it, the balance does not move.
    if (amount == 0) != (kind == Kind.SUBSCRIPTION_JOB) or amount != amount.quantize(CENT):
        raise ValueError(f"Ledger amounts are non-zero whole cents (zero for a covered job); got {amount}")
    with transaction.atomic():
        balance = ledger_lock_user(user_id=user_id)
        if reference:
            # Checked under the user's lock, so concurrent duplicates queue here and see the first.
            existing = CreditTransaction.objects.filter(kind__in=[kind, *exclusive_with], reference=reference).first()
            if existing is not None:
                if existing.user_id != user_id:
                    raise ValueError(f"{kind} {reference} belongs to another user")
                return LedgerPosting(transaction=existing, created=False)
        new_balance = balance + amount
        if new_balance < 0:
            raise InsufficientCredits(balance=balance, required=-amount)
        get_user_model().objects.filter(pk=user_id).update(credits=new_balance)
        posted = CreditTransaction.objects.create(
            user_id=user_id,
            amount=amount,
            balance_after=new_balance,
            kind=kind,
            description=description,
            reference=reference,
        )
        # Under the same lock and in the same transaction as the credit, so it repays once.
        repaid = _shortfalls_repay(credit=posted) if amount > 0 else Decimal(0)
    return LedgerPosting(transaction=posted, created=True, repaid=repaid)


def _shortfalls_repay(*, credit: CreditTransaction) -> Decimal:
    """Take from a credit just posted what the account owes on refunded or disputed payments,
    oldest payment first; returns the credits taken. The caller holds the user's lock."""
    left = credit.amount
    owing = (
        Payment.objects.select_for_update()
        .annotate(open_shortfall=OPEN_SHORTFALL)
        .filter(user_id=credit.user_id, open_shortfall__gt=0)
        .order_by("id")
    )
    for payment in owing:
        if left <= 0:
            break
        take = min(left, payment.open_shortfall)
        shortfall_repay(
            payment=payment,
            amount=take,
            reference=f"shortfall:{payment.pk}:tx{credit.pk}",
            description=(
                f"Repays {take} credits owed since a refund or dispute of a {payment.credits:g}-credit purchase "
                f"(from: {credit.description})"
            ),
        )
        left -= take
    return credit.amount - left


def shortfall_repay(*, payment: Payment, amount: Decimal, reference: str, description: str) -> LedgerPosting:
    """Take `amount` of a payment's open shortfall from its user's balance: a shortfall_repayment
    row and the payment's repaid counter, in one transaction; once per reference. The caller
    holds the user's lock and, from a select_for_update after it, the payment's."""
    with transaction.atomic():
        posting = ledger_append(
            user_id=payment.user_id,
            amount=-amount,
            kind=Kind.SHORTFALL_REPAYMENT,
            description=description[:500],
            reference=reference,
        )
        if posting.created:
            # An UPDATE, not save(): the caller's Payment object may be older than this change.
            Payment.objects.filter(pk=payment.pk).update(
                credits_shortfall_repaid=F("credits_shortfall_repaid") + amount, updated_at=timezone.now()
            )
    return posting


def credits_grant_signup_bonus(*, user, normalised_email: str) -> LedgerPosting | None:
    """The welcome bonus, once per mailbox (`normalised_email`, accounts.email_identity) and once
    per account; None when either already had it. The reference is a hash of the address, so it
    is unique whatever the address's length and does not spell it out."""
    if settings.SIGNUP_BONUS_CREDITS <= 0:
        return None
    reference = f"signup:{hashlib.sha256(normalised_email.encode()).hexdigest()}"
    with transaction.atomic():
        # Under the user's lock, so one account's verifications queue here; the unique
        # (kind, reference) settles two accounts of one mailbox verified at the same moment.
        get_user_model().objects.select_for_update().values_list("pk", flat=True).get(pk=user.pk)
        bonuses = CreditTransaction.objects.filter(kind=Kind.SIGNUP_BONUS)
        if bonuses.filter(Q(user_id=user.pk) | Q(reference=reference)).exists():
            return None
        try:
            return ledger_append(
                user_id=user.pk,
                amount=settings.SIGNUP_BONUS_CREDITS,
                kind=Kind.SIGNUP_BONUS,
                description="Welcome bonus",
                reference=reference,
            )
        except (IntegrityError, ValueError):
            # Another account of this mailbox got it a moment earlier (the unique constraint, or
            # ledger_append seeing its committed row); anything else is a real error.
            if bonuses.filter(reference=reference).exclude(user_id=user.pk).exists():
                return None
            raise


def credits_purchase_simulated(*, user, pack: CreditPack, idempotency_key: str = "") -> LedgerPosting:
    """Credit a pack without taking money: development until a payment provider is configured."""
    reference = f"simulated:{user.pk}:{idempotency_key}" if idempotency_key else f"simulated:{uuid.uuid4()}"
    posting = ledger_append(
        user_id=user.pk,
        amount=pack.credits,
        kind=Kind.PURCHASE,
        description=f"Simulated payment, no money taken: {pack.label} for {pack.price} {pack.currency.upper()}",
        reference=reference,
    )
    if not posting.created and posting.transaction.amount != pack.credits:
        raise IdempotencyConflict("This Idempotency-Key was already used to buy another package.")
    return posting


def credits_admin_grant(*, user, amount: Decimal, reason: str, granted_by, request_token: str) -> LedgerPosting:
    """An operator's gift of credits. request_token makes a double-submitted form grant once."""
    if amount <= 0:
        raise ValueError("A grant must be positive")
    return ledger_append(
        user_id=user.pk,
        amount=amount,
        kind=Kind.ADMIN_GRANT,
        description=f"{reason} (granted by {granted_by.get_username()})",
        reference=f"admin_grant:{request_token}:{user.pk}",
    )


def _job_reference(job) -> str:
    return f"job:{job.pk}"


def credits_charge_job(*, job) -> LedgerPosting:
    """Charge a job's cost; raises InsufficientCredits (and changes nothing) when the balance is short."""
    return ledger_append(
        user_id=job.user_id,
        amount=-job.cost,
        kind=Kind.JOB_CHARGE,
        description=f"Separation of {job.original_filename}",
        reference=_job_reference(job),
    )


def credits_refund_job(*, job, reason: str, refunded_by=None) -> LedgerPosting | None:
    """Give a job's cost back, once: a second refund of the same job, automatic or by an
    operator, returns the first one. A job a subscription covered cost nothing: its audio no
    longer counts against the fair-use bound, and None is returned."""
    if SubscriptionUse.objects.filter(job_id=job.pk).exists():
        SubscriptionUse.objects.filter(job_id=job.pk, released_at__isnull=True).update(released_at=timezone.now())
        return None
    kind = Kind.ADMIN_REFUND if refunded_by is not None else Kind.JOB_REFUND
    # The customer reads this line: an operator's refund says "refunded by support", never a staff
    # member's name (the admin's history records who did it and why).
    return ledger_append(
        user_id=job.user_id,
        amount=job.cost,
        kind=kind,
        description=f"Refund for {job.original_filename}: {reason}"[:500],
        reference=_job_reference(job),
        exclusive_with=(Kind.JOB_REFUND, Kind.ADMIN_REFUND),
    )
