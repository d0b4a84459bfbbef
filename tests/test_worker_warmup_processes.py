"""WORKER_PRELOAD_MODELS as a process reads it at start (a bad value stops start-up), and a web
process that answers a request without importing torch. Slow: each check is a fresh Python process
reading the settings (the rest is in test_worker_warmup.py)."""

import subprocess
import sys

import pytest

from testkit.processes import REPO_ROOT
from tests.settings_probe import SETUP, run_python

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("value", ["all", "htdemucs,nope", ",", "demo;htdemucs"])
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path, value):
    result = run_python(tmp_path, SETUP, DEBUG="1", WORKER_PRELOAD_MODELS=value)

    assert result.returncode != 0
    assert "ImproperlyConfigured: WORKER_PRELOAD_MODELS must be installed, default, none or a" in result.stderr


def test_the_web_process_does_not_import_torch():
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'demucs_service.settings');"
        "import django; django.setup(); from django.test import Client;"
        "Client().get('/api/'); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
