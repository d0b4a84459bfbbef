"""Every write to a job: creation with its charge, the worker's claim, progress, completion,
failure with its refund, cancellation, and the scheduled reaper and cleanup.

Lock order: a job's row, then (inside the ledger service) its owner's row. Nothing slow
(Demucs, file I/O) runs inside a transaction.
"""

import logging
import shutil
import time
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from credits.services import InsufficientCredits, credits_charge_job, credits_refund_job
from separation import engine
from separation.catalog import SeparationModel, job_cost
from separation.models import Job, job_folder
from separation.notifications import notify_job_finished
from separation.uploads import display_filename, storage_extension

logger = logging.getLogger(__name__)
Status = Job.Status

WORKER_FAILURE = "The separation failed unexpectedly. Your credits were refunded; please try again."
WORKER_LOST = "The separation was interrupted on our side. Your credits were refunded; please try again."


class QueueUnavailable(Exception):
    """The task queue could not take the job; it was failed and refunded."""


def engine_config() -> engine.EngineConfig:
    return engine.EngineConfig(
        model_repo=settings.DEMUCS_MODEL_REPO,
        device=settings.DEMUCS_DEVICE,
        shifts=settings.DEMUCS_SHIFTS,
        overlap=settings.DEMUCS_OVERLAP,
        segment=settings.DEMUCS_SEGMENT,
        workers=settings.SEPARATION_WORKERS,
    )


def job_folder_path(job_id) -> Path:
    return Path(settings.MEDIA_ROOT) / job_folder(job_id)


def job_create(
    *,
    user,
    uploaded_file,
    audio: engine.AudioInfo,
    model: SeparationModel,
    stem_mode: str,
    output_format: str,
    idempotency_key: str = "",
) -> tuple[Job, bool]:
    """Store the upload, create the job and charge it in one transaction, and queue it once
    committed. Returns (job, created); with an Idempotency-Key seen before, the earlier job."""
    if idempotency_key:
        existing = Job.objects.filter(user=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    cost = job_cost(model=model, duration_seconds=audio.duration_seconds)
    user.refresh_from_db(fields=["credits"])
    if user.credits < cost:
        # Checked again under the lock by the charge; this spares storing a file for nothing.
        raise InsufficientCredits(balance=user.credits, required=cost)

    job_id = uuid.uuid4()
    filename = display_filename(uploaded_file.name or "")
    stored = default_storage.save(f"{job_folder(job_id)}/input{storage_extension(filename)}", uploaded_file)
    try:
        with transaction.atomic():
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
            )
            charge = credits_charge_job(job=job)
            transaction.on_commit(partial(_job_enqueue_or_fail, job.pk))
    except (InsufficientCredits, IntegrityError):
        shutil.rmtree(job_folder_path(job_id), ignore_errors=True)
        if idempotency_key:  # a concurrent retry with the same key won the race
            existing = Job.objects.filter(user=user, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing, False
        raise
    # The balance the charge left, so the answer needs no query after the commit (the database
    # may be gone by then; the job is charged and must be answered as accepted).
    user.credits = charge.transaction.balance_after
    return job, True


def job_enqueue(*, job_id) -> None:
    async_task("separation.tasks.separate_job", str(job_id), task_name=f"separate-{job_id}", group="separation")
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
            job_fail(job_id=job_id, error="The service could not start your separation. Your credits were refunded.")
        except (OperationalError, InterfaceError):
            logger.warning("Job %s was neither queued nor failed (database unavailable); the reaper will", job_id)
            return
        raise QueueUnavailable("The job queue is unavailable; please try again in a moment.") from error


def job_claim(*, job_id) -> Job | None:
    """PENDING -> PROCESSING as a compare-and-set: a redelivered or duplicate task gets None."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Status.PENDING, attempts__lt=settings.JOB_MAX_ATTEMPTS).update(
        status=Status.PROCESSING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        progress=0,
        error="",
    )
    return Job.objects.get(pk=job_id) if claimed else None


def job_report_progress(*, job_id, attempt: int, progress: int) -> bool:
    """Save progress and the heartbeat; False when the job is no longer this attempt's to run
    (cancelled, or given to another worker after this one was taken for dead)."""
    updated = Job.objects.filter(pk=job_id, status=Status.PROCESSING, attempts=attempt).update(
        progress=min(max(progress, 0), 99), heartbeat_at=timezone.now()
    )
    return updated == 1


def job_complete(*, job_id, attempt: int, stems: list[dict], zip_file: str) -> bool:
    completed = Job.objects.filter(pk=job_id, status=Status.PROCESSING, attempts=attempt).update(
        status=Status.COMPLETED, progress=100, stems=stems, zip_file=zip_file, finished_at=timezone.now()
    )
    return completed == 1


def job_fail(*, job_id, error: str, attempt: int | None = None) -> Job | None:
    """An active job -> FAILED with a message for its owner, and its refund (once). A worker
    passes its attempt, so a run taken for dead cannot fail the run that replaced it."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status not in Job.ACTIVE or (attempt is not None and job.attempts != attempt):
            return None
        job.status = Status.FAILED
        job.error = error[:500]
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        credits_refund_job(job=job, reason="the separation failed")
    notify_job_finished(job_id=job.pk)  # after the commit; a mail failure never undoes the refund
    return job


def job_cancel(*, job: Job) -> Job:
    """The owner's DELETE: an active job is cancelled and refunded (its worker stops at its next
    progress report); any job's files are deleted. The job and its ledger rows stay."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in Job.ACTIVE:
            job.status = Status.CANCELLED
            job.error = "Cancelled."
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "error", "finished_at"])
            credits_refund_job(job=job, reason="cancelled")
    job_delete_files(job=job)
    return job


def job_delete_files(*, job: Job) -> None:
    # The row first: a download from now on gets 410, never a file vanishing under it.
    Job.objects.filter(pk=job.pk).update(stems=[], zip_file="", input_file="", files_deleted_at=timezone.now())
    shutil.rmtree(job_folder_path(job.pk), ignore_errors=True)
    job.refresh_from_db()


def job_refund_by_admin(*, job: Job, admin) -> bool:
    """An operator's refund; False when the job had been refunded already."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        return credits_refund_job(job=job, reason="refunded by support", refunded_by=admin).created


def job_requeue(*, job: Job) -> bool:
    """An operator's retry of a failed job whose input is still stored. It runs free: its
    refund stands, and a second failure refunds nothing more."""
    if not job.input_file or not default_storage.exists(job.input_file):
        return False
    requeued = Job.objects.filter(pk=job.pk, status=Status.FAILED).update(
        status=Status.PENDING, attempts=0, progress=0, error="", started_at=None, finished_at=None
    )
    if requeued:
        transaction.on_commit(partial(job_enqueue, job_id=job.pk))
    return bool(requeued)


def _through_database_outage(call, *, seconds: float = 60.0, pause: float = 2.0):
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


def job_run(*, job_id) -> None:
    """The worker's whole job: claim, separate outside any transaction, store, complete."""
    job = _through_database_outage(partial(job_claim, job_id=job_id))
    if job is None:
        return
    # Each attempt writes its own folder: a run taken for dead never touches its successor's files.
    output_dir = job_folder_path(job.pk) / f"stems-{job.attempts}"
    last_report = 0.0

    def report(fraction: float) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < 1.0:
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

    try:
        result = engine.separate(
            input_path=Path(settings.MEDIA_ROOT) / job.input_file,
            output_dir=output_dir,
            model_name=job.model,
            config=engine_config(),
            two_stems=None if job.stem_mode == "all" else job.stem_mode,
            output_format=job.output_format,
            progress=report,
            archive_name=job.title,
        )
    except engine.SeparationAborted:
        shutil.rmtree(output_dir, ignore_errors=True)
        return
    except engine.EngineError as error:
        shutil.rmtree(output_dir, ignore_errors=True)
        _through_database_outage(
            partial(job_fail, job_id=job.pk, error=f"{error} Your credits were refunded.", attempt=job.attempts)
        )
        return
    except Exception:
        logger.exception("Separation of job %s failed", job.pk, extra={"job_id": job.pk})
        shutil.rmtree(output_dir, ignore_errors=True)
        _through_database_outage(partial(job_fail, job_id=job.pk, error=WORKER_FAILURE, attempt=job.attempts))
        return

    media = Path(settings.MEDIA_ROOT)
    stems = [
        {
            "name": name,
            "file": str(path.relative_to(media)),
            "waveform": str(result.waveforms[name].relative_to(media)),
        }
        for name, path in result.stems.items()
    ]
    zip_file = str(result.zip_path.relative_to(media))
    completed = _through_database_outage(
        partial(job_complete, job_id=job.pk, attempt=job.attempts, stems=stems, zip_file=zip_file)
    )
    if not completed:
        shutil.rmtree(output_dir, ignore_errors=True)  # cancelled while the files were written
        return
    for earlier in job_folder_path(job.pk).glob("stems-*"):  # what runs taken for dead left behind
        if earlier != output_dir:
            shutil.rmtree(earlier, ignore_errors=True)
    notify_job_finished(job_id=job.pk)


def jobs_reap() -> dict[str, int]:
    """Scheduled: a PROCESSING job whose heartbeat went stale lost its worker (killed, OOM):
    it runs again while attempts remain, else fails with its refund. A PENDING job queued long
    ago whose task was lost is queued again (a duplicate task is a no-op at the claim)."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "reenqueued": 0}
    stale = Job.objects.filter(
        status=Status.PROCESSING, heartbeat_at__lt=now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    )
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status != Status.PROCESSING or job.heartbeat_at >= now - timedelta(
                seconds=settings.JOB_STALE_SECONDS
            ):
                continue
            if job.attempts < settings.JOB_MAX_ATTEMPTS:
                job.status = Status.PENDING
                job.save(update_fields=["status"])
                transaction.on_commit(partial(job_enqueue, job_id=job.pk))
                counts["requeued"] += 1
                continue
        if job_fail(job_id=job_id, error=WORKER_LOST):
            counts["failed"] += 1
    requeue_cutoff = now - timedelta(seconds=settings.JOB_REQUEUE_SECONDS)
    # Never enqueued at all: the web process died between the commit and the enqueue.
    lost = Job.objects.filter(status=Status.PENDING).filter(
        Q(enqueued_at__lt=requeue_cutoff) | Q(enqueued_at__isnull=True, created_at__lt=requeue_cutoff)
    )
    for job_id in lost.values_list("pk", flat=True):
        job_enqueue(job_id=job_id)
        counts["reenqueued"] += 1
    return counts


def jobs_delete_expired() -> int:
    """Scheduled: delete the files of jobs finished more than JOB_RETENTION_DAYS ago."""
    cutoff = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS)
    expired = Job.objects.filter(status__in=Job.FINISHED, finished_at__lt=cutoff, files_deleted_at__isnull=True)
    count = 0
    for job in expired.iterator():
        job_delete_files(job=job)
        count += 1
    return count
