"""The scheduled maintenance: jobs_reap (stale heartbeats, lost tasks) and jobs_delete_expired
(retention), and the django-q2 schedules that run them."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule

from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from credits.services import ledger_append
from separation.maintenance import WORKER_LOST, jobs_delete_expired, jobs_reap
from separation.models import Job
from separation.scheduling import job_claim_next
from separation.services import job_complete, job_fail, job_refund_by_admin
from testkit.audio import tone_bytes
from tests.conftest import balance
from tests.factories import UserFactory
from tests.jobs import make_job, refunds, tokens_queued
from tests.threads import run_together

Kind = CreditTransaction.Kind
Status = Job.Status
NOTHING = {"requeued": 0, "failed": 0, "reenqueued": 0}

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("demo_model")]


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.JOB_MAX_ATTEMPTS = 2
    settings.JOB_STALE_SECONDS = 300
    settings.JOB_REQUEUE_SECONDS = 600
    settings.JOB_RETENTION_DAYS = 7


def go_stale(job, settings) -> None:
    """The worker was killed: its heartbeat stops."""
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 60)
    )


def claimed_and_stale_at_max_attempts(job, settings) -> None:
    """Claimed as often as allowed, each worker lost, the reaper requeueing in between."""
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS + 1):
        assert job_claim_next() is not None
        go_stale(job, settings)
        if attempt < settings.JOB_MAX_ATTEMPTS:
            assert jobs_reap()["requeued"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.PROCESSING, settings.JOB_MAX_ATTEMPTS)


# --- stale heartbeats -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_requeues_a_stale_job_then_fails_and_refunds_it_at_max_attempts(
    settings, django_capture_on_commit_callbacks
):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    assert job_claim_next().attempts == 1
    go_stale(job, settings)

    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_reap()

    assert counts == {"requeued": 1, "failed": 0, "reenqueued": 0}
    job.refresh_from_db()
    assert job.status == Status.PENDING
    assert job.attempts == 1
    assert tokens_queued() == 1
    assert job.enqueued_at is not None and timezone.now() - job.enqueued_at < timedelta(seconds=60)
    assert not refunds(job).exists()

    assert job_claim_next().attempts == settings.JOB_MAX_ATTEMPTS
    go_stale(job, settings)
    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_reap()

    assert counts == {"requeued": 0, "failed": 1, "reenqueued": 0}
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == WORKER_LOST
    assert job.finished_at is not None
    assert tokens_queued() == 1  # not queued again
    assert refunds(job).count() == 1
    assert refunds(job).get().kind == Kind.JOB_REFUND
    assert balance(user) == start
    assert job_claim_next() is None
    assert ledger_violations() == []


@pytest.mark.django_db
def test_it_leaves_a_job_with_a_fresh_heartbeat_alone(settings, django_capture_on_commit_callbacks):
    job = make_job(UserFactory())
    job_claim_next()
    recent = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS - 30)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=recent)

    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_reap()

    assert counts == NOTHING
    job.refresh_from_db()
    assert (job.status, job.attempts, job.heartbeat_at) == (Status.PROCESSING, 1, recent)
    assert tokens_queued() == 0
    assert not refunds(job).exists()


@pytest.mark.django_db
def test_it_refunds_once_when_the_reaper_runs_twice(settings, django_capture_on_commit_callbacks):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    claimed_and_stale_at_max_attempts(job, settings)

    with django_capture_on_commit_callbacks(execute=True):
        first = jobs_reap()
        second = jobs_reap()

    assert first == {"requeued": 0, "failed": 1, "reenqueued": 0}
    assert second == NOTHING
    assert Job.objects.get(pk=job.pk).status == Status.FAILED
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert ledger_violations() == []


# --- lost tasks -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_replaces_tokens_the_broker_lost_for_jobs_waiting_too_long(settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        lost = make_job(UserFactory())
        make_job(UserFactory())
    assert tokens_queued() == 2
    OrmQ.objects.all().delete()  # the broker lost them
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS + 60)
    Job.objects.filter(pk=lost.pk).update(enqueued_at=long_ago)

    counts = jobs_reap()

    # One token for each job that can start now (tokens are not tied to jobs).
    assert counts == {"requeued": 0, "failed": 0, "reenqueued": 2}
    assert tokens_queued() == 2
    lost.refresh_from_db()
    assert lost.status == Status.PENDING
    assert lost.enqueued_at > long_ago
    assert jobs_reap() == NOTHING  # as many tokens as startable jobs, and none waited too long


@pytest.mark.django_db
def test_it_adds_no_token_while_the_queue_holds_enough(settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(UserFactory())
    Job.objects.filter(pk=job.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS + 60)
    )

    assert jobs_reap() == NOTHING  # waiting long (behind others), but its token is still queued
    assert tokens_queued() == 1


@pytest.mark.django_db
def test_it_enqueues_a_pending_job_whose_enqueue_never_ran(settings):
    # The web process died between committing the job (charged) and its on_commit enqueue.
    job = make_job(UserFactory())
    assert job.enqueued_at is None and tokens_queued() == 0
    Job.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS + 60)
    )

    counts = jobs_reap()

    assert counts == {"requeued": 0, "failed": 0, "reenqueued": 1}
    assert tokens_queued() == 1
    assert Job.objects.get(pk=job.pk).enqueued_at is not None


# --- admin refund and reaper together -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("admin_first", [True, False], ids=["admin-then-reaper", "reaper-then-admin"])
def test_it_refunds_once_between_an_admin_refund_and_the_reaper(settings, admin_first):
    user = UserFactory()
    admin = UserFactory(is_staff=True, is_superuser=True)
    start = balance(user)
    job = make_job(user)
    claimed_and_stale_at_max_attempts(job, settings)

    if admin_first:
        assert job_refund_by_admin(job=job, admin=admin) is True
        assert jobs_reap()["failed"] == 1  # still fails the job, without a second refund
    else:
        assert jobs_reap()["failed"] == 1
        assert job_refund_by_admin(job=job, admin=admin) is False

    assert Job.objects.get(pk=job.pk).status == Status.FAILED
    assert refunds(job).count() == 1
    assert refunds(job).get().kind == (Kind.ADMIN_REFUND if admin_first else Kind.JOB_REFUND)
    assert balance(user) == start
    assert ledger_violations() == []


@pytest.mark.django_db
@pytest.mark.parametrize("admin_first", [True, False], ids=["admin-refund-first", "automatic-refund-first"])
def test_it_has_the_database_refuse_a_second_refund_of_a_job(admin_first):
    user = UserFactory()
    admin = UserFactory(is_staff=True)
    job = make_job(user)
    job_claim_next()
    if admin_first:
        job_refund_by_admin(job=job, admin=admin)
    else:
        job_fail(job_id=job.pk, error="Broken.")
    after_refund = balance(user)
    other_kind = Kind.JOB_REFUND if admin_first else Kind.ADMIN_REFUND

    # The other refund kind, past the service's check (no exclusive_with): only the constraint is left.
    with pytest.raises(IntegrityError, match="credittx_one_refund_per_reference"), transaction.atomic():
        ledger_append(user_id=user.pk, amount=job.cost, kind=other_kind, description="again", reference=f"job:{job.pk}")

    assert refunds(job).count() == 1
    assert balance(user) == after_refund


@pytest.mark.django_db(transaction=True)
def test_it_refunds_once_when_an_admin_refund_races_the_reaper(settings):
    admin = UserFactory(is_staff=True, is_superuser=True)
    for _ in range(5):
        user = UserFactory()
        start = balance(user)
        job = make_job(user)
        claimed_and_stale_at_max_attempts(job, settings)

        admin_refunded, counts = run_together(lambda job=job: job_refund_by_admin(job=job, admin=admin), jobs_reap)

        assert not isinstance(admin_refunded, BaseException), admin_refunded
        assert not isinstance(counts, BaseException), counts
        assert counts["failed"] == 1
        assert Job.objects.get(pk=job.pk).status == Status.FAILED
        assert refunds(job).count() == 1
        assert refunds(job).get().kind == (Kind.ADMIN_REFUND if admin_refunded else Kind.JOB_REFUND)
        assert balance(user) == start
    assert ledger_violations() == []


# --- retention ------------------------------------------------------------------------


def _complete_with_files(job, settings) -> None:
    """The worker's last steps, with small stand-in stem files."""
    job_claim_next()
    stems_dir = Path(settings.MEDIA_ROOT) / f"jobs/{job.pk}/stems"
    stems_dir.mkdir(parents=True)
    stems = []
    for name in ("drums", "bass", "other", "vocals"):
        (stems_dir / f"{name}.wav").write_bytes(tone_bytes(0.1))
        (stems_dir / f"{name}.png").write_bytes(b"\x89PNG")
        folder = f"jobs/{job.pk}/stems"
        stems.append({"name": name, "file": f"{folder}/{name}.wav", "waveform": f"{folder}/{name}.png"})
    (stems_dir / "song.zip").write_bytes(b"PK")
    assert job_complete(
        job_id=job.pk, attempt=1, stems=stems, zip_file=f"jobs/{job.pk}/stems/song.zip", storage_bytes=0
    )


@pytest.mark.django_db
def test_it_deletes_the_files_of_expired_jobs_and_keeps_their_rows(settings):
    user = UserFactory()
    old_completed, old_failed, recent = (make_job(user) for _ in range(3))
    _complete_with_files(old_completed, settings)
    job_claim_next()
    job_fail(job_id=old_failed.pk, error="Broken.")
    _complete_with_files(recent, settings)
    active = make_job(UserFactory())  # never finished, however old
    now = timezone.now()
    Job.objects.filter(pk__in=[old_completed.pk, old_failed.pk]).update(
        finished_at=now - timedelta(days=settings.JOB_RETENTION_DAYS, hours=1)
    )
    Job.objects.filter(pk=recent.pk).update(finished_at=now - timedelta(days=settings.JOB_RETENTION_DAYS - 1))
    Job.objects.filter(pk=active.pk).update(created_at=now - timedelta(days=settings.JOB_RETENTION_DAYS * 3))
    ledger_rows = CreditTransaction.objects.count()
    media = Path(settings.MEDIA_ROOT)

    assert jobs_delete_expired()["expired"] == 2

    for job in (old_completed, old_failed):
        job.refresh_from_db()
        assert not (media / f"jobs/{job.pk}").exists()
        assert job.files_deleted_at is not None
        assert (job.input_file, job.stems, job.zip_file) == ("", [], "")
    assert old_completed.status == Status.COMPLETED
    assert old_failed.status == Status.FAILED
    for job in (recent, active):
        job.refresh_from_db()
        assert job.files_deleted_at is None
        assert (media / job.input_file).is_file()
    assert all((media / stem["file"]).is_file() for stem in recent.stems)
    assert (media / recent.zip_file).is_file()
    assert Job.objects.count() == 4
    assert CreditTransaction.objects.count() == ledger_rows
    assert CreditTransaction.objects.filter(reference=f"job:{old_completed.pk}", kind=Kind.JOB_CHARGE).exists()
    assert jobs_delete_expired()["expired"] == 0  # already expired jobs are not counted again


# --- schedules ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_schedules_the_reaper_every_minute_and_the_cleanup_hourly_on_the_maintenance_cluster(settings):
    reaper = Schedule.objects.get(func="separation.tasks.jobs_reap")
    cleanup = Schedule.objects.get(func="separation.tasks.jobs_delete_expired")

    assert (reaper.schedule_type, reaper.minutes, reaper.repeats) == (Schedule.MINUTES, 1, -1)
    assert (cleanup.schedule_type, cleanup.repeats) == (Schedule.HOURLY, -1)
    assert reaper.cluster == cleanup.cluster == settings.MAINTENANCE_CLUSTER
    assert Schedule.objects.filter(func__startswith="separation.").count() == 2
    purge = Schedule.objects.get(func="accounts.tasks.revoked_tokens_purge")
    assert (purge.schedule_type, purge.cluster) == (Schedule.DAILY, settings.MAINTENANCE_CLUSTER)
    assert import_string(reaper.func)() == NOTHING
    assert import_string(cleanup.func)() == {"expired": 0, "orphans": 0}
