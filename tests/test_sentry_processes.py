"""SENTRY_DSN as the service's processes read it at start: the settings, Sentry on in the web server
and in commands (the workers) but not with the settings alone, a bad DSN stopping every process.
Slow: each check is a fresh Python process reading the settings (what Sentry reports is in
test_sentry.py)."""

import subprocess
import sys

import pytest

from testkit.processes import REPO_ROOT
from tests.settings_probe import SETUP, run_python, settings_env, settings_values

pytestmark = pytest.mark.slow


def test_settings_turn_sentry_on_with_a_dsn(tmp_path):
    names = ["SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE"]
    dsn = "http://public@127.0.0.1:9/1"
    values = settings_values(tmp_path, names, SECRET_KEY="x" * 50, SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="staging")
    assert values == {
        "SENTRY_DSN": "http://public@127.0.0.1:9/1",
        "SENTRY_ENVIRONMENT": "staging",
        "SENTRY_TRACES_SAMPLE_RATE": 0.0,
    }


def test_sentry_starts_with_django_in_the_web_server_and_in_commands_not_with_the_settings(tmp_path):
    active = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    web = f"import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; {active}; "
    web += f"import demucs_service.settings; {active}; import demucs_service.wsgi; {active}"
    dsn = {"SECRET_KEY": "x" * 50, "SENTRY_DSN": "http://public@127.0.0.1:9/1"}

    served = run_python(tmp_path, web, **dsn)
    # The workers: `manage.py qcluster` sets Django up as every command does.
    command = subprocess.run(
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", active],
        cwd=REPO_ROOT,
        env=settings_env(tmp_path, **dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["False", "False", "True"]
    assert command.returncode == 0, command.stderr
    assert command.stdout.split() == ["True"]


def test_a_bad_dsn_stops_every_process_at_start_up(tmp_path):
    result = run_python(tmp_path, SETUP, SECRET_KEY="x" * 50, SENTRY_DSN="not a dsn")

    assert result.returncode != 0
    assert "ImproperlyConfigured: SENTRY_DSN is not a valid Sentry DSN" in result.stderr
