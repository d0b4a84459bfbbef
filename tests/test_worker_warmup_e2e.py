"""Real workers (a qcluster on the test database) load their models before their first task, or,
with WORKER_PRELOAD_MODELS=none, the first job loads it; the worker's log says which."""

import re

import pytest

from separation.models import Job
from testkit.http import wait_until
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WARM = re.compile(r"Worker \S+ \(pid (\d+)\) loaded the model '(\w+)' in [\d.]+ s before its first task")
TASK_LOAD = re.compile(r"Job \S+ loaded its model '(\w+)' in worker pid \d+")


def finished(jobs) -> bool:
    statuses = set(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True))
    return statuses <= {Job.Status.COMPLETED, Job.Status.FAILED}


def test_each_worker_loads_the_model_once_before_its_first_task(folders, tmp_path):
    media, models = folders
    with e2e.Clusters(media_root=media, model_repo=models, log_dir=tmp_path) as clusters:
        cluster = clusters.start(SEPARATION_WORKERS="2")
        # Both workers report their load before taking any task.
        wait_until(lambda: len(WARM.findall(cluster.log())) == 2, timeout=60, message=cluster.log)
        user = UserFactory()
        jobs = [make_job(user) for _ in range(3)]
        wait_until(lambda: finished(jobs), timeout=120, message=cluster.log)
        log = cluster.log()

    assert set(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True)) == {"COMPLETED"}
    loads = WARM.findall(log)
    assert len(loads) == 2 and len({pid for pid, _ in loads}) == 2, log
    assert {name for _, name in loads} == {"demo"}
    assert log.index("processing") > max(match.start() for match in WARM.finditer(log))
    assert not TASK_LOAD.search(log), log  # no job loaded a model again


def test_without_preloading_the_first_job_loads_the_model(folders, tmp_path):
    media, models = folders
    with e2e.Clusters(media_root=media, model_repo=models, log_dir=tmp_path) as clusters:
        cluster = clusters.start(WORKER_PRELOAD_MODELS="none")
        wait_until(lambda: "preloads no models" in cluster.log(), timeout=60, message=cluster.log)
        user = UserFactory()
        jobs = [make_job(user), make_job(user)]
        wait_until(lambda: finished(jobs), timeout=120, message=cluster.log)
        log = cluster.log()

    assert not WARM.search(log)
    assert TASK_LOAD.findall(log) == ["demo"], log  # the first job loads it, the second does not
