"""Accepting a song: the one upload path behind the API and the pages.

A user, a file and options in; a charged, queued job out, or an UploadRefused saying why (the
HTTP layer maps it, separation/upload_errors.py). Nothing is charged or stored before the file has
been decoded whole: its true length sets the price and is held against MAX_DURATION_MINUTES,
whatever its headers claim.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts.selectors import user_needs_email_verification
from credits.subscriptions import subscription_covering
from separation import engine
from separation.catalog import SeparationModel, job_cost, model_get, models_list
from separation.models import Job
from separation.services import PreviewCut, job_create, previews_used_today
from separation.storage_quota import job_storage_estimate
from separation.upload_errors import (
    BadDuration,
    BadOption,
    EmailNotVerified,
    EmptyFile,
    IdempotencyKeyReused,
    NoFile,
    NotAudio,
    NotEnoughCredits,
    PreviewLimitReached,
    amount,
)
from separation.upload_gate import file_too_large, max_upload_bytes

MIN_DURATION_SECONDS = 1.0
# A free preview's length (or the whole song, when shorter).
PREVIEW_SECONDS = 30.0
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class JobOptions:
    model: str
    stems: str = "all"
    output_format: str = "wav"
    # A free preview of PREVIEW_SECONDS: from preview_start (seconds), or the loudest stretch.
    preview: bool = False
    preview_start: float | None = None


def job_options_validate(*, options: JobOptions) -> SeparationModel:
    """The requested model, or BadOption saying what is wrong with the options."""
    model = model_get(options.model)
    if model is None:
        names = ", ".join(model.name for model in models_list())
        raise BadOption(f"Unknown model {options.model!r}; choose one of: {names}.")
    if not model.installed:
        raise BadOption(f"The model {options.model!r} is not installed on this server.")
    if options.stems != "all" and options.stems not in model.stems:
        raise BadOption(
            f"The model {options.model!r} has no stem {options.stems!r}; "
            f"choose all or one of: {', '.join(model.stems)}."
        )
    if options.output_format not in Job.Format.values:
        raise BadOption(f"Unknown format {options.output_format!r}; choose one of: {', '.join(Job.Format.values)}.")
    return model


def upload_fingerprint(*, uploaded_file, options: JobOptions) -> str:
    """What an Idempotency-Key stands for: the file's bytes and the options."""
    digest = hashlib.sha256()
    uploaded_file.seek(0)
    while chunk := uploaded_file.read(HASH_CHUNK):
        digest.update(chunk)
    uploaded_file.seek(0)
    digest.update(f"\0{options.model}\0{options.stems}\0{options.output_format}".encode())
    if options.preview:  # appended only for previews: the keys of earlier paid uploads still match
        digest.update(f"\0preview\0{options.preview_start}".encode())
    return digest.hexdigest()


def too_long() -> BadDuration:
    return BadDuration(f"The song is longer than the {settings.MAX_DURATION_MINUTES}-minute limit.")


def audio_measure(*, path: Path) -> engine.AudioInfo:
    """Decode the file whole (stopping just past the longest song allowed) and check its length."""
    limit = settings.MAX_DURATION_MINUTES * 60
    try:
        audio = engine.probe_audio(path, max_seconds=limit)
    except engine.AudioTooLong:
        raise too_long() from None
    except engine.AudioDecodeError:
        raise NotAudio("This file is not audio we can read. Upload a WAV, MP3, FLAC or OGG file.") from None
    if audio.duration_seconds < MIN_DURATION_SECONDS:
        raise BadDuration(f"The audio is shorter than {MIN_DURATION_SECONDS:g} second.")
    return audio


def _earlier_job(*, user, idempotency_key: str, fingerprint: str) -> Job | None:
    if not idempotency_key:
        return None
    earlier = Job.objects.filter(user=user, idempotency_key=idempotency_key).first()
    if earlier is not None and earlier.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return earlier


def storage_estimate_for(*, input_bytes: int, audio: engine.AudioInfo, options: JobOptions, model) -> int:
    return job_storage_estimate(
        input_bytes=input_bytes,
        duration_seconds=audio.duration_seconds,
        samplerate=audio.samplerate,
        channels=audio.channels,
        stems=len(model.stems) if options.stems == "all" else 2,
        output_format=options.output_format,
    )


def _preview_create(*, user, uploaded_file, options: JobOptions, model, key: str, fingerprint: str) -> Job | None:
    """A free preview: the excerpt is cut from the decoded song into a file of its own (the worker
    never sees the rest), the song is kept for "Separate the full song"."""
    if previews_used_today(user=user) >= settings.PREVIEWS_PER_DAY:  # again under the lock
        raise PreviewLimitReached(limit=settings.PREVIEWS_PER_DAY)
    path = Path(uploaded_file.temporary_file_path())
    limit = settings.MAX_DURATION_MINUTES * 60
    try:
        plan = engine.excerpt_plan(
            path, seconds=PREVIEW_SECONDS, start_seconds=options.preview_start, max_seconds=limit
        )
        if plan.audio.duration_seconds < MIN_DURATION_SECONDS:
            raise BadDuration(f"The audio is shorter than {MIN_DURATION_SECONDS:g} second.")
        with tempfile.TemporaryDirectory(prefix="preview-") as folder:
            excerpt = Path(folder) / "excerpt.wav"
            audio = engine.excerpt_write(path, plan=plan, output=excerpt)
            return job_create(
                user=user,
                uploaded_file=uploaded_file,
                audio=audio,
                model=model,
                stem_mode=options.stems,
                output_format=options.output_format,
                idempotency_key=key,
                idempotency_fingerprint=fingerprint,
                storage_estimate=storage_estimate_for(
                    input_bytes=uploaded_file.size + excerpt.stat().st_size, audio=audio, options=options, model=model
                ),
                preview=PreviewCut(excerpt=excerpt, start_seconds=plan.start_seconds),
            )
    except engine.AudioTooLong:
        raise BadDuration(f"The song is longer than the {settings.MAX_DURATION_MINUTES}-minute limit.") from None
    except engine.AudioDecodeError:
        raise NotAudio("This file is not audio we can read. Upload a WAV, MP3, FLAC or OGG file.") from None


def upload_accept(*, user, uploaded_file, options: JobOptions, idempotency_key: str = "") -> tuple[Job, bool]:
    """Check an uploaded song and make its job: options, size, content and true duration, storage
    quota, then the job with its charge (queued once committed), or a free preview's job. Returns (job, created); an
    Idempotency-Key seen before with the same file and options gives the earlier job, with anything
    else IdempotencyKeyReused."""
    if user_needs_email_verification(user=user):
        raise EmailNotVerified()
    if uploaded_file is None:
        raise NoFile("Choose an audio file to upload (form field `file`) or give its address (`url`).")
    model = job_options_validate(options=options)
    if uploaded_file.size == 0:
        raise EmptyFile("The file is empty.")
    if uploaded_file.size > max_upload_bytes():
        raise file_too_large()
    fingerprint = upload_fingerprint(uploaded_file=uploaded_file, options=options) if idempotency_key else ""
    earlier = _earlier_job(user=user, idempotency_key=idempotency_key, fingerprint=fingerprint)
    if earlier is not None:
        return earlier, False
    if options.preview:
        job = _preview_create(
            user=user,
            uploaded_file=uploaded_file,
            options=options,
            model=model,
            key=idempotency_key,
            fingerprint=fingerprint,
        )
    else:
        cheapest = job_cost(model=model, duration_seconds=0)
        user.refresh_from_db(fields=["credits"])
        # The gate let it in for a preview; no decoding for nothing (a subscription may cover it).
        if user.credits < cheapest and subscription_covering(user_id=user.pk) is None:
            raise NotEnoughCredits(
                balance=user.credits,
                required=cheapest,
                message=(
                    f"Not enough credits: a song costs at least {amount(cheapest)} and you have {amount(user.credits)}."
                ),
            )
        audio = audio_measure(path=Path(uploaded_file.temporary_file_path()))
        job = job_create(
            user=user,
            uploaded_file=uploaded_file,
            audio=audio,
            model=model,
            stem_mode=options.stems,
            output_format=options.output_format,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=fingerprint,
            storage_estimate=storage_estimate_for(
                input_bytes=uploaded_file.size, audio=audio, options=options, model=model
            ),
        )
    if job is None:  # a concurrent request with this key made the job first
        earlier = _earlier_job(user=user, idempotency_key=idempotency_key, fingerprint=fingerprint)
        return earlier, False
    return job, True
