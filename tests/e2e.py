"""Helpers for the end-to-end tests: a real `manage.py qcluster` subprocess on the test
database, and accounts made over the live server's API (HTTP, audio and processes: testkit).

Fork safety (docs/architecture.md, Fork safety): a process that has run multi-threaded torch
work must not fork without exec. The test process runs torch (the session's demo model,
in-process separations), so everything it starts here is fork+exec through subprocess.Popen,
never multiprocessing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: F401 (the browser tests' e2e.CHROMIUM)
from testkit.http import Reply, get, http, multipart, post_json, wait_until
from testkit.processes import REPO_ROOT, database_url, group_members, signal_group, stop_group

# Settings the qcluster subprocess must not inherit from the test runner's environment.
_CLEARED_ENV = (
    "JOB_STALE_SECONDS",
    "JOB_MAX_ATTEMPTS",
    "JOB_REQUEUE_SECONDS",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "Q_CLUSTER_NAME",
)


# --- the worker -------------------------------------------------------------------------


@dataclass
class Cluster:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the cluster and its forked workers at once, as the OOM killer or a lost
        machine would."""
        signal_group(self.process, signal.SIGKILL)
        self.process.wait(timeout=10)

    def live_processes(self) -> list[int]:
        """The cluster's processes still alive (zombies aside): the cluster and its workers."""
        return group_members(self.process.pid)

    def wait_running(self, timeout: float = 60) -> None:
        wait_until(
            lambda: "running" in self.log() or self.process.poll() is not None,
            timeout=timeout,
            message="the qcluster to start",
        )
        assert self.process.poll() is None, f"qcluster exited with {self.process.returncode}:\n{self.log()}"


@contextmanager
def qcluster(*, media_root: Path, model_repo: Path, log_path: Path, env: dict[str, str] | None = None):
    """A real `manage.py qcluster` (fork+exec) on the test database, sharing MEDIA_ROOT and
    DEMUCS_MODEL_REPO with the test process; always stopped on exit, children included."""
    from django.conf import settings

    child_env = {key: value for key, value in os.environ.items() if key not in _CLEARED_ENV}
    child_env.update(
        DATABASE_URL=database_url(),
        MEDIA_ROOT=str(media_root),
        DEMUCS_MODEL_REPO=str(model_repo),
        DEBUG="0",
        # django-q2 signs queued tasks with SECRET_KEY: the worker must share the web's.
        SECRET_KEY=settings.SECRET_KEY,
        SEPARATION_WORKERS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    child_env.update(env or {})
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO_ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster = Cluster(process=process, log_path=log_path)
    try:
        yield cluster
    finally:
        stop_group(process)
        log_file.close()


def prepare_folders(root: Path, settings, demo_model_repo: Path) -> tuple[Path, Path]:
    """MEDIA_ROOT and DEMUCS_MODEL_REPO under `root`, shared by the live server (this process,
    through the pytest-django `settings` fixture) and the workers; the session's demo model is
    copied there first (a test may spoil its copy)."""
    media, models = root / "media", root / "models"
    media.mkdir()
    models.mkdir()
    shutil.copy(demo_model_repo / "demo.th", models / "demo.th")
    settings.MEDIA_ROOT = media
    settings.DEMUCS_MODEL_REPO = models
    return media, models


class Clusters:
    """Starts qclusters on demand; on exit every one is stopped (children too) and the tail
    of its log printed."""

    def __init__(self, *, media_root: Path, model_repo: Path, log_dir: Path):
        self.media_root, self.model_repo, self.log_dir = media_root, model_repo, log_dir
        self._started: list[tuple[object, Cluster]] = []

    def start(self, name: str = "qcluster", **env: str) -> Cluster:
        manager = qcluster(
            media_root=self.media_root, model_repo=self.model_repo, log_path=self.log_dir / f"{name}.log", env=env
        )
        cluster = manager.__enter__()
        self._started.append((manager, cluster))
        cluster.wait_running()
        return cluster

    def __enter__(self) -> Clusters:
        return self

    def __exit__(self, *exc_info) -> None:
        for manager, cluster in reversed(self._started):
            manager.__exit__(None, None, None)
            print(f"\n--- {cluster.log_path.name} ---\n{cluster.log()[-4000:]}")


def upload(base_url: str, token: str, path: Path, **fields: str) -> Reply:
    body, content_type = multipart(fields, [("file", path.name, path.read_bytes(), "audio/wav")])
    return http(
        "POST",
        f"{base_url}/api/upload",
        body=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )


def register(base_url: str, username: str) -> str:
    """A new account over the API; its bearer token."""
    reply = post_json(
        f"{base_url}/api/auth/register",
        {"email": f"{username}@example.com", "username": username, "password": "a-long-e2e-password-42"},
    )
    assert reply.status == 201, reply.body
    verify_by_mail(base_url, f"{username}@example.com")
    return reply.json()["access_token"]


def verify_by_mail(base_url: str, email: str) -> None:
    """Follows the verification link last mailed to `email` (the test mail outbox) on the live
    server, as a browser does: the confirm page, then its form (which grants the signup bonus)."""
    from django.core import mail

    message = [message for message in mail.outbox if message.to == [email]][-1]
    path = re.search(r"/accounts/confirm-email/[^\s\"<>]+/", message.body).group(0)
    page = http("GET", f"{base_url}{path}")
    cookie = page.headers["set-cookie"].split(";", 1)[0]  # the CSRF cookie
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body.decode()).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode()
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    confirmed = http("POST", f"{base_url}{path}", body=form, headers=headers)
    assert confirmed.status in (200, 302), (confirmed.status, confirmed.body[:500])


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def poll_job(base_url, token, job_id, *, until, timeout=120.0, interval=0.25):
    """Status replies, in order, until `until(reply)` is true; the last one satisfies it."""
    seen = []

    def check():
        reply = get(f"{base_url}/api/status/{job_id}", token)
        assert reply.status == 200, reply.body
        seen.append(reply.json())
        return until(seen[-1])

    wait_until(check, timeout=timeout, interval=interval, message=lambda: f"job {job_id}: last {seen[-1:]}")
    return seen


def upload_ok(base_url, token, path):
    reply = upload(base_url, token, path)
    assert reply.status == 202, reply.body
    return reply.json()
