"""A separation worker's run of one claimed job: the engine outside any transaction, every write
fenced by the run's attempt number, then completion with the files in place.

Each attempt writes its own folder (`stems-<attempt>`), and attempt numbers only grow, so a run
taken for dead (stalled, not killed) never shares a folder with the run that replaced it: its
progress reports and its completion are refused, and it removes only its own folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from monitoring import instruments
from separation import engine, job_files
from separation.analysis import analysis_enqueue
from separation.catalog import ensemble_parts
from separation.models import Job
from separation.notifications import notify_job_finished
from separation.services import engine_config, job_complete, job_fail, job_folder_path, job_report_progress
from separation.storage_quota import folder_bytes

logger = logging.getLogger(__name__)

WORKER_FAILURE = "The separation failed unexpectedly. Your credits were refunded; please try again."
STORAGE_FAILURE = "The service could not store your stems. Your credits were refunded; please try again."
# The engine decodes with the code that measured the upload; this only absorbs float rounding.
DURATION_SLACK_SECONDS = 1.0
HEARTBEAT_INTERVAL_SECONDS = 1.0


def through_database_outage(call, *, seconds: float = 60.0, pause: float = 2.0):
    """call(), tried again while the database is unreachable (PostgreSQL restarting), for up to
    `seconds`: a finished separation is worth the wait. Each try reconnects."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError):
            close_old_connections()
            if time.monotonic() >= deadline:
                raise
            logger.warning("The database is unavailable; trying again in %g s", pause)
            time.sleep(pause)


def _progress_reporter(job: Job):
    """The engine's progress callback: progress and the heartbeat at most once a second; raises
    SeparationAborted once the job is no longer this attempt's (cancelled, or taken for dead)."""
    last_report = 0.0

    def report(fraction: float) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < HEARTBEAT_INTERVAL_SECONDS:
            return
        last_report = now
        try:
            # Separation is most of the work; encoding and the zip take the last few percent.
            ours = job_report_progress(job_id=job.pk, attempt=job.attempts, progress=int(fraction * 95))
        except (OperationalError, InterfaceError):
            # PostgreSQL restarting must not cost a long separation: this heartbeat is skipped and
            # the next one reconnects. An outage longer than JOB_STALE_SECONDS hands the job to the reaper.
            logger.warning("Job %s could not record its progress: the database is unavailable", job.pk)
            close_old_connections()
            return
        if not ours:
            raise engine.SeparationAborted
        instruments.worker_heartbeat().set_to_current_time()

    return report


def job_run(*, job: Job) -> None:
    """Separate a job this worker has claimed (scheduling.job_claim_next), store and complete it."""
    media = Path(settings.MEDIA_ROOT)
    output_dir = job_folder_path(job.pk) / f"stems-{job.attempts}"
    fail = partial(job_fail, job_id=job.pk, attempt=job.attempts)
    scratch_remove = partial(
        job_files.scratch_remove, input_name=job.input_file, attempt=job.attempts, output_dir=output_dir
    )
    started = time.monotonic()
    if job.started_at:
        instruments.job_wait_seconds().observe((job.started_at - (job.enqueued_at or job.created_at)).total_seconds())
    logger.info(
        "Job %s started: attempt %d, %.1f s of audio, model %s", job.pk, job.attempts, job.duration_seconds, job.model
    )
    try:
        input_path = job_files.input_fetch(job.input_file, attempt=job.attempts)
    except job_files.StorageUnavailable as error:
        logger.error("Job %s: %s", job.pk, error)
        scratch_remove()
        if through_database_outage(partial(fail, error=STORAGE_FAILURE)):
            instruments.job_failures().labels(reason="storage_error").inc()
        return
    try:
        result = engine.separate(
            input_path=input_path,
            output_dir=output_dir,
            model_name=job.model,
            config=engine_config(),
            two_stems=None if job.stem_mode == "all" else job.stem_mode,
            output_format=job.output_format,
            progress=_progress_reporter(job),
            archive_name=job.title,
            max_seconds=job.duration_seconds + DURATION_SLACK_SECONDS,
            parts=ensemble_parts(job.model),
        )
    except engine.SeparationAborted:
        shutil.rmtree(output_dir, ignore_errors=True)
        scratch_remove()
        return
    except engine.EngineError as error:
        shutil.rmtree(output_dir, ignore_errors=True)
        scratch_remove()
        if through_database_outage(partial(fail, error=f"{error} Your credits were refunded.")):
            instruments.job_failures().labels(reason=_failure_reason(error)).inc()
        return
    except Exception:
        logger.exception("Separation of job %s failed", job.pk, extra={"job_id": job.pk})
        shutil.rmtree(output_dir, ignore_errors=True)
        scratch_remove()
        if through_database_outage(partial(fail, error=WORKER_FAILURE)):
            instruments.job_failures().labels(reason="worker_error").inc()
        return
    if result.model_loaded:  # the worker had not preloaded it (separation/worker_warmup.py)
        logger.info("Job %s loaded its model %r in worker pid %d", job.pk, job.model, os.getpid())

    try:
        job_files.outputs_store(output_dir)
    except job_files.StorageUnavailable as error:
        logger.error("Job %s: %s", job.pk, error)
        shutil.rmtree(output_dir, ignore_errors=True)
        scratch_remove()
        if through_database_outage(partial(fail, error=STORAGE_FAILURE)):
            instruments.job_failures().labels(reason="storage_error").inc()
        return

    stems = [
        {
            "name": name,
            "file": str(path.relative_to(media)),
            "waveform": str(result.waveforms[name].relative_to(media)),
        }
        for name, path in result.stems.items()
    ]
    completed = through_database_outage(
        partial(
            job_complete,
            job_id=job.pk,
            attempt=job.attempts,
            stems=stems,
            zip_file=str(result.zip_path.relative_to(media)),
            storage_bytes=folder_bytes(output_dir)
            + _file_bytes(input_path)
            + (job_files.stored_file_size(job.source_file) if job.source_file else 0),
        )
    )
    if not completed:
        # Cancelled or taken for dead while it wrote: only this run's own files go.
        shutil.rmtree(output_dir, ignore_errors=True)
        scratch_remove()
        if job_files.in_bucket():
            job_files.prefix_remove(f"{output_dir.relative_to(media)}/")
        return
    # This run won: what earlier runs taken for dead left behind goes (never before the win, when
    # the other run might be the one that completes).
    job_files.attempts_remove(job.pk, keep=output_dir)
    scratch_remove()
    elapsed = time.monotonic() - started
    logger.info("Job %s completed in %.1f s", job.pk, elapsed)
    instruments.separation_seconds_per_audio_second().labels(
        model=job.model, device=engine.resolve_device(settings.DEMUCS_DEVICE)
    ).observe(elapsed / max(job.duration_seconds, 0.001))
    notify_job_finished(job_id=job.pk)
    analysis_enqueue(job_id=job.pk)  # tempo and key, on the maintenance cluster: not this worker's time


def _failure_reason(error: engine.EngineError) -> str:
    if isinstance(error, engine.AudioDecodeError):
        return "undecodable_audio"
    if isinstance(error, engine.AudioTooLong):
        return "audio_too_long"
    if isinstance(error, engine.ModelUnavailable):
        return "model_unavailable"
    return "engine_error"


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
