"""Attempt numbers only grow: a requeue adds to the budget and never rewinds, so a run that was
only stalled can never share a number (its fence) or a folder with the run that replaced it, and a
COMPLETED job always has its files."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from separation.maintenance import jobs_reap
from separation.models import Job
from separation.scheduling import job_claim_next
from separation.services import job_complete, job_fail, job_report_progress, job_requeue
from separation.tasks import separate_next_job
from separation.worker import job_run
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def test_a_requeued_job_never_reuses_the_attempt_number_of_a_stalled_run(settings):
    settings.JOB_MAX_ATTEMPTS = 1
    job = make_job(UserFactory())
    stalled = job_claim_next()  # attempt 1: its worker stalls (not dead)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert jobs_reap()["failed"] == 1  # taken for dead, failed and refunded
    job.refresh_from_db()
    assert job_requeue(job=job)  # an operator retries it

    separate_next_job()  # the retry completes

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.COMPLETED, 2)
    media = Path(settings.MEDIA_ROOT)
    assert all((media / stem["file"]).is_file() for stem in job.stems)
    # The stalled run wakes up: every write of attempt 1 is refused.
    assert job_report_progress(job_id=job.pk, attempt=stalled.attempts, progress=50) is False
    assert job_complete(job_id=job.pk, attempt=stalled.attempts, stems=[], zip_file="", storage_bytes=0) is False
    assert job_fail(job_id=job.pk, error="late", attempt=stalled.attempts) is None


def test_a_stalled_run_that_finishes_late_leaves_the_completed_jobs_files_alone(settings):
    """The stalled run separates to the end after the retry completed: its completion is refused
    and it removes only its own folder, so the COMPLETED job still answers with its files."""
    settings.JOB_MAX_ATTEMPTS = 1
    job = make_job(UserFactory())
    stalled = job_claim_next()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    jobs_reap()
    job.refresh_from_db()
    job_requeue(job=job)
    separate_next_job()
    job.refresh_from_db()
    completed_stems = job.stems

    job_run(job=stalled)  # attempt 1 runs to its end, late

    job.refresh_from_db()
    assert (job.status, job.attempts, job.stems) == (Job.Status.COMPLETED, 2, completed_stems)
    media = Path(settings.MEDIA_ROOT)
    assert all((media / stem["file"]).is_file() for stem in job.stems)
    assert (media / job.zip_file).is_file()
    assert not (media / f"jobs/{job.pk}/stems-1").exists()


def test_requeue_adds_attempts_to_the_budget(settings):
    settings.JOB_MAX_ATTEMPTS = 2
    job = make_job(UserFactory())
    job_claim_next()
    job_fail(job_id=job.pk, error="broken")
    job.refresh_from_db()

    assert job_requeue(job=job)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.attempt_budget) == (Job.Status.PENDING, 1, 3)
