"""SIGTERM to a qcluster's whole process group (kill -TERM -PGID) stops it as SIGTERM to its
leader does: the job in hand completes, then every process of the group exits."""

import os
import signal

import pytest

from separation.models import Job
from testkit.audio import write_wav
from testkit.http import wait_until
from tests import e2e

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("to_group", [True, False], ids=["whole-group", "leader-only"])
def test_sigterm_finishes_the_job_in_hand_and_the_cluster_exits(live_server, cluster_factory, tmp_path, to_group):
    cluster = cluster_factory()
    token = e2e.register(live_server.url, "stopping_listener")
    accepted = e2e.upload(live_server.url, token, write_wav(tmp_path / "song.wav", 60))
    assert accepted.status == 202, accepted.body
    job_id = accepted.json()["job_id"]
    wait_until(lambda: Job.objects.get(pk=job_id).progress >= 5, timeout=60, message="the job to be under way")

    if to_group:
        os.killpg(cluster.process.pid, signal.SIGTERM)
    else:
        os.kill(cluster.process.pid, signal.SIGTERM)

    wait_until(lambda: not cluster.live_processes(), timeout=90, message="the cluster's processes to exit")
    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.COMPLETED, job.error
    assert job.attempts == 1
