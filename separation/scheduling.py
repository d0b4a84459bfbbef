"""Which waiting job runs next: decided by the database when a worker asks, not by the order the
broker delivers tasks in.

Every task on the separation queue is a token that says "a job may be startable": the worker that
takes one claims the fairest startable job, whichever job's arrival queued the token. A job is
startable while its owner runs fewer than MAX_RUNNING_JOBS_PER_USER jobs. Among startable jobs the
next is the one with the fewest jobs of its owner ahead of it (the owner's running jobs plus its
earlier waiting ones), then the oldest: round-robin by user, oldest first within a user, so one
person's fifty uploads never hold back another's single song. Free previews come after every
paid job, in the same fair order among themselves.

Tokens are queued when something may have become startable: a job was created or requeued, or a
running job ended (its owner has a free slot). A token that finds nothing startable is dropped;
the next such event queues another. The reaper tops the queue up should tokens be lost.

Jobs a subscription covers (credits.subscriptions) run one at a time per owner, whatever
MAX_RUNNING_JOBS_PER_USER allows: part of the plan's documented fair use; jobs paid with credits
are not held back by them beyond the usual limit.

Claims are serialised by one lock (a PostgreSQL advisory lock; SQLite runs one writer at a time),
so the per-user limit holds exactly when several workers claim at once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from credits.models import SubscriptionUse
from separation.models import Job

logger = logging.getLogger(__name__)
Status = Job.Status

SEPARATE_TASK = "separation.tasks.separate_next_job"
# At most this many tokens are added by one top-up (the rest at the next run).
TOP_UP_LIMIT = 100
# Jobs covered by a subscription that one owner runs at once.
SUBSCRIPTION_RUNNING_JOBS = 1
_CLAIM_LOCK = int.from_bytes(hashlib.sha256(b"separation:claim").digest()[:8], "big", signed=True)


def queue_token_enqueue() -> None:
    """One token on the separation queue (from any process or cluster)."""
    async_task(SEPARATE_TASK, cluster=settings.SEPARATION_CLUSTER, group="separation")


def _running_of_owner():
    running = (
        Job.objects.filter(user=OuterRef("user"), status=Status.PROCESSING)
        .order_by()
        .values("user")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return Coalesce(Subquery(running), Value(0))


def _covered_jobs():
    return SubscriptionUse.objects.filter(released_at__isnull=True).values("job_id")


def _covered_running_of_owner():
    running = (
        Job.objects.filter(user=OuterRef("user"), status=Status.PROCESSING, pk__in=_covered_jobs())
        .order_by()
        .values("user")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return Coalesce(Subquery(running), Value(0))


def _owner_last_started():
    last = Job.objects.filter(user=OuterRef("user")).order_by().values("user").annotate(last=Max("started_at"))
    return Subquery(last.values("last"))


def waiting_in_fair_order():
    """Waiting jobs in the order they would start, each annotated with `running` (its owner's
    running jobs) and `turn` (that plus the owner's waiting jobs up to this one). Free previews
    wait behind every paid job; equal turns go to the owner served longest ago (never: first),
    then to the older job."""
    rank = Window(
        RowNumber(), partition_by=[F("is_preview"), F("user")], order_by=[F("created_at").asc(), F("id").asc()]
    )
    return (
        Job.objects.filter(status=Status.PENDING)
        .annotate(running=_running_of_owner(), rank=rank, served=_owner_last_started())
        .annotate(turn=F("rank") + F("running"))
        .order_by("is_preview", "turn", F("served").asc(nulls_first=True), "created_at", "id")
    )


def _claim_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK])


def job_claim_next() -> Job | None:
    """The fairest startable job, PENDING -> PROCESSING with a new attempt number; None when no
    job can start now (nothing waits, or every waiting job's owner is at the running limit)."""
    for _ in range(5):  # a job cancelled between the pick and the claim: pick again
        with transaction.atomic():
            _claim_lock()
            startable = (
                waiting_in_fair_order()
                .filter(running__lt=settings.MAX_RUNNING_JOBS_PER_USER)
                .annotate(
                    covered=Exists(_covered_jobs().filter(job_id=OuterRef("pk"))),
                    covered_running=_covered_running_of_owner(),
                )
                .filter(Q(covered=False) | Q(covered_running__lt=SUBSCRIPTION_RUNNING_JOBS))
            )
            job_id = startable.values_list("id", flat=True).first()
            if job_id is None:
                return None
            now = timezone.now()
            claimed = Job.objects.filter(pk=job_id, status=Status.PENDING, attempts__lt=F("attempt_budget")).update(
                status=Status.PROCESSING,
                attempts=F("attempts") + 1,
                started_at=now,
                heartbeat_at=now,
                progress=0,
                error="",
            )
        if claimed:
            return Job.objects.get(pk=job_id)
    return None


def job_queue_positions(*, jobs) -> dict:
    """{job id: place in the queue (1 = starts next)} for the waiting jobs among `jobs`, as the
    fair order stands now (the running limit aside). One query, and none when nothing waits."""
    waiting = {job.pk for job in jobs if job.status == Status.PENDING}
    if not waiting:
        return {}
    order = waiting_in_fair_order().values_list("id", flat=True)
    return {job_id: place for place, job_id in enumerate(order, start=1) if job_id in waiting}


def slot_freed() -> None:
    """A running job ended: its owner may start another. Queues a token after the commit when
    anything waits."""
    transaction.on_commit(_token_if_waiting)


def _token_if_waiting() -> None:
    try:
        if Job.objects.filter(status=Status.PENDING).exists():
            queue_token_enqueue()
    except Exception:  # the reaper tops the queue up; a job end must never fail for this
        logger.exception("Could not queue a separation token after a job ended")


def startable_count() -> int:
    """How many waiting jobs could start now: per owner, its waiting jobs up to its free slots."""
    limit = settings.MAX_RUNNING_JOBS_PER_USER
    per_owner = (
        Job.objects.filter(status__in=Job.ACTIVE)
        .order_by()
        .values("user")
        .annotate(
            waiting=Count("pk", filter=Q(status=Status.PENDING)),
            running=Count("pk", filter=Q(status=Status.PROCESSING)),
        )
    )
    return sum(max(0, min(row["waiting"], limit - row["running"])) for row in per_owner)


def queue_tokens_top_up() -> int:
    """The reaper's safety net for lost tokens: when startable jobs that were queued more than
    JOB_REQUEUE_SECONDS ago outnumber the tokens waiting on the broker, queue the difference
    (a token too many finds nothing and is dropped). Returns how many were queued."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS)
    stale = Job.objects.filter(status=Status.PENDING).filter(
        Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff)
    )
    if not stale.exists():
        return 0
    missing = min(startable_count() - get_broker(settings.SEPARATION_CLUSTER).queue_size(), TOP_UP_LIMIT)
    for _ in range(max(0, missing)):
        queue_token_enqueue()
    if missing > 0:
        stale.update(enqueued_at=timezone.now())
    return max(0, missing)
