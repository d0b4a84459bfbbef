"""The product's own servers as separate processes on loopback: the environment they start
with, static files collected as deploy/ does, gunicorn on a port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit.processes import REPO_ROOT, start_process

# Settings the servers must not inherit from the caller's environment.
CLEARED_ENV = (
    "DJANGO_SETTINGS_MODULE",
    "REDIS_URL",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "NUM_PROXIES",
    "JOB_STALE_SECONDS",
    "JOB_MAX_ATTEMPTS",
    "JOB_REQUEUE_SECONDS",
    "MAX_UPLOAD_MB",
    "PAYMENTS_SIMULATED",
    "Q_CLUSTER_NAME",
    "MAX_RUNNING_JOBS_PER_USER",
    "STORAGE_QUOTA_MB",
    "MAX_DURATION_MINUTES",
    # Mail goes to the servers' logs, where the attack suite's tokens row reads the reset link.
    "EMAIL_URL",
    # The attack suite's SSRF row holds only with private addresses refused, as they are by default.
    "URL_IMPORT_ALLOW_PRIVATE",
    "WEBHOOK_ALLOW_PRIVATE",
)


def server_env(**env: str) -> dict[str, str]:
    """This process's environment without CLEARED_ENV, offline, unbuffered, plus `env`."""
    child_env = {key: value for key, value in os.environ.items() if key not in CLEARED_ENV}
    child_env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **env)
    return child_env


def collect_static(static_root: Path, env: dict[str, str]) -> None:
    """`collectstatic` into `static_root`: with DEBUG=0 every page's {% static %} needs the
    manifest (as deploy/ runs it before the service starts)."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPO_ROOT,
        env={**env, "STATIC_ROOT": str(static_root)},
        check=True,
        timeout=300,
    )


def start_gunicorn(
    *, port: int, env: dict[str, str], log_path: Path, workers: int, threads: int, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """gunicorn serving demucs_service.wsgi on 127.0.0.1:`port` (stop it with stop_group)."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "demucs_service.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "--no-control-socket",  # its default path is shared by every gunicorn of this user
        *extra_args,
    ]
    return start_process(command, env, log_path)
