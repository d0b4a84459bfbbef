"""When a job should start and end: from the measured speed of the workers, not a constant.

The speed is the median time recent completed jobs took per second of audio (started to finished,
so model loading and encoding count). The queue is played forward: the workers (SEPARATION_WORKERS,
or as many as run jobs now, when more hosts serve the queue) finish what they run, then take the
waiting jobs in the fair order (separation/scheduling.py), each taking its length times the speed.
The running limit per user is left out, so an estimate is a little early when one person's jobs
fill the queue ahead.
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from separation.models import Job
from separation.scheduling import waiting_in_fair_order

Status = Job.Status

# The completed jobs the speed is measured on, at most this many and this recent.
SPEED_SAMPLE = 20
SPEED_WINDOW = timedelta(days=30)
# Jobs ahead played forward, at most: past this the estimate says "later" rather than query on.
AHEAD_LIMIT = 500


@dataclass(frozen=True)
class QueueEstimate:
    position: int | None  # while waiting: 1 = starts next
    starts_at: datetime | None  # None once started
    ends_at: datetime
    seconds_per_audio_second: float


def worker_speed() -> float | None:
    """Seconds a worker took per second of audio, the median of the recent completed jobs; None
    when none completed lately."""
    since = timezone.now() - SPEED_WINDOW
    rows = (
        Job.objects.filter(
            status=Status.COMPLETED, finished_at__gte=since, started_at__isnull=False, duration_seconds__gt=0
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at", "duration_seconds")[:SPEED_SAMPLE]
    )
    ratios = [(finished - started).total_seconds() / duration for started, finished, duration in rows]
    ratios = [ratio for ratio in ratios if ratio > 0]
    return statistics.median(ratios) if ratios else None


def _remaining(job, *, speed: float, now: datetime) -> float:
    """Seconds a running job still needs: its whole expected time less what it ran, or by its
    progress when it runs over the expectation."""
    expected = job.duration_seconds * speed
    ran = (now - job.started_at).total_seconds() if job.started_at else 0.0
    left = expected - ran
    if left <= 0:
        left = expected * (100 - job.progress) / 100
    return max(left, 1.0)


def job_queue_estimate(*, job: Job) -> QueueEstimate | None:
    """When `job` should start and end, or None: it is not active, or no job completed lately to
    measure the workers by."""
    if job.status not in Job.ACTIVE:
        return None
    speed = worker_speed()
    if speed is None:
        return None
    now = timezone.now()
    if job.status == Status.PROCESSING:
        return QueueEstimate(
            position=None,
            starts_at=None,
            ends_at=now + timedelta(seconds=_remaining(job, speed=speed, now=now)),
            seconds_per_audio_second=speed,
        )
    running = list(Job.objects.filter(status=Status.PROCESSING).only("duration_seconds", "started_at", "progress"))
    workers = max(settings.SEPARATION_WORKERS, len(running))
    free_at = sorted(_remaining(other, speed=speed, now=now) for other in running)
    free_at += [0.0] * (workers - len(free_at))
    heapq.heapify(free_at)
    ahead = waiting_in_fair_order().annotate(length=F("duration_seconds")).values_list("id", "length")[:AHEAD_LIMIT]
    position = 0
    for position, (job_id, length) in enumerate(ahead, start=1):
        start = heapq.heappop(free_at)
        if job_id == job.pk:
            end = start + job.duration_seconds * speed
            return QueueEstimate(
                position=position,
                starts_at=now + timedelta(seconds=start),
                ends_at=now + timedelta(seconds=end),
                seconds_per_audio_second=speed,
            )
        heapq.heappush(free_at, start + length * speed)
    return None  # further back than AHEAD_LIMIT, or it started meanwhile
