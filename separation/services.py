"""Every write to a job's state: creation with its charge, progress, completion, failure with
its refund, cancellation, file deletion and an operator's refund or requeue. Which job a worker
claims is separation/scheduling.py; the worker's run, separation/worker.py; the reaper and the
cleanup, separation/maintenance.py.

Lock order: a job's row, then (inside the ledger service) its owner's row. Nothing slow
(Demucs, file I/O) runs inside a transaction.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from credits.services import InsufficientCredits, credits_refund_job
from credits.subscriptions import job_charge_or_cover, subscription_may_cover
from monitoring import instruments
from separation import engine
from separation.catalog import SeparationModel, job_cost
from separation.filenames import display_filename, storage_extension
from separation.job_files import in_bucket, job_files_remove, stored_file_exists, stored_file_size
from separation.models import Job, job_folder
from separation.notifications import notify_job_finished
from separation.scheduling import queue_token_enqueue, slot_freed
from separation.storage_quota import storage_check
from separation.upload_errors import (
    DISK_FULL,
    NotEnoughCredits,
    PreviewLimitReached,
    QueueUnavailable,
    ServerStorageFull,
    ServerStorageUnavailable,
)
from webhooks.events import webhooks_job_finished

logger = logging.getLogger(__name__)
Status = Job.Status


def engine_config() -> engine.EngineConfig:
    return engine.EngineConfig(
        model_repo=settings.DEMUCS_MODEL_REPO,
        device=settings.DEMUCS_DEVICE,
        shifts=settings.DEMUCS_SHIFTS,
        overlap=settings.DEMUCS_OVERLAP,
        segment=settings.DEMUCS_SEGMENT,
        workers=settings.SEPARATION_WORKERS,
        backend=settings.DEMUCS_BACKEND,
        precision=settings.DEMUCS_PRECISION,
        batch=settings.DEMUCS_BATCH,
        onnx_cache=settings.DEMUCS_ONNX_CACHE,
    )


def job_folder_path(job_id) -> Path:
    return Path(settings.MEDIA_ROOT) / job_folder(job_id)


@dataclass(frozen=True)
class PreviewCut:
    """A free preview's input: the excerpt (a temporary WAV cut from the decoded song) and where
    in the song it starts."""

    excerpt: Path
    start_seconds: float


class FullSongExists(Exception):
    """The preview's full song was separated already, as `job_id`."""

    def __init__(self, *, job_id):
        super().__init__(f"The full song is job {job_id}")
        self.job_id = job_id


def job_create(
    *,
    user,
    uploaded_file,
    audio: engine.AudioInfo,
    model: SeparationModel,
    stem_mode: str,
    output_format: str,
    idempotency_key: str = "",
    idempotency_fingerprint: str = "",
    storage_estimate: int = 0,
    preview: PreviewCut | None = None,
    full_song_of: Job | None = None,
) -> Job | None:
    """Store the upload, then create the job and charge it in one transaction that also holds the
    owner's storage quota, and queue it once committed. None when a concurrent request with the
    same Idempotency-Key created its job first. Raises NotEnoughCredits, StorageQuotaExceeded or
    ServerStorageFull, with nothing stored or charged.

    With `preview`, a free preview: the excerpt is its input and the upload is kept as its source
    (PreviewLimitReached past PREVIEWS_PER_DAY). With `full_song_of`, the paid job of a preview's
    song, made once per preview (FullSongExists names the one made before)."""
    cost = Decimal(0) if preview else job_cost(model=model, duration_seconds=audio.duration_seconds)
    user.refresh_from_db(fields=["credits"])
    if user.credits < cost and not subscription_may_cover(user_id=user.pk, seconds=audio.duration_seconds):
        # Checked again under the lock by the charge; this spares storing a file for nothing.
        raise NotEnoughCredits(balance=user.credits, required=cost)

    job_id = uuid.uuid4()
    filename = display_filename(uploaded_file.name or "")
    source = ""
    try:
        if preview is not None:
            source = default_storage.save(f"{job_folder(job_id)}/source{storage_extension(filename)}", uploaded_file)
            with open(preview.excerpt, "rb") as excerpt:
                stored = default_storage.save(f"{job_folder(job_id)}/input.wav", File(excerpt))
        else:
            stored = default_storage.save(f"{job_folder(job_id)}/input{storage_extension(filename)}", uploaded_file)
    except Exception as error:
        job_files_remove(job_id)  # what a full disk or a failed transfer left half-written
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            logger.error("No room to store an upload in MEDIA_ROOT (%s)", error)
            raise ServerStorageFull() from error
        if in_bucket():
            logger.error("The bucket did not take an upload: %s", error)
            raise ServerStorageUnavailable() from error
        raise
    try:
        with transaction.atomic():
            # The owner's row first, as the ledger locks it: concurrent uploads see each other's bytes.
            if full_song_of is not None:  # the preview's row before the owner's, as everywhere
                made = Job.objects.select_for_update().values_list("full_song_job", flat=True).get(pk=full_song_of.pk)
                if made is not None:
                    raise FullSongExists(job_id=made)
            get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
            if preview is not None:
                _preview_limit_check(user=user)
            storage_check(user=user, needed=storage_estimate)
            job = Job.objects.create(
                id=job_id,
                user=user,
                original_filename=filename,
                input_file=stored,
                model=model.name,
                stem_mode=stem_mode,
                output_format=output_format,
                cost=cost,
                duration_seconds=audio.duration_seconds,
                idempotency_key=idempotency_key,
                idempotency_fingerprint=idempotency_fingerprint,
                attempt_budget=settings.JOB_MAX_ATTEMPTS,
                storage_bytes=storage_estimate,
                is_preview=preview is not None,
                preview_start_seconds=preview.start_seconds if preview else None,
                source_file=source,
            )
            balance = job_charge_or_cover(job=job).transaction.balance_after if cost else None
            if full_song_of is not None:
                Job.objects.filter(pk=full_song_of.pk).update(full_song_job=job)
            transaction.on_commit(partial(_job_enqueue_or_fail, job.pk))
    except InsufficientCredits as short:
        job_files_remove(job_id)
        raise NotEnoughCredits.from_ledger(short) from None
    except IntegrityError:
        job_files_remove(job_id)
        if idempotency_key:  # a concurrent retry with the same key won the race
            return None
        raise
    except BaseException:
        job_files_remove(job_id)
        raise
    # The balance the charge left, so the answer needs no query after the commit (the database
    # may be gone by then; the job is charged and must be answered as accepted).
    if balance is not None:
        user.credits = balance
    return job


def previews_used_today(*, user) -> int:
    """Free previews `user` started in the last 24 hours (cancelled and failed ones count too)."""
    since = timezone.now() - timedelta(days=1)
    return Job.objects.filter(user=user, is_preview=True, created_at__gte=since).count()


def _preview_limit_check(*, user) -> None:
    # Under the owner's lock: concurrent previews of one account count each other.
    if previews_used_today(user=user) >= settings.PREVIEWS_PER_DAY:
        raise PreviewLimitReached(limit=settings.PREVIEWS_PER_DAY)


def job_enqueue(*, job_id) -> None:
    """A token for the scheduler (separation/scheduling.py), on behalf of this job."""
    queue_token_enqueue()
    Job.objects.filter(pk=job_id).update(enqueued_at=timezone.now())


def _job_enqueue_or_fail(job_id) -> None:
    """Runs once the job and its charge are committed. A queue that refuses the job fails it with
    its refund (the upload answers 503: nothing happened). A database lost meanwhile leaves it
    PENDING and charged, answered as accepted: the reaper queues it (JOB_REQUEUE_SECONDS)."""
    try:
        job_enqueue(job_id=job_id)
    except (OperationalError, InterfaceError):
        logger.warning("Job %s was not queued (database unavailable); the reaper will queue it", job_id)
        return
    except Exception as error:
        logger.exception("Could not queue job %s", job_id, extra={"job_id": job_id})
        try:
            # Free the key: a retry with it must make a new job, not return this failed one.
            Job.objects.filter(pk=job_id).update(idempotency_key="")
            if job_fail(
                job_id=job_id, error="The service could not start your separation. Your credits were refunded."
            ):
                instruments.job_failures().labels(reason="queue_unavailable").inc()
        except (OperationalError, InterfaceError):
            logger.warning("Job %s was neither queued nor failed (database unavailable); the reaper will", job_id)
            return
        raise QueueUnavailable() from error


def job_report_progress(*, job_id, attempt: int, progress: int) -> bool:
    """Save progress and the heartbeat; False when the job is no longer this attempt's to run
    (cancelled, or given to another worker after this one was taken for dead)."""
    updated = Job.objects.filter(pk=job_id, status=Status.PROCESSING, attempts=attempt).update(
        progress=min(max(progress, 0), 99), heartbeat_at=timezone.now()
    )
    return updated == 1


def job_complete(*, job_id, attempt: int, stems: list[dict], zip_file: str, storage_bytes: int) -> bool:
    """PROCESSING -> COMPLETED for this attempt only, once its files are in place."""
    completed = Job.objects.filter(pk=job_id, status=Status.PROCESSING, attempts=attempt).update(
        status=Status.COMPLETED,
        progress=100,
        stems=stems,
        zip_file=zip_file,
        finished_at=timezone.now(),
        storage_bytes=storage_bytes,
    )
    if completed:
        slot_freed()
        webhooks_job_finished(job_id=job_id)  # queued after the commit, sent by the maintenance cluster
    return completed == 1


def job_fail(*, job_id, error: str, attempt: int | None = None) -> Job | None:
    """An active job -> FAILED with a message for its owner, and its refund (once). A worker
    passes its attempt, so a run taken for dead cannot fail the run that replaced it. The upload
    stays (an operator may requeue it) and counts against the owner's storage until it expires."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status not in Job.ACTIVE or (attempt is not None and job.attempts != attempt):
            return None
        was_running = job.status == Status.PROCESSING
        job.status = Status.FAILED
        job.error = error[:500]
        job.finished_at = timezone.now()
        job.storage_bytes = _input_bytes(job)
        job.save(update_fields=["status", "error", "finished_at", "storage_bytes"])
        if job.cost:  # a free preview has nothing to give back
            credits_refund_job(job=job, reason="the separation failed")
        if was_running:
            slot_freed()
    notify_job_finished(job_id=job.pk)  # after the commit; a mail failure never undoes the refund
    webhooks_job_finished(job_id=job.pk)
    return job


def _input_bytes(job: Job) -> int:
    """The upload's bytes, and a preview's whole song."""
    return sum(stored_file_size(name) for name in (job.input_file, job.source_file) if name)


def job_cancel(*, job: Job) -> Job:
    """The owner's DELETE: an active job is cancelled and refunded (its worker stops at its next
    progress report); any job's files are deleted. The job and its ledger rows stay."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in Job.ACTIVE:
            if job.status == Status.PROCESSING:
                slot_freed()
            job.status = Status.CANCELLED
            job.error = "Cancelled."
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
            if job.cost:  # a free preview has nothing to give back
                credits_refund_job(job=job, reason="cancelled")
            webhooks_job_finished(job_id=job.pk)
    job_delete_files(job=job)
    return job


def job_delete_files(*, job: Job) -> None:
    # The row first: a download from now on gets 410, never a file vanishing under it.
    Job.objects.filter(pk=job.pk).update(
        stems=[], zip_file="", input_file="", source_file="", files_deleted_at=timezone.now(), storage_bytes=0
    )
    job_files_remove(job.pk)
    job.refresh_from_db()


def job_refund_by_admin(*, job: Job, admin) -> bool:
    """An operator's refund; False when the job had been refunded already."""
    if not job.cost:  # a free preview
        return False
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        refund = credits_refund_job(job=job, reason="refunded by support", refunded_by=admin)
        return refund is not None and refund.created


def job_requeue(*, job: Job) -> bool:
    """An operator's retry of a failed job whose input is still stored. It runs free: its refund
    stands, and a second failure refunds nothing more. Attempt numbers go on from where they are
    (a run of the first try that is only stalled must never share a number, a folder or a fence
    with the retry): the retry gets JOB_MAX_ATTEMPTS more."""
    if not stored_file_exists(job.input_file):
        return False
    requeued = Job.objects.filter(pk=job.pk, status=Status.FAILED).update(
        status=Status.PENDING,
        attempt_budget=F("attempts") + settings.JOB_MAX_ATTEMPTS,
        progress=0,
        error="",
        started_at=None,
        finished_at=None,
    )
    if requeued:
        transaction.on_commit(partial(job_enqueue, job_id=job.pk))
    return bool(requeued)
