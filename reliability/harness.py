"""The real service on loopback: gunicorn (several workers and threads) and a real `qcluster`
on one PostgreSQL database, sharing MEDIA_ROOT and the model folder; always stopped (process
groups, SIGTERM then SIGKILL) however the block ends.

Every process is fork+exec (subprocess.Popen, start_new_session), never multiprocessing: the
calling process may have run torch (docs/architecture.md, Fork safety).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from testkit import stripe
from testkit.http import Reply, http, multipart, wait_until
from testkit.processes import REPO_ROOT, free_port, start_process, stop_group
from testkit.servers import collect_static, server_env, start_gunicorn

SQUARE_WEBHOOK_SIGNATURE_KEY = "square-reliability-0123456789"
METRICS_TOKEN = "metrics-reliability-0123456789"

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
        STRIPE_SECRET_KEY=stripe.SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=stripe.WEBHOOK_SECRET,
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
