"""Runs the scenarios against one running stack and renders their rows."""

from __future__ import annotations

import time
from dataclasses import dataclass

from reliability.scenarios import faults, free_rides, hostile, payments, platform, reads, shortfall, tokens, uploads
from reliability.scenarios.common import Row


@dataclass(frozen=True)
class Sizes:
    users: int = 20
    uploads: int = 10
    webhook_requests: int = 20
    load_seconds: float = 10
    load_clients: int = 16
    max_upload_mb: int = 5
    # The longest song; the row on headers that lie about length uploads one minute more.
    max_minutes: int = 15
    storage_quota_mb: int = 4096
    job_timeout: float = 900
    refund_rounds: int = 30
    shortfall_threads: int = 8  # concurrent uploads and cancels of the disputed customer
    # The fault rows that run: the worker ones and the PostgreSQL restart are slow (a long clip).
    faults: tuple[str, ...] = ("refund_race", "queue", "sigkill", "sigterm", "sigterm_group", "postgres")

    def server_env(self) -> dict[str, str]:
        """The servers' limits the rows are measured against (running_stack sets MAX_UPLOAD_MB)."""
        return {
            "MAX_DURATION_MINUTES": str(self.max_minutes),
            "STORAGE_QUOTA_MB": str(self.storage_quota_mb),
            "MAX_RUNNING_JOBS_PER_USER": "1",
        }


FULL = Sizes()
CI = Sizes(
    users=4,
    uploads=5,
    webhook_requests=20,
    load_seconds=5,
    load_clients=8,
    job_timeout=120,
    refund_rounds=20,
    max_minutes=12,
    shortfall_threads=4,
    # Not the PostgreSQL restart: it takes down the machine's whole server, other databases too.
    faults=("refund_race", "queue", "sigkill", "sigterm", "sigterm_group"),
)


def run_all(stack, sizes: Sizes, *, log=print, only: set[str] | None = None) -> list[Row]:
    """Every scenario, or those named in `only` (uploads, payments, shortfall, reads, hostile, tokens,
    decoded_length, attempts, storage, fairness, ssrf, square_forgery, api_keys, refund_race, queue,
    sigkill, sigterm, sigterm_group, postgres)."""
    scenarios = [
        (
            "uploads",
            lambda: uploads.run(stack, users=sizes.users, uploads=sizes.uploads, job_timeout=sizes.job_timeout),
        ),
        ("payments", lambda: payments.run(stack, requests=sizes.webhook_requests)),
        ("shortfall", lambda: shortfall.run(stack, threads=sizes.shortfall_threads)),
        ("reads", lambda: reads.run(stack, seconds=sizes.load_seconds, clients=sizes.load_clients)),
        ("hostile", lambda: hostile.run(stack, max_upload_mb=sizes.max_upload_mb, job_timeout=sizes.job_timeout)),
        # In both sizes: a handful of requests.
        ("tokens", lambda: tokens.run(stack)),
        ("decoded_length", lambda: free_rides.decoded_length(stack, max_minutes=sizes.max_minutes)),
        ("attempts", lambda: free_rides.attempts_never_reused(stack, job_timeout=sizes.job_timeout)),
        (
            "storage",
            lambda: free_rides.storage_bounded(stack, quota_mb=sizes.storage_quota_mb, job_timeout=sizes.job_timeout),
        ),
        ("fairness", lambda: free_rides.fair_queue(stack, job_timeout=sizes.job_timeout)),
        ("ssrf", lambda: platform.ssrf_refused(stack)),
        ("square_forgery", lambda: platform.square_forgery_refused(stack)),
        ("api_keys", lambda: platform.api_keys_and_metrics(stack)),
    ]
    fault_rows = {
        "refund_race": lambda: faults.refund_race(stack, rounds=sizes.refund_rounds),
        "queue": lambda: faults.queue_unreachable(stack),
        "sigkill": lambda: faults.worker_sigkill(stack, job_timeout=sizes.job_timeout),
        "sigterm": lambda: faults.worker_sigterm(stack, job_timeout=sizes.job_timeout),
        "sigterm_group": lambda: faults.worker_sigterm_group(stack, job_timeout=sizes.job_timeout),
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
