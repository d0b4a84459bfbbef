"""A custom mix of a completed job's stems, made on request and streamed (POST /api/jobs/<id>/mix
and the job page's "Download this mix"). Nothing is stored: the mix is summed and encoded while
it is sent (separation/engine/remix.py), outside any transaction."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

from separation.engine.encode import OUTPUT_FORMATS
from separation.engine.remix import remix_encoded
from separation.job_files import local_copies
from separation.models import Job

# A stem may be boosted up to 4x (+12 dB); the sum is clipped to 16 bits either way.
MAX_GAIN = 4.0


class MixRefused(Exception):
    """A mix that cannot be made; `status` is the HTTP status that says why."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Mix:
    chunks: Iterator[bytes]
    download_name: str
    output_format: str


def mix_gains(*, job: Job, gains: Mapping[str, object]) -> list[float]:
    """A gain for each of the job's stems, in its order: as given, 1 for a stem left out.
    Unknown stems, and gains that are not numbers from 0 to MAX_GAIN, are refused (400)."""
    unknown = sorted(set(gains) - set(job.stem_names))
    if unknown:
        raise MixRefused(f"This job has no stem {unknown[0]!r}; its stems: {', '.join(job.stem_names)}.", status=400)
    values = []
    for name in job.stem_names:
        gain = gains.get(name, 1.0)
        if isinstance(gain, bool) or not isinstance(gain, int | float) or not math.isfinite(gain):
            raise MixRefused(f"The gain of {name!r} must be a number.", status=400)
        if not 0 <= gain <= MAX_GAIN:
            raise MixRefused(f"The gain of {name!r} must be between 0 and {MAX_GAIN:g}.", status=400)
        values.append(float(gain))
    return values


def job_mix(*, job: Job, gains: Mapping[str, object], output_format: str | None = None) -> Mix:
    """The owner's mix of a completed job whose files are still there, in the job's format unless
    another is asked for. Raises MixRefused: 409 for a job not completed, 410 once its files
    were deleted, 400 for bad gains or format."""
    if job.status != Job.Status.COMPLETED:
        raise MixRefused(f"The job is not completed (status {job.status}).", status=409)
    if job.files_deleted_at is not None or not job.stems:
        raise MixRefused("The files of this job have been deleted.", status=410)
    output_format = output_format or job.output_format
    if output_format not in OUTPUT_FORMATS:
        raise MixRefused(f"The format must be one of {', '.join(OUTPUT_FORMATS)}.", status=400)
    values = mix_gains(job=job, gains=gains)
    names = [stem["file"] for stem in job.stems]
    copies = ExitStack()  # local files (copied from a bucket) kept until the mix is sent
    local = copies.enter_context(local_copies(names))
    if local is None:
        copies.close()
        raise MixRefused("The files of this job are no longer available.", status=410)

    def chunks():
        with copies:
            yield from remix_encoded([local[name] for name in names], values, output_format)

    return Mix(
        chunks=chunks(),
        download_name=f"{job.title} - mix.{output_format}",
        output_format=output_format,
    )
