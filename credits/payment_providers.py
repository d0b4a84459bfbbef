"""What the ledger needs from a payment provider, in the provider's own terms nowhere.

A provider module (credits/stripe_checkout.py, credits/square_checkout.py) starts a hosted
checkout for a pack and turns a verified webhook delivery into one of the events below. The
services in credits/payment_events.py act on these events only, so adding a provider touches neither
them nor the ledger.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from django.conf import settings

# Currencies whose smallest unit is the unit itself (Stripe's list); every other one has cents.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)


class PaymentsMode(StrEnum):
    STRIPE = "stripe"  # real money through Stripe Checkout
    SQUARE = "square"  # real money through a Square payment link
    SIMULATED = "simulated"  # development: credits without money
    OFF = "off"  # neither: buying is refused


class PaymentProviderError(Exception):
    """The provider could not be reached or refused the request; nothing was bought."""


class WebhookInvalid(Exception):
    """A webhook delivery that is not signed by the provider with our secret, or is not an event."""


class WebhookNotConfigured(Exception):
    """No webhook secret is configured, so no delivery can be verified."""


@dataclass(frozen=True)
class CheckoutStarted:
    provider: str
    session_id: str
    url: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class CheckoutCompleted:
    """The customer finished a checkout. paid is False while an asynchronous payment method
    (a bank debit) has not yet delivered the money; a later event with paid=True follows."""

    provider: str
    session_id: str
    paid: bool
    payment_intent_id: str
    user_id: int | None
    pack_id: str
    credits: Decimal | None
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class CheckoutClosed:
    """A checkout that will never be paid: it expired, or its asynchronous payment failed."""

    provider: str
    session_id: str
    status: str  # a Payment.Status value


@dataclass(frozen=True)
class PaymentReversed:
    """Money given back: a refund (amount is the charge's running refunded total) or a dispute
    (amount is the disputed sum). reversal_id names it once, however often it is delivered."""

    provider: str
    reversal_id: str
    kind: str  # a PaymentReversal.Kind value
    payment_intent_id: str
    charge_id: str
    amount: Decimal
    currency: str
    outcome: str = ""  # a PaymentReversal.Outcome value: "lost" when a dispute closed against us


@dataclass(frozen=True)
class PaymentReinstated:
    """Disputed money back with the merchant: the dispute was won (or an inquiry closed without
    becoming one). The credits taken for it come back once, however often and in whatever order
    this and the dispute itself are delivered; reversal_id is the dispute's, as in PaymentReversed."""

    provider: str
    reversal_id: str
    payment_intent_id: str
    charge_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class SubscriptionChanged:
    """What a provider said about a subscription: its checkout completed (status ""), an invoice
    paid a period (paid_through), a renewal failed (payment_failed), or its status changed or it
    ended (ended). user_id and plan_id come from the metadata we set at checkout; at is the
    event's own time, so an older event never overwrites a newer status."""

    provider: str
    subscription_id: str
    customer_id: str
    user_id: int | None
    plan_id: str
    at: datetime
    status: str = ""
    period_start: datetime | None = None
    paid_through: datetime | None = None
    amount: Decimal | None = None
    currency: str = ""
    payment_failed: bool = False
    cancel_at_period_end: bool | None = None
    ended: bool = False


@dataclass(frozen=True)
class EventIgnored:
    provider: str
    type: str


PaymentEvent = (
    CheckoutCompleted | CheckoutClosed | PaymentReversed | PaymentReinstated | SubscriptionChanged | EventIgnored
)


def payments_mode() -> PaymentsMode:
    """The operator's PAYMENT_PROVIDER (settings refuse to start when it lacks its keys), else
    Stripe when its key is set."""
    if settings.PAYMENT_PROVIDER == PaymentsMode.SQUARE:
        return PaymentsMode.SQUARE
    if settings.PAYMENT_PROVIDER == PaymentsMode.STRIPE or settings.STRIPE_SECRET_KEY:
        return PaymentsMode.STRIPE
    if settings.PAYMENTS_SIMULATED:
        return PaymentsMode.SIMULATED
    return PaymentsMode.OFF


def money_to_minor_units(*, amount: Decimal, currency: str) -> int:
    """4.00 USD -> 400; 500 JPY -> 500."""
    exponent = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    minor = Decimal(amount).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} {currency.upper()} is not a whole number of the currency's smallest unit")
    return int(minor)


def money_from_minor_units(*, minor: int, currency: str) -> Decimal:
    exponent = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    return Decimal(int(minor)).scaleb(-exponent).quantize(Decimal("0.01"))
