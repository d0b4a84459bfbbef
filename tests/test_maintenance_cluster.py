"""Maintenance never waits behind separations: the reaper and the cleanup run on a cluster of their
own (Q_CLUSTER_NAME=maintenance), so a long job holding every separation worker delays neither.
Real qclusters on the test database; the reaper task is queued the way its schedule queues it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from separation.models import Job
from testkit.audio import write_wav
from testkit.http import wait_until
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_reaper_runs_while_every_separation_worker_is_busy(live_server, cluster_factory, tmp_path, settings):
    cluster_factory("separation")  # one separation worker
    cluster_factory("maintenance", Q_CLUSTER_NAME="maintenance", JOB_STALE_SECONDS="10")
    token = e2e.register(live_server.url, "busy_listener")
    accepted = e2e.upload(live_server.url, token, write_wav(tmp_path / "long.wav", 240))
    assert accepted.status == 202, accepted.body
    long_job = Job.objects.get(pk=accepted.json()["job_id"])
    wait_until(
        lambda: Job.objects.get(pk=long_job.pk).status == Job.Status.PROCESSING, timeout=60, message="the long job"
    )
    # A job whose worker died a while ago: the reaper's to find.
    lost = make_job(UserFactory())
    Job.objects.filter(pk=lost.pk).update(
        status=Job.Status.PROCESSING, attempts=1, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )

    async_task("separation.tasks.jobs_reap", cluster=settings.MAINTENANCE_CLUSTER)  # as its schedule does

    wait_until(lambda: Job.objects.get(pk=lost.pk).status != Job.Status.PROCESSING, timeout=30, message="the reaper")
    assert Job.objects.get(pk=long_job.pk).status == Job.Status.PROCESSING  # still separating meanwhile
    assert Job.objects.get(pk=lost.pk).status == Job.Status.PENDING  # requeued for another attempt
