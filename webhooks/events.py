"""The job state machine's one call into webhooks (separation/services.py): after a job ends and
its state commits, its deliveries are made and sent by a task on the maintenance cluster, never
by the separation worker. Imports nothing of separation, so separation may import it."""

import logging
from functools import partial

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

from webhooks.models import Endpoint

logger = logging.getLogger(__name__)

JOB_FINISHED_TASK = "webhooks.tasks.job_finished"


def webhooks_job_finished(*, job_id) -> None:
    """Queue the job's webhooks once the surrounding transaction (if any) commits. Never raises:
    a webhook is never a reason for a job's state change to fail."""
    try:
        transaction.on_commit(partial(_enqueue, job_id))
    except Exception:
        logger.exception("Could not schedule the webhooks of job %s", job_id)


def _enqueue(job_id) -> None:
    try:
        # Most owners have no endpoint: no task for them.
        if not Endpoint.objects.filter(is_active=True, user__jobs__id=job_id).exists():
            return
        async_task(JOB_FINISHED_TASK, str(job_id), cluster=settings.MAINTENANCE_CLUSTER, group="webhooks")
    except Exception:
        logger.exception("Could not queue the webhooks of job %s", job_id)
