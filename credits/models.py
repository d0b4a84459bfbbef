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
