"""What the database knows that operators graph: read at scrape time, a few aggregate queries."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Sum
from django.db.models.functions import Abs
from django.utils import timezone

from credits.models import CreditTransaction
from separation.models import Job
from webhooks.models import Attempt, Delivery, Endpoint


@dataclass(frozen=True)
class QueueState:
    depth: int
    oldest_wait_seconds: float
    oldest_running_heartbeat_age_seconds: float


def jobs_count_by_state_and_model() -> list[tuple[str, str, int]]:
    rows = Job.objects.values("status", "model").annotate(count=Count("pk")).order_by("status", "model")
    return [(row["status"], row["model"], row["count"]) for row in rows]


def _age(now: datetime, moment: datetime | None) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment else 0.0


def queue_state() -> QueueState:
    now = timezone.now()
    waiting = Job.objects.filter(status=Job.Status.PENDING).aggregate(depth=Count("pk"), oldest=Min("created_at"))
    running = Job.objects.filter(status=Job.Status.PROCESSING).aggregate(stalest=Min("heartbeat_at"))
    return QueueState(
        depth=waiting["depth"],
        oldest_wait_seconds=_age(now, waiting["oldest"]),
        oldest_running_heartbeat_age_seconds=_age(now, running["stalest"]),
    )


def ledger_totals_by_kind() -> list[tuple[str, int, object]]:
    """(kind, rows, credits moved) for every kind of ledger row: sold, spent, refunded, granted..."""
    rows = (
        CreditTransaction.objects.values("kind").annotate(rows=Count("pk"), credits=Sum(Abs("amount"))).order_by("kind")
    )
    return [(row["kind"], row["rows"], row["credits"]) for row in rows]


def webhook_deliveries_by_status_and_event() -> list[tuple[str, str, int]]:
    rows = Delivery.objects.values("status", "event").annotate(count=Count("pk")).order_by("status", "event")
    return [(row["status"], row["event"], row["count"]) for row in rows]


def webhook_attempts_by_outcome() -> dict[str, int]:
    """Attempts answered 2xx ("delivered") and the others ("failed": an error status, a timeout, a refusal)."""
    delivered = Attempt.objects.filter(status_code__gte=200, status_code__lt=300).count()
    return {"delivered": delivered, "failed": Attempt.objects.count() - delivered}


def webhook_endpoints_disabled() -> int:
    return Endpoint.objects.filter(disabled_at__isnull=False).count()
