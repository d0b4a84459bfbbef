"""Buying a pack, for the credits page and the API alike, in whichever payments mode the server
runs: a hosted checkout (the credits come later, by the provider's event: payment_events.py),
a simulated purchase credited at once, or a refusal."""

from dataclasses import dataclass
from urllib.parse import urljoin

from django.urls import reverse

from credits import square_checkout, stripe_checkout
from credits.models import Payment
from credits.packs import CreditPack
from credits.payment_providers import PaymentsMode, payments_mode
from credits.services import LedgerPosting, credits_purchase_simulated

# What the customer is told, on the page and over the API.
PAYMENTS_OFF_MESSAGE = "Payments are not configured on this server, so credits cannot be bought."
PROVIDER_ERROR_MESSAGE = "The payment provider could not be reached. Nothing was charged; please try again."


def simulated_purchase_message(*, pack: CreditPack) -> str:
    return f"{pack.label} added (simulated payment: no money was taken)."


class PaymentsOff(Exception):
    """No payment provider and no simulated payments: nothing can be bought."""


@dataclass(frozen=True)
class PurchaseStarted:
    """A checkout to send the customer to (payment and checkout_url: no credits yet), or a
    simulated purchase credited at once (posting; not created when its key was used before)."""

    pack: CreditPack
    payment: Payment | None = None
    checkout_url: str = ""
    posting: LedgerPosting | None = None


def purchase_start(*, user, pack: CreditPack, site_url: str, idempotency_key: str = "") -> PurchaseStarted:
    """Buy `pack` for `user`. The same idempotency_key buys once: one checkout, or one simulated
    purchase (IdempotencyConflict when it bought another pack). site_url is this site's address,
    which the provider sends the customer back to. Raises PaymentsOff, and PaymentProviderError
    when the provider does not answer (nothing is recorded then)."""
    mode = payments_mode()
    if mode == PaymentsMode.OFF:
        raise PaymentsOff
    if mode == PaymentsMode.SIMULATED:
        return PurchaseStarted(
            pack=pack, posting=credits_purchase_simulated(user=user, pack=pack, idempotency_key=idempotency_key)
        )
    payment, url = _checkout_start(user=user, pack=pack, site_url=site_url, idempotency_key=idempotency_key)
    return PurchaseStarted(pack=pack, payment=payment, checkout_url=url)


def _checkout_start(*, user, pack: CreditPack, site_url: str, idempotency_key: str) -> tuple[Payment, str]:
    """Open the provider's hosted checkout for a pack and record it; returns the Payment and the
    URL to send the customer to. No credits change here."""
    key = f"checkout:{user.pk}:{pack.id}:{idempotency_key}" if idempotency_key else ""
    success_url = urljoin(site_url, reverse("credits-success"))
    if payments_mode() == PaymentsMode.SQUARE:
        # Square adds ?checkoutId=...&orderId=... to the redirect.
        started = square_checkout.square_payment_link_create(
            user=user, pack=pack, redirect_url=success_url, idempotency_key=key
        )
    else:
        started = stripe_checkout.stripe_checkout_session_create(
            user=user,
            pack=pack,
            success_url=success_url + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=urljoin(site_url, reverse("credits-cancel")),
            idempotency_key=key,
        )
    payment, _ = Payment.objects.get_or_create(
        provider=started.provider,
        provider_session_id=started.session_id,
        defaults={
            "user": user,
            "pack_id": pack.id,
            "credits": pack.credits,
            "amount": started.amount,
            "currency": started.currency,
        },
    )
    return payment, started.url
