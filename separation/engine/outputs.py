"""The files a separation leaves: each written under a temporary name and renamed when whole, all
removed again on failure, and the stems' zip, deflating only what is worth it."""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

ZIP_BLOCK_BYTES = 1 << 22
# Past this an entry's sizes need zip64 records (and force_zip64 must be said before writing).
ZIP64_THRESHOLD = (1 << 31) - (1 << 26)
DEFLATE_PROBES = 8
DEFLATE_PROBE_BYTES = 1 << 17
DEFLATE_WORTH_RATIO = 0.7


class Outputs:
    """Files written through temporary names in one folder; all removed again on failure."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.created: list[Path] = []

    def temp_path(self, final: Path) -> Path:
        handle, name = tempfile.mkstemp(dir=self.folder, prefix=".partial-", suffix=f"-{final.name}")
        os.close(handle)
        os.chmod(name, 0o644)  # mkstemp makes it private; the web server may run as another user
        path = Path(name)
        self.created.append(path)
        return path

    def commit(self, temp: Path, final: Path) -> Path:
        os.replace(temp, final)
        self.created.remove(temp)
        self.created.append(final)
        return final

    def discard(self, temp: Path) -> None:
        temp.unlink(missing_ok=True)
        self.created.remove(temp)

    def remove_all(self) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        self.created.clear()


def safe_archive_name(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\:]+", "_", name or "").strip(" .")
    return name[:120] or "stems"


def _worth_deflating(path: Path) -> bool:
    """Whether a stem compresses well enough to deflate it in the zip: judged on a few slices.
    Music in 16-bit PCM deflates by about 5% at 56 MB/s (not worth the time on a GPU worker);
    silence and near-silence (a stem the song hardly has) by over 99%."""
    import zlib

    size = path.stat().st_size
    with open(path, "rb") as file:
        sample = b""
        for index in range(DEFLATE_PROBES):
            file.seek(size * index // DEFLATE_PROBES)
            sample += file.read(DEFLATE_PROBE_BYTES)
    return bool(sample) and len(zlib.compress(sample, 1)) < DEFLATE_WORTH_RATIO * len(sample)


def write_zip(temp: Path, stem_paths: dict[str, Path], *, folder: str, tick: Callable[[float], None]) -> None:
    """The stems in one zip, copied in blocks (tick(fraction) after each, as the job's heartbeat).
    WAV stems that compress well are deflated; the others (and mp3/flac) are stored."""
    total = sum(path.stat().st_size for path in stem_paths.values()) or 1
    done = 0
    with zipfile.ZipFile(temp, "w", allowZip64=True) as bundle:
        for path in stem_paths.values():
            size = path.stat().st_size
            # open() takes the method and level of the archive's current settings for the next entry.
            deflate = path.suffix == ".wav" and _worth_deflating(path)
            bundle.compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            bundle.compresslevel = 1 if deflate else None
            entry = bundle.open(f"{folder}/{path.name}", "w", force_zip64=size > ZIP64_THRESHOLD)
            with open(path, "rb") as source, entry as target:
                while block := source.read(ZIP_BLOCK_BYTES):
                    target.write(block)
                    done += len(block)
                    tick(done / total)
