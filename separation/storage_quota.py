"""What a user keeps stored, and the quota (STORAGE_QUOTA_MB) it must stay under.

Each job counts its bytes in `Job.storage_bytes`: while it waits or runs, the upload plus an upper
bound of what the separation writes (the temporary float32 stems, the encoded stems, the zip);
once it ends, what is really on disk; nothing once its files are deleted. A new upload is refused
when the user's total plus its own estimate would pass the quota.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import Sum

from separation.engine import MAX_OUTPUT_SAMPLERATE
from separation.models import Job
from separation.upload_errors import StorageQuotaExceeded

MB = 1024 * 1024
# Bytes per sample of each stem while a job runs: its float32 temporary file, the encoded file
# and its copy in the zip (16-bit PCM for wav, at most that for flac).
TEMPORARY_BYTES_PER_SAMPLE = 4
ENCODED_BYTES_PER_SAMPLE = {"wav": 2, "flac": 2}
MP3_BYTES_PER_SECOND = 320_000 // 8


def storage_quota_bytes() -> int:
    return settings.STORAGE_QUOTA_MB * MB


def storage_used_bytes(*, user) -> int:
    return Job.objects.filter(user=user).aggregate(total=Sum("storage_bytes"))["total"] or 0


def storage_use(*, user) -> dict:
    """What the dashboard shows: bytes used, the quota, and where the meter turns to a warning."""
    used, quota = storage_used_bytes(user=user), storage_quota_bytes()
    return {"used": used, "quota": quota, "high": int(quota * 0.9), "percent": min(100, round(100 * used / quota))}


def job_storage_estimate(
    *, input_bytes: int, duration_seconds: float, samplerate: int, channels: int, stems: int, output_format: str
) -> int:
    """An upper bound of a job's bytes on disk while it runs (the engine writes stems at the input's
    rate, at most MAX_OUTPUT_SAMPLERATE, mono or stereo)."""
    rate = min(samplerate, MAX_OUTPUT_SAMPLERATE)
    samples = int(duration_seconds * rate + 1) * (1 if channels == 1 else 2)
    if output_format == "mp3":
        encoded = int(duration_seconds * MP3_BYTES_PER_SECOND + 1)
    else:
        encoded = samples * ENCODED_BYTES_PER_SAMPLE[output_format]
    return input_bytes + stems * (samples * TEMPORARY_BYTES_PER_SAMPLE + 2 * encoded)


def storage_check(*, user, needed: int) -> None:
    """Refuse when the user's stored bytes plus `needed` pass the quota (needed=1: when it is full).
    Callers that must not race a concurrent upload hold the user's row lock."""
    used = storage_used_bytes(user=user)
    quota = storage_quota_bytes()
    if used + needed <= quota:
        return
    if needed <= 1:
        message = f"Your storage is full ({_size(used)} of {_size(quota)})."
    else:
        message = (
            f"This song needs about {_size(needed)} of storage while it is separated, "
            f"and you use {_size(used)} of {_size(quota)}."
        )
    raise StorageQuotaExceeded(
        f"{message} Delete the files of jobs you no longer need on the dashboard, or wait for them to be "
        f"deleted after {settings.JOB_RETENTION_DAYS} days.",
        used_bytes=used,
        quota_bytes=quota,
        needed_bytes=needed,
    )


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it does not exist)."""
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue  # removed meanwhile
    return total


def _size(count: int) -> str:
    if count >= 1024 * MB:
        return f"{count / (1024 * MB):.1f} GB"
    return f"{count / MB:.0f} MB"
