from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, F
from django.utils import timezone

from accounts.models import User


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
        # Credits coming back to an account first repay what a refund or dispute could not take back.
        SHORTFALL_REPAYMENT = "shortfall_repayment", "Owed credits repaid"
        PAYMENT_REINSTATED = "payment_reinstated", "Dispute won: credits back"
        # A job a subscription covers: amount 0, so the history shows every job (reference names both).
        SUBSCRIPTION_JOB = "subscription_job", "Covered by subscription"

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
            # Only a job covered by a subscription is a zero row, and it is always zero.
            models.CheckConstraint(
                condition=models.Q(kind="subscription_job", amount=0)
                | (~models.Q(kind="subscription_job") & ~models.Q(amount=0)),
                name="credittx_amount_not_zero",
            ),
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
        SQUARE = "square", "Square"

    class Status(models.TextChoices):
        OPEN = "open", "Checkout open"
        PROCESSING = "processing", "Paid, waiting for the money"
        PAID = "paid", "Paid"
        PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
        REFUNDED = "refunded", "Refunded"
        DISPUTED = "disputed", "Disputed"
        DISPUTE_WON = "dispute_won", "Dispute won"
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
    # Money refunded or disputed now (a won dispute no longer counts), and the credits it stands
    # for. Every counter only grows; each moves with its ledger rows in one transaction:
    # - credits_reversed: taken back from the balance (payment_reversal rows);
    # - credits_shortfall: could not be taken back, the balance had been spent;
    #   of it, credits_shortfall_repaid: paid later by credits coming back (shortfall_repayment
    #   rows), _waived: closed by an operator (shortfall_notes says why), _cancelled: closed by a
    #   won dispute; open shortfall = shortfall - repaid - waived - cancelled;
    # - credits_reinstated: given back when a dispute was won (payment_reinstated rows).
    amount_reversed = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    credits_reversed = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_shortfall = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_shortfall_repaid = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_shortfall_waived = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_shortfall_cancelled = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    credits_reinstated = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    shortfall_notes = models.TextField(blank=True, default="", help_text="Operators' decisions on the shortfall")
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
                condition=models.Q(
                    amount_reversed__gte=0,
                    credits_reversed__gte=0,
                    credits_shortfall__gte=0,
                    credits_shortfall_repaid__gte=0,
                    credits_shortfall_waived__gte=0,
                    credits_shortfall_cancelled__gte=0,
                    credits_reinstated__gte=0,
                ),
                name="payment_reversals_not_negative",
            ),
            # What is still taken back or owed never exceeds what was bought.
            models.CheckConstraint(
                condition=models.Q(
                    credits__gte=models.F("credits_reversed")
                    - models.F("credits_reinstated")
                    + models.F("credits_shortfall")
                    - models.F("credits_shortfall_cancelled")
                ),
                name="payment_reverses_at_most_its_credits",
            ),
            # A shortfall is closed (repaid, waived or cancelled) at most once: the open part is >= 0.
            models.CheckConstraint(
                condition=models.Q(
                    credits_shortfall__gte=models.F("credits_shortfall_repaid")
                    + models.F("credits_shortfall_waived")
                    + models.F("credits_shortfall_cancelled")
                ),
                name="payment_shortfall_closed_once",
            ),
            # A won dispute gives back at most what was taken, from the balance or as repayments.
            models.CheckConstraint(
                condition=models.Q(
                    credits_reinstated__lte=models.F("credits_reversed") + models.F("credits_shortfall_repaid")
                ),
                name="payment_reinstates_at_most_taken",
            ),
        ]

    def __str__(self):
        return f"{self.get_provider_display()} {self.provider_session_id} ({self.get_status_display()})"

    @property
    def credits_shortfall_open(self) -> Decimal:
        """Credits the customer still owes for this payment (see OPEN_SHORTFALL)."""
        return (
            self.credits_shortfall
            - self.credits_shortfall_repaid
            - self.credits_shortfall_waived
            - self.credits_shortfall_cancelled
        )


# The open shortfall as a query expression: Payment.objects.annotate(open_shortfall=OPEN_SHORTFALL).
OPEN_SHORTFALL = ExpressionWrapper(
    F("credits_shortfall")
    - F("credits_shortfall_repaid")
    - F("credits_shortfall_waived")
    - F("credits_shortfall_cancelled"),
    output_field=models.DecimalField(max_digits=10, decimal_places=2),
)


class PaymentReversal(models.Model):
    """A refund or dispute as the provider reported it, kept even when it arrives before the
    payment it belongs to; matched to its Payment by the provider's payment intent id."""

    class Kind(models.TextChoices):
        REFUND = "refund", "Refund"
        DISPUTE = "dispute", "Dispute"

    class Outcome(models.TextChoices):
        NONE = "", "-"
        WON = "won", "Won: money back"
        LOST = "lost", "Lost"

    provider = models.CharField(max_length=20, choices=Payment.Provider.choices)
    # refund:<charge id> (its amount is the charge's running refunded total) or dispute:<dispute id>.
    provider_reversal_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # A dispute's end as the provider reported it: won gives its credits back (once), lost changes nothing.
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default="")
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


class AccountOwing(User):
    """A user seen from the credits side: the admin lists those with an open shortfall here (a
    proxy: no table of its own)."""

    objects = models.Manager()  # not accounts' UserManager: nothing here creates users

    class Meta:
        proxy = True
        verbose_name = "account with an open shortfall"
        verbose_name_plural = "accounts with an open shortfall"


class Subscription(models.Model):
    """A monthly plan sold through Stripe Billing, as Stripe's events described it. It covers jobs
    (instead of credits) while it is not ended and its last paid period, or the grace period after
    a failed renewal, has not run out (credits.subscriptions)."""

    class Status(models.TextChoices):
        # Stripe's subscription statuses.
        INCOMPLETE = "incomplete", "Waiting for the first payment"
        INCOMPLETE_EXPIRED = "incomplete_expired", "First payment never made"
        TRIALING = "trialing", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Renewal payment failed"
        UNPAID = "unpaid", "Unpaid"
        CANCELED = "canceled", "Cancelled"
        PAUSED = "paused", "Paused"

    provider = models.CharField(max_length=20, default="stripe")
    provider_subscription_id = models.CharField(max_length=255, unique=True)
    provider_customer_id = models.CharField(max_length=255, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="subscriptions")
    plan_id = models.CharField(max_length=64)
    # The monthly price, in units of the currency.
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INCOMPLETE)
    # The Stripe event time of the status we keep: an older event never overwrites a newer one.
    status_at = models.DateTimeField(null=True, blank=True)
    # The latest period an invoice paid (only grows), and the grace after a failed renewal.
    period_start = models.DateTimeField(null=True, blank=True)
    paid_through = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # Set once Stripe says the subscription is deleted; nothing covers jobs after it.
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="subscription_amount_not_negative"),
        ]

    def __str__(self):
        return f"{self.plan_id} {self.provider_subscription_id} ({self.get_status_display()})"

    @property
    def covers_jobs(self) -> bool:
        """Whether it covers jobs now (credits.subscriptions.subscription_covering, for one row)."""
        now = timezone.now()
        return (
            self.ended_at is None
            and self.status in (self.Status.ACTIVE, self.Status.TRIALING, self.Status.PAST_DUE)
            and any(moment is not None and moment > now for moment in (self.paid_through, self.grace_until))
        )


class SubscriptionUse(models.Model):
    """A job a subscription covered, with the audio it counts against the fair-use bound; released
    (no longer counted) when the job failed or was cancelled."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="uses")
    job_id = models.UUIDField(unique=True)
    seconds = models.FloatField()
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Job {self.job_id} covered by {self.subscription_id}"
