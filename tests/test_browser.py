"""A real browser (Playwright driving Debian's Chromium) against the live server and a real
qcluster worker: sign up, upload, watch the progress bar, play and download the stems."""

import io
import re
import time
import zipfile
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import sync_playwright

from testkit.audio import write_wav
from tests import e2e

STEMS = {"drums", "bass", "other", "vocals"}
# The demo model separates about 10 s of audio per second of CPU on an idle 2-core machine:
# a 20 s clip is done within one or two of the page's 1 s polls, too fast to see the bar move.
SONG_SECONDS = 60
SCREENSHOT = Path("/tmp/job_page.png")

STATUS_JS = """() => {
  const section = document.querySelector('#job-status');
  const bar = document.querySelector('#job-progress');
  return [section ? section.dataset.status : null, bar ? bar.value : null];
}"""
# Reload the element, wait for its metadata, return its duration.
AUDIO_DURATION_JS = """(audio) => new Promise((resolve, reject) => {
  audio.addEventListener('loadedmetadata', () => resolve(audio.duration), {once: true});
  audio.addEventListener('error', () => reject(new Error('audio error ' + (audio.error && audio.error.code))),
                         {once: true});
  audio.load();
})"""
IMAGE_WIDTH_JS = """(img) => img.complete ? img.naturalWidth : new Promise((resolve) => {
  img.addEventListener('load', () => resolve(img.naturalWidth), {once: true});
  img.addEventListener('error', () => resolve(0), {once: true});
})"""

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_it_signs_up_uploads_and_plays_the_stems_in_a_browser(live_server, cluster_factory, browser_page, tmp_path):
    page = browser_page
    base = live_server.url
    # DEBUG is off, so cookies are Secure: Chromium keeps them over plain http only for a
    # potentially trustworthy origin such as localhost (the live server's default host).
    assert base.startswith("http://localhost:"), base
    cluster_factory()
    bad_responses, console_errors = [], []
    page.on("response", lambda response: response.status >= 400 and bad_responses.append(response.url))
    page.on("console", lambda message: message.type == "error" and console_errors.append(message))

    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=email]", "browser@example.com")
    page.fill("input[name=username]", "browser_user")
    page.fill("input[name=password1]", "a-long-browser-password-42")
    page.fill("input[name=password2]", "a-long-browser-password-42")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/dashboard/")
    session = [cookie for cookie in page.context.cookies() if cookie["name"] == "sessionid"]
    assert session and session[0]["secure"], page.context.cookies()
    assert page.get_by_test_id("balance").inner_text() == "0"  # the bonus waits for the address
    link = re.search(r"/accounts/confirm-email/[^\s\"<>]+/", mail.outbox[-1].body).group(0)
    page.goto(f"{base}{link}")
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()
    page.goto(f"{base}/dashboard/")
    assert page.get_by_test_id("balance").inner_text() == "3"

    song = write_wav(tmp_path / "browser song.wav", SONG_SECONDS)
    page.set_input_files("#id_file", str(song))
    with page.expect_response(lambda response: response.url.endswith("/static/js/poll.js")) as script:
        page.get_by_role("button", name="Upload and separate").click()
        page.wait_for_url(f"{base}/jobs/*/")
    assert script.value.status == 200, "poll.js did not load: the progress bar could not move"
    started = time.monotonic()
    assert page.get_by_test_id("balance").inner_text() == "2"
    assert page.locator("h1.job-title").inner_text() == song.name

    seen = []
    deadline = time.monotonic() + 180
    while True:
        status, progress = page.evaluate(STATUS_JS)
        seen.append((status, progress))
        if status not in ("PENDING", "PROCESSING"):
            break
        assert time.monotonic() < deadline, f"the job page never finished: {seen[-5:]}"
        page.wait_for_timeout(100)
    print(f"\nBrowser: upload redirected -> page shows {status}: {time.monotonic() - started:.1f} s")
    assert status == "COMPLETED", page.locator("#job-status").inner_text()
    values = sorted({progress for state, progress in seen if state in ("PENDING", "PROCESSING")})
    print(f"Progress bar values seen: {values}")
    assert len(values) >= 2, f"the progress bar never moved: {values}"
    assert any(0 < value < 100 for value in values), values

    audios = page.locator("#job-status audio")
    assert audios.count() == len(STEMS)
    assert {
        name
        for name in page.locator("#job-status article.stem").evaluate_all(
            "(stems) => stems.map((stem) => stem.dataset.stem)"
        )
    } == STEMS
    for index in range(audios.count()):
        audio = audios.nth(index)
        src = audio.evaluate("(audio) => audio.src")  # absolute
        reply = page.context.request.get(src)
        assert reply.status == 200, src
        assert reply.headers["content-type"].startswith("audio/"), reply.headers
        duration = audio.evaluate(AUDIO_DURATION_JS)
        assert abs(duration - SONG_SECONDS) < 0.1, (src, duration)

    waveforms = page.locator("#job-status img.waveform")
    assert waveforms.count() == len(STEMS)
    for index in range(waveforms.count()):
        assert waveforms.nth(index).evaluate(IMAGE_WIDTH_JS) > 0

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all stems (zip)").click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == "browser song - stems.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as bundle:
        assert bundle.testzip() is None
        assert sorted(name.rsplit("/", 1)[-1] for name in bundle.namelist()) == sorted(f"{s}.wav" for s in STEMS)

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert bad_responses == []
    # The site has no favicon: Chromium's automatic /favicon.ico request is the one 404 allowed.
    errors = [
        (m.text, m.location.get("url"))
        for m in console_errors
        if not m.location.get("url", "").endswith("/favicon.ico")
    ]
    assert errors == []
