"""Stripe Checkout: start a hosted checkout for a pack, and read Stripe's webhook deliveries.

Nothing here touches the database; credits/purchases.py and credits/payment_events.py act on what
these functions return.
"""

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import stripe
from django.conf import settings

from credits.packs import CreditPack
from credits.payment_providers import (
    CheckoutClosed,
    CheckoutCompleted,
    CheckoutStarted,
    EventIgnored,
    PaymentEvent,
    PaymentProviderError,
    PaymentReinstated,
    PaymentReversed,
    SubscriptionChanged,
    WebhookInvalid,
    WebhookNotConfigured,
    money_from_minor_units,
    money_to_minor_units,
)

logger = logging.getLogger(__name__)

PROVIDER = "stripe"
# Stripe retries webhooks for days; a signature older than this is a replay by someone else.
SIGNATURE_TOLERANCE_SECONDS = 300


def stripe_client() -> stripe.StripeClient:
    # STRIPE_API_BASE points the client at another Stripe API (stripe-mock, or a test's fake).
    api_base = settings.STRIPE_API_BASE or None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": api_base} if api_base else {},
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=30),
    )


def stripe_checkout_session_create(
    *, user, pack: CreditPack, success_url: str, cancel_url: str, idempotency_key: str = ""
) -> CheckoutStarted:
    """A Checkout Session for one pack, priced from our pack table. success_url may contain
    {CHECKOUT_SESSION_ID}, which Stripe replaces with the session id."""
    metadata = {"user_id": str(user.pk), "pack_id": pack.id, "credits": f"{pack.credits:.2f}"}
    params = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": pack.currency,
                    "unit_amount": money_to_minor_units(amount=pack.price, currency=pack.currency),
                    "product_data": {"name": pack.label},
                },
            }
        ],
        "client_reference_id": str(user.pk),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if user.email:
        params["customer_email"] = user.email
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    try:
        session = stripe_client().v1.checkout.sessions.create(params=params, options=options)
    except stripe.StripeError as error:
        logger.warning("Stripe refused or did not answer a checkout for user %s: %s", user.pk, error)
        raise PaymentProviderError(str(error.user_message or error)) from error
    return CheckoutStarted(
        provider=PROVIDER,
        session_id=session["id"],
        url=session["url"],
        amount=money_from_minor_units(minor=session["amount_total"], currency=session["currency"]),
        currency=session["currency"],
    )


def stripe_webhook_event_parse(*, payload: bytes, signature: str) -> PaymentEvent:
    """Verify a delivery's Stripe-Signature with STRIPE_WEBHOOK_SECRET and read its event."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise WebhookNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=SIGNATURE_TOLERANCE_SECONDS
        ).to_dict()
    except stripe.SignatureVerificationError as error:
        raise WebhookInvalid(f"Bad signature: {error}") from error
    except ValueError as error:  # not JSON
        raise WebhookInvalid(f"Not an event: {error}") from error
    try:
        return _event_read(event)
    except (KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise WebhookInvalid(f"Malformed {event.get('type')} event: {error!r}") from error


def _id(value) -> str:
    """An id field, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return value["id"]
    return value or ""


def _event_read(event: dict) -> PaymentEvent:
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in SUBSCRIPTION_EVENTS or (kind == "checkout.session.completed" and obj.get("mode") == "subscription"):
        return _subscription_read(kind, obj, at=datetime.fromtimestamp(event["created"], UTC))
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        metadata = obj.get("metadata") or {}
        user_id = metadata.get("user_id") or obj.get("client_reference_id")
        return CheckoutCompleted(
            provider=PROVIDER,
            session_id=obj["id"],
            paid=obj.get("payment_status") == "paid",
            payment_intent_id=_id(obj.get("payment_intent")),
            user_id=int(user_id) if user_id else None,
            pack_id=metadata.get("pack_id", ""),
            credits=Decimal(metadata["credits"]) if metadata.get("credits") else None,
            amount=money_from_minor_units(minor=obj["amount_total"], currency=obj["currency"]),
            currency=obj["currency"],
        )
    if kind == "checkout.session.async_payment_failed":
        return CheckoutClosed(provider=PROVIDER, session_id=obj["id"], status="failed")
    if kind == "checkout.session.expired":
        return CheckoutClosed(provider=PROVIDER, session_id=obj["id"], status="expired")
    if kind == "charge.refunded":
        return PaymentReversed(
            provider=PROVIDER,
            reversal_id=f"refund:{obj['id']}",
            kind="refund",
            payment_intent_id=_id(obj.get("payment_intent")),
            charge_id=obj["id"],
            amount=money_from_minor_units(minor=obj["amount_refunded"], currency=obj["currency"]),
            currency=obj["currency"],
        )
    if kind in DISPUTE_EVENTS:
        return _dispute_read(kind, obj)
    return EventIgnored(provider=PROVIDER, type=kind)


DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.closed", "charge.dispute.funds_reinstated")
# A closed dispute (or inquiry) whose money stays with us: won, or an inquiry that never became a dispute.
MONEY_KEPT = ("won", "warning_closed")


def _dispute_read(kind: str, obj: dict) -> PaymentEvent:
    """Every dispute event names the dispute, so a closing one delivered before (or instead of)
    charge.dispute.created still records it."""
    dispute = {
        "provider": PROVIDER,
        "reversal_id": f"dispute:{obj['id']}",
        "payment_intent_id": _id(obj.get("payment_intent")),
        "charge_id": _id(obj.get("charge")),
        "amount": money_from_minor_units(minor=obj["amount"], currency=obj["currency"]),
        "currency": obj["currency"],
    }
    status = obj.get("status")
    if kind == "charge.dispute.funds_reinstated" or (kind == "charge.dispute.closed" and status in MONEY_KEPT):
        return PaymentReinstated(**dispute)
    if kind == "charge.dispute.closed" and status != "lost":
        return EventIgnored(provider=PROVIDER, type=f"{kind} ({status})")
    return PaymentReversed(**dispute, kind="dispute", outcome="lost" if kind == "charge.dispute.closed" else "")


# Stripe Billing: the events that move a subscription (credits/subscriptions.py acts on them).
SUBSCRIPTION_EVENTS = (
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
)


def _time(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _user_id(metadata: dict, fallback=None) -> int | None:
    value = (metadata or {}).get("user_id") or fallback
    return int(value) if value else None


def _subscription_read(kind: str, obj: dict, *, at: datetime) -> PaymentEvent:
    if kind == "checkout.session.completed":
        metadata = obj.get("metadata") or {}
        if not obj.get("subscription"):
            return EventIgnored(provider=PROVIDER, type=f"{kind} (subscription mode, no subscription)")
        return SubscriptionChanged(
            provider=PROVIDER,
            subscription_id=_id(obj["subscription"]),
            customer_id=_id(obj.get("customer")),
            user_id=_user_id(metadata, obj.get("client_reference_id")),
            plan_id=metadata.get("plan_id", ""),
            at=at,
        )
    if kind.startswith("invoice."):
        return _invoice_read(kind, obj, at=at)
    metadata = obj.get("metadata") or {}
    items = (obj.get("items") or {}).get("data") or [{}]
    price = items[0].get("price") or {}
    # The period covered comes from paid invoices only, never from a status change.
    ended = kind == "customer.subscription.deleted"
    return SubscriptionChanged(
        provider=PROVIDER,
        subscription_id=obj["id"],
        customer_id=_id(obj.get("customer")),
        user_id=_user_id(metadata),
        plan_id=metadata.get("plan_id", ""),
        at=at,
        status="canceled" if ended else obj["status"],
        amount=(
            money_from_minor_units(minor=price["unit_amount"], currency=price["currency"])
            if price.get("unit_amount") is not None
            else None
        ),
        currency=price.get("currency", ""),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        ended=ended,
    )


def _invoice_read(kind: str, obj: dict, *, at: datetime) -> PaymentEvent:
    """An invoice of a subscription: paid for a period, or its payment failed. Newer API versions
    name the subscription (and its metadata) under parent.subscription_details."""
    details = (obj.get("parent") or {}).get("subscription_details") or obj.get("subscription_details") or {}
    subscription_id = _id(details.get("subscription") or obj.get("subscription"))
    if not subscription_id:
        return EventIgnored(provider=PROVIDER, type=f"{kind} (not a subscription's)")
    metadata = details.get("metadata") or {}
    common = {
        "provider": PROVIDER,
        "subscription_id": subscription_id,
        "customer_id": _id(obj.get("customer")),
        "user_id": _user_id(metadata),
        "plan_id": metadata.get("plan_id", ""),
        "at": at,
    }
    if kind == "invoice.payment_failed":
        return SubscriptionChanged(**common, payment_failed=True)
    periods = [line["period"] for line in (obj.get("lines") or {}).get("data", []) if line.get("period")]
    if not periods:
        raise ValueError("a paid invoice without a period")
    return SubscriptionChanged(
        **common,
        period_start=_time(min(period["start"] for period in periods)),
        paid_through=_time(max(period["end"] for period in periods)),
    )
