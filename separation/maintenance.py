"""The scheduled upkeep, run by the maintenance cluster (never behind a separation): the reaper
for jobs whose worker died or whose token was lost, and the cleanup of expired and orphaned files.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitoring import instruments
from separation.job_files import in_bucket
from separation.models import Job
from separation.scheduling import queue_tokens_top_up
from separation.services import job_delete_files, job_enqueue, job_fail, job_folder_path

logger = logging.getLogger(__name__)
Status = Job.Status

WORKER_LOST = "The separation was interrupted on our side. Your credits were refunded; please try again."
# A folder under jobs/ with no job is an upload in progress for this long (the file is stored
# before the job's row commits); after that it is an orphan.
ORPHAN_GRACE_SECONDS = 3600


def jobs_reap() -> dict[str, int]:
    """A PROCESSING job whose heartbeat went stale lost its worker (killed, OOM): it runs again
    while its attempt budget lasts, else fails with its refund. Then tokens lost with a broker are
    replaced (scheduling.queue_tokens_top_up)."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0, "reenqueued": 0}
    stale = Job.objects.filter(status=Status.PROCESSING, heartbeat_at__lt=stale_before)
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status != Status.PROCESSING or job.heartbeat_at >= stale_before:
                continue
            if job.attempts < job.attempt_budget:
                job.status = Status.PENDING
                job.save(update_fields=["status"])
                transaction.on_commit(partial(job_enqueue, job_id=job.pk))
                counts["requeued"] += 1
                continue
        if job_fail(job_id=job_id, error=WORKER_LOST):
            counts["failed"] += 1
            instruments.job_failures().labels(reason="worker_lost").inc()
    counts["reenqueued"] = queue_tokens_top_up()
    return counts


def jobs_delete_expired() -> dict[str, int]:
    """Delete the files of jobs finished more than JOB_RETENTION_DAYS ago, and files no job owns."""
    cutoff = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS)
    expired = Job.objects.filter(status__in=Job.FINISHED, finished_at__lt=cutoff, files_deleted_at__isnull=True)
    count = 0
    for job in expired.iterator():
        job_delete_files(job=job)
        count += 1
    return {"expired": count, "orphans": orphans_delete()}


def _job_id(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None


def orphans_delete() -> int:
    """Remove what no job owns under MEDIA_ROOT/jobs: folders without a job (an upload cut off by a
    full disk or a dead web process), the files of jobs whose files were deleted, and the attempt
    folders of finished jobs other than the completed run's (runs killed mid-way). Returns how
    many folders went."""
    root = Path(settings.MEDIA_ROOT) / "jobs"
    if not root.is_dir():
        return 0
    grace = time.time() - ORPHAN_GRACE_SECONDS
    folders = {}
    for folder in root.iterdir():
        try:
            recent = folder.stat().st_mtime > grace
        except OSError:
            continue
        if not recent:
            folders[folder] = _job_id(folder.name)
    jobs = Job.objects.in_bulk([job_id for job_id in folders.values() if job_id is not None])
    removed = 0
    for folder, job_id in folders.items():
        job = jobs.get(job_id)
        if job is None or job.files_deleted_at is not None:
            _remove(folder)
            removed += 1
        elif job.status in Job.FINISHED and in_bucket():
            _remove(folder)  # scratch space: a finished job's files are in the bucket
            removed += 1
        elif job.status in Job.FINISHED:
            removed += _remove_other_attempts(job)
    if removed:
        logger.info("Removed %d orphaned folder(s) under %s", removed, root)
    return removed


def _remove_other_attempts(job: Job) -> int:
    keep = {Path(settings.MEDIA_ROOT) / Path(stem["file"]).parent for stem in job.stems}
    removed = 0
    for attempt in job_folder_path(job.pk).glob("stems-*"):
        if attempt not in keep:
            _remove(attempt)
            removed += 1
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
