"""Settings read in a fresh Python process with the environment a test gives it, as a server
or a command would read them at start (the test process has its settings already)."""

import json
import os
import secrets
import subprocess
import sys

from testkit.processes import REPO_ROOT

SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'demucs_service.settings'; django.setup()"
PRODUCTION_SECRET = secrets.token_urlsafe(50)


def settings_env(tmp_path, **overrides) -> dict:
    """A bare environment (PATH, the database, DATA_DIR under tmp_path) plus `overrides`; None removes."""
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/demucs"),
        "DATA_DIR": str(tmp_path / "data"),
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_python(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    """`python -c code` in the repository with settings_env(tmp_path, **env)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=settings_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_values(tmp_path, names: list[str], **env) -> dict:
    """The settings `names` as a process started with `env` has them (JSON, str for the rest)."""
    code = (
        f"{SETUP}; import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))"
    )
    result = run_python(tmp_path, code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
