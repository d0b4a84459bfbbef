"""Scale-out on Redis (REDIS_URL): two real `manage.py qcluster` processes share one Redis queue
and the Postgres test database, and every job runs exactly once; and the cache, where the
throttles count, is shared by separate processes. Needs Redis at 127.0.0.1:6379 (a DB of its
own, flushed first) and PostgreSQL (DATABASE_URL)."""

import json
import os
import re
import subprocess
import sys
from decimal import Decimal

import pytest
from django_q.conf import Conf
from django_q.models import Task

from credits.services import credits_admin_grant
from separation.models import Job
from separation.scheduling import SEPARATE_TASK
from testkit.http import wait_until
from testkit.processes import REPO_ROOT
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
JOBS = 10


def redis_client():
    """The test Redis (bin/test starts one); a missing server fails the test, loudly."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    return client


@pytest.fixture
def redis_db():
    client = redis_client()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_broker(redis_db, settings, monkeypatch):
    """This process enqueues to Redis as a web process with REDIS_URL would. django-q2 read
    Q_CLUSTER at import (django_q.conf.Conf): set what it read."""
    settings.Q_CLUSTER = {**{k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}, "redis": REDIS_URL}
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    return redis_db


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_redis_run_every_job_exactly_once(redis_broker, folders, tmp_path):
    media, models = folders
    with e2e.Clusters(media_root=media, model_repo=models, log_dir=tmp_path) as clusters:
        first = clusters.start("worker-a", REDIS_URL=REDIS_URL)
        second = clusters.start("worker-b", REDIS_URL=REDIS_URL)

        user = UserFactory(username="scaler")
        boss = UserFactory(username="scale_boss", is_staff=True)
        credits_admin_grant(user=user, amount=Decimal(JOBS), reason="load test", granted_by=boss, request_token="t")
        # make_job commits (transaction=True), so job_create's on-commit enqueue goes to Redis.
        jobs = [make_job(user, f"song {n}.wav") for n in range(JOBS)]
        ids = {str(job.pk) for job in jobs}
        assert Job.objects.filter(pk__in=ids, enqueued_at__isnull=False).count() == JOBS

        wait_until(
            lambda: Job.objects.filter(pk__in=ids, status__in=Job.FINISHED).count() == JOBS,
            timeout=180,
            interval=0.5,
            message=lambda: f"all jobs to finish: {sorted(Job.objects.values_list('status', flat=True))}",
        )
        # Let the clusters' monitors save their task results.
        wait_until(
            lambda: Task.objects.filter(func=SEPARATE_TASK).count() >= JOBS,
            timeout=30,
            message="django-q2 to record the tasks",
        )
        logs = {"worker-a": first.log(), "worker-b": second.log()}

    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Job.Status.COMPLETED}
    # Claimed once each (our own count of claims); every token succeeded (a job's end queues one
    # more while others wait: those find nothing, or a job its owner's free slot lets start).
    assert sorted(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == [1] * JOBS
    assert set(Task.objects.filter(func=SEPARATE_TASK).values_list("success", flat=True)) == {True}

    # Which cluster ran which job: each worker logs "Job <id> started".
    ran_by = {name: re.findall(r"Job ([0-9a-f-]{36}) started", log) for name, log in logs.items()}
    print(f"\nJobs per worker: { {name: len(found) for name, found in ran_by.items()} }")
    all_runs = ran_by["worker-a"] + ran_by["worker-b"]
    assert sorted(all_runs) == sorted(ids), "a job ran twice or not at all"
    assert ran_by["worker-a"] and ran_by["worker-b"], f"one worker took all the work: {ran_by}"
    assert redis_broker.llen(f"django_q:{Conf.CLUSTER_NAME}:q") == 0


# --- the cache: throttles count across processes -------------------------------------------

THROTTLE_SCRIPT = """
import json
from django.conf import settings
from django.core.cache import cache
from django.test import RequestFactory
from accounts.throttles import RegisterIPThrottle
request = RequestFactory().post("/api/auth/register", REMOTE_ADDR="203.0.113.9")
results = [RegisterIPThrottle().allow_request(request, None) for _ in range({attempts})]
print(json.dumps({{"backend": settings.CACHES["default"]["BACKEND"], "allowed": results}}))
"""


def run_in_process(attempts: int, env: dict[str, str]) -> dict:
    """A separate `manage.py shell` process, as another gunicorn worker would be."""
    reply = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", THROTTLE_SCRIPT.format(attempts=attempts)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reply.returncode == 0, reply.stderr
    return json.loads(reply.stdout.strip().splitlines()[-1])


def test_with_redis_url_the_cache_is_redis_and_throttles_count_across_processes(redis_db):
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(REDIS_URL=REDIS_URL, THROTTLE_REGISTER_IP="3/minute", DEBUG="0", SECRET_KEY="scale-out-test-key")

    first = run_in_process(2, env)
    second = run_in_process(2, env)

    assert first["backend"] == "django.core.cache.backends.redis.RedisCache"
    assert first["allowed"] == [True, True]
    # Another process sees the first one's two requests: one more is allowed, then it is throttled.
    assert second["allowed"] == [True, False]
    assert any(b"throttle_register_ip" in key for key in redis_db.keys("*"))

    # Without REDIS_URL each process counts on its own (the local-memory cache).
    env.pop("REDIS_URL")
    assert run_in_process(2, env)["allowed"] == [True, True]
    assert run_in_process(2, env)["allowed"] == [True, True]
