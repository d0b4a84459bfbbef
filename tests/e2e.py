"""Helpers for the end-to-end tests: a real `manage.py qcluster` subprocess on the test
database, audio to upload, and a small HTTP client on urllib (no requests here).

Fork safety (DESIGN.md, The engine): a process that has run multi-threaded torch work must
not fork without exec. The test process runs torch (the session's demo model, in-process
separations), so everything it starts here is fork+exec through subprocess.Popen, never
multiprocessing.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from tests.audio import tones, write_audio

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLERATE = 44100
# Settings the qcluster subprocess must not inherit from the test runner's environment.
_CLEARED_ENV = (
    "JOB_STALE_SECONDS",
    "JOB_MAX_ATTEMPTS",
    "JOB_REQUEUE_SECONDS",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "Q_CLUSTER_NAME",
)


# Debian's Chromium, without the background calls this offline machine would refuse.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# --- audio ------------------------------------------------------------------------------


def write_wav(path: Path, seconds: float, samplerate: int = SAMPLERATE) -> Path:
    return write_audio(path, tones(seconds, samplerate), samplerate)


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    """(frames, channels) samples and the samplerate of an encoded file."""
    samples, samplerate = soundfile.read(io.BytesIO(data), always_2d=True)
    return samples, samplerate


# --- the worker -------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test process uses: the test database (test_<name>)
    once pytest-django has created it, which is what the live server serves from."""
    from django.db import connection

    db = connection.settings_dict
    assert db["ENGINE"] == "django.db.backends.postgresql", "the e2e tests need PostgreSQL (DATABASE_URL)"
    assert db["NAME"].startswith("test_"), f"not a test database: {db['NAME']}"
    user = urllib.parse.quote(db.get("USER") or "", safe="")
    password = urllib.parse.quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{urllib.parse.quote(db['NAME'], safe='')}"


@dataclass
class Cluster:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the cluster and its forked workers at once, as the OOM killer or a lost
        machine would."""
        _signal_group(self.process, signal.SIGKILL)
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


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `pgid`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session: the group id is the cluster's pid
    except ProcessLookupError:
        pass


def stop_cluster(process: subprocess.Popen, grace_seconds: float = 5) -> None:
    """SIGTERM the whole process group, SIGKILL what is left after the grace period."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
    # Forked workers may outlive their parent; the group still names them.
    _signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


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
        stop_cluster(process)
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


# --- waiting ----------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, message: str | Callable[[], str] = ""
):
    """The first truthy value of predicate(), or AssertionError after `timeout` seconds;
    `message` (or what it returns, called at the time) says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def post_json(url: str, data: dict, token: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http("POST", url, body=json.dumps(data).encode(), headers=headers)


def get(url: str, token: str | None = None) -> Reply:
    return http("GET", url, headers={"Authorization": f"Bearer {token}"} if token else {})


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; files maps field -> (name, data, type)."""
    boundary = f"----e2e{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(base_url: str, token: str, path: Path, **fields: str) -> Reply:
    body, content_type = multipart(fields, {"file": (path.name, path.read_bytes(), "audio/wav")})
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
