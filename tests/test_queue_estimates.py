"""The job page's place in the queue and when the job should start and end, from the measured
speed of the workers (separation/queue_estimates.py), refreshed with the polled status."""

from datetime import timedelta

import pytest
from django.utils import timezone

from separation.models import Job
from separation.queue_estimates import job_queue_estimate, worker_speed
from testkit.audio import tone_bytes
from tests.conftest import logged_in
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

Status = Job.Status


def job_of(seconds: float) -> Job:
    """A waiting job of `seconds` of audio, of a new user (uploaded for real)."""
    return make_job(UserFactory(), content=tone_bytes(seconds=seconds, samplerate=8000))


def completed_at_speed(ratio: float, *, count: int = 3, seconds: float = 10.0) -> None:
    """Jobs that took `ratio` seconds per second of audio, finished a moment ago."""
    for _ in range(count):
        job = job_of(seconds)
        finished = timezone.now() - timedelta(minutes=1)
        Job.objects.filter(pk=job.pk).update(
            status=Status.COMPLETED,
            started_at=finished - timedelta(seconds=job.duration_seconds * ratio),
            finished_at=finished,
            progress=100,
        )


def running_for(job: Job, seconds: float) -> None:
    Job.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, started_at=timezone.now() - timedelta(seconds=seconds), attempts=1
    )


def seconds_from_now(moment) -> float:
    return (moment - timezone.now()).total_seconds()


def test_it_gives_no_estimate_before_any_job_was_measured():
    waiting = job_of(5)

    assert worker_speed() is None
    assert job_queue_estimate(job=waiting) is None


def test_it_plays_the_queue_forward_at_the_measured_speed(settings):
    settings.SEPARATION_WORKERS = 1
    completed_at_speed(2.0)
    running = job_of(60)
    running_for(running, 30)
    first, second = job_of(30), job_of(10)

    estimate_first = job_queue_estimate(job=first)
    estimate_second = job_queue_estimate(job=second)

    assert worker_speed() == pytest.approx(2.0)
    # The running job needs 120 s and has run 30; then 60 s for the first, 20 s for the second.
    assert estimate_first.position == 1
    assert seconds_from_now(estimate_first.starts_at) == pytest.approx(90, abs=3)
    assert seconds_from_now(estimate_first.ends_at) == pytest.approx(150, abs=3)
    assert estimate_second.position == 2
    assert seconds_from_now(estimate_second.starts_at) == pytest.approx(150, abs=3)
    assert seconds_from_now(estimate_second.ends_at) == pytest.approx(170, abs=3)
    running.refresh_from_db()
    estimate_running = job_queue_estimate(job=running)
    assert estimate_running.starts_at is None
    assert seconds_from_now(estimate_running.ends_at) == pytest.approx(90, abs=3)


def test_it_shares_the_queue_among_the_workers(settings):
    settings.SEPARATION_WORKERS = 2
    completed_at_speed(2.0)
    running_for(job_of(60), 30)
    first, second = job_of(30), job_of(10)

    # One worker is free now; the second job takes whichever frees first (the first's, at 60 s).
    assert seconds_from_now(job_queue_estimate(job=first).starts_at) == pytest.approx(0, abs=3)
    assert seconds_from_now(job_queue_estimate(job=second).starts_at) == pytest.approx(60, abs=3)


def test_it_follows_the_workers_speed_as_measured():
    completed_at_speed(0.5)
    waiting = job_of(40)
    slow = job_queue_estimate(job=waiting)

    completed_at_speed(1.5, count=5)
    slower = job_queue_estimate(job=waiting)

    assert seconds_from_now(slow.ends_at) == pytest.approx(20, abs=3)
    assert seconds_from_now(slower.ends_at) == pytest.approx(60, abs=3)


def test_it_shows_the_estimate_on_the_polled_job_status():
    completed_at_speed(2.0)
    waiting = job_of(30)
    client = logged_in(waiting.user)

    page = client.get(f"/jobs/{waiting.pk}/").content.decode()
    polled = client.get(f"/jobs/{waiting.pk}/status/").content.decode()

    for html in (page, polled):
        assert 'data-testid="queue-estimate"' in html
        assert "Expected to start in about" in html
    Job.objects.filter(pk=waiting.pk).update(status=Status.COMPLETED, finished_at=timezone.now())
    assert "queue-estimate" not in client.get(f"/jobs/{waiting.pk}/status/").content.decode()
