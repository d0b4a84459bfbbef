"""The real service on loopback: gunicorn (several workers and threads) and a real `qcluster`
on one PostgreSQL database, sharing MEDIA_ROOT and the model folder; always stopped (process
groups, SIGTERM then SIGKILL) however the block ends.

Every process is fork+exec (subprocess.Popen, start_new_session), never multiprocessing: the
calling process may have run torch (docs/architecture.md, Fork safety).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STRIPE_SECRET_KEY = "sk_test_reliability_0123456789"
STRIPE_WEBHOOK_SECRET = "whsec_reliability_0123456789abcdef"
SQUARE_WEBHOOK_SIGNATURE_KEY = "square-reliability-0123456789"
METRICS_TOKEN = "metrics-reliability-0123456789"
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
    # Mail goes to the servers' logs, where the tokens row reads the password reset link.
    "EMAIL_URL",
    # The SSRF row holds only with private addresses refused, as they are by default.
    "URL_IMPORT_ALLOW_PRIVATE",
    "WEBHOOK_ALLOW_PRIVATE",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_of(settings_dict: dict) -> str:
    """A postgres:// URL for a Django DATABASES entry."""
    assert settings_dict["ENGINE"] == "django.db.backends.postgresql", "the reliability suite needs PostgreSQL"
    user = urllib.parse.quote(settings_dict.get("USER") or "", safe="")
    password = urllib.parse.quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{urllib.parse.quote(settings_dict['NAME'], safe='')}"


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {message or predicate}")
        time.sleep(interval)


def stop_group(process: subprocess.Popen, grace_seconds: float = 5) -> None:
    """SIGTERM the process group, SIGKILL what is left after the grace period."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # forked children may outlive the leader
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float = 0.0

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            data = response.read()
            return Reply(response.status, data, time.perf_counter() - started)
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), time.perf_counter() - started)


def multipart(
    fields: dict[str, str], files: list[tuple[str, str, bytes, str]], boundary: str | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; files are (field, filename, data, type),
    the filename sent exactly as given (quotes escaped)."""
    boundary = boundary or f"----rel{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data, content_type in files:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode("utf-8", "surrogatepass") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- the stack --------------------------------------------------------------------------


@dataclass
class Stack:
    base_url: str
    database_url: str
    root: Path
    media_root: Path
    model_repo: Path
    tmp_dir: Path  # TMPDIR of the servers: where upload temp files go
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, token: str) -> Reply:
        return http("GET", self.url(path), headers=self.auth(token))

    def delete(self, path: str, token: str) -> Reply:
        return http("DELETE", self.url(path), headers=self.auth(token))

    def upload(self, token: str, filename: str, data: bytes, **fields: str) -> Reply:
        body, content_type = multipart(fields, [("file", filename, data, "application/octet-stream")])
        return http(
            "POST", self.url("/api/upload"), body=body, headers={"Content-Type": content_type, **self.auth(token)}
        )

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`manage.py <args>` on the stack's database, e.g. audit_ledger."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    def alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")


def server_env(**env: str) -> dict[str, str]:
    child_env = {key: value for key, value in os.environ.items() if key not in CLEARED_ENV}
    child_env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **env)
    return child_env


def start_process(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`command` in the repository, its output in `log_path`, in a process group of its own."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )


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


@contextmanager
def running_stack(
    *,
    database_url: str,
    root: Path,
    model_repo: Path,
    secret_key: str,
    web_workers: int = 3,
    web_threads: int = 8,
    separation_workers: int = 2,
    max_upload_mb: int = 20,
    extra_env: dict[str, str] | None = None,
    static_root: Path | None = None,
) -> Iterator[Stack]:
    """gunicorn and a qcluster on `database_url` (already migrated), files under `root`;
    static files collected into root/static unless `static_root` holds them already."""
    port = free_port()
    media, tmp_dir, logs = root / "media", root / "tmp", root / "logs"
    for folder in (media, tmp_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)
    env = server_env(
        DATABASE_URL=database_url,
        DEBUG="0",
        SECRET_KEY=secret_key,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MEDIA_ROOT=str(media),
        DATA_DIR=str(root / "data"),
        STATIC_ROOT=str(static_root or root / "static"),
        DEMUCS_MODEL_REPO=str(model_repo),
        DEMUCS_DEVICE="cpu",
        SEPARATION_WORKERS=str(separation_workers),
        MAX_UPLOAD_MB=str(max_upload_mb),
        STRIPE_SECRET_KEY=STRIPE_SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        # Square's webhook verifies (no Square checkout: Stripe stays the provider) against our URL.
        SQUARE_WEBHOOK_SIGNATURE_KEY=SQUARE_WEBHOOK_SIGNATURE_KEY,
        SITE_URL=f"http://127.0.0.1:{port}",
        METRICS_TOKEN=METRICS_TOKEN,
        TMPDIR=str(tmp_dir),
        **{"LOG_LEVEL": "INFO", **(extra_env or {})},
    )
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        database_url=database_url,
        root=root,
        media_root=media,
        model_repo=model_repo,
        tmp_dir=tmp_dir,
        env=env,
    )
    try:
        if static_root is None:
            collect_static(root / "static", env)
        stack.logs["gunicorn"] = logs / "gunicorn.log"
        stack.processes["gunicorn"] = start_gunicorn(
            port=port, env=env, log_path=stack.logs["gunicorn"], workers=web_workers, threads=web_threads
        )
        stack.logs["qcluster"] = logs / "qcluster.log"
        stack.processes["qcluster"] = start_process(
            [sys.executable, "manage.py", "qcluster"], env, stack.logs["qcluster"]
        )
        stack.logs["maintenance"] = logs / "maintenance.log"
        stack.processes["maintenance"] = start_process(
            [sys.executable, "manage.py", "qcluster"],
            {**env, "Q_CLUSTER_NAME": "maintenance"},
            stack.logs["maintenance"],
        )

        def up() -> bool:
            stack.alive()
            try:
                return http("GET", stack.url("/healthz")).status == 200
            except OSError:
                return False

        wait_until(up, timeout=90, message="gunicorn to answer /healthz")
        wait_until(
            lambda: stack.alive() or "running" in stack.log_tail("qcluster", 100_000),
            timeout=90,
            message="the qcluster to start",
        )
        yield stack
    finally:
        for process in reversed(list(stack.processes.values())):
            stop_group(process)
