"""django-q2 entry points, all on the maintenance cluster: thin, taking ids, calling services."""

import time

from separation.models import Job
from webhooks import services


def job_finished(job_id: str) -> int:
    """Make a finished job's deliveries and make their first attempts, for SEND_BUDGET_SECONDS at
    most (the rest are due for the schedule's next run); how many were delivered."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return 0
    delivered = 0
    deadline = time.monotonic() + services.SEND_BUDGET_SECONDS
    for delivery in services.deliveries_create_for_job(job=job):
        if time.monotonic() >= deadline:
            break
        attempt = services.delivery_send(delivery_id=delivery.pk)
        delivered += bool(attempt and attempt.succeeded)
    return delivered


def delivery_send(delivery_id: str) -> bool:
    attempt = services.delivery_send(delivery_id=delivery_id)
    return bool(attempt and attempt.succeeded)


def deliveries_send_due() -> dict[str, int]:
    return services.deliveries_send_due()
