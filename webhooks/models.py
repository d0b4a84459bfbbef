"""Completion webhooks: the endpoints people register (or a one-off callback URL given with an
upload), one delivery per endpoint and finished job, and every attempt to send it."""

import uuid

from django.conf import settings
from django.db import models


class Event(models.TextChoices):
    JOB_COMPLETED = "job.completed", "Job completed"
    JOB_FAILED = "job.failed", "Job failed"
    JOB_CANCELLED = "job.cancelled", "Job cancelled"


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    # whsec_<base64 of 32 random bytes> (Standard Webhooks); kept readable: it signs every delivery.
    secret = models.CharField(max_length=100)
    # After a rotation the old secret signs too, for a day, so receivers can switch without a gap.
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # A one-off callback_url given with an upload: it hears about that job only, and is not listed.
    job = models.ForeignKey("separation.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    is_active = models.BooleanField(default=True)
    # Since when every attempt failed (None after a success); too long and the endpoint is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["job"], condition=models.Q(job__isnull=False), name="webhook_one_callback_per_job"
            )
        ]

    def __str__(self):
        return self.url


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Sending"
        SUCCEEDED = "SUCCEEDED", "Delivered"
        FAILED = "FAILED", "Failed"

    # The webhook-id header is msg_<id>: the same on every attempt, so receivers can deduplicate.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    job = models.ForeignKey("separation.Job", on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=30, choices=Event.choices)
    # The body as first sent, kept byte for byte so every attempt (and a resend) signs the same bytes.
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due; None once delivered or given up. A sender claims a due delivery
    # by moving this forward (a lease), so two senders never send one attempt twice.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a sender claimed the attempt now under way (None between attempts).
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "job", "event"], name="webhook_one_delivery_per_event")
        ]

    @property
    def message_id(self) -> str:
        return f"msg_{self.id.hex}"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    # A resend by the owner, outside the retry schedule.
    manual = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")]

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
