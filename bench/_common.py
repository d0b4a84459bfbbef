"""Plumbing for bench/separation.py: the bench database, qcluster processes, tables.

Nothing here runs torch: the benchmark's driver process only talks to Django, the database and
its subprocesses (a qcluster, the bare demucs runner, the demucs CLI), each started with
fork+exec, so the driver never holds torch state a child could inherit (docs/architecture.md, Fork safety).
"""

from __future__ import annotations

import os
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testkit.http import wait_until
from testkit.processes import start_process, stop_group

# --- the bench database -----------------------------------------------------------------


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database `url` names (a bench database, never the product's)."""
    import urllib.parse

    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name.startswith("demucs_bench"):
        raise SystemExit(f"Refusing to recreate {name!r}: the bench database's name must start with demucs_bench")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


# --- qcluster ---------------------------------------------------------------------------


@dataclass
class Cluster:
    """A real `manage.py qcluster` in its own session (so the group is stopped at once)."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> Cluster:
        self.process = start_process([sys.executable, "manage.py", "qcluster"], self.env, self.log_path)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 300) -> list[re.Match]:
        """The first `count` matches of `pattern` in the log, waiting for them."""
        regex = re.compile(pattern)

        def found():
            if self.process.poll() is not None:
                raise RuntimeError(f"qcluster exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            matches = list(regex.finditer(self.log()))
            return matches if len(matches) >= count else None

        return wait_until(found, timeout=timeout, message=f"{pattern!r} in {self.log_path}", interval=0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace_seconds=10)
            self.process = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def peak_rss_mib(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a live process in MiB: its peak and current resident memory."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmHWM"], fields["VmRSS"]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (those gone meanwhile count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """Pids of the processes whose command name is `name` (e.g. every PostgreSQL backend)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


# --- figures ----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """`median s (min-max, n runs)`."""
    return f"{median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"


@dataclass
class Row:
    goal: str
    measured: str
    ratio: float | None
    target: float | None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.ratio is None or self.target is None:
            return "-"
        return "PASS" if self.ratio <= self.target else "FAIL"


def print_table(title: str, rows: list[Row], command: list[str]) -> None:
    print()
    print(f"== {title}")
    print(f"command: {shlex.join(command)}")
    headers = ("goal", "measured", "ratio", "target", "result")
    cells = [
        (
            row.goal,
            row.measured,
            "-" if row.ratio is None else f"{row.ratio:.3f}",
            "-" if row.target is None else f"<= {row.target:g}",
            row.verdict,
        )
        for row in rows
    ]
    widths = [max(len(headers[i]), *(len(cell[i]) for cell in cells)) for i in range(len(headers))]
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)))
    print("  ".join("-" * width for width in widths))
    for row, cell in zip(rows, cells, strict=True):
        print("  ".join(value.ljust(width) for value, width in zip(cell, widths, strict=True)))
        if row.note:
            print(f"    {row.note}")
    sys.stdout.flush()


def load_average() -> float:
    return os.getloadavg()[0]
