from django.contrib.auth import get_user_model
from django.db.models import DecimalField, F, OuterRef, Subquery, Sum, Value, Window
from django.db.models.functions import Coalesce, Lag

from credits.models import CreditTransaction

ZERO = Value(0, output_field=DecimalField(max_digits=10, decimal_places=2))


def transactions_for_user(*, user):
    return CreditTransaction.objects.filter(user=user).order_by("-id")


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
