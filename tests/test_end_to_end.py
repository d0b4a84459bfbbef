"""End to end over HTTP: the live server, a real `manage.py qcluster` worker running Demucs
with the demo model, and the test database they share. No mocks."""

import io
import time
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from separation.maintenance import WORKER_LOST, jobs_reap
from separation.models import Job
from testkit.audio import SAMPLERATE, read_audio, write_wav
from testkit.http import get, wait_until
from testkit.processes import stop_group
from tests import e2e

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STEMS = {"drums", "bass", "other", "vocals"}


def test_it_separates_a_30_second_song_through_the_api_and_a_real_worker(live_server, cluster_factory, tmp_path):
    base = live_server.url
    cluster_factory()
    token = e2e.register(base, "e2e_listener")
    song = write_wav(tmp_path / "thirty seconds.wav", 30)
    frames = 30 * SAMPLERATE

    accepted = e2e.upload_ok(base, token, song)
    started = time.monotonic()
    assert accepted["status"] == "PENDING"
    assert Decimal(accepted["cost"]) == 1
    assert Decimal(accepted["credits_remaining"]) == 2

    seen = e2e.poll_job(base, token, accepted["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)
    elapsed = time.monotonic() - started
    print(f"\nEnd to end, 30 s clip, upload accepted -> COMPLETED: {elapsed:.2f} s ({len(seen)} polls)")

    final = seen[-1]
    assert final["status"] == "COMPLETED", final
    assert final["progress"] == 100
    assert final["error"] == ""
    progress = [job["progress"] for job in seen]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    intermediate = sorted({value for value in progress if 0 < value < 100})
    print(f"Progress seen: {sorted(set(progress))}")
    assert intermediate, f"no progress between 0 and 100 was reported: {sorted(set(progress))}"
    assert "PROCESSING" in {job["status"] for job in seen}
    assert {stem["name"] for stem in final["stem_files"]} == STEMS

    reply = get(f"{base}/api/download/{accepted['job_id']}", token)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.body)) as bundle:
        assert bundle.testzip() is None
        names = bundle.namelist()
        assert sorted(name.rsplit("/", 1)[-1] for name in names) == sorted(f"{stem}.wav" for stem in STEMS)
        for name in names:
            samples, samplerate = read_audio(bundle.read(name))
            assert samplerate == SAMPLERATE, name
            assert samples.shape == (frames, 2), name
            assert abs(samples).max() > 0, f"{name} is silent"

    # Each stem is also served on its own, as the player uses it.
    for stem in final["stem_files"]:
        reply = get(stem["url"], token)
        assert reply.status == 200
        assert reply.headers["content-type"] == "audio/wav"
        assert read_audio(reply.body)[0].shape == (frames, 2)

    me = get(f"{base}/api/auth/me", token).json()
    assert Decimal(me["credits"]) == 2
    assert ledger_violations() == []


def test_it_fails_and_refunds_once_a_job_whose_worker_was_killed(live_server, cluster_factory, tmp_path, settings):
    base = live_server.url
    # JOB_STALE_SECONDS may not go under 10 in the environment (settings check it); the
    # killed cluster never reaps anyway: the reaper runs here, with a 5 s threshold.
    cluster = cluster_factory(JOB_MAX_ATTEMPTS="1", JOB_STALE_SECONDS="10")
    settings.JOB_STALE_SECONDS = 5
    settings.JOB_MAX_ATTEMPTS = 1
    token = e2e.register(base, "e2e_unlucky")
    song = write_wav(tmp_path / "two minutes.wav", 120)

    accepted = e2e.upload_ok(base, token, song)
    job_id = accepted["job_id"]
    assert Decimal(accepted["credits_remaining"]) == 2
    seen = e2e.poll_job(
        base, token, job_id, until=lambda job: job["status"] != "PENDING" and job["progress"] > 0, timeout=60
    )
    assert seen[-1]["status"] == "PROCESSING", seen[-1]

    cluster.kill()
    killed_at = time.monotonic()
    assert cluster.process.poll() is not None
    wait_until(lambda: not cluster.live_processes(), timeout=10, message="the workers to die with the cluster")

    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.PROCESSING
    assert job.attempts == 1
    # Nothing reaps a job whose heartbeat is fresh.
    assert jobs_reap()["failed"] == 0

    wait_until(
        lambda: Job.objects.get(pk=job_id).heartbeat_at < timezone.now() - timedelta(seconds=5.5),
        timeout=30,
        message="the heartbeat to go stale",
    )
    counts = jobs_reap()
    failed_at = time.monotonic()
    print(f"\nKill -> FAILED (reaper called once the heartbeat was 5 s stale): {failed_at - killed_at:.2f} s")
    assert counts == {"requeued": 0, "failed": 1, "reenqueued": 0}

    status = get(f"{base}/api/status/{job_id}", token).json()
    assert status["status"] == "FAILED"
    assert status["error"] == WORKER_LOST
    assert status["download_url"] is None

    # A second pass finds nothing, and a refund is never paid twice.
    assert jobs_reap() == {"requeued": 0, "failed": 0, "reenqueued": 0}
    job = Job.objects.get(pk=job_id)
    refunds = CreditTransaction.objects.filter(user=job.user, kind=CreditTransaction.Kind.JOB_REFUND)
    assert [(row.amount, row.reference) for row in refunds] == [(Decimal(1), f"job:{job_id}")]
    assert Decimal(get(f"{base}/api/auth/me", token).json()["credits"]) == 3
    assert ledger_violations() == []


def test_it_loads_the_model_once_per_worker_process(live_server, cluster_factory, folders, tmp_path):
    """The worker keeps its model: after a first job, the model file is replaced by garbage;
    the same worker still separates (no reload), and a fresh worker cannot load it."""
    base = live_server.url
    _, models = folders
    cluster = cluster_factory("qcluster-first")
    token = e2e.register(base, "e2e_regular")

    first = e2e.upload_ok(base, token, write_wav(tmp_path / "first.wav", 5))
    assert e2e.poll_job(base, token, first["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1][
        "status"
    ] == ("COMPLETED")

    (models / "demo.th").write_bytes(b"not a torch file")
    second = e2e.upload_ok(base, token, write_wav(tmp_path / "second.wav", 30))
    started = time.monotonic()
    final = e2e.poll_job(base, token, second["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1]
    print(f"\nEnd to end, 30 s clip, model already loaded in the worker: {time.monotonic() - started:.2f} s")
    assert final["status"] == "COMPLETED", final

    # The premise: a worker that does load the file now fails, and refunds.
    stop_group(cluster.process)
    cluster_factory("qcluster-fresh")
    third = e2e.upload_ok(base, token, write_wav(tmp_path / "third.wav", 5))
    final = e2e.poll_job(base, token, third["job_id"], until=lambda job: job["status"] in e2e.TERMINAL)[-1]
    assert final["status"] == "FAILED", final
    assert "not available" in final["error"]
    assert Decimal(get(f"{base}/api/auth/me", token).json()["credits"]) == 1
    assert ledger_violations() == []
