"""Social login in a real browser (Playwright driving Debian's Chromium) against the live server
and the fake GitHub and Google providers on loopback (tests.fake_oauth): sign up with GitHub,
see the free credits, log in again with Google on the same verified address, and find both
connections on the account page; at phone and desktop widths, by keyboard."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests import e2e
from tests.fake_oauth import FakeOAuth, Person

SCREENSHOTS = Path("/tmp")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake(settings):
    with FakeOAuth() as fake:
        fake.configure(settings, "github", "google")
        yield fake


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.parametrize(("width", "height"), [(375, 740), (1280, 900)])
def test_it_signs_up_with_github_then_logs_in_with_google_in_a_browser(live_server, fake, browser, width, height):
    base = live_server.url
    assert base.startswith("http://localhost:"), base  # Secure cookies need a trustworthy origin
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(30_000)
    bad_responses, console_errors = [], []
    page.on("response", lambda response: response.status >= 400 and bad_responses.append(response.url))
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    fake.person = Person(uid="31337", login="ada-codes", email="ada@example.com")

    page.goto(f"{base}/accounts/login/")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(SCREENSHOTS / f"social_login_{width}.png"), full_page=True)
    github = page.get_by_role("button", name="Continue with GitHub")
    google = page.get_by_role("button", name="Continue with Google")
    assert github.is_visible() and google.is_visible()
    github.focus()  # by keyboard
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/dashboard/")

    assert page.get_by_test_id("balance").inner_text() == "3"
    assert page.get_by_text("3 free credits were added to your balance.").is_visible()
    page.goto(f"{base}/accounts/profile/")
    assert page.get_by_test_id("connection").inner_text().startswith("GitHub ada-codes")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base}/")

    # The same person through Google: the verified address leads to the same account.
    page.goto(f"{base}/accounts/signup/")
    page.get_by_role("button", name="Continue with Google").click()
    page.wait_for_url(f"{base}/dashboard/")
    assert page.get_by_test_id("balance").inner_text() == "3"
    page.goto(f"{base}/accounts/profile/")
    assert page.get_by_test_id("connection").all_inner_texts() == [
        "GitHub ada-codes\nDisconnect",
        "Google ada@example.com\nDisconnect",
    ]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(SCREENSHOTS / f"social_account_{width}.png"), full_page=True)

    assert [r["path"] for r in fake.requests if r["method"] == "GET" and "auth" in r["path"]] == [
        "/github/login/oauth/authorize",
        "/google/o/oauth2/v2/auth",
    ]
    assert bad_responses == [] and console_errors == []
