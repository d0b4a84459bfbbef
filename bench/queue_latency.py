"""Queue benchmark (issue 5, goal 7): how long a queued task waits before a worker starts it.

    .venv/bin/python -m bench.queue_latency         # both brokers, 50 tasks each (about 1.5 minutes)
    .venv/bin/python -m bench.queue_latency --brokers orm --count 100

For each broker a real `manage.py qcluster` (the product's Q_CLUSTER: the ORM broker on the
database by default, Redis when REDIS_URL is set) runs against a fresh PostgreSQL database
(`demucs_queuebench_run`); a separate enqueuing process (the product's django_q async_task)
queues `bench.queue_latency.record_start` tasks one at a time, spaced by a random 0.2-0.6 s so
none waits behind another, each carrying time.time() taken just before it is queued. The task appends its
own time.time() at start to a file. Latency = start - enqueue (one clock: same machine). A few
warm-up tasks first (the worker's imports) are not counted.
Goals: p95 <= 300 ms with the ORM broker, <= 50 ms with Redis.

Redis runs on its own database number (--redis-url, default db 13) so no other cluster on the same
Redis takes the bench's tasks or gives it theirs.
"""

from __future__ import annotations

import os
import sys

# `python bench/queue_latency.py` puts bench/ first on sys.path, where bench/separation.py would
# shadow the separation app: the repository root instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import time  # noqa: E402


def record_start(path: str, enqueued: float, index: int) -> None:
    """The benchmark task: when it started, next to when it was queued. Runs in the worker."""
    started = time.time()
    with open(path, "a") as file:
        file.write(f"{index} {enqueued!r} {started!r}\n")


# Everything below runs in the benchmark's own processes, never in the worker.

WARMUP_TASKS = 3
GOALS_MS = {"orm": 300.0, "redis": 50.0}


def enqueue(out: str, count: int, min_gap: float, max_gap: float) -> None:
    """The enqueuing process (`--enqueue`): Django on the bench database, the product's Q_CLUSTER."""
    import random

    import django

    django.setup()
    from django_q.tasks import async_task

    for index in range(-WARMUP_TASKS, count):
        if index == 0:  # the warm-up tasks have run: the worker has imported what it needs
            _wait_lines(out, WARMUP_TASKS, timeout=120)
        time.sleep(random.uniform(min_gap, max_gap))
        async_task("bench.queue_latency.record_start", out, time.time(), index)


def _wait_lines(path: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and len(open(path).read().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{count} tasks did not start within {timeout:g} s")


def measure(broker: str, args, root, database_url: str) -> list[float]:
    import subprocess

    from bench.web import SECRET_KEY, manage
    from testkit.http import wait_until
    from testkit.processes import REPO_ROOT, start_process, stop_group
    from testkit.servers import server_env

    env = server_env(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="demucs_service.settings",
        DEBUG="0",
        SECRET_KEY=SECRET_KEY,
        DATA_DIR=str(root / "data"),
        MEDIA_ROOT=str(root / "media"),
        DEMUCS_MODEL_REPO=str(root / "models"),
        DEMUCS_DEVICE="cpu",
        WORKER_PRELOAD_MODELS="none",
        LOG_LEVEL="INFO",
        **({"REDIS_URL": args.redis_url} if broker == "redis" else {}),
    )
    manage(env, "migrate", "--noinput")
    out = root / f"{broker}.starts"
    out.unlink(missing_ok=True)
    log = root / f"qcluster-{broker}.log"
    cluster = start_process([sys.executable, "manage.py", "qcluster"], env, log)
    try:
        wait_until(
            lambda: cluster.poll() is None and "running" in log.read_text(errors="replace"),
            timeout=120,
            message=f"the qcluster ({broker}) to start",
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.queue_latency",
                "--enqueue",
                str(out),
                "--count",
                str(args.count),
                "--min-gap",
                str(args.min_gap),
                "--max-gap",
                str(args.max_gap),
            ],
            cwd=REPO_ROOT,
            env={**env, "LOG_LEVEL": "WARNING"},  # no line per enqueue
            check=True,
            timeout=args.count * args.max_gap + 300,
        )
        _wait_lines(str(out), WARMUP_TASKS + args.count, timeout=60)
    except BaseException:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        stop_group(cluster)
    latencies = []
    for line in out.read_text().splitlines():
        index, enqueued, started = line.split()
        if int(index) >= 0:
            latencies.append((float(started) - float(enqueued)) * 1000)
    return latencies


def main() -> int:
    import argparse
    import shutil
    import statistics
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="orm,redis", help="comma-separated: orm, redis (default both)")
    parser.add_argument("--count", type=int, default=50, help="tasks measured per broker (default 50)")
    parser.add_argument("--min-gap", type=float, default=0.2, help="least seconds between enqueues (default 0.2)")
    parser.add_argument("--max-gap", type=float, default=0.6, help="most seconds between enqueues (default 0.6)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="Redis for the redis broker")
    parser.add_argument("--enqueue", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue:
        enqueue(args.enqueue, args.count, args.min_gap, args.max_gap)
        return 0

    from bench.web import command_line, drop_database, fresh_database, print_table
    from testkit.figures import percentile

    database = "demucs_queuebench_run"
    root = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    rows = []
    try:
        for broker in args.brokers.split(","):
            latencies = measure(broker, args, root, fresh_database(database))
            p50, p95, worst = percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies)
            print(f"  {broker:5} {len(latencies)} tasks: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")
            goal = GOALS_MS[broker]
            rows.append(
                (
                    f"{broker} broker: enqueue-to-start p95 <= {goal:g} ms",
                    f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms, mean "
                    f"{statistics.fmean(latencies):.1f} ms ({len(latencies)} tasks)",
                    f"{p95 / goal:.2f}",
                    "pass" if p95 <= goal else "FAIL",
                )
            )
    finally:
        drop_database(database)
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    print_table(
        "bench/queue_latency.py: enqueue-to-start latency (issue 5, goal 7)",
        rows,
        command_line("bench.queue_latency"),
        [
            f"one qcluster (SEPARATION_WORKERS=1, the product's Q_CLUSTER) on {os.cpu_count()} shared CPUs, "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; ratio = p95 / goal",
        ],
    )
    return 0 if all(row[3] != "FAIL" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
