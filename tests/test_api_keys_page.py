"""The API keys page in a real browser (Chromium), by keyboard, at phone and desktop widths: make a
key, see it once, use it against the live server, revoke it."""

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import sync_playwright

from tests import e2e
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp")
# How far the page sticks out sideways (0: it fits the viewport).
OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def api_status(base: str, key: str, path: str = "/api/auth/me") -> int:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Api-Key {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.django_db(transaction=True)
def test_it_makes_shows_once_and_revokes_a_key_in_a_browser(live_server):
    user = UserFactory()
    django_client = Client()
    django_client.force_login(user)
    session = django_client.cookies[django_settings.SESSION_COOKIE_NAME]
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            for width, height in ((375, 800), (1280, 900)):
                context = browser.new_context(viewport={"width": width, "height": height})
                context.add_cookies([{"name": session.key, "value": session.value, "url": base}])
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(f"{base}/accounts/profile/")
                page.get_by_role("link", name="API key").click()
                assert page.url == f"{base}/accounts/keys/"

                # By keyboard: the name field, then the expiry, then the button.
                page.get_by_label("Name", exact=True).focus()
                page.keyboard.type(f"phone {width}")
                page.keyboard.press("Tab")
                page.keyboard.press("ArrowDown")  # "In 30 days"
                page.keyboard.press("Tab")
                page.keyboard.press("Enter")
                page.wait_for_selector("[data-testid=new-key]")
                key = page.get_by_label("Key", exact=True).input_value()
                assert "." in key and len(key) > 30
                assert page.evaluate(OVERFLOW_JS) <= 0, f"the page scrolls sideways at {width} px"
                page.screenshot(path=str(SCREENSHOTS / f"api_keys_{width}.png"), full_page=True)
                assert api_status(base, key) == 200

                page.goto(f"{base}/accounts/keys/")  # shown once: not on the next visit
                assert key not in page.content()
                row = page.locator("[data-testid=api-key-row]", has_text=f"phone {width}")
                assert row.count() == 1
                row.get_by_role("button", name=f"Revoke the key phone {width}").focus()
                page.keyboard.press("Enter")
                page.wait_for_selector("text=it no longer works")
                assert api_status(base, key) == 401
                context.close()
        finally:
            browser.close()
    # The keys made by the page were the user's, and both are revoked.
    assert list(user.api_keys.values_list("revoked", flat=True)) == [True, True]
