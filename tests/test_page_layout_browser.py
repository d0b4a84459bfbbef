"""The pages in Chromium: nothing overflows sideways at 375 px (dashboard, credits ledger, home,
log-in) and the header stays inside the screen; a skip link leads the keyboard to the content;
status badges meet WCAG AA contrast; the model select shows its whole label at 1280 px; times are
shown in the reader's own time zone, with its name."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from accounts.models import User
from credits.services import credits_admin_grant
from separation.models import Job
from separation.services import job_cancel
from tests import e2e
from tests.factories import PASSWORD, UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path("/tmp/f15b-screens")
Status = Job.Status

CONTRAST_JS = """(elements) => elements.map((element) => {
  const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = (css) => {
    const [r, g, b] = css.match(/[0-9.]+/g).map(Number);
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const style = getComputedStyle(element);
  const [a, b] = [luminance(style.color), luminance(style.backgroundColor)].sort((x, y) => y - x);
  return [element.textContent.trim(), (a + 0.05) / (b + 0.05)];
})"""
HEADER_JS = """() => Array.from(document.querySelectorAll('.site-header a, .site-header button'))
  .map((element) => [element.textContent.trim(), element.getBoundingClientRect().right])"""
LABEL_FITS_JS = """(select) => {
  const style = getComputedStyle(select);
  const context = document.createElement('canvas').getContext('2d');
  context.font = style.font;
  const text = context.measureText(select.selectedOptions[0].textContent.trim()).width;
  return [text, select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)];
}"""


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls are plain sync calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def customer(demo_model, admin_user):
    """An account with jobs in every state, one with a long name, and a long ledger."""
    user = UserFactory(username="a_rather_long_username_for_a_phone")
    credits_admin_grant(user=user, amount=20, reason="Thank you for testing", granted_by=admin_user, request_token="t")
    names = ["A very long song title that goes on and on (extended live remix) 2026 final.wav", "b.wav", "c.wav"]
    jobs = [make_job(user, name) for name in [*names, "d.wav", "e.wav"]]
    Job.objects.filter(pk=jobs[1].pk).update(status=Status.PROCESSING, attempts=1, progress=40)
    Job.objects.filter(pk=jobs[2].pk).update(status=Status.COMPLETED)
    Job.objects.filter(pk=jobs[3].pk).update(status=Status.FAILED)
    job_cancel(job=jobs[4])
    return user


def open_as(browser, base: str, user, *, width: int, timezone_id: str = "UTC"):
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id=timezone_id, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    if user is not None:
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", user.username)
        page.fill("input[name=password]", PASSWORD)
        page.locator("main form button[type=submit]").click()
        page.wait_for_url(f"{base}/dashboard/")
    return page


def test_it_fits_the_pages_in_a_phone_screen(live_server, browser, customer):
    page = open_as(browser, live_server.url, customer, width=375)
    SCREENSHOTS.mkdir(exist_ok=True)
    for path in ("/dashboard/", "/credits/"):
        page.goto(f"{live_server.url}{path}")
        page.screenshot(path=str(SCREENSHOTS / f"phone{path.rstrip('/').replace('/', '-')}.png"), full_page=True)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375, path
        for name, right in page.evaluate(HEADER_JS):
            assert right <= 375, (path, name, right)
    anonymous = open_as(browser, live_server.url, None, width=375)
    for path in ("/", "/accounts/login/", "/accounts/signup/"):
        anonymous.goto(f"{live_server.url}{path}")
        assert anonymous.evaluate("() => document.documentElement.scrollWidth") <= 375, path
        for name, right in anonymous.evaluate(HEADER_JS):
            assert right <= 375, (path, name, right)


def test_it_leads_the_keyboard_past_the_header(live_server, browser, customer):
    page = open_as(browser, live_server.url, customer, width=1280)

    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "Skip to content"
    page.keyboard.press("Enter")

    assert page.evaluate("() => document.activeElement.id") == "main"


def test_it_gives_status_badges_aa_contrast(live_server, browser, customer):
    page = open_as(browser, live_server.url, customer, width=1280)

    badges = page.locator("#job-list .status").evaluate_all(CONTRAST_JS)

    assert {name for name, _ in badges} == {"Waiting", "Separating", "Done", "Failed", "Cancelled"}
    for name, ratio in badges:
        assert ratio >= 4.5, (name, ratio)


def test_it_shows_the_whole_model_label(live_server, browser, customer):
    page = open_as(browser, live_server.url, customer, width=1280)
    page.screenshot(path=str(SCREENSHOTS / "desktop-dashboard.png"), full_page=True)

    text, room = page.locator("#id_model").evaluate(LABEL_FITS_JS)

    assert text <= room, (text, room)


def test_it_shows_times_in_the_readers_zone(live_server, browser, customer):
    page = open_as(browser, live_server.url, customer, width=1280, timezone_id="Asia/Tokyo")

    uploaded = page.locator("#job-list time").first.inner_text()
    ledger_page = page.goto(f"{live_server.url}/credits/")
    assert ledger_page.ok
    ledger = page.locator("table.ledger time").first.inner_text()

    for shown in (uploaded, ledger):
        assert shown.endswith("GMT+9"), shown
    assert User.objects.get(pk=customer.pk).credits > 0
