"""Buying in a real browser (Playwright driving Debian's Chromium) against the live server and a
fake payment provider on loopback: the credits page's button, the provider's hosted checkout, the
signed notification it sends, and the way back to our success page."""

from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import sync_playwright

from credits.models import CreditTransaction, Payment
from tests import e2e
from tests.conftest import balance
from tests.factories import UserFactory
from tests.square import WEBHOOK_PATH, FakeSquare, configure_square

SCREENSHOTS = Path("/tmp")

pytestmark = pytest.mark.django_db(transaction=True)


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
