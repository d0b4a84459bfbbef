"""The metrics a process measures itself (request latency, a worker's separations, failures).

Gunicorn and django-q2 run several processes: with PROMETHEUS_MULTIPROC_DIR set in the
environment (bin/run, the compose file and the systemd units set it), prometheus-client keeps these
values in files there and a scrape adds up every process's. Without it they live in this process.
Totals that the database already keeps (jobs, the ledger) are read at scrape time instead
(collectors.py), so they are right however many machines run workers.

Each metric is made on first use, not on import: a service empties its multiprocess folder when it
starts (worker_server.multiprocess_dir_reset), after Django has imported this module and before
any process measures anything.
"""

from functools import cache

from prometheus_client import Counter, Gauge, Histogram


@cache
def http_request_seconds() -> Histogram:
    return Histogram(
        "stemfold_http_request_duration_seconds",
        "Time to answer a request, by route (the URL pattern), method and status class.",
        ["route", "method", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
    )


@cache
def separation_seconds_per_audio_second() -> Histogram:
    return Histogram(
        "stemfold_separation_seconds_per_audio_second",
        "Wall time of a separation (decode, model, encode, zip) per second of audio, by model and device.",
        ["model", "device"],
        buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
    )


@cache
def job_wait_seconds() -> Histogram:
    return Histogram(
        "stemfold_job_wait_seconds",
        "Time from a job being queued to a worker starting it.",
        buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
    )


@cache
def job_failures() -> Counter:
    return Counter(
        "stemfold_job_failures",
        "Jobs that failed (and were refunded), by reason.",
        ["reason"],
    )


@cache
def worker_heartbeat() -> Gauge:
    return Gauge(
        "stemfold_worker_heartbeat_timestamp_seconds",
        "When a separation worker last reported progress (Unix time).",
        multiprocess_mode="max",
    )
