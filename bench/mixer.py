"""Mixer benchmark (issue 15): the job page's stems stay in sync after seeks and over a long
playback, and the browser's memory does not grow with the song's length.

    .venv/bin/python -m bench.mixer                          # 20 seeks, 10 minutes of play, memory
    .venv/bin/python -m bench.mixer --minutes 1 --skip-memory   # a quick look at the sync

One gunicorn serves the product (DEBUG off, static files collected as deploy/ does) on loopback,
with its own PostgreSQL database (`demucs_bench_mixer`, dropped after) and a temporary MEDIA_ROOT.
Two completed jobs are made through the ORM with four real stems each (a different tone per stem,
a one-second block repeated, written as 16-bit stereo wav, the product's default format): a
3-minute song and a 2-hour one (about 1.3 GB a stem). Playwright drives Debian's Chromium,
headless, allowed to autoplay; with no sound card it plays into a fake sink, whose clock runs in
real time.

1. Sync. The spread is how far the furthest stem's `currentTime` is from the first stem's (the
   mixer's clock), read in one JavaScript call. Seeks: the 3-minute job, `--seeks` jumps to
   seeded random places back and forth, each as the arrow keys and the seek bar make it
   (`stemMixer.seek`); once every stem plays again, a reading at once and one a second for
   `--after-seek` seconds. Playback: the 2-hour job played from the start for `--minutes`
   minutes, a reading a second. Goal: under 20 ms.
2. Memory. A fresh browser per job: the page plays, then seeks to ten places spread over the
   whole song and plays a few seconds at each. Sampled every second: the resident memory (VmRSS
   from /proc) of the page's renderer process (the biggest renderer) and of every Chromium
   process together, and the page's JavaScript heap (CDP Performance.getMetrics). Goal: the
   2-hour song costs about what the 3-minute one does.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from bench.web import Site, command_line, django_setup, drop_database, fresh_database, gunicorn, manage  # noqa: E402
from testkit.audio import SAMPLERATE, png_bytes  # noqa: E402
from testkit.browser import AUTOPLAY_ARG, CHROMIUM, CHROMIUM_ARGS, MIXER_PLAYING_JS, MIXER_SPREAD_JS  # noqa: E402
from testkit.figures import percentile  # noqa: E402
from testkit.servers import collect_static, server_env  # noqa: E402

DATABASE = "demucs_bench_mixer"
SECRET_KEY = "bench-mixer-" + "x" * 40
STEMS = ("drums", "bass", "other", "vocals")
GOAL_MS = 20.0
STATE_JS = """() => window.stemMixer.stems.map((stem) => ({
  paused: stem.audio.paused, seeking: stem.audio.seeking, readyState: stem.audio.readyState,
  networkState: stem.audio.networkState, error: stem.audio.error && stem.audio.error.message,
  currentTime: stem.audio.currentTime, duration: stem.audio.duration}))"""
CLOCK_JS = "() => window.stemMixer.master.currentTime"


# --- the jobs -------------------------------------------------------------------------------


def write_stem(path: Path, seconds: int, frequency: float) -> None:
    """A stereo tone as a 16-bit wav: one second made once and written `seconds` times (2 hours
    in about a second a stem, with no 2 hours in memory)."""
    t = np.arange(SAMPLERATE) / SAMPLERATE
    block = 0.25 * np.stack([np.sin(2 * np.pi * frequency * t), np.sin(2 * np.pi * 1.5 * frequency * t)], axis=1)
    with soundfile.SoundFile(path, "w", samplerate=SAMPLERATE, channels=2, subtype="PCM_16", format="WAV") as out:
        for _ in range(seconds):
            out.write(block)


def make_job(user, media: Path, *, seconds: int, title: str):
    from django.utils import timezone

    from separation.models import Job, job_folder

    job_id = uuid.uuid4()
    folder = media / job_folder(job_id)
    folder.mkdir(parents=True)
    stems = []
    for index, name in enumerate(STEMS):
        write_stem(folder / f"{name}.wav", seconds, 110.0 * (index + 1))
        (folder / f"{name}.png").write_bytes(png_bytes((1000, 120)))
        stems.append(
            {"name": name, "file": f"{job_folder(job_id)}/{name}.wav", "waveform": f"{job_folder(job_id)}/{name}.png"}
        )
    return Job.objects.create(
        id=job_id,
        user=user,
        original_filename=f"{title}.wav",
        model="demo",
        cost=1,
        duration_seconds=float(seconds),
        status=Job.Status.COMPLETED,
        progress=100,
        stems=stems,
        analysis={"error": "not measured in the bench"},  # no tempo/key polling beside the player
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )


def prepare(root: Path, *, long_seconds: int) -> tuple[Site, str, str, str]:
    """The server's environment, a user's session cookie, the short and the long job's ids."""
    for folder in ("media", "tmp", "logs", "data", "static"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    env = server_env(
        DATABASE_URL=fresh_database(DATABASE),
        DJANGO_SETTINGS_MODULE="demucs_service.settings",
        DEBUG="0",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        SESSION_COOKIE_SECURE="0",  # plain http on loopback
        CSRF_COOKIE_SECURE="0",
        MEDIA_ROOT=str(root / "media"),
        DATA_DIR=str(root / "data"),
        STATIC_ROOT=str(root / "static"),
        EMAIL_VERIFICATION="none",
        TMPDIR=str(root / "tmp"),
        LOG_LEVEL="WARNING",
    )
    manage(env, "migrate", "--noinput")
    collect_static(root / "static", env)
    django_setup(env)

    from django.test import Client

    from accounts.models import User
    from accounts.services import user_save_new

    user = user_save_new(user=User(username="bench", email="bench@example.com"))
    short = make_job(user, root / "media", seconds=180, title="Three minutes")
    long = make_job(user, root / "media", seconds=long_seconds, title="Two hours")
    client = Client()
    client.force_login(user)
    return Site(root=root, env=env), client.cookies["sessionid"].value, str(short.pk), str(long.pk)


# --- the browser ----------------------------------------------------------------------------


def open_job(playwright, url: str, session: str, *, extra_args: tuple[str, ...] = ()):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, AUTOPLAY_ARG, *extra_args]
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    base = url.split("/jobs/")[0]  # the cookie's path is the URL's: the site's root, for the stems too
    context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_function("() => window.stemMixer !== undefined")
    return browser, page


def play(page) -> None:
    page.evaluate("() => { window.stemMixer.play(); }")
    wait_playing(page)


def wait_playing(page) -> None:
    try:
        page.wait_for_function(MIXER_PLAYING_JS, timeout=30_000)
    except Exception:
        print("not playing:", page.evaluate(STATE_JS), flush=True)
        raise


def seek(page, seconds: float) -> None:
    page.evaluate(f"() => {{ window.stemMixer.seek({seconds}); }}")
    page.wait_for_function(f"() => Math.abs(window.stemMixer.master.currentTime - {seconds}) < 1", timeout=30_000)
    wait_playing(page)


def chromium_processes() -> dict[int, str]:
    """pid -> command line of every Chromium process under this one (Playwright's driver starts it)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    mine, grew = {os.getpid()}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in mine} - mine
        grew = bool(found)
        mine |= found
    result = {}
    for pid in mine:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "chromium" in command.split(" ")[0]:
            result[pid] = command
    return result


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_sample(cdp) -> tuple[float, float, float]:
    """(renderer RSS, all Chromium RSS, JS heap used), MiB."""
    processes = chromium_processes()
    renderers = [rss_mib(pid) for pid, command in processes.items() if "--type=renderer" in command]
    total = sum(rss_mib(pid) for pid in processes)
    metrics = {item["name"]: item["value"] for item in cdp.send("Performance.getMetrics")["metrics"]}
    return max(renderers, default=0.0), total, metrics["JSHeapUsedSize"] / 2**20


# --- the measurements -------------------------------------------------------------------------


def spread_after_seeks(page, *, seeks: int, after: int, duration: float, seed: int = 15) -> tuple[list, list]:
    """(the reading at once after each seek, every reading), ms."""
    rng = random.Random(seed)
    play(page)
    first, readings = [], []
    for index in range(seeks):
        at = page.evaluate(CLOCK_JS)
        # Back and forth: every other seek goes back.
        target = rng.uniform(0, at) if index % 2 and at > 5 else rng.uniform(at, duration - 20)
        seek(page, round(target, 3))
        first.append(1000 * page.evaluate(MIXER_SPREAD_JS))
        readings.append(first[-1])
        for _ in range(after):
            page.wait_for_timeout(1000)
            readings.append(1000 * page.evaluate(MIXER_SPREAD_JS))
    return first, readings


def spread_over_playback(page, cdp, *, minutes: float) -> tuple[list, list]:
    """(every reading in ms, memory samples), one a second from the start."""
    play(page)
    readings, memory = [], []
    start = time.monotonic()
    while time.monotonic() - start < 60 * minutes:
        readings.append(1000 * page.evaluate(MIXER_SPREAD_JS))
        memory.append(memory_sample(cdp))
        page.wait_for_timeout(1000)
    return readings, memory


def memory_while_playing(page, cdp, *, duration: float, seconds_each: int = 5) -> list[tuple[float, float, float]]:
    play(page)
    samples = []
    for place in range(10):
        seek(page, round(duration * (place + 0.5) / 10, 1))
        for _ in range(seconds_each):
            page.wait_for_timeout(1000)
            samples.append(memory_sample(cdp))
    return samples


def summary(readings: list[float]) -> str:
    return (
        f"max {max(readings):.1f} ms, p95 {percentile(readings, 0.95):.1f} ms, "
        f"median {percentile(readings, 0.5):.1f} ms ({len(readings)} readings)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeks", type=int, default=20)
    parser.add_argument("--after-seek", type=int, default=3, help="seconds read after each seek")
    parser.add_argument("--minutes", type=float, default=10, help="playback measured (0: none)")
    parser.add_argument("--long-minutes", type=int, default=120, help="length of the long song")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every sync reading")
    parser.add_argument("--chromium-arg", action="append", default=[], help="e.g. --chromium-arg=--mute-audio")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="bench-mixer-"))
    rows, notes = [], []
    loads = [os.getloadavg()[0]]
    try:
        site, session, short, long = prepare(root, long_seconds=60 * args.long_minutes)
        # Playwright's sync API leaves an asyncio loop running in this thread; the ORM is done.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        with gunicorn(site, workers=2, threads=4, name="mixer") as (_, port), sync_playwright() as playwright:
            base = f"http://127.0.0.1:{port}"
            extra = tuple(args.chromium_arg)
            browser, page = open_job(playwright, f"{base}/jobs/{short}/", session, extra_args=extra)
            first, readings = spread_after_seeks(page, seeks=args.seeks, after=args.after_seek, duration=180)
            if args.verbose:
                print("after seeks (ms):", [round(value, 1) for value in readings])
            browser.close()
            loads.append(os.getloadavg()[0])
            rows.append(("sync: at once after each seek", f"3 min, {args.seeks} seeks", summary(first)))
            rows.append((f"sync: seeks, then 1/s for {args.after_seek} s", "3 min", summary(readings)))
            if args.minutes:
                browser, page = open_job(playwright, f"{base}/jobs/{long}/", session, extra_args=extra)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                played, memory = spread_over_playback(page, cdp, minutes=args.minutes)
                if args.verbose:
                    print("playback (ms):", [round(value, 1) for value in played])
                clock = page.evaluate(CLOCK_JS)
                browser.close()
                loads.append(os.getloadavg()[0])
                rows.append(
                    (f"sync: playback, 1/s for {args.minutes:g} min", f"{args.long_minutes} min", summary(played))
                )
                notes.append(f"the clock reached {clock:.1f} s after {60 * args.minutes:.0f} s of wall time")
                rows.append(
                    memory_row(
                        f"memory: over the {args.minutes:g}-minute playback", memory, song=f"{args.long_minutes} min"
                    )
                )
            if not args.skip_memory:
                for job, minutes in ((short, 3), (long, args.long_minutes)):
                    browser, page = open_job(playwright, f"{base}/jobs/{job}/", session, extra_args=extra)
                    cdp = page.context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    rows.append(
                        memory_row(
                            "memory: 10 seeks, 5 s at each",
                            memory_while_playing(page, cdp, duration=60 * minutes),
                            song=f"{minutes} min",
                        )
                    )
                    browser.close()
                    loads.append(os.getloadavg()[0])
    finally:
        drop_database(DATABASE)
        shutil.rmtree(root, ignore_errors=True)
    print_rows(
        rows,
        notes + [f"load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} cores"],
    )


def memory_row(what: str, samples: list[tuple[float, float, float]], song: str = "") -> tuple[str, str, str]:
    renderer, total, heap = zip(*samples, strict=True)
    figure = (
        f"renderer RSS peak {max(renderer):.0f} MiB (first {renderer[0]:.0f}, last {renderer[-1]:.0f}); "
        f"all Chromium peak {max(total):.0f} MiB; JS heap peak {max(heap):.1f} MiB"
    )
    return what, song or "long", figure


def print_rows(rows: list[tuple[str, str, str]], notes: list[str]) -> None:
    header = ("measurement", "song", "figure")
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(2)]
    print("\nMixer: sync and memory (goal: spread < 20 ms; memory of a 2-hour song ~ a 3-minute one)")
    for row in [header, ("-" * widths[0], "-" * widths[1], "-" * 6), *rows]:
        print(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
    for note in notes:
        print(f"note: {note}")
    print(f"command: {command_line('bench.mixer')}")


if __name__ == "__main__":
    main()
