"""Debian's Chromium for the browser tests and benchmarks, and what they read off the job page's mixer."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Without the background calls this offline machine would refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The mixer starts playing without a click (the tests' and benchmarks' pages are driven, not clicked).
AUTOPLAY_ARG = "--autoplay-policy=no-user-gesture-required"
# How far the furthest stem is from the first (the mixer's clock), in seconds, read in one go.
MIXER_SPREAD_JS = """() => {
  const mixer = window.stemMixer;
  const clock = mixer.master.currentTime;
  return Math.max(...mixer.stems.map((stem) => Math.abs(stem.audio.currentTime - clock)));
}"""
MIXER_PLAYING_JS = "() => window.stemMixer.stems.every((stem) => !stem.audio.paused && !stem.audio.seeking)"
