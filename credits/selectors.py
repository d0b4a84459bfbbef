from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import CharField, Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value, Window
from django.db.models.functions import Cast, Coalesce, Concat, Lag
from django.utils import timezone

from credits.models import OPEN_SHORTFALL, CreditTransaction, Payment, Subscription
from credits.packs import packs_list

Kind = CreditTransaction.Kind
ZERO = Value(0, output_field=DecimalField(max_digits=10, decimal_places=2))


def transaction_list_for_user(*, user):
    return CreditTransaction.objects.filter(user=user).order_by("-id")


def payment_get_for_user(*, user, session_id: str) -> Payment | None:
    """The user's own payment of this checkout session; None for anyone else's, or none."""
    if not session_id:
        return None
    return Payment.objects.filter(user=user, provider_session_id=session_id).first()


def ledger_violations() -> list[str]:
    """Every way the ledger disagrees with itself: a cached balance that is not
    the sum of the user's rows or not their last balance_after, or a row whose
    balance_after does not follow from the row before it."""
    last_balance = CreditTransaction.objects.filter(user=OuterRef("pk")).order_by("-id").values("balance_after")[:1]
    users = get_user_model().objects.annotate(
        ledger_sum=Coalesce(Sum("credit_transactions__amount"), ZERO),
        last_balance=Coalesce(Subquery(last_balance), ZERO),
    )
    violations = []
    for user in users.exclude(credits=F("ledger_sum"), last_balance=F("ledger_sum")).order_by("pk"):
        violations.append(
            f"user {user.pk} ({user.username}): balance {user.credits}, "
            f"sum of transactions {user.ledger_sum}, last balance_after {user.last_balance}"
        )
    rows = CreditTransaction.objects.annotate(
        previous_balance=Window(Lag("balance_after", default=ZERO), partition_by=[F("user_id")], order_by=F("id").asc())
    )
    for row in rows.exclude(balance_after=F("previous_balance") + F("amount")).order_by("pk"):
        violations.append(
            f"transaction {row.pk} (user {row.user_id}): balance_after {row.balance_after} "
            f"is not {row.previous_balance} + {row.amount}"
        )
    return violations


def payments_with_open_shortfall():
    """Payments whose refunds or disputes left credits owed that nothing has repaid, waived or
    cancelled yet, annotated with open_shortfall."""
    return Payment.objects.annotate(open_shortfall=OPEN_SHORTFALL).filter(open_shortfall__gt=0)


def open_shortfalls() -> list[str]:
    """One line per open shortfall: who owes what, on which payment."""
    payments = payments_with_open_shortfall().select_related("user").order_by("user_id", "pk")
    return [
        f"user {payment.user_id} ({payment.user.username}): payment {payment.pk} ({payment.provider} "
        f"{payment.provider_session_id}) owes {payment.open_shortfall} of a {payment.credits_shortfall} shortfall "
        f"(repaid {payment.credits_shortfall_repaid}, waived {payment.credits_shortfall_waived}, "
        f"cancelled {payment.credits_shortfall_cancelled})"
        for payment in payments
    ]


def _ledger_total(kind: str, prefix) -> Coalesce:
    """The sum of a payment's ledger rows of one kind, found by their reference's prefix."""
    rows = (
        CreditTransaction.objects.filter(kind=kind, user_id=OuterRef("user_id"), reference__startswith=prefix)
        .values("user_id")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return Coalesce(Subquery(rows), ZERO)


def payment_violations() -> list[str]:
    """Every way a payment's counters disagree with the ledger: credits taken back, repaid or given
    back that are not the sum of their rows, and an open shortfall beside a positive balance
    (credits came back without repaying it first)."""
    payment_key = Cast(OuterRef("pk"), CharField())
    session_key = OuterRef("provider_session_id")
    payments = Payment.objects.annotate(
        reversed_rows=-_ledger_total(Kind.PAYMENT_REVERSAL, Concat(Value("reversal:"), session_key, Value(":"))),
        repaid_rows=-_ledger_total(Kind.SHORTFALL_REPAYMENT, Concat(Value("shortfall:"), payment_key, Value(":"))),
        reinstated_rows=_ledger_total(Kind.PAYMENT_REINSTATED, Concat(Value("reinstated:"), session_key, Value(":"))),
    )
    violations = []
    counted = (
        ("credits_reversed", "reversed_rows", "payment_reversal"),
        ("credits_shortfall_repaid", "repaid_rows", "shortfall_repayment"),
        ("credits_reinstated", "reinstated_rows", "payment_reinstated"),
    )
    mismatched = Q()
    for field, rows, _ in counted:
        mismatched |= ~Q(**{field: F(rows)})
    for payment in payments.filter(mismatched).order_by("pk"):
        for field, rows, kind in counted:
            if getattr(payment, field) != getattr(payment, rows):
                violations.append(
                    f"payment {payment.pk} (user {payment.user_id}): {field} {getattr(payment, field):.2f}, "
                    f"but its {kind} rows sum to {getattr(payment, rows):.2f}"
                )
    for payment in payments_with_open_shortfall().filter(user__credits__gt=0).select_related("user").order_by("pk"):
        violations.append(
            f"user {payment.user_id} ({payment.user.username}): balance {payment.user.credits} while payment "
            f"{payment.pk} has an open shortfall of {payment.open_shortfall} (credits came back without repaying it)"
        )
    return violations


# Statistics for the admin's statistics page: one aggregate query each, whatever the volume.


@dataclass(frozen=True)
class CreditStatistics:
    """Credits moved through the ledger, all time, as positive figures."""

    sold: Decimal  # purchase rows, paid and simulated
    sold_simulated: Decimal
    simulated_purchases: int
    charged: Decimal  # job charges
    refunded: Decimal  # job refunds, automatic and by operators
    granted: Decimal  # signup bonuses and operator grants
    reversed: Decimal  # taken back for refunded or disputed payments

    @property
    def spent(self) -> Decimal:
        return self.charged - self.refunded


def credit_statistics() -> CreditStatistics:
    def total(condition: Q) -> Sum:
        return Sum("amount", filter=condition, default=Decimal("0.00"))

    # A purchase credited without money changing hands (services.credits_purchase_simulated).
    simulated = Q(kind=Kind.PURCHASE, reference__startswith="simulated:")
    totals = CreditTransaction.objects.aggregate(
        sold=total(Q(kind=Kind.PURCHASE)),
        sold_simulated=total(simulated),
        simulated_purchases=Count("pk", filter=simulated),
        charged=total(Q(kind=Kind.JOB_CHARGE)),
        refunded=total(Q(kind__in=[Kind.JOB_REFUND, Kind.ADMIN_REFUND])),
        granted=total(Q(kind__in=[Kind.SIGNUP_BONUS, Kind.ADMIN_GRANT])),
        # Net: taken back at once, or later as a shortfall's repayment, less what a won dispute gave back.
        reversed=total(Q(kind__in=[Kind.PAYMENT_REVERSAL, Kind.SHORTFALL_REPAYMENT, Kind.PAYMENT_REINSTATED])),
    )
    return CreditStatistics(
        sold=totals["sold"],
        sold_simulated=totals["sold_simulated"],
        simulated_purchases=totals["simulated_purchases"],
        charged=-totals["charged"],
        refunded=totals["refunded"],
        granted=totals["granted"],
        reversed=-totals["reversed"],
    )


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RevenueStatistics:
    by_pack: list[PackRevenue]

    @property
    def net_by_currency(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for row in self.by_pack:
            totals[row.currency] = totals.get(row.currency, Decimal("0.00")) + row.net
        return totals


def revenue_statistics() -> RevenueStatistics:
    """Revenue by pack and currency: payments whose credits were granted (paid, and those refunded
    or disputed since), less what was refunded or disputed. Simulated purchases took no money."""
    labels = {pack.id: pack.label for pack in packs_list()}
    rows = (
        Payment.objects.filter(credited_at__isnull=False)
        .values("pack_id", "currency")
        .annotate(payments=Count("pk"), credits=Sum("credits"), gross=Sum("amount"), reversed=Sum("amount_reversed"))
        .order_by("currency", "pack_id")
    )
    return RevenueStatistics(
        by_pack=[
            PackRevenue(
                pack_id=row["pack_id"],
                label=labels.get(row["pack_id"], "pack no longer on sale"),
                currency=row["currency"].upper(),
                payments=row["payments"],
                credits=row["credits"],
                gross=row["gross"],
                reversed=row["reversed"],
            )
            for row in rows
        ]
    )


@dataclass(frozen=True)
class SubscriptionStatistics:
    covering: int  # subscriptions covering jobs now (paid period or grace)
    in_grace: int  # of them, past due: a renewal failed, covered only by the grace period
    mrr_by_currency: dict[str, Decimal]  # monthly recurring revenue: the covering ones' monthly prices


def subscriptions_covering():
    """Subscriptions that cover jobs now: not ended, active, trialing or past due, within their
    paid period or the grace after a failed renewal (Subscription.covers_jobs, for one row)."""
    now = timezone.now()
    return Subscription.objects.filter(
        ended_at__isnull=True,
        status__in=[Subscription.Status.ACTIVE, Subscription.Status.TRIALING, Subscription.Status.PAST_DUE],
    ).filter(Q(paid_through__gt=now) | Q(grace_until__gt=now))


def subscription_statistics() -> SubscriptionStatistics:
    """Monthly recurring revenue, counted from the subscriptions that cover jobs now."""
    covering = subscriptions_covering()
    rows = covering.values("currency").annotate(count=Count("pk"), mrr=Sum("amount")).order_by("currency")
    return SubscriptionStatistics(
        covering=sum(row["count"] for row in rows),
        in_grace=covering.filter(status=Subscription.Status.PAST_DUE).count(),
        mrr_by_currency={row["currency"].upper(): row["mrr"] for row in rows},
    )


TRANSACTION_EXPORT_FIELDS = ("id", "created_at", "kind", "amount", "balance_after", "description", "reference")


def transaction_export_rows_for_user(*, user, chunk_size: int):
    """Every ledger row of the user, newest first, as tuples of TRANSACTION_EXPORT_FIELDS, fetched
    lazily through a server-side cursor."""
    rows = transaction_list_for_user(user=user).values_list(*TRANSACTION_EXPORT_FIELDS)
    return rows.iterator(chunk_size=chunk_size)
