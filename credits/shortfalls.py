"""What an operator does about a payment's shortfall: the credits its refunds or disputes could
not take back. Credits coming back to the account repay it by themselves (services.py); these
close it earlier, by waiving it or by taking it from the balance now. The reason is kept on the
payment."""

import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from credits.models import Payment
from credits.services import ledger_lock_payment, ledger_lock_user, shortfall_repay

logger = logging.getLogger(__name__)


def payment_shortfall_waive(*, payment: Payment, reason: str, waived_by) -> Decimal:
    """An operator closes a payment's open shortfall without taking credits (settled outside the
    service, or forgiven); the reason is kept on the payment. Returns the credits waived (0 when
    nothing was open, so a form submitted twice waives once)."""
    with transaction.atomic():
        payment = ledger_lock_payment(payment=payment)
        open_shortfall = payment.credits_shortfall_open
        if open_shortfall <= 0:
            return Decimal(0)
        payment.credits_shortfall_waived += open_shortfall
        _payment_note(payment=payment, note=f"{waived_by.get_username()} waived {open_shortfall}: {reason}")
        payment.save(update_fields=["credits_shortfall_waived", "shortfall_notes", "updated_at"])
    logger.info("Payment %s: %s waived a shortfall of %s credits", payment.pk, waived_by.get_username(), open_shortfall)
    return open_shortfall


def payment_shortfall_collect(*, payment: Payment, collected_by) -> Decimal:
    """Take a payment's open shortfall from its user's balance now, as far as it allows (for credits
    that came back before the ledger repaid shortfalls by itself). Returns the credits taken."""
    with transaction.atomic():
        balance = ledger_lock_user(user_id=payment.user_id)
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        take = min(balance, payment.credits_shortfall_open)
        if take <= 0:
            return Decimal(0)
        shortfall_repay(
            payment=payment,
            amount=take,
            reference=f"shortfall:{payment.pk}:collected:{payment.credits_shortfall_repaid + take}",
            description=(
                f"Repays {take} credits owed since a refund or dispute of a {payment.credits:g}-credit purchase "
                f"(collected by {collected_by.get_username()})"
            ),
        )
        _payment_note(payment=payment, note=f"{collected_by.get_username()} collected {take} from the balance")
        payment.save(update_fields=["shortfall_notes", "updated_at"])
    return take


def _payment_note(*, payment: Payment, note: str) -> None:
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    payment.shortfall_notes = f"{payment.shortfall_notes}\n{stamp} {note}".strip()
