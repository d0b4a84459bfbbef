"""Square: a hosted checkout (a payment link with an order) for a pack, and Square's webhook
deliveries read as the provider boundary's events (credits/payment_providers.py).

The order id of the payment link is the purchase's session id, so the payment notification that
names it is matched to the purchase; Square's payment id plays the part of Stripe's payment
intent (refunds and disputes name it). Nothing here touches the database.
"""

import base64
import hashlib
import hmac
import json
import logging
import uuid
from decimal import InvalidOperation

import httpx
from django.conf import settings
from django.urls import reverse
from square import Square
from square.core.api_error import ApiError
from square.environment import SquareEnvironment

from credits.packs import CreditPack
from credits.payment_providers import (
    CheckoutCompleted,
    CheckoutStarted,
    EventIgnored,
    PaymentEvent,
    PaymentProviderError,
    PaymentReinstated,
    PaymentReversed,
    WebhookInvalid,
    WebhookNotConfigured,
    money_from_minor_units,
    money_to_minor_units,
)

logger = logging.getLogger(__name__)

PROVIDER = "square"
SIGNATURE_HEADER = "X-Square-HmacSha256-Signature"
# Square limits idempotency keys' length (45 characters on its strictest endpoints).
IDEMPOTENCY_KEY_LENGTH = 45


def _client() -> Square:
    environment = (
        SquareEnvironment.SANDBOX if settings.SQUARE_ENVIRONMENT == "sandbox" else SquareEnvironment.PRODUCTION
    )
    # SQUARE_API_BASE points the client at another host (a test's fake Square).
    return Square(
        token=settings.SQUARE_ACCESS_TOKEN,
        environment=environment,
        base_url=settings.SQUARE_API_BASE or None,
        timeout=30,
    )


def square_notification_url() -> str:
    """The URL Square posts notifications to, as registered in its dashboard: Square signs it
    together with the body, so it comes from our own setting, never from the request."""
    return settings.SITE_URL + reverse("api-payments-square-webhook")


def _idempotency_key(key: str) -> str:
    """Square limits the key's length; a longer one is hashed (same key, same hash)."""
    if not key:
        return uuid.uuid4().hex
    if len(key) <= IDEMPOTENCY_KEY_LENGTH:
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:IDEMPOTENCY_KEY_LENGTH]


def square_payment_link_create(
    *, user, pack: CreditPack, redirect_url: str, idempotency_key: str = ""
) -> CheckoutStarted:
    """A payment link for one pack, priced from our pack table, on an order of its own at our
    location. Square sends the customer to redirect_url after paying (adding orderId)."""
    metadata = {"user_id": str(user.pk), "pack_id": pack.id, "credits": f"{pack.credits:.2f}"}
    order = {
        "location_id": settings.SQUARE_LOCATION_ID,
        "reference_id": str(user.pk),
        "metadata": metadata,
        "line_items": [
            {
                "name": pack.label,
                "quantity": "1",
                "base_price_money": {
                    "amount": money_to_minor_units(amount=pack.price, currency=pack.currency),
                    "currency": pack.currency.upper(),
                },
            }
        ],
    }
    try:
        response = _client().checkout.payment_links.create(
            idempotency_key=_idempotency_key(idempotency_key),
            order=order,
            checkout_options={"redirect_url": redirect_url, "ask_for_shipping_address": False},
            payment_note=f"{pack.label} for account {user.pk}",
            # Left out, not sent as null, without an address.
            **({"pre_populated_data": {"buyer_email": user.email}} if user.email else {}),
        )
    except (ApiError, httpx.HTTPError) as error:
        logger.warning("Square refused or did not answer a payment link for user %s: %s", user.pk, error)
        raise PaymentProviderError(str(error)) from error
    link = response.payment_link
    if link is None or not link.order_id or not link.url:
        raise PaymentProviderError(f"Square answered without a payment link: {response.errors}")
    return CheckoutStarted(
        provider=PROVIDER, session_id=link.order_id, url=link.url, amount=pack.price, currency=pack.currency
    )


def square_signature(*, payload: bytes, notification_url: str, key: str) -> str:
    """x-square-hmacsha256-signature: base64 of HMAC-SHA256 over the notification URL followed by
    the raw body, bytes as received (not re-serialised JSON)."""
    digest = hmac.new(key.encode(), notification_url.encode() + payload, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def square_webhook_event_parse(*, payload: bytes, signature: str) -> PaymentEvent:
    """Verify a delivery's signature with SQUARE_WEBHOOK_SIGNATURE_KEY and read its event."""
    key = settings.SQUARE_WEBHOOK_SIGNATURE_KEY
    if not key or not settings.SITE_URL:
        raise WebhookNotConfigured("SQUARE_WEBHOOK_SIGNATURE_KEY or SITE_URL is not set")
    expected = square_signature(payload=payload, notification_url=square_notification_url(), key=key)
    if not signature or not hmac.compare_digest(expected.encode(), signature.encode()):
        raise WebhookInvalid("Bad or missing signature")
    try:
        event = json.loads(payload)
        return _event_read(event)
    except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as error:
        raise WebhookInvalid(f"Malformed Square event: {error!r}") from error


def _money(money: dict) -> tuple:
    currency = money["currency"].lower()
    return money_from_minor_units(minor=money["amount"], currency=currency), currency


def _event_read(event: dict) -> PaymentEvent:
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in ("payment.created", "payment.updated"):
        return _payment_read(kind, obj["payment"])
    if kind in ("refund.created", "refund.updated"):
        refund = obj["refund"]
        if refund["status"] != "COMPLETED":  # PENDING, or one that never moved money
            return EventIgnored(provider=PROVIDER, type=f"{kind} ({refund['status']})")
        amount, currency = _money(refund["amount_money"])
        return PaymentReversed(
            provider=PROVIDER,
            # Each Square refund is its own amount (not a running total), so each is kept apart.
            reversal_id=f"refund:{refund['id']}",
            kind="refund",
            payment_intent_id=refund["payment_id"],
            charge_id=refund["id"],
            amount=amount,
            currency=currency,
        )
    if kind in ("dispute.created", "dispute.state.updated", "dispute.state.changed"):
        return _dispute_read(obj["dispute"])
    return EventIgnored(provider=PROVIDER, type=kind)


def _payment_read(kind: str, payment: dict) -> PaymentEvent:
    """Only a COMPLETED payment has moved the money; APPROVED, PENDING, FAILED and CANCELED do
    not close the payment link, whose customer may still pay with another card."""
    if payment["status"] != "COMPLETED" or not payment.get("order_id"):
        return EventIgnored(provider=PROVIDER, type=f"{kind} ({payment['status']})")
    amount, currency = _money(payment.get("total_money") or payment["amount_money"])
    return CheckoutCompleted(
        provider=PROVIDER,
        session_id=payment["order_id"],
        paid=True,
        payment_intent_id=payment["id"],
        # A payment names no account or pack: only an order we opened (a Payment row) is credited.
        user_id=None,
        pack_id="",
        credits=None,
        amount=amount,
        currency=currency,
    )


# A dispute (or inquiry) whose money stays with us, and one that went to the customer.
MONEY_KEPT = ("WON", "INQUIRY_CLOSED")
MONEY_LOST = ("LOST", "ACCEPTED")


def _dispute_read(dispute: dict) -> PaymentEvent:
    """Every dispute event carries the dispute's state, so a closing one delivered first still records it."""
    amount, currency = _money(dispute["amount_money"])
    fields = {
        "provider": PROVIDER,
        "reversal_id": f"dispute:{dispute.get('id') or dispute['dispute_id']}",
        "payment_intent_id": dispute["disputed_payment"]["payment_id"],
        "charge_id": "",
        "amount": amount,
        "currency": currency,
    }
    state = dispute["state"]
    if state in MONEY_KEPT:
        return PaymentReinstated(**fields)
    return PaymentReversed(**fields, kind="dispute", outcome="lost" if state in MONEY_LOST else "")
