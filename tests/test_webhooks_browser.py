"""The webhooks page in a real browser (Playwright driving Debian's Chromium) against the live
server: by keyboard, register an endpoint and copy its secret, see a delivery's attempts, resend
it; usable at 375 px (nothing wider than the screen). Screenshots in /tmp for a person to look at."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from standardwebhooks import Webhook

from separation.services import job_fail
from tests import e2e
from tests.factories import PASSWORD, UserFactory
from tests.jobs import make_job
from tests.threads import run_together
from tests.webhook_receiver import Receiver
from webhooks import tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path("/tmp")


@pytest.fixture
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def off_the_loop(work):
    """Database work from the test while Playwright's event loop runs in this thread (Django
    refuses the ORM there): done in a thread of its own."""
    [result] = run_together(work)
    if isinstance(result, BaseException):
        raise result
    return result


def a_failed_job_delivered(user) -> int:
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    return tasks.job_finished(str(job.pk))


def log_in(page, base, user):
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/dashboard/")


def test_it_manages_webhooks_by_keyboard_at_desktop_and_phone_widths(live_server, chromium, folders, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    base = live_server.url
    receiver = Receiver().start()
    user = off_the_loop(lambda: UserFactory(username="hooked"))
    try:
        page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        log_in(page, base, user)
        page.goto(f"{base}/accounts/profile/")
        page.get_by_role("link", name="webhook").click()
        page.wait_for_url(f"{base}/accounts/webhooks/")

        # By keyboard: the URL field by its label, an event box unticked with Space, submit with Enter.
        page.get_by_label("Endpoint URL").focus()
        page.keyboard.type(receiver.url)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.value") == "job.completed"
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.value") == "job.cancelled"
        page.keyboard.press("Space")
        page.get_by_label("Endpoint URL").press("Enter")
        page.wait_for_load_state()
        secret = page.get_by_label("Secret", exact=True).input_value()
        assert secret.startswith("whsec_")
        endpoint = page.get_by_test_id("endpoint")
        assert receiver.url in endpoint.inner_text() and "Active" in endpoint.inner_text()
        assert "job.cancelled" not in endpoint.inner_text()

        assert off_the_loop(lambda: a_failed_job_delivered(user)) == 1
        Webhook(secret).verify(receiver.received[0].body, receiver.received[0].headers)
        page.goto(f"{base}/accounts/webhooks/")
        delivery = page.get_by_test_id("delivery")
        assert "job.failed" in delivery.inner_text() and "Delivered" in delivery.inner_text()
        assert page.get_by_test_id("attempt").count() == 1
        page.screenshot(path=str(SCREENSHOTS / "webhooks_desktop.png"), full_page=True)

        page.get_by_role("button", name=f"Resend the job.failed delivery to {receiver.url}").click()
        page.wait_for_load_state()
        assert "will be sent again now" in page.locator(".messages").inner_text()
        assert off_the_loop(tasks.deliveries_send_due) == {"sent": 1, "succeeded": 1}
        page.reload()
        assert page.get_by_test_id("attempt").count() == 2
        assert len(receiver.received) == 2

        phone = chromium.new_context(viewport={"width": 375, "height": 812}).new_page()
        log_in(phone, base, user)
        phone.goto(f"{base}/accounts/webhooks/")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
        phone.screenshot(path=str(SCREENSHOTS / "webhooks_375.png"), full_page=True)
        phone.get_by_role("button", name=f"Delete {receiver.url}").click()
        phone.wait_for_load_state()
        assert "was deleted" in phone.locator(".messages").inner_text()
        assert phone.get_by_test_id("endpoint").count() == 0
    finally:
        receiver.stop()
