from django.conf import settings
from django.db import models


class CreditTransaction(models.Model):
    """One append-only row per balance change; rows are never updated or deleted."""

    class Kind(models.TextChoices):
        SIGNUP_BONUS = "signup_bonus", "Signup bonus"
        PURCHASE = "purchase", "Purchase"
        JOB_CHARGE = "job_charge", "Job charge"
        JOB_REFUND = "job_refund", "Job refund"
        ADMIN_GRANT = "admin_grant", "Admin grant"
        ADMIN_REFUND = "admin_refund", "Admin refund"
        PAYMENT_REVERSAL = "payment_reversal", "Payment refunded or disputed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="credit_transactions")
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    balance_after = models.DecimalField(max_digits=10, decimal_places=2)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(max_length=500)
    # A job id, payment id or similar; with kind, it makes a change happen once.
    reference = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-id"], name="credittx_user_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "reference"],
                condition=~models.Q(reference=""),
                name="credittx_kind_reference_unique",
            ),
            # A job is refunded at most once, automatically or by an operator.
            models.UniqueConstraint(
                fields=["reference"],
                condition=models.Q(kind__in=["job_refund", "admin_refund"]) & ~models.Q(reference=""),
                name="credittx_one_refund_per_reference",
            ),
            models.CheckConstraint(condition=~models.Q(amount=0), name="credittx_amount_not_zero"),
            models.CheckConstraint(condition=models.Q(balance_after__gte=0), name="credittx_balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.amount:+} {self.get_kind_display()} for {self.user_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Ledger rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger rows are append-only")


class Payment(models.Model):
    """One purchase through a payment provider, from the checkout it started to its refunds and
    disputes. Credits move only through the ledger; this row maps the provider's ids back to the
    purchase and records what could not be taken back."""

    class Provider(models.TextChoices):
        STRIPE = "stripe", "Stripe"

    class Status(models.TextChoices):
        OPEN = "open", "Checkout open"
        PROCESSING = "processing", "Paid, waiting for the money"
        PAID = "paid", "Paid"
        PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
        REFUNDED = "refunded", "Refunded"
        DISPUTED = "disputed", "Disputed"
        FAILED = "failed", "Payment failed"
        EXPIRED = "expired", "Checkout expired"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    provider_session_id = models.CharField(max_length=255)
    payment_intent_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments")
    pack_id = models.CharField(max_length=64)
    credits = models.DecimalField(max_digits=10, decimal_places=2)
    # Money, in units of the currency (4.00 USD); what the customer was asked, then what they paid.
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    # Refunded or disputed money, and the credits it stands for: taken back, or short because the
    # balance had already been spent (the shortfall is for an operator to settle).
    amount_reversed = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    credits_reversed = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_shortfall = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_session_id"], name="payment_provider_session_unique"),
            models.CheckConstraint(condition=models.Q(credits__gt=0), name="payment_credits_positive"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="payment_amount_not_negative"),
            models.CheckConstraint(
                condition=models.Q(amount_reversed__gte=0, credits_reversed__gte=0, credits_shortfall__gte=0),
                name="payment_reversals_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(credits_reversed__lte=models.F("credits") - models.F("credits_shortfall")),
                name="payment_reverses_at_most_its_credits",
            ),
        ]

    def __str__(self):
        return f"{self.get_provider_display()} {self.provider_session_id} ({self.get_status_display()})"


class PaymentReversal(models.Model):
    """A refund or dispute as the provider reported it, kept even when it arrives before the
    payment it belongs to; matched to its Payment by the provider's payment intent id."""

    class Kind(models.TextChoices):
        REFUND = "refund", "Refund"
        DISPUTE = "dispute", "Dispute"

    provider = models.CharField(max_length=20, choices=Payment.Provider.choices)
    # refund:<charge id> (its amount is the charge's running refunded total) or dispute:<dispute id>.
    provider_reversal_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payment_intent_id = models.CharField(max_length=255, db_index=True)
    charge_id = models.CharField(max_length=255, blank=True, default="")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_reversal_id"], name="paymentreversal_unique"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="paymentreversal_amount_not_negative"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.provider_reversal_id}: {self.amount} {self.currency.upper()}"
