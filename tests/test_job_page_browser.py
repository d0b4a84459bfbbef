"""The job page in a real browser (Playwright driving Debian's Chromium) against the live server:
the mixer plays the stems together and keeps them within 20 ms after seeks (measured), mute,
solo and volume drive "Download this mix" (sample-exact against the stems), the keyboard alone
works it, it fits a 375 px screen; the status updates in place keeping focus and announcing the
end, and says "log in again" when the session ends."""

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.test import Client
from playwright.sync_api import sync_playwright

from separation.analysis import job_analyse
from separation.models import Job
from separation.services import job_fail, job_report_progress
from separation.tasks import separate_next_job
from testkit.audio import write_wav
from testkit.browser import AUTOPLAY_ARG, MIXER_PLAYING_JS, MIXER_SPREAD_JS
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("demo_model")]

SONG_SECONDS = 40
MAX_DRIFT_SECONDS = 0.020
SCREENSHOTS = Path("/tmp/stemfold-job-page")
LEVELS_JS = "() => window.stemMixer.stems.map((stem) => [stem.name, stem.audio.volume, stem.gain.value])"
WIDTH_JS = "() => document.documentElement.scrollWidth"


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API leaves an asyncio loop marked running in this thread, which Django's
    # guard takes for async code; these ORM calls are plain blocking calls between page steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=[*e2e.CHROMIUM_ARGS, AUTOPLAY_ARG])
        try:
            yield browser
        finally:
            browser.close()


def logged_in_page(browser, live_server, user, width=1280, height=900):
    client = Client()
    client.force_login(user)
    context = browser.new_context(accept_downloads=True, viewport={"width": width, "height": height})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def completed_job(tmp_path) -> Job:
    user = UserFactory()
    song = write_wav(tmp_path / "Browser Song.wav", SONG_SECONDS)
    job = make_job(user, "Browser Song.wav", content=song.read_bytes())
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    return job


def drift_after(page, settle_ms=500, samples=11) -> list[float]:
    """The stems' spread, sampled every 50 ms once they play again."""
    page.wait_for_function(MIXER_PLAYING_JS)
    page.wait_for_timeout(settle_ms)
    readings = []
    for _ in range(samples):
        readings.append(page.evaluate(MIXER_SPREAD_JS))
        page.wait_for_timeout(50)
    return readings


def test_it_plays_the_stems_together_and_downloads_the_mix_it_plays(browser, live_server, settings, tmp_path):
    job = completed_job(tmp_path)
    job_analyse(job_id=job.pk)
    page = logged_in_page(browser, live_server, job.user)
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/jobs/{job.pk}/")

    assert page.locator("#mixer audio[controls]").count() == 0  # one transport instead
    assert page.locator("#mixer audio").count() == 4
    for label in ("Drums", "Bass", "Other instruments", "Vocals"):
        assert page.get_by_role("slider", name=f"{label} volume").count() == 1
        assert page.get_by_role("link", name=f"Download {label.lower()}").count() == 1
    assert page.get_by_test_id("bpm").count() == 1 and page.get_by_test_id("key").count() == 1

    # The keyboard alone: Space plays, the arrows seek, back and forth.
    page.keyboard.press("Space")
    drifts = [drift_after(page)]
    for key in ["ArrowRight", "ArrowRight", "ArrowLeft", "ArrowRight", "ArrowLeft", "ArrowLeft"]:
        before = page.evaluate("() => window.stemMixer.master.currentTime")
        page.keyboard.press(key)
        page.wait_for_function(
            f"() => Math.abs(window.stemMixer.master.currentTime - {before}) > 2 && "
            "window.stemMixer.stems.every((s) => !s.audio.seeking)"
        )
        drifts.append(drift_after(page))
    # The seek bar: click a third of the way in, then two thirds.
    bar = page.locator("#mixer input.seek")
    box = bar.bounding_box()
    for fraction in (1 / 3, 2 / 3, 0.1):
        bar.click(position={"x": box["width"] * fraction, "y": box["height"] / 2})
        page.wait_for_function(f"() => Math.abs(window.stemMixer.master.currentTime - {fraction * SONG_SECONDS}) < 1.5")
        drifts.append(drift_after(page))
    medians = [float(np.median(readings)) for readings in drifts]
    print(f"\nMixer drift after each seek, median of 11 readings (ms): {[round(d * 1000, 1) for d in medians]}")
    print(f"Every reading (ms): {[[round(d * 1000, 1) for d in readings] for readings in drifts]}")
    assert max(medians) < MAX_DRIFT_SECONDS, drifts
    page.keyboard.press("Space")
    page.wait_for_function("() => window.stemMixer.stems.every((stem) => stem.audio.paused)")

    # Solo the drums and bass, mute the bass, turn the drums down: only the drums sound, at 0.5.
    page.get_by_role("button", name="Solo drums").click()
    page.get_by_role("button", name="Solo bass").click()
    page.get_by_role("button", name="Mute bass").click()
    page.get_by_role("slider", name="Drums volume").fill("0.5")
    levels = {name: (volume, gain) for name, volume, gain in page.evaluate(LEVELS_JS)}
    assert levels == {"drums": (0.5, "0.5"), "bass": (0, "0"), "other": (0, "0"), "vocals": (0, "0")}
    assert page.get_by_role("button", name="Mute bass").get_attribute("aria-pressed") == "true"

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download this mix").click()
    download = download_info.value
    assert download.suggested_filename == "Browser Song - mix.wav"
    mixed, _ = soundfile.read(io.BytesIO(Path(download.path()).read_bytes()), dtype="int16", always_2d=True)
    drums = soundfile.read(Path(settings.MEDIA_ROOT) / job.stem("drums")["file"], dtype="int16", always_2d=True)[0]
    assert np.array_equal(mixed, np.clip(np.rint(0.5 * drums.astype(np.float64)), -32768, 32767).astype(np.int16))
    assert errors == []

    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "desktop.png"), full_page=True)


def test_the_job_page_fits_a_phone_screen(browser, live_server, tmp_path):
    job = completed_job(tmp_path)
    job_analyse(job_id=job.pk)
    page = logged_in_page(browser, live_server, job.user, width=375, height=812)

    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.wait_for_function("() => window.stemMixer !== undefined")

    assert page.evaluate(WIDTH_JS) <= 375
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "phone.png"), full_page=True)


def test_the_status_updates_in_place_keeps_focus_and_announces_the_end(browser, live_server, tmp_path):
    job = make_job(UserFactory())
    page = logged_in_page(browser, live_server, job.user)
    status_requests = []
    page.on("request", lambda request: "/status/" in request.url and status_requests.append(time.monotonic()))
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    cancel = page.get_by_role("button", name="Cancel and refund")
    cancel.focus()

    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING, attempts=1)
    job_report_progress(job_id=job.pk, attempt=1, progress=37)
    page.wait_for_function("() => document.querySelector('#job-progress').value === 37")

    assert page.evaluate("() => document.activeElement.id") == "job-delete"
    assert page.get_by_test_id("progress").inner_text() == "37%"
    assert page.get_by_label("Separation progress").count() == 1

    job_fail(job_id=job.pk, attempt=1, error="The separation failed: bad luck. Your credits were refunded.")
    page.wait_for_function("() => document.querySelector('#job-status').dataset.status === 'FAILED'")
    page.wait_for_function("() => document.querySelector('#job-announcer').textContent !== ''")
    assert page.locator("#job-announcer").inner_text().startswith("The separation failed")
    # Focus stays in the status, on the control in the same place ("Delete files" now), not lost to <body>.
    assert page.evaluate("() => document.activeElement.id") == "job-delete"
    assert page.get_by_role("button", name="Delete files").count() == 1
    assert page.locator("#job-announcer").get_attribute("aria-live") == "polite"
    polled = len(status_requests)
    page.wait_for_timeout(2500)
    assert len(status_requests) == polled  # final: polling stopped


def test_it_says_log_in_again_when_the_session_ends(browser, live_server, tmp_path):
    job = make_job(UserFactory())
    page = logged_in_page(browser, live_server, job.user)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")

    page.context.clear_cookies()

    notice = page.get_by_test_id("session-ended")
    notice.wait_for()
    assert "Your session has ended" in notice.inner_text()
    link = page.get_by_role("link", name="Log in again")
    assert link.get_attribute("href") == f"/accounts/login/?next=/jobs/{job.pk}/"
    assert page.locator("#job-status").get_attribute("data-poll-url") is None
