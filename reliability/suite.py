"""Runs the scenarios against one running stack and renders their rows."""

from __future__ import annotations

import time
from dataclasses import dataclass

from reliability.scenarios import faults, hostile, payments, reads, tokens, uploads
from reliability.scenarios.common import Row


@dataclass(frozen=True)
class Sizes:
    users: int = 20
    uploads: int = 10
    webhook_requests: int = 20
    load_seconds: float = 10
    load_clients: int = 16
    max_upload_mb: int = 5
    job_timeout: float = 900
    refund_rounds: int = 30
    # The fault rows that run: the worker ones and the PostgreSQL restart are slow (a long clip).
    faults: tuple[str, ...] = ("refund_race", "queue", "sigkill", "sigterm", "postgres")


FULL = Sizes()
CI = Sizes(
    users=4,
    uploads=5,
    webhook_requests=20,
    load_seconds=5,
    load_clients=8,
    job_timeout=120,
    refund_rounds=20,
    # Not the PostgreSQL restart: it takes down the machine's whole server, other databases too.
    faults=("refund_race", "queue", "sigkill", "sigterm"),
)


def run_all(stack, sizes: Sizes, *, log=print, only: set[str] | None = None) -> list[Row]:
    """Every scenario, or those named in `only` (uploads, payments, reads, hostile, tokens,
    refund_race, queue, sigkill, sigterm, postgres)."""
    scenarios = [
        (
            "uploads",
            lambda: uploads.run(stack, users=sizes.users, uploads=sizes.uploads, job_timeout=sizes.job_timeout),
        ),
        ("payments", lambda: payments.run(stack, requests=sizes.webhook_requests)),
        ("reads", lambda: reads.run(stack, seconds=sizes.load_seconds, clients=sizes.load_clients)),
        ("hostile", lambda: hostile.run(stack, max_upload_mb=sizes.max_upload_mb, job_timeout=sizes.job_timeout)),
        # In both sizes: a handful of requests.
        ("tokens", lambda: tokens.run(stack)),
    ]
    fault_rows = {
        "refund_race": lambda: faults.refund_race(stack, rounds=sizes.refund_rounds),
        "queue": lambda: faults.queue_unreachable(stack),
        "sigkill": lambda: faults.worker_sigkill(stack, job_timeout=sizes.job_timeout),
        "sigterm": lambda: faults.worker_sigterm(stack, job_timeout=sizes.job_timeout),
        "postgres": lambda: faults.postgres_restart(stack, job_timeout=sizes.job_timeout),
    }
    scenarios += [(name, fault_rows[name]) for name in sizes.faults]
    if only:
        scenarios = [(name, scenario) for name, scenario in scenarios if name in only]
    rows = []
    for name, scenario in scenarios:
        started = time.monotonic()
        log(f"[reliability] {name} ...", flush=True)
        try:
            row = scenario()
        except Exception as error:  # a scenario that crashes is a row that does not hold
            row = Row(name, f"crashed: {type(error).__name__}: {error}", False, time.monotonic() - started)
        log(f"[reliability] {name}: {'holds' if row.holds else 'DOES NOT HOLD'} ({row.seconds:.0f} s)", flush=True)
        for problem in row.problems:
            log(f"    - {problem}", flush=True)
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    """Plain text: row, figure, holds."""
    width = max(len(row.name) for row in rows)
    lines = [f"{'row'.ljust(width)}  holds  figure", f"{'-' * width}  -----  ------"]
    lines += [f"{row.name.ljust(width)}  {'yes' if row.holds else 'NO '}    {row.figure}" for row in rows]
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    lines = ["| Row | Figure | Holds |", "|---|---|---|"]
    lines += [f"| {row.name} | {row.figure.replace('|', '/')} | {'yes' if row.holds else '**no**'} |" for row in rows]
    for row in rows:
        if row.details:
            lines += ["", f"{row.name}, per case:", "", "| Case | Answer |", "|---|---|"]
            lines += [
                f"| {case} | {answer if answer is not None else 'connection closed'} |"
                for case, answer in row.details.items()
            ]
        if row.problems:
            lines += ["", f"{row.name}, problems:", ""] + [f"- {problem}" for problem in row.problems]
    return "\n".join(lines) + "\n"
