"""Processes started in a process group of their own and stopped with their children, free
loopback ports, and the URL of a Django database for processes that share it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.parse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """`sig` to every process of the group `process` leads (start_new_session: the group id is
    its pid); nothing if the group is gone."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def stop_group(process: subprocess.Popen, grace_seconds: float = 5) -> None:
    """SIGTERM the process group, SIGKILL what is left after the grace period."""
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
    # Forked children may outlive the leader; the group still names them.
    signal_group(process, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


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


def database_url_of(settings_dict: dict) -> str:
    """A postgres:// URL for a Django DATABASES entry."""
    assert settings_dict["ENGINE"] == "django.db.backends.postgresql", "this needs PostgreSQL (DATABASE_URL)"
    user = urllib.parse.quote(settings_dict.get("USER") or "", safe="")
    password = urllib.parse.quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{urllib.parse.quote(settings_dict['NAME'], safe='')}"


def database_url() -> str:
    """The URL of the database this test process uses: the test database (test_<name>) once
    pytest-django has created it, which is what the live server serves from."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    assert name.startswith("test_"), f"not a test database: {name}"
    return database_url_of(connection.settings_dict)
