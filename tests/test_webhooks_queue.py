"""A job's webhooks are queued on the maintenance cluster once its end commits (never sent by the
separation worker), and only for owners who have an endpoint."""

import pytest
from django_q.models import OrmQ

from separation.services import job_cancel, job_complete, job_fail
from tests.factories import UserFactory
from tests.jobs import make_job
from webhooks import services
from webhooks.events import JOB_FINISHED_TASK

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def queued_webhook_tasks() -> list[dict]:
    return [row.task for row in OrmQ.objects.all() if row.task.get("func") == JOB_FINISHED_TASK]


def test_it_queues_the_webhooks_on_the_maintenance_cluster_after_the_commit(media, django_capture_on_commit_callbacks):
    user = UserFactory()
    services.endpoint_create(user=user, url="https://hooks.example.com/x", events=["job.failed"])
    failed, cancelled, completed = make_job(user), make_job(user), make_job(user)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job_fail(job_id=failed.pk, error="It broke.")
    assert queued_webhook_tasks() == []  # nothing before the commit
    for callback in callbacks:
        callback()
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=cancelled)
        completed.status = "PROCESSING"
        completed.save(update_fields=["status"])
        type(completed).objects.filter(pk=completed.pk).update(attempts=1)
        assert job_complete(job_id=completed.pk, attempt=1, stems=[], zip_file="", storage_bytes=0)

    tasks = queued_webhook_tasks()
    assert sorted(task["args"][0] for task in tasks) == sorted(str(job.pk) for job in (failed, cancelled, completed))
    assert {task["cluster"] for task in tasks} == {"maintenance"}


def test_it_queues_nothing_for_an_owner_without_endpoints(media, django_capture_on_commit_callbacks):
    job = make_job(UserFactory())
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error="It broke.")
    assert queued_webhook_tasks() == []
