"""The worker: job_run claims, separates with the real engine and the demo model, stores and
completes; every failure ends FAILED with one refund; a cancelled job stops at its next progress
report. All in-process (this process runs torch and never forks)."""

import os
import shutil
import zipfile
from pathlib import Path

import pytest
import soundfile
from django.db import connection

from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from separation.models import Job
from separation.scheduling import job_claim_next
from separation.services import job_cancel, job_complete, job_fail, job_report_progress
from separation.tasks import separate_next_job
from testkit.audio import tone_bytes
from tests.conftest import balance
from tests.factories import UserFactory
from tests.jobs import make_job, refunds

Kind = CreditTransaction.Kind
Status = Job.Status
SAMPLERATE = 44100

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


# --- fixtures and helpers -------------------------------------------------------------


def truncated_wav_bytes() -> bytes:
    """A 2 s wav header with only 0.06 s of samples: too little audio to separate."""
    return tone_bytes(2.0)[: 44 + 4 * int(0.06 * SAMPLERATE)]


def media(settings, relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


# --- the happy path -------------------------------------------------------------------


def test_it_completes_a_pending_job(settings):
    user = UserFactory()
    job = make_job(user)
    charged = balance(user)
    assert job.status == Status.PENDING
    assert media(settings, job.input_file).is_file()

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert job.progress == 100
    assert job.attempts == 1
    assert job.error == ""
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.heartbeat_at <= job.finished_at
    assert job.stem_names == ["drums", "bass", "other", "vocals"]
    for stem in job.stems:
        audio = media(settings, stem["file"])
        assert audio.is_file() and audio.suffix == ".wav"
        assert soundfile.info(audio).frames == 2 * SAMPLERATE
        assert media(settings, stem["waveform"]).read_bytes().startswith(b"\x89PNG")
    bundle = media(settings, job.zip_file)
    assert bundle.is_file()
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == sorted(f"My Song/{name}.wav" for name in job.stem_names)
    assert balance(user) == charged  # completing costs nothing more and refunds nothing
    assert not refunds(job).exists()
    assert ledger_violations() == []


def test_it_does_nothing_when_a_completed_job_is_delivered_again(settings, caplog):
    job = make_job(UserFactory())
    separate_next_job()
    job.refresh_from_db()
    bundle = media(settings, job.zip_file)
    written = bundle.stat().st_mtime_ns
    caplog.clear()

    with caplog.at_level("INFO", logger="separation"):
        separate_next_job()  # the same task, redelivered

    again = Job.objects.get(pk=job.pk)
    assert again.status == Status.COMPLETED
    assert again.attempts == 1
    assert (again.started_at, again.finished_at, again.heartbeat_at) == (
        job.started_at,
        job.finished_at,
        job.heartbeat_at,
    )
    assert again.stems == job.stems
    assert bundle.stat().st_mtime_ns == written
    assert not [record for record in caplog.records if record.name.startswith("separation")]  # nothing ran
    assert job_claim_next() is None


def test_it_loads_the_model_once_across_several_jobs(settings, tmp_path, demo_model_repo, caplog):
    repo = tmp_path / "own-repo"  # a cache key no other test has loaded
    repo.mkdir()
    shutil.copy(demo_model_repo / "demo.th", repo / "demo.th")
    settings.DEMUCS_MODEL_REPO = repo
    user = UserFactory()
    jobs = [make_job(user, content=tone_bytes(1.0)) for _ in range(3)]

    with caplog.at_level("INFO", logger="separation.worker"):
        for _ in jobs:
            separate_next_job()

    loads = [record.getMessage() for record in caplog.records if "loaded its model" in record.getMessage()]
    assert loads == [f"Job {jobs[0].pk} loaded its model 'demo' in worker pid {os.getpid()}"]
    assert set(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True)) == {
        Status.COMPLETED
    }


# --- failures -------------------------------------------------------------------------


def test_it_fails_and_refunds_once_an_input_too_short_to_separate(settings):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    media(settings, job.input_file).write_bytes(truncated_wav_bytes())  # spoiled after it was measured

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == "The audio is too short to separate (under 0.1 s). Your credits were refunded."
    assert job.finished_at is not None
    assert job.stems == [] and job.zip_file == ""
    assert not list(media(settings, f"jobs/{job.pk}").glob("stems*"))
    assert refunds(job).count() == 1
    assert refunds(job).get().kind == Kind.JOB_REFUND
    assert balance(user) == start

    separate_next_job()  # redelivered: nothing more
    assert job_fail(job_id=job.pk, error="again") is None
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert ledger_violations() == []


def test_it_never_separates_more_audio_than_the_job_was_charged_for(settings):
    """The worker holds the stored input to the length measured at upload: a longer file (one
    swapped in behind the service's back) fails with its refund before anything is separated."""
    user = UserFactory()
    start = balance(user)
    job = make_job(user)  # 2 s, charged 1
    media(settings, job.input_file).write_bytes(tone_bytes(30.0))

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error.startswith("The file holds more audio than was measured when it was uploaded.")
    assert not list(media(settings, f"jobs/{job.pk}").glob("stems*"))
    assert refunds(job).count() == 1
    assert balance(user) == start


def test_it_fails_and_refunds_a_job_whose_input_was_deleted(settings):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    media(settings, job.input_file).unlink()

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == "The file could not be decoded as audio. Your credits were refunded."
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert ledger_violations() == []


def test_it_fails_and_refunds_a_job_whose_model_is_not_installed(settings, offline):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    Job.objects.filter(pk=job.pk).update(model="htdemucs")

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == "The model 'htdemucs' is not available on this server. Your credits were refunded."
    assert job.attempts == 1
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert not list(media(settings, f"jobs/{job.pk}").glob("stems*"))
    assert ledger_violations() == []


def test_it_refunds_once_when_a_job_fails_twice():
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    assert job_claim_next() is not None

    first = job_fail(job_id=job.pk, error="First failure.")
    second = job_fail(job_id=job.pk, error="Second failure.")

    assert first is not None and first.status == Status.FAILED
    assert second is None
    job.refresh_from_db()
    assert job.error == "First failure."
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert ledger_violations() == []


# --- cancellation ---------------------------------------------------------------------


def test_it_reports_progress_only_while_the_job_is_processing():
    job = make_job(UserFactory())
    assert job_report_progress(job_id=job.pk, attempt=1, progress=10) is False  # PENDING: not claimed yet
    job_claim_next()

    assert job_report_progress(job_id=job.pk, attempt=1, progress=250) is True
    assert Job.objects.get(pk=job.pk).progress == 99  # only completion reaches 100

    job_cancel(job=job)
    assert job_report_progress(job_id=job.pk, attempt=1, progress=50) is False
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert job.progress == 99


def test_it_stops_a_job_cancelled_while_running_at_its_next_progress_report(settings):
    user = UserFactory()
    start = balance(user)
    job = make_job(user)
    folder = media(settings, f"jobs/{job.pk}")
    reports = []
    completions = []

    def cancel_at_first_report(execute, sql, params, many, context):
        # The owner cancels just as the worker reports progress (after decoding and loading).
        if sql.startswith('UPDATE "separation_job" SET "progress"'):
            reports.append(params)
            if len(reports) == 1:
                job_cancel(job=Job.objects.get(pk=job.pk))
        elif sql.startswith('UPDATE "separation_job"') and Status.COMPLETED in (params or ()):
            completions.append(params)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(cancel_at_first_report):
        separate_next_job()

    job.refresh_from_db()
    assert len(reports) == 1  # the report that found the job cancelled was the last
    assert completions == []  # the worker stopped there: it never tried to complete the job
    assert job.status == Status.CANCELLED
    assert job.stems == [] and job.zip_file == "" and job.input_file == ""
    assert job.files_deleted_at is not None
    assert not folder.exists() or not any(path.is_file() for path in folder.rglob("*"))
    assert refunds(job).count() == 1
    assert refunds(job).get().kind == Kind.JOB_REFUND
    assert balance(user) == start
    assert job_fail(job_id=job.pk, error="late failure") is None
    assert refunds(job).count() == 1
    assert ledger_violations() == []


def test_a_run_taken_for_dead_cannot_touch_the_run_that_replaced_it(settings):
    """The reaper gave the job to a second run while the first was only slow: the first run's
    reports, completion and failure are refused, and the second run's stems survive it."""
    job = make_job(UserFactory())
    first = job_claim_next()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PENDING)  # what jobs_reap does to a stale run
    separate_next_job()  # the second run completes
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.COMPLETED, 2)

    assert job_report_progress(job_id=job.pk, attempt=first.attempts, progress=50) is False
    assert job_complete(job_id=job.pk, attempt=first.attempts, stems=[], zip_file="", storage_bytes=0) is False
    assert job_fail(job_id=job.pk, error="late", attempt=first.attempts) is None
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert all((Path(settings.MEDIA_ROOT) / stem["file"]).is_file() for stem in job.stems)
    assert refunds(job).count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_separates_on_when_the_database_drops_its_connection_mid_job(settings, caplog):
    """PostgreSQL restarting (here: the worker's backend terminated at its first heartbeat) costs
    a heartbeat, not the separation: the worker reconnects and completes the job."""
    import psycopg

    job = make_job(UserFactory())
    params = connection.settings_dict
    terminated = []

    def terminate_at_first_report(execute, sql, params_, many, context):
        if sql.startswith('UPDATE "separation_job" SET "progress"') and not terminated:
            pid = connection.connection.info.backend_pid
            with psycopg.connect(
                dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"] or 5432
            ) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            terminated.append(pid)
        return execute(sql, params_, many, context)

    with connection.execute_wrapper(terminate_at_first_report):
        separate_next_job()

    job.refresh_from_db()
    assert terminated, "the worker's connection was never terminated"
    assert connection.connection.info.backend_pid != terminated[0]  # it reconnected
    assert job.status == Status.COMPLETED
    assert "could not record its progress" in caplog.text
    assert refunds(job).count() == 0
