"""Workers load their models when django-q2 starts them, before their first task, and never in
the web process or the cluster parent; WORKER_PRELOAD_MODELS chooses which."""

import re

import pytest

from demucs_service.environment import Env, preload_models
from separation import engine, worker_warmup
from separation.models import Job
from separation.services import engine_config
from testkit.http import wait_until
from testkit.processes import REPO_ROOT
from tests import e2e
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.test_settings import SETUP, _run

WARM = re.compile(r"Worker \S+ \(pid (\d+)\) loaded the model '(\w+)' in [\d.]+ s before its first task")
TASK_LOAD = re.compile(r"Job \S+ loaded its model '(\w+)' in worker pid \d+")


# --- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "installed"),
        ("installed", "installed"),
        ("Default", "default"),
        ("none", "none"),
        ("htdemucs, demo", ["htdemucs", "demo"]),
    ],
)
def test_the_setting_is_parsed_strictly(monkeypatch, value, expected):
    monkeypatch.setenv("WORKER_PRELOAD_MODELS", value)
    assert Env()("WORKER_PRELOAD_MODELS", cast=preload_models, default="installed") == expected


@pytest.mark.parametrize("value", ["all", "htdemucs,nope", ",", "demo;htdemucs"])
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path, value):
    result = _run(tmp_path, SETUP, DEBUG="1", WORKER_PRELOAD_MODELS=value)

    assert result.returncode != 0
    assert "ImproperlyConfigured: WORKER_PRELOAD_MODELS must be installed, default, none or a" in result.stderr


def test_the_names_follow_the_setting(settings, demo_model, offline):
    settings.DEFAULT_MODEL = "htdemucs"  # not installed: jobs default to the demo model
    settings.WORKER_PRELOAD_MODELS = "installed"
    assert worker_warmup.preload_model_names() == ["demo"]
    settings.WORKER_PRELOAD_MODELS = "default"
    assert worker_warmup.preload_model_names() == ["demo"]
    settings.WORKER_PRELOAD_MODELS = "none"
    assert worker_warmup.preload_model_names() == []
    settings.WORKER_PRELOAD_MODELS = ["htdemucs_ft", "demo"]
    assert worker_warmup.preload_model_names() == ["htdemucs_ft", "demo"]


def test_nothing_is_loaded_outside_a_forked_worker(settings, demo_model, tmp_path, demo_model_repo):
    # The signal as django-q2's sync mode would send it, in this (main) process.
    settings.DEMUCS_MODEL_REPO = tmp_path  # a cache key nothing has loaded
    (tmp_path / "demo.th").write_bytes((demo_model_repo / "demo.th").read_bytes())
    worker_warmup.worker_started(sender="django_q", proc_name="MainProcess")
    _, loaded = engine.load_model("demo", engine_config())
    assert loaded  # the signal had not loaded it


def test_the_web_process_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'demucs_service.settings');"
        "import django; django.setup(); from django.test import Client;"
        "Client().get('/api/'); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"


# --- real workers -----------------------------------------------------------------------


def finished(jobs) -> bool:
    statuses = set(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True))
    return statuses <= {Job.Status.COMPLETED, Job.Status.FAILED}


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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
