import logging
from dataclasses import dataclass
from datetime import date

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from django_q.brokers import get_broker
from django_q.conf import Conf

from credits.models import CreditTransaction
from separation.job_files import stored_file_exists
from separation.models import Job

logger = logging.getLogger(__name__)
Status = Job.Status


def job_get_for_user(*, user, job_id) -> Job:
    """The user's own job; anyone else's (or none) is a 404."""
    return get_object_or_404(Job, pk=job_id, user=user)


def job_list_for_user(*, user):
    return Job.objects.filter(user=user).order_by("-created_at")


def job_refunds(*, jobs) -> dict:
    """Credits given back for each of `jobs` (automatic and operator refunds), in one query; jobs
    never refunded are left out."""
    references = {f"job:{job.pk}": job.pk for job in jobs}
    rows = (
        CreditTransaction.objects.filter(
            reference__in=references, kind__in=[CreditTransaction.Kind.JOB_REFUND, CreditTransaction.Kind.ADMIN_REFUND]
        )
        .values("reference")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {references[row["reference"]]: row["total"] for row in rows} if references else {}


def completed_jobs_missing_files() -> list[str]:
    """A line for each job marked COMPLETED whose files are neither deleted nor all on disk."""
    problems = []
    completed = Job.objects.filter(status=Job.Status.COMPLETED, files_deleted_at__isnull=True)
    for job in completed.only("pk", "user_id", "stems", "zip_file").iterator():
        files = [job.zip_file, *(stem["file"] for stem in job.stems)]
        missing = [name for name in files if not stored_file_exists(name)]
        if not job.stems or missing:
            problems.append(
                f"job {job.pk} (user {job.user_id}) is COMPLETED without its files: {missing or 'no stems'}"
            )
    return problems


@dataclass(frozen=True)
class JobStatistics:
    per_day_by_status: dict[str, list[int]]  # jobs created on each day asked about
    per_day_by_model: dict[str, list[int]]
    by_status: dict[str, int]  # all time

    @property
    def in_period_by_status(self) -> dict[str, int]:
        return {key: sum(counts) for key, counts in self.per_day_by_status.items()}

    @property
    def in_period(self) -> int:
        return sum(self.in_period_by_status.values())

    @property
    def failure_rate(self) -> float | None:
        """failed / (completed + failed), all time; None before any job finished."""
        return _failure_rate(self.by_status)

    @property
    def failure_rate_in_period(self) -> float | None:
        return _failure_rate(self.in_period_by_status)

    @property
    def failure_percent(self) -> str | None:
        return _percent(self.failure_rate)

    @property
    def failure_percent_in_period(self) -> str | None:
        return _percent(self.failure_rate_in_period)

    @property
    def waiting(self) -> int:
        return self.by_status[Status.PENDING]

    @property
    def separating(self) -> int:
        return self.by_status[Status.PROCESSING]


def _failure_rate(counts: dict[str, int]) -> float | None:
    finished = counts[Status.FAILED] + counts[Status.COMPLETED]
    return counts[Status.FAILED] / finished if finished else None


def _percent(rate: float | None) -> str | None:
    return None if rate is None else f"{rate * 100:.1f}"


def job_statistics(*, days: list[date]) -> JobStatistics:
    """Jobs created on each of `days` (consecutive calendar days in TIME_ZONE, oldest first) by
    status and by model, and all jobs by status, in two grouped queries whatever their number."""
    index = {day: n for n, day in enumerate(days)}
    by_status = {key: [0] * len(days) for key in Status.values}
    by_model: dict[str, list[int]] = {}
    rows = (
        Job.objects.filter(created_at__date__gte=days[0])
        .annotate(day=TruncDate("created_at"))
        .values("day", "status", "model")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in rows:
        if row["day"] not in index:
            continue
        n = index[row["day"]]
        by_status.setdefault(row["status"], [0] * len(days))[n] += row["count"]
        by_model.setdefault(row["model"], [0] * len(days))[n] += row["count"]
    all_time = {key: 0 for key in Status.values}
    for row in Job.objects.values("status").annotate(count=Count("pk")).order_by():
        all_time[row["status"]] = row["count"]
    return JobStatistics(
        per_day_by_status=by_status, per_day_by_model=dict(sorted(by_model.items())), by_status=all_time
    )


@dataclass(frozen=True)
class BrokerQueueStatistics:
    tasks: int | None  # tasks waiting in the django-q2 broker; None when it did not answer
    broker: str


def broker_queue_statistics() -> BrokerQueueStatistics:
    """The tasks waiting in the django-q2 broker: OrmQ rows (one query) or the Redis list's length."""
    try:
        broker = get_broker()
        name = "database (django-q2 ORM broker)" if Conf.ORM else "Redis" if not Conf.BROKER_CLASS else "custom"
        return BrokerQueueStatistics(tasks=broker.queue_size(), broker=name)
    except Exception:  # the statistics page still shows the rest when the broker is down
        logger.warning("Could not read the task queue's length", exc_info=True)
        return BrokerQueueStatistics(tasks=None, broker="unavailable")


JOB_EXPORT_FIELDS = (
    "id",
    "status",
    "progress",
    "original_filename",
    "model",
    "stem_mode",
    "output_format",
    "cost",
    "duration_seconds",
    "created_at",
    "started_at",
    "finished_at",
    "error",
)


def job_export_rows_for_user(*, user, chunk_size: int):
    """Every job of the user, newest first, as tuples of JOB_EXPORT_FIELDS, fetched lazily through a
    server-side cursor (no model objects, no list of them)."""
    return job_list_for_user(user=user).values_list(*JOB_EXPORT_FIELDS).iterator(chunk_size=chunk_size)
