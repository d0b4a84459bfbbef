"""The dashboard's uploads in Chromium (Playwright) against the live server: several songs dropped
at once, each priced from its length before it is sent and shown with the balance after, each its
own job with its own progress; a slow upload shows the bytes and time left and can be cancelled
with nothing charged; a song the balance cannot pay for is not sent at all."""

import base64
import time
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from accounts.models import User
from separation.models import Job
from testkit.audio import write_wav
from tests import e2e
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path("/tmp/f15b-screens")

DROP_JS = """([form, files]) => {
  const transfer = new DataTransfer();
  for (const [name, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, {type: 'audio/wav'}));
  }
  form.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # plain synchronous calls, made between the browser's steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def log_in(browser, base: str, user, width: int = 1280):
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/dashboard/")
    return page


def wav(tmp_path: Path, name: str, seconds: float) -> tuple[str, str]:
    path = write_wav(tmp_path / name, seconds)
    return name, base64.b64encode(path.read_bytes()).decode()


def test_it_uploads_dropped_songs_each_as_its_own_job_with_price_and_balance(
    live_server, browser, demo_model, tmp_path
):
    user = UserFactory()
    page = log_in(browser, live_server.url, user)
    assert page.get_by_test_id("balance").inner_text() == "3"

    page.evaluate(
        DROP_JS,
        [
            page.locator("[data-upload-form]").element_handle(),
            [wav(tmp_path, "one.wav", 3), wav(tmp_path, "two.wav", 4)],
        ],
    )

    items = page.locator("#upload-list li")
    page.wait_for_function("() => document.querySelectorAll('#upload-list li a').length === 2")
    assert items.count() == 2
    assert [items.nth(i).locator(".upload-name").inner_text() for i in range(2)] == ["one.wav", "two.wav"]
    page.wait_for_function("() => document.querySelector('[data-testid=balance]').textContent === '1'")
    # The two uploads run side by side: either may be created first.
    assert sorted(Job.objects.filter(user=user).values_list("original_filename", flat=True)) == ["one.wav", "two.wav"]
    assert User.objects.get(pk=user.pk).credits == Decimal(1)
    page.wait_for_function("() => document.querySelectorAll('#job-list tbody tr').length === 2")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-uploads-desktop.png"), full_page=True)


def test_it_refuses_before_sending_a_song_the_balance_cannot_pay(live_server, browser, demo_model, tmp_path):
    user = UserFactory()
    User.objects.filter(pk=user.pk).update(credits=1)
    page = log_in(browser, live_server.url, user, width=375)
    requests = []
    page.on("request", lambda request: request.url.endswith("/api/upload") and requests.append(request))

    page.evaluate(
        DROP_JS,
        [
            page.locator("[data-upload-form]").element_handle(),
            [wav(tmp_path, "paid.wav", 3), wav(tmp_path, "unpaid.wav", 3)],
        ],
    )

    second = page.locator("#upload-list li").nth(1)
    second.get_by_text("not uploaded").wait_for()
    assert "1 credit, but your balance is 0 credits" in second.inner_text()
    page.wait_for_function("() => document.querySelectorAll('#upload-list li a[href*=\"/jobs/\"]').length === 1")
    assert len(requests) == 1
    assert [job.original_filename for job in Job.objects.filter(user=user)] == ["paid.wav"]
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    page.screenshot(path=str(SCREENSHOTS / "dashboard-uploads-phone.png"), full_page=True)
    assert overflow <= 375


def test_it_shows_bytes_and_time_left_and_cancels_an_upload(live_server, browser, demo_model, tmp_path):
    user = UserFactory()
    page = log_in(browser, live_server.url, user)
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 400 * 1024},
    )

    page.set_input_files("#id_file", str(write_wav(tmp_path / "long.wav", 120)))
    page.get_by_role("button", name="Upload and separate").click()

    row = page.locator("#upload-list li").first
    row.get_by_text("s left").wait_for()
    text = row.locator(".upload-status").inner_text()
    assert " MB of " in text, text
    progress = row.locator("progress")
    assert (
        0
        < float(progress.get_attribute("value") or progress.evaluate("(bar) => bar.value"))
        < float(progress.evaluate("(bar) => bar.max"))
    )
    row.get_by_role("button", name="Cancel the upload of long.wav").click()
    row.get_by_text("Cancelled: nothing was charged.").wait_for()
    time.sleep(1)
    assert not Job.objects.filter(user=user).exists()
    assert User.objects.get(pk=user.pk).credits == Decimal(3)
    assert page.get_by_test_id("balance").inner_text() == "3"


def test_it_previews_a_dropped_song_free_then_separates_it_whole(live_server, browser, demo_model, tmp_path):
    user = UserFactory()
    page = log_in(browser, live_server.url, user)
    page.get_by_label("Free preview: separate 30 seconds only").check()

    page.evaluate(
        DROP_JS,
        [
            page.locator("[data-upload-form]").element_handle(),
            [wav(tmp_path, "first.wav", 3), wav(tmp_path, "second.wav", 3)],
        ],
    )

    page.wait_for_function("() => document.querySelectorAll('#upload-list li a').length === 2")
    previews = Job.objects.filter(user=user)
    assert [(job.is_preview, job.cost) for job in previews] == [(True, 0), (True, 0)]
    assert page.get_by_test_id("balance").inner_text() == "3"
    page.locator("#upload-list li").first.get_by_role("link", name="Preview queued: open it").click()
    page.wait_for_url(f"{live_server.url}/jobs/*/")
    page.get_by_role("button", name="Separate the full song").click()
    page.wait_for_url(lambda url: "/jobs/" in url and "full-song" not in url)

    full = Job.objects.get(user=user, is_preview=False)
    assert page.url.endswith(f"/jobs/{full.pk}/")
    assert full.cost == 1 and page.get_by_test_id("balance").inner_text() == "2"
    SCREENSHOTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 375, "height": 900})
    page.goto(f"{live_server.url}/jobs/{full.preview_of.pk}/")
    page.screenshot(path=str(SCREENSHOTS / "preview-page-phone.png"), full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
