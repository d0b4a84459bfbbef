"""Figures for the admin statistics page, across accounts, jobs, the ledger and payments.

Everything is aggregated in SQL (TruncDate + Count/Sum over values()), so the page costs the
same handful of queries whatever the volume of data. Days are calendar days in TIME_ZONE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from credits.models import CreditTransaction, Payment
from credits.packs import packs_list
from separation.models import Job

logger = logging.getLogger(__name__)
Kind = CreditTransaction.Kind
ZERO = Decimal("0.00")
# A purchase credited without money changing hands (credits_purchase_simulated).
SIMULATED_PREFIX = "simulated:"
# Payments whose credits were granted: paid, and those refunded or disputed since.
CREDITED_PAYMENTS = Q(credited_at__isnull=False)


@dataclass
class PackRevenue:
    pack_id: str
    label: str
    currency: str
    payments: int
    credits: Decimal
    gross: Decimal
    reversed: Decimal

    @property
    def net(self) -> Decimal:
        return self.gross - self.reversed


@dataclass
class Statistics:
    days: list[date]
    signups_per_day: list[int]
    jobs_per_day_by_status: dict[str, list[int]]
    jobs_per_day_by_model: dict[str, list[int]]
    users_total: int
    signups_in_period: int
    jobs_by_status: dict[str, int]
    jobs_in_period: int
    failure_rate: float | None  # failed / (completed + failed), all time
    failure_rate_in_period: float | None
    credits_sold: Decimal  # purchase rows, paid and simulated
    credits_sold_simulated: Decimal
    simulated_purchases: int
    credits_charged: Decimal  # job charges
    credits_refunded: Decimal  # job refunds, automatic and by operators
    credits_granted: Decimal  # signup bonuses and operator grants
    credits_reversed: Decimal  # taken back for refunded or disputed payments
    revenue_by_pack: list[PackRevenue]
    queue_pending_jobs: int
    queue_processing_jobs: int
    queue_broker_tasks: int | None  # tasks waiting in the django-q2 broker; None if it did not answer
    queue_broker: str
    extra: dict = field(default_factory=dict)

    @property
    def failure_percent(self) -> str | None:
        return None if self.failure_rate is None else f"{self.failure_rate * 100:.1f}"

    @property
    def failure_percent_in_period(self) -> str | None:
        return None if self.failure_rate_in_period is None else f"{self.failure_rate_in_period * 100:.1f}"

    @property
    def credits_spent(self) -> Decimal:
        return self.credits_charged - self.credits_refunded

    @property
    def revenue_totals(self) -> dict[str, Decimal]:
        """Net revenue per currency."""
        totals: dict[str, Decimal] = {}
        for row in self.revenue_by_pack:
            totals[row.currency] = totals.get(row.currency, ZERO) + row.net
        return totals

    def chart_data(self) -> dict:
        """What static/js/admin-statistics.js draws; JSON-safe."""
        return {
            "days": [day.isoformat() for day in self.days],
            "signups": self.signups_per_day,
            "jobsByStatus": [
                {"label": label, "key": key, "data": self.jobs_per_day_by_status[key]}
                for key, label in Job.Status.choices
            ],
            "jobsByModel": [{"label": name, "data": data} for name, data in self.jobs_per_day_by_model.items()],
        }


def _rate(failed: int, completed: int) -> float | None:
    finished = failed + completed
    return failed / finished if finished else None


def _broker_queue() -> tuple[int | None, str]:
    """Tasks waiting in the django-q2 broker: OrmQ rows (one query) or the Redis list length."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    try:
        broker = get_broker()
        name = "database (django-q2 ORM broker)" if Conf.ORM else "Redis" if not Conf.BROKER_CLASS else "custom"
        return broker.queue_size(), name
    except Exception:  # the page still shows the rest when the broker is down
        logger.warning("Could not read the task queue's length", exc_info=True)
        return None, "unavailable"


def statistics_collect(*, days: int = 30, today: date | None = None) -> Statistics:
    today = today or timezone.localdate()
    first_day = today - timedelta(days=days - 1)
    day_list = [first_day + timedelta(days=n) for n in range(days)]
    index = {day: n for n, day in enumerate(day_list)}
    User = get_user_model()

    # 1. Sign-ups per day.
    signups = [0] * days
    signup_rows = (
        User.objects.filter(date_joined__date__gte=first_day)
        .annotate(day=TruncDate("date_joined"))
        .values("day")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in signup_rows:
        if row["day"] in index:
            signups[index[row["day"]]] = row["count"]
    # 2. All accounts.
    users_total = User.objects.count()

    # 3. Jobs per day by status and model, in one grouped query.
    by_status = {key: [0] * days for key in Job.Status.values}
    by_model: dict[str, list[int]] = {}
    job_rows = (
        Job.objects.filter(created_at__date__gte=first_day)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status", "model")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in job_rows:
        if row["day"] not in index:
            continue
        n = index[row["day"]]
        by_status.setdefault(row["status"], [0] * days)[n] += row["count"]
        by_model.setdefault(row["model"], [0] * days)[n] += row["count"]
    by_model = dict(sorted(by_model.items()))

    # 4. Jobs by status, all time (failure rate, queue).
    jobs_by_status = {key: 0 for key in Job.Status.values}
    for row in Job.objects.values("status").annotate(count=Count("pk")).order_by():
        jobs_by_status[row["status"]] = row["count"]

    # 5. The ledger's totals, in one aggregate.
    def total(condition: Q) -> Sum:
        return Sum("amount", filter=condition, default=ZERO)

    simulated = Q(kind=Kind.PURCHASE, reference__startswith=SIMULATED_PREFIX)
    ledger = CreditTransaction.objects.aggregate(
        sold=total(Q(kind=Kind.PURCHASE)),
        sold_simulated=total(simulated),
        simulated_count=Count("pk", filter=simulated),
        charged=total(Q(kind=Kind.JOB_CHARGE)),
        refunded=total(Q(kind__in=[Kind.JOB_REFUND, Kind.ADMIN_REFUND])),
        granted=total(Q(kind__in=[Kind.SIGNUP_BONUS, Kind.ADMIN_GRANT])),
        # Net: taken back at once, or later as a shortfall's repayment, less what a won dispute gave back.
        reversed=total(Q(kind__in=[Kind.PAYMENT_REVERSAL, Kind.SHORTFALL_REPAYMENT, Kind.PAYMENT_REINSTATED])),
    )

    # 6. Revenue by pack: payments whose credits were granted, less what was refunded or disputed.
    labels = {pack.id: pack.label for pack in packs_list()}
    revenue = [
        PackRevenue(
            pack_id=row["pack_id"],
            label=labels.get(row["pack_id"], "pack no longer on sale"),
            currency=row["currency"].upper(),
            payments=row["payments"],
            credits=row["credits"],
            gross=row["gross"],
            reversed=row["reversed"],
        )
        for row in Payment.objects.filter(CREDITED_PAYMENTS)
        .values("pack_id", "currency")
        .annotate(
            payments=Count("pk"),
            credits=Sum("credits"),
            gross=Sum("amount"),
            reversed=Sum("amount_reversed"),
        )
        .order_by("currency", "pack_id")
    ]

    # 7. The broker's own queue (one query with the ORM broker, none with Redis).
    broker_tasks, broker_name = _broker_queue()

    period_status = {key: sum(values) for key, values in by_status.items()}
    return Statistics(
        days=day_list,
        signups_per_day=signups,
        jobs_per_day_by_status=by_status,
        jobs_per_day_by_model=by_model,
        users_total=users_total,
        signups_in_period=sum(signups),
        jobs_by_status=jobs_by_status,
        jobs_in_period=sum(period_status.values()),
        failure_rate=_rate(jobs_by_status[Job.Status.FAILED], jobs_by_status[Job.Status.COMPLETED]),
        failure_rate_in_period=_rate(period_status[Job.Status.FAILED], period_status[Job.Status.COMPLETED]),
        credits_sold=ledger["sold"],
        credits_sold_simulated=ledger["sold_simulated"],
        simulated_purchases=ledger["simulated_count"],
        credits_charged=-ledger["charged"],
        credits_refunded=ledger["refunded"],
        credits_granted=ledger["granted"],
        credits_reversed=-ledger["reversed"],
        revenue_by_pack=revenue,
        queue_pending_jobs=jobs_by_status[Job.Status.PENDING],
        queue_processing_jobs=jobs_by_status[Job.Status.PROCESSING],
        queue_broker_tasks=broker_tasks,
        queue_broker=broker_name,
    )
