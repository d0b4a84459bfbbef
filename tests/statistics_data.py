"""A database seeded for the admin statistics tests: users who joined over the last 40 days,
their jobs in every state, purchases and a refunded payment."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import User
from credits.models import CreditTransaction, Payment
from credits.packs import pack_get
from credits.services import (
    credits_admin_grant,
    credits_charge_job,
    credits_purchase_simulated,
    credits_refund_job,
    ledger_append,
)
from separation.models import Job
from tests.factories import UserFactory

S = Job.Status


def joined(username, days_ago, **fields):
    user = UserFactory(username=username, **fields)
    User.objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=days_ago))
    return user


def job(user, *, model, status, days_ago, cost=1, refunded_by=None):
    made = Job.objects.create(
        user=user,
        original_filename=f"{model}-{status}.wav",
        model=model,
        cost=Decimal(cost),
        duration_seconds=2.0,
        status=status,
    )
    Job.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    credits_charge_job(job=made)
    if status in (S.FAILED, S.CANCELLED):
        credits_refund_job(job=made, reason="test", refunded_by=refunded_by)
    return made


def payment(user, session, pack_id, status, *, credited=True, reversed_amount=None):
    pack = pack_get(pack_id)
    paid = Payment.objects.create(
        provider="stripe",
        provider_session_id=session,
        user=user,
        pack_id=pack_id,
        credits=pack.credits,
        amount=pack.price,
        currency="usd",
        status=status,
        credited_at=timezone.now() if credited else None,
    )
    if credited:
        ledger_append(
            user_id=user.pk,
            amount=pack.credits,
            kind=CreditTransaction.Kind.PURCHASE,
            description="x",
            reference=session,
        )
    if reversed_amount is not None:
        Payment.objects.filter(pk=paid.pk).update(amount_reversed=reversed_amount, credits_reversed=pack.credits)
        ledger_append(
            user_id=user.pk,
            amount=-pack.credits,
            kind=CreditTransaction.Kind.PAYMENT_REVERSAL,
            description="refunded",
            reference=f"reversal:{session}",
        )
    return paid


def seed_statistics(settings):
    """Users, jobs and payments over the last 40 days (settings is pytest-django's fixture);
    returns the staff user."""
    settings.CREDIT_PACKS = [
        {"id": "starter", "credits": Decimal(5), "price": Decimal("1.00")},
        {"id": "standard", "credits": Decimal(25), "price": Decimal("4.00")},
        {"id": "pro", "credits": Decimal(100), "price": Decimal("15.00")},
    ]
    settings.SIGNUP_BONUS_CREDITS = Decimal(3)
    boss = joined("boss", 0, is_staff=True, is_superuser=True)
    alice = joined("alice", 0)
    bob = joined("bob", 3)
    carol = joined("carol", 10)
    dave = joined("dave", 40)  # before the 30-day window
    credits_admin_grant(user=alice, amount=Decimal(20), reason="seed", granted_by=boss, request_token="seed")

    job(alice, model="demo", status=S.COMPLETED, days_ago=0)
    job(alice, model="htdemucs", status=S.COMPLETED, days_ago=0, cost=4)
    job(alice, model="demo", status=S.PENDING, days_ago=0)
    job(alice, model="htdemucs", status=S.PROCESSING, days_ago=0)
    job(alice, model="demo", status=S.FAILED, days_ago=1)
    job(alice, model="demo", status=S.COMPLETED, days_ago=1)
    job(alice, model="htdemucs_6s", status=S.CANCELLED, days_ago=1, refunded_by=boss)
    job(alice, model="htdemucs", status=S.COMPLETED, days_ago=5)
    job(alice, model="htdemucs", status=S.FAILED, days_ago=5)
    job(alice, model="demo", status=S.FAILED, days_ago=40)
    job(alice, model="demo", status=S.COMPLETED, days_ago=40)

    credits_purchase_simulated(user=bob, pack=pack_get("starter"))
    credits_purchase_simulated(user=bob, pack=pack_get("starter"))
    payment(carol, "cs_1", "standard", Payment.Status.PAID)
    payment(carol, "cs_2", "standard", Payment.Status.PAID)
    payment(dave, "cs_3", "pro", Payment.Status.REFUNDED, reversed_amount=Decimal("15.00"))
    payment(bob, "cs_4", "pro", Payment.Status.OPEN, credited=False)
    payment(bob, "cs_5", "starter", Payment.Status.EXPIRED, credited=False)
    return boss
