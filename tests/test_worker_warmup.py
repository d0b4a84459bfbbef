"""Workers load their models when django-q2 starts them, before their first task, and never in
the web process or the cluster parent; WORKER_PRELOAD_MODELS chooses which. Real workers:
test_worker_warmup_e2e.py."""

import pytest

from demucs_service.environment import Env, preload_models
from separation import engine, worker_warmup
from separation.services import engine_config
from testkit.processes import REPO_ROOT
from tests.settings_probe import SETUP, run_python

pytestmark = pytest.mark.unit


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
    result = run_python(tmp_path, SETUP, DEBUG="1", WORKER_PRELOAD_MODELS=value)

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
