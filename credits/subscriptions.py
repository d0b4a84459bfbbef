"""Monthly plans through Stripe Billing: the checkout and the customer portal, what Stripe's
verified events do to a subscription, and jobs covered by one instead of credits.

A subscription covers jobs while it is not ended, its status is active, trialing or past_due, and
its last paid period (invoice.paid) or the grace period after a failed renewal has not run out.
Events may arrive twice, concurrently or out of order: each is applied under the subscription's
row lock; a paid period only ever extends it; an older status never overwrites a newer one; an
ended subscription stays ended whatever arrives after.

A covered job still has a ledger row (kind subscription_job, amount 0, reference naming the
subscription and the job), and counts its audio against the fair-use bound
(SUBSCRIPTION_FAIR_USE_HOURS per paid period); past it, the job is charged credits as usual.

Lock order: the user's row, then the subscription's (the ledger's order).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urljoin

import stripe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum
from django.urls import reverse

from credits.models import CreditTransaction, Subscription, SubscriptionUse
from credits.payment_providers import PaymentProviderError, SubscriptionChanged, money_to_minor_units
from credits.selectors import subscriptions_covering
from credits.services import LedgerPosting, credits_charge_job, ledger_append, ledger_lock_user
from credits.stripe_checkout import stripe_client

logger = logging.getLogger(__name__)

Status = Subscription.Status


@dataclass(frozen=True)
class Plan:
    id: str
    price: Decimal
    currency: str

    @property
    def label(self) -> str:
        return f"{self.id.replace('_', ' ').capitalize()}: {self.price} {self.currency.upper()} a month"


class AlreadySubscribed(Exception):
    """The user has a subscription covering jobs now: a second one would be paid for nothing."""


class NoCustomer(Exception):
    """The user has never subscribed, so Stripe has no customer portal for them."""


def plans_list() -> list[Plan]:
    return [
        Plan(id=plan["id"], price=plan["price"], currency=settings.CREDIT_CURRENCY)
        for plan in settings.SUBSCRIPTION_PLANS
    ]


def plan_get(plan_id: str) -> Plan | None:
    return next((plan for plan in plans_list() if plan.id == plan_id), None)


def subscription_covering(*, user_id: int) -> Subscription | None:
    """The subscription that covers the user's jobs now, if any."""
    return subscriptions_covering().filter(user_id=user_id).order_by("-paid_through", "-id").first()


def subscription_latest(*, user_id: int) -> Subscription | None:
    """The covering subscription, else the newest one (what /api/auth/me shows)."""
    return subscription_covering(user_id=user_id) or Subscription.objects.filter(user_id=user_id).first()


def subscription_seconds_used(*, subscription: Subscription) -> float:
    """Audio covered in the current paid period (jobs that failed or were cancelled excluded)."""
    uses = subscription.uses.filter(released_at__isnull=True)
    if subscription.period_start is not None:
        uses = uses.filter(created_at__gte=subscription.period_start)
    return uses.aggregate(total=Sum("seconds"))["total"] or 0.0


def fair_use_seconds() -> int:
    return settings.SUBSCRIPTION_FAIR_USE_HOURS * 3600


def subscription_may_cover(*, user_id: int, seconds: float) -> bool:
    """Whether a job of `seconds` would be covered now (a check before storing an upload; the
    charge decides again under the lock)."""
    subscription = subscription_covering(user_id=user_id)
    return (
        subscription is not None
        and subscription_seconds_used(subscription=subscription) + seconds <= fair_use_seconds()
    )


def job_charge_or_cover(*, job) -> LedgerPosting:
    """A subscription covers the job (a zero ledger row naming it) when it can within fair use;
    otherwise the job is charged credits (InsufficientCredits when the balance is short)."""
    with transaction.atomic():
        ledger_lock_user(user_id=job.user_id)
        subscription = subscription_covering(user_id=job.user_id)
        if subscription is not None:
            subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
            if subscription_seconds_used(subscription=subscription) + job.duration_seconds <= fair_use_seconds():
                SubscriptionUse.objects.create(subscription=subscription, job_id=job.pk, seconds=job.duration_seconds)
                return ledger_append(
                    user_id=job.user_id,
                    amount=Decimal(0),
                    kind=CreditTransaction.Kind.SUBSCRIPTION_JOB,
                    description=f"Separation of {job.original_filename}: covered by your {subscription.plan_id} plan",
                    reference=f"subscription:{subscription.provider_subscription_id}:job:{job.pk}",
                )
            logger.info(
                "User %s is past the fair-use bound of %s: job %s costs credits", job.user_id, subscription.pk, job.pk
            )
        return credits_charge_job(job=job)


def subscription_checkout_start(*, user, plan: Plan, site_url: str, idempotency_key: str = "") -> str:
    """A Stripe Checkout in subscription mode for `plan`; its URL. The user is named in
    client_reference_id and in the metadata of the checkout and of the subscription it makes."""
    if subscription_covering(user_id=user.pk) is not None:
        raise AlreadySubscribed
    metadata = {"user_id": str(user.pk), "plan_id": plan.id}
    params = {
        "mode": "subscription",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": plan.currency,
                    "unit_amount": money_to_minor_units(amount=plan.price, currency=plan.currency),
                    "recurring": {"interval": "month"},
                    "product_data": {"name": plan.label},
                },
            }
        ],
        "client_reference_id": str(user.pk),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": urljoin(site_url, reverse("credits")) + "?subscribed=1",
        "cancel_url": urljoin(site_url, reverse("credits")),
    }
    customer = Subscription.objects.filter(user=user).exclude(provider_customer_id="").first()
    if customer is not None:
        params["customer"] = customer.provider_customer_id
    elif user.email:
        params["customer_email"] = user.email
    options = {"idempotency_key": f"subscribe:{user.pk}:{plan.id}:{idempotency_key}"} if idempotency_key else {}
    try:
        session = stripe_client().v1.checkout.sessions.create(params=params, options=options)
    except stripe.StripeError as error:
        logger.warning("Stripe refused or did not answer a subscription checkout for user %s: %s", user.pk, error)
        raise PaymentProviderError(str(error.user_message or error)) from error
    return session["url"]


def subscription_portal_url(*, user, return_url: str) -> str:
    """Stripe's customer portal, where the customer cancels or changes their card."""
    subscription = Subscription.objects.filter(user=user).exclude(provider_customer_id="").first()
    if subscription is None:
        raise NoCustomer
    try:
        session = stripe_client().v1.billing_portal.sessions.create(
            params={"customer": subscription.provider_customer_id, "return_url": return_url}
        )
    except stripe.StripeError as error:
        logger.warning("Stripe refused or did not answer a portal session for user %s: %s", user.pk, error)
        raise PaymentProviderError(str(error.user_message or error)) from error
    return session["url"]


def subscription_event_record(*, event: SubscriptionChanged) -> Subscription | None:
    """Apply one verified event to its subscription (made from the event's metadata when it is
    the first to arrive); None when it names no known user."""
    with transaction.atomic():
        subscription = _subscription_for(event=event)
        if subscription is None:
            return None
        if event.customer_id and not subscription.provider_customer_id:
            subscription.provider_customer_id = event.customer_id
        if event.amount is not None:
            subscription.amount, subscription.currency = event.amount, event.currency
        newer = subscription.status_at is None or event.at >= subscription.status_at
        if event.paid_through is not None and (
            subscription.paid_through is None or event.paid_through > subscription.paid_through
        ):
            subscription.paid_through = event.paid_through
            subscription.period_start = event.period_start
            subscription.grace_until = None
            if subscription.status in (Status.INCOMPLETE, Status.PAST_DUE, Status.UNPAID):
                subscription.status = Status.ACTIVE  # Stripe makes it active once an invoice is paid
        if event.payment_failed and subscription.paid_through is not None:
            # Only a subscription that was paid before gets grace: a first payment that fails covers nothing.
            start = max(event.at, subscription.paid_through)
            subscription.grace_until = max(
                subscription.grace_until or start, start + timedelta(days=settings.SUBSCRIPTION_GRACE_DAYS)
            )
        if event.status and newer and not (event.status == Status.INCOMPLETE and subscription.paid_through):
            subscription.status = event.status
            subscription.status_at = event.at
            if event.cancel_at_period_end is not None:
                subscription.cancel_at_period_end = event.cancel_at_period_end
        if event.ended and subscription.ended_at is None:
            subscription.ended_at = event.at
        if subscription.ended_at is not None:
            subscription.status = Status.CANCELED  # ended is final, whatever arrives after
        subscription.save()
    return subscription


def _subscription_for(*, event: SubscriptionChanged) -> Subscription | None:
    """The event's subscription, locked; created from its metadata when this is the first event."""
    subscriptions = Subscription.objects.select_for_update()
    subscription = subscriptions.filter(provider_subscription_id=event.subscription_id).first()
    if subscription is not None:
        return subscription
    if event.user_id is None or not get_user_model().objects.filter(pk=event.user_id).exists():
        logger.error("Stripe subscription %s names no known user (%s): ignored", event.subscription_id, event.user_id)
        return None
    plan = plan_get(event.plan_id)
    Subscription.objects.get_or_create(
        provider_subscription_id=event.subscription_id,
        defaults={
            "provider": event.provider,
            "user_id": event.user_id,
            "plan_id": event.plan_id,
            "provider_customer_id": event.customer_id,
            "amount": plan.price if plan else Decimal(0),
            "currency": plan.currency if plan else settings.CREDIT_CURRENCY,
        },
    )
    return subscriptions.get(provider_subscription_id=event.subscription_id)
