"""Buying in a real browser (Playwright driving Debian's Chromium) against the live server and a
fake payment provider on loopback: the credits page's button, the provider's hosted checkout, the
signed notification it sends, and the way back to our success page."""

import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import sync_playwright

from credits.models import CreditTransaction, Payment, Subscription
from testkit.stripe import FakeStripe, new_id, sign
from tests import e2e
from tests.conftest import balance
from tests.factories import UserFactory
from tests.square import WEBHOOK_PATH, FakeSquare, configure_square
from tests.stripe_billing import checkout_completed, configure_subscriptions, invoice, subscription_event

SCREENSHOTS = Path("/tmp")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@contextmanager
def logged_in_page(base: str, user, width: int):
    """A Chromium page holding a session of `user`. The session is made first: Playwright's sync
    API runs an event loop in this thread, where Django refuses database queries."""
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_it_buys_a_pack_through_square_in_a_browser(settings, live_server, width):
    base = live_server.url
    configure_square(settings, site_url=base)
    user = UserFactory()
    start = balance(user)
    with FakeSquare() as square, logged_in_page(base, user, width) as page:
        settings.SQUARE_API_BASE = square.url
        square.notify_url = base + WEBHOOK_PATH
        # A policy violation (the redirect to the checkout refused by form-action) is a console
        # error "Refused to ..."; our own pages must answer no error either.
        blocked, bad_responses = [], []
        page.on("console", lambda message: "Refused" in message.text and blocked.append(message.text))
        page.on(
            "response",
            lambda answer: answer.status >= 400 and answer.url.startswith(base) and bad_responses.append(answer.url),
        )

        page.goto(f"{base}/credits/")
        assert "handled securely by Square" in page.locator("main").inner_text()
        page.screenshot(path=str(SCREENSHOTS / f"square_credits_{width}.png"), full_page=True)
        page.get_by_role("button", name="Buy 25 credits").click()
        page.wait_for_url(f"{square.url}/checkout/*")
        page.get_by_role("button", name="Pay now").click()
        page.wait_for_url(f"{base}/credits/success/?*")

        assert square.deliveries == [200]
        assert page.get_by_test_id("checkout-status").inner_text() == "25 credits have been added to your balance."
        assert page.get_by_test_id("credits-balance").inner_text() == str(int(start + 25))
        page.screenshot(path=str(SCREENSHOTS / f"square_success_{width}.png"), full_page=True)
        assert blocked == [] and bad_responses == []

    payment = Payment.objects.get()
    assert (payment.provider, payment.status, payment.user_id) == ("square", Payment.Status.PAID, user.pk)
    assert CreditTransaction.objects.get(kind=CreditTransaction.Kind.PURCHASE).reference == payment.provider_session_id
    assert balance(user) == start + 25


def _stripe_delivers(base: str, *payloads: str) -> list[int]:
    """Stripe's webhook deliveries, signed, over HTTP to the live server (no database here)."""
    answers = []
    for payload in payloads:
        request = urllib.request.Request(
            f"{base}/api/payments/stripe/webhook",
            data=payload.encode(),
            headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answers.append(answer.status)
    return answers


def _hosted_page(route, title: str, back: str) -> None:
    """Stripe's hosted page (Checkout or the portal), as the browser gets it here: offline, so the
    test answers for Stripe, with a link back as Stripe's own button would take."""
    html = f'<!doctype html><html lang="en"><title>{title}</title><h1>{title}</h1><a href="{back}">Return</a></html>'
    route.fulfill(status=200, content_type="text/html", body=html)


@pytest.mark.parametrize("width", [375, 1280])
def test_it_subscribes_uses_the_plan_and_cancels_in_a_browser(settings, live_server, width):
    base = live_server.url
    configure_subscriptions(settings)
    user = UserFactory()
    subscription, customer = new_id("sub"), new_id("cus")
    delivered = []

    def checkout(route):
        now = int(time.time())
        delivered.extend(
            _stripe_delivers(
                base,
                checkout_completed(user, subscription=subscription, customer=customer),
                subscription_event(user, subscription=subscription, customer=customer, status="active"),
                invoice(user, subscription=subscription, customer=customer, start=now - 60),
            )
        )
        _hosted_page(route, "Stripe Checkout", f"{base}/credits/?subscribed=1")

    def portal(route):
        cancelled = subscription_event(
            user,
            subscription=subscription,
            customer=customer,
            status="canceled",
            kind="customer.subscription.deleted",
            created=int(time.time()) + 1,
        )
        delivered.extend(_stripe_delivers(base, cancelled))
        _hosted_page(route, "Stripe customer portal", f"{base}/accounts/profile/")

    with FakeStripe() as stripe_api, logged_in_page(base, user, width) as page:
        settings.STRIPE_API_BASE = stripe_api.url
        page.route("https://checkout.stripe.com/**", checkout)
        page.route("https://billing.stripe.com/**", portal)
        blocked = []
        page.on("console", lambda message: "Refused" in message.text and blocked.append(message.text))

        page.goto(f"{base}/credits/")
        page.screenshot(path=str(SCREENSHOTS / f"subscribe_credits_{width}.png"), full_page=True)
        page.get_by_role("button", name="Subscribe to unlimited").click()
        page.wait_for_url("https://checkout.stripe.com/**")
        page.get_by_role("link", name="Return").click()
        page.wait_for_url(f"{base}/credits/?subscribed=1")
        status = page.get_by_test_id("subscription-status").inner_text()
        assert "Your unlimited plan is active" in status, status
        assert page.get_by_role("button", name="Subscribe to unlimited").count() == 0
        assert page.get_by_test_id("subscribed-notice").count() == 0  # "starts as soon as..." is moot now
        page.screenshot(path=str(SCREENSHOTS / f"subscribed_credits_{width}.png"), full_page=True)

        page.goto(f"{base}/accounts/profile/")
        assert "Unlimited plan: active" in page.get_by_test_id("account-subscription").inner_text()
        page.screenshot(path=str(SCREENSHOTS / f"subscribed_account_{width}.png"), full_page=True)
        page.get_by_role("button", name="Manage subscription").click()
        page.wait_for_url("https://billing.stripe.com/**")
        page.get_by_role("link", name="Return").click()
        page.wait_for_url(f"{base}/accounts/profile/")
        assert "Unlimited plan: cancelled" in page.get_by_test_id("account-subscription").inner_text()
        assert blocked == []

    assert delivered == [200] * 4
    row = Subscription.objects.get()
    assert (row.user_id, row.status, row.covers_jobs) == (user.pk, Subscription.Status.CANCELED, False)
    modes = [request["form"].get("mode") for request in stripe_api.requests]
    assert modes == ["subscription", None]  # the checkout, then the portal session
