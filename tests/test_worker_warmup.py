"""Workers load their models when django-q2 starts them, before their first task, and never in
the web process or the cluster parent; WORKER_PRELOAD_MODELS chooses which. Fresh processes reading
the setting: test_worker_warmup_processes.py; real workers: test_worker_warmup_e2e.py."""

import pytest

from demucs_service.environment import Env, preload_models
from separation import engine, worker_warmup
from separation.services import engine_config

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
