"""Every write to webhooks: endpoints (register, rotate, enable, delete), one-off callbacks, and
deliveries (created once per endpoint and finished job, sent, retried with exponential backoff,
resent by their owner). Sending runs on the maintenance cluster (webhooks/tasks.py), never in a
transaction: a delivery is claimed by moving its due time forward, sent, then its attempt recorded.

Lock order: a delivery's row, then its endpoint's row.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from webhooks import outbound
from webhooks.models import Attempt, Delivery, Endpoint, Event
from webhooks.notifications import endpoint_disabled_notify
from webhooks.signing import secret_new, signed_headers

logger = logging.getLogger(__name__)

EVENT_FOR_STATUS = {"COMPLETED": Event.JOB_COMPLETED, "FAILED": Event.JOB_FAILED, "CANCELLED": Event.JOB_CANCELLED}
ROTATION_GRACE = timedelta(hours=24)
SEND_TASK = "webhooks.tasks.delivery_send"
# How long one maintenance task may spend sending (then it leaves the rest for the next run).
SEND_BUDGET_SECONDS = 30.0


class WebhookRefused(ValueError):
    """A request about webhooks that cannot be done, said for its owner."""


# --- endpoints ----------------------------------------------------------------------------


def endpoint_create(*, user, url: str, events: list[str]) -> Endpoint:
    """A new endpoint with its own secret. Refuses an unsafe URL (WebhookRefused) and more than
    WEBHOOK_MAX_ENDPOINTS per user (each one costs the service a request per finished job)."""
    _url_validate(url)
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).exists()  # one count at a time per user
        if Endpoint.objects.filter(user=user, job=None).count() >= settings.WEBHOOK_MAX_ENDPOINTS:
            raise WebhookRefused(f"You can register at most {settings.WEBHOOK_MAX_ENDPOINTS} webhook endpoints.")
        return Endpoint.objects.create(user=user, url=url, events=sorted(set(events)), secret=secret_new())


def endpoint_rotate_secret(*, endpoint: Endpoint) -> Endpoint:
    """A new secret; the old one keeps signing too for ROTATION_GRACE, so receivers can switch."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + ROTATION_GRACE
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


def endpoint_enable(*, endpoint: Endpoint) -> Endpoint:
    """The owner turns a disabled endpoint back on; future jobs are delivered again."""
    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=True, disabled_at=None, failing_since=None)
    endpoint.refresh_from_db()
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    endpoint.delete()  # its deliveries and attempts go with it


def callback_register(*, job, url: str) -> Endpoint:
    """A one-off endpoint for an upload's callback_url: it hears every end of this job only.
    The same job asked twice (an Idempotency-Key retry) keeps its first callback."""
    _url_validate(url)
    endpoint, _ = Endpoint.objects.get_or_create(
        job=job, defaults={"user": job.user, "url": url, "events": list(Event.values), "secret": secret_new()}
    )
    return endpoint


def callback_url_check(*, url: str) -> None:
    """Refuse (WebhookRefused) an upload's callback_url before anything is stored or charged."""
    _url_validate(url)


def _url_validate(url: str) -> None:
    if len(url) > 2000:
        raise WebhookRefused("The URL is too long (at most 2000 characters).")
    try:
        outbound.url_check(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    except outbound.UnsafeAddress as unsafe:
        raise WebhookRefused(str(unsafe)) from None


def _signing_secrets(endpoint: Endpoint) -> list[str]:
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > timezone.now():
        secrets.append(endpoint.previous_secret)
    return secrets


# --- deliveries ---------------------------------------------------------------------------


def job_payload(*, job, event: str) -> str:
    """The body: the event, when it happened and the job's status as GET /api/status/<id> gives it."""
    from separation.serializers import JobOutput  # the API module is heavy; only the maintenance worker needs it

    return json.dumps(
        {
            "type": event,
            "timestamp": (job.finished_at or timezone.now()).isoformat().replace("+00:00", "Z"),
            "data": JobOutput(job).data,
        },
        separators=(",", ":"),
    )


def deliveries_create_for_job(*, job) -> list[Delivery]:
    """One delivery per endpoint that wants this finished job's event (once, however often asked)."""
    event = EVENT_FOR_STATUS.get(job.status)
    if event is None:
        return []
    endpoints = [
        endpoint
        for endpoint in Endpoint.objects.filter(Q(job=None, user_id=job.user_id) | Q(job=job), is_active=True)
        if event in endpoint.events
    ]
    if not endpoints:
        return []
    body = job_payload(job=job, event=event)
    now = timezone.now()
    Delivery.objects.bulk_create(
        [Delivery(endpoint=endpoint, job=job, event=event, body=body, next_attempt_at=now) for endpoint in endpoints],
        ignore_conflicts=True,
    )
    return list(Delivery.objects.filter(job=job, event=event, endpoint__in=endpoints))


def backoff_seconds(attempt: int) -> int:
    """The wait after failed attempt number `attempt` (1, 2, ...): WEBHOOK_RETRY_BASE_SECONDS
    doubling each time. With the defaults (60 s, 12 attempts) the last is 34 hours after the first."""
    return settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)


def _lease() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 60)


def delivery_claim(*, delivery_id) -> Delivery | None:
    """The delivery if it is due and this caller won it (its due time moves past the attempt)."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now, endpoint__is_active=True
    ).update(next_attempt_at=now + _lease(), claimed_at=now)
    if not claimed:
        return None
    return Delivery.objects.select_related("endpoint").get(pk=delivery_id)


def delivery_send(*, delivery_id) -> Attempt | None:
    """One attempt at a due delivery, recorded; None when it was not due or someone else sends it."""
    delivery = delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    started_at = timezone.now()
    headers = signed_headers(
        message_id=delivery.message_id,
        timestamp=started_at,
        body=delivery.body,
        signing_secrets=_signing_secrets(endpoint),
    )
    headers["user-agent"] = f"{settings.SITE_NAME}-Webhooks/1"
    started = time.monotonic()
    status_code, error = None, ""
    try:
        answer = outbound.post(
            endpoint.url,
            body=delivery.body.encode(),
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
        )
        status_code = answer.status_code
        if not 200 <= status_code < 300:
            error = f"Answered {status_code}" + (" (redirects are not followed)" if 300 <= status_code < 400 else "")
    except outbound.UnsafeAddress as unsafe:
        error = f"Refused: {unsafe}"
    except TimeoutError:
        error = f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"
    except (OSError, http.client.HTTPException) as failure:
        error = f"Could not connect: {failure}" if str(failure) else f"Could not connect ({type(failure).__name__})"
    duration_ms = int((time.monotonic() - started) * 1000)
    return _attempt_record(
        delivery_id=delivery.pk, started_at=started_at, duration_ms=duration_ms, status_code=status_code, error=error
    )


def _attempt_record(*, delivery_id, started_at, duration_ms: int, status_code: int | None, error: str) -> Attempt:
    succeeded = not error
    disabled = None
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        endpoint = Endpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        number = delivery.attempts + 1
        attempt = Attempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error[:300],
        )
        delivery.attempts = number
        delivery.claimed_at = None
        now = timezone.now()
        if succeeded:
            delivery.status, delivery.next_attempt_at = Delivery.Status.SUCCEEDED, None
            endpoint.failing_since = None
        else:
            if number >= settings.WEBHOOK_MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
            else:
                delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(number))
            endpoint.failing_since = endpoint.failing_since or started_at
            failing_for = now - endpoint.failing_since
            if endpoint.job_id is None and failing_for >= timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS):
                disabled = _endpoint_disable(endpoint=endpoint, now=now)
                delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        delivery.save(update_fields=["attempts", "status", "next_attempt_at", "claimed_at"])
        endpoint.save(update_fields=["failing_since", "is_active", "disabled_at"])
        if disabled:
            transaction.on_commit(partial(endpoint_disabled_notify, endpoint_id=endpoint.pk))
    return attempt


def _endpoint_disable(*, endpoint: Endpoint, now) -> bool:
    """Called under the endpoint's lock: it stops, and so do its other waiting deliveries."""
    endpoint.is_active = False
    endpoint.disabled_at = now
    endpoint.deliveries.filter(status=Delivery.Status.PENDING).update(
        status=Delivery.Status.FAILED, next_attempt_at=None
    )
    logger.warning("Webhook endpoint %s disabled: failing since %s", endpoint.pk, endpoint.failing_since)
    return True


def deliveries_due(*, limit: int = 100) -> list:
    return list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now(), endpoint__is_active=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def deliveries_send_due(*, budget_seconds: float = SEND_BUDGET_SECONDS) -> dict[str, int]:
    """Deliveries due now, one attempt each (the maintenance schedule's task, every minute), until
    `budget_seconds` have passed: slow receivers never hold the maintenance cluster (the reaper
    runs there) for long; what is left is due at the next run."""
    counts = {"sent": 0, "succeeded": 0}
    deadline = time.monotonic() + budget_seconds
    for delivery_id in deliveries_due():
        if time.monotonic() >= deadline:
            break
        attempt = delivery_send(delivery_id=delivery_id)
        if attempt is not None:
            counts["sent"] += 1
            counts["succeeded"] += attempt.succeeded
    return counts


def delivery_resend(*, delivery: Delivery) -> Delivery:
    """The owner's resend: the delivery is due now, however it ended (a failed one gets one more
    attempt; a delivered one is sent again with the same webhook-id). Its endpoint must be active."""
    if not Endpoint.objects.filter(pk=delivery.endpoint_id, is_active=True).exists():
        raise WebhookRefused("This endpoint is disabled; enable it before resending.")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        now = timezone.now()
        in_flight = delivery.claimed_at is not None and delivery.claimed_at > now - _lease()
        if not in_flight:  # an attempt under way is not doubled; anything else is due now
            delivery.status, delivery.next_attempt_at = Delivery.Status.PENDING, now
        delivery.save(update_fields=["status", "next_attempt_at"])
        transaction.on_commit(partial(_send_soon, delivery.pk))
    return delivery


def _send_soon(delivery_id) -> None:
    try:
        async_task(SEND_TASK, str(delivery_id), cluster=settings.MAINTENANCE_CLUSTER, group="webhooks")
    except Exception:  # the schedule sends it within a minute anyway
        logger.exception("Could not queue webhook delivery %s", delivery_id)
