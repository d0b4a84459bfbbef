"""A small, real filesystem to fill: a tmpfs mounted for the test (the tests run as root, as CI
does), so "the disk is full" is the kernel's ENOSPC, not a stand-in."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_disk(path: Path, *, kilobytes: int):
    """`path` (created) is a tmpfs of `kilobytes` until the block ends."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
