"""Helpers for the subscription tests (no tests here): Stripe Billing's events as Stripe sends them
(API version 2025-09-30.clover: an invoice names its subscription under parent), with the event
time under the test's control, and a subscription made active the way Stripe's events make it."""

import json
import time
from decimal import Decimal

from testkit.stripe import configure_stripe, deliver, new_id

PLAN_PRICE = 999  # unlimited:9.99, in cents
MONTH = 30 * 86400


def configure_subscriptions(settings, *, fair_use_hours: int = 30) -> None:
    configure_stripe(settings)
    settings.SUBSCRIPTION_PLANS = [{"id": "unlimited", "price": Decimal("9.99")}]
    settings.SUBSCRIPTION_FAIR_USE_HOURS = fair_use_hours
    settings.SUBSCRIPTION_GRACE_DAYS = 3


def event(kind: str, obj: dict, created: int | None = None) -> str:
    return json.dumps(
        {
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(time.time()) if created is None else created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "type": kind,
        }
    )


def _metadata(user) -> dict:
    return {"user_id": str(user.pk), "plan_id": "unlimited"}


def checkout_completed(user, *, subscription: str | None, customer: str, created: int | None = None) -> str:
    return event(
        "checkout.session.completed",
        {
            "id": new_id("cs"),
            "object": "checkout.session",
            "mode": "subscription",
            "client_reference_id": str(user.pk),
            "customer": customer,
            "subscription": subscription,
            "metadata": _metadata(user),
            "amount_total": PLAN_PRICE,
            "currency": "usd",
            "payment_status": "paid",
            "status": "complete",
        },
        created,
    )


def invoice(
    user, *, subscription: str, customer: str, start: int, kind: str = "invoice.paid", created: int | None = None
) -> str:
    """An invoice of the subscription for the month from `start` (a Unix time)."""
    return event(
        kind,
        {
            "id": new_id("in"),
            "object": "invoice",
            "customer": customer,
            "amount_paid": PLAN_PRICE if kind == "invoice.paid" else 0,
            "amount_due": PLAN_PRICE,
            "currency": "usd",
            "status": "paid" if kind == "invoice.paid" else "open",
            "billing_reason": "subscription_cycle",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription, "metadata": _metadata(user)},
            },
            "lines": {
                "object": "list",
                "data": [{"id": new_id("il"), "amount": PLAN_PRICE, "period": {"start": start, "end": start + MONTH}}],
            },
        },
        created,
    )


def subscription_event(
    user,
    *,
    subscription: str,
    customer: str,
    status: str,
    kind: str = "customer.subscription.updated",
    cancel_at_period_end: bool = False,
    created: int | None = None,
) -> str:
    now = int(time.time())
    return event(
        kind,
        {
            "id": subscription,
            "object": "subscription",
            "customer": customer,
            "status": status,
            "metadata": _metadata(user),
            "cancel_at_period_end": cancel_at_period_end,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": new_id("si"),
                        "current_period_start": now,
                        "current_period_end": now + MONTH,
                        "price": {"id": new_id("price"), "unit_amount": PLAN_PRICE, "currency": "usd"},
                    }
                ],
            },
        },
        created,
    )


def subscribed(user) -> tuple[str, str]:
    """An active subscription for `user`, paid for the month from now: (subscription, customer)."""
    subscription, customer = new_id("sub"), new_id("cus")
    now = int(time.time())
    for payload in (
        checkout_completed(user, subscription=subscription, customer=customer),
        subscription_event(user, subscription=subscription, customer=customer, status="active"),
        invoice(user, subscription=subscription, customer=customer, start=now - 60),
    ):
        assert deliver(payload).status_code == 200
    return subscription, customer
