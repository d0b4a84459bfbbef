"""Web benchmark (issue 5, goal 6): the job status API against a bare endpoint, and the memory a
500 MB upload and download cost the web process.

    .venv/bin/python -m bench.web                      # everything (about 3 minutes)
    .venv/bin/python -m bench.web --skip-rss           # only the requests/s comparison
    .venv/bin/python -m bench.web --skip-throughput    # only the upload/download memory

1. Requests/s. One gunicorn (the product's WSGI app, DJANGO_SETTINGS_MODULE=bench.bench_settings,
   which adds `/bench/constant`: an authenticated DRF endpoint returning a constant, with the
   product API's authentication and permission) serves both `GET /api/status/<id>` (a completed
   job with four stems: the serializer's biggest answer) and `/bench/constant`, with the same JWT.
   wrk (keep-alive, loopback) runs them alternately, several runs; the figures are medians.
   Goal: status req/s / constant req/s >= 0.7.
2. Memory. One gunicorn worker process; its VmRSS and VmHWM (peak) from /proc before and after
   a 500 MiB wav (44.1 kHz stereo 16-bit, ~50 minutes) is uploaded through `POST /api/upload`
   with a streamed body, and before and after a 500 MiB completed job's zip is downloaded from
   `GET /api/download/<id>` and read in chunks. A fresh server for each transfer (so each has its
   own peak), after a small warm-up transfer (so lazy imports are not counted). Goal: growth
   <= 50 MB.

Everything runs on loopback against its own PostgreSQL database (`demucs_webbench_run`, dropped
and created) and a temporary MEDIA_ROOT; servers are fork+exec'd (testkit helpers).
"""

from __future__ import annotations

import os
import sys

# `python bench/web.py` puts bench/ first on sys.path, where bench/separation.py would shadow the
# separation app: put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import http.client  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402

from bench._common import cpu_seconds  # noqa: E402
from testkit.figures import percentile  # noqa: E402
from testkit.http import wait_until  # noqa: E402
from testkit.processes import REPO_ROOT, free_port, stop_group  # noqa: E402
from testkit.servers import server_env, start_gunicorn  # noqa: E402

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
SECRET_KEY = "bench-web-" + "x" * 40
MIB = 1024 * 1024
RSS_LIMIT_MB = 50
RATIO_GOAL = 0.7


# --- shared by the benches ------------------------------------------------------------------


def fresh_database(name: str) -> str:
    """Drop and create `name` on the local PostgreSQL; its URL."""
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_URL}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def django_setup(env: dict[str, str]) -> None:
    """This process on the bench database, for making users, tokens and jobs through the ORM."""
    os.environ.update(env)
    import django

    django.setup()


def print_table(title: str, rows: list[tuple[str, str, str, str]], command: str, notes: list[str]) -> None:
    header = ("goal", "figure", "ratio", "result")
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(4)]
    print(f"\n{title}")
    for row in [header, tuple("-" * width for width in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for note in notes:
        print(f"note: {note}")
    print(f"command: {command}")


def command_line(module: str = "bench.web") -> str:
    return shlex.join([".venv/bin/python", "-m", module, *sys.argv[1:]])


# --- the server -------------------------------------------------------------------------------


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    token: str = ""
    status_job: str = ""


@contextmanager
def gunicorn(site: Site, *, workers: int, threads: int, name: str):
    port = free_port()
    log = site.root / "logs" / f"{name}.log"
    process = start_gunicorn(port=port, env=site.env, log_path=log, workers=workers, threads=threads)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout=90, message="gunicorn to answer /healthz")
        yield process, port
    finally:
        stop_group(process)


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024 / 1e6
    return fields


def prepare(root: Path, database: str) -> Site:
    for folder in ("media", "tmp", "logs", "data", "static", "models"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    env = server_env(
        DATABASE_URL=fresh_database(database),
        DJANGO_SETTINGS_MODULE="bench.bench_settings",
        DEBUG="0",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MEDIA_ROOT=str(root / "media"),
        DATA_DIR=str(root / "data"),
        STATIC_ROOT=str(root / "static"),
        DEMUCS_MODEL_REPO=str(root / "models"),
        DEMUCS_DEVICE="cpu",
        # The 500 MiB upload is ~50 minutes of audio.
        MAX_UPLOAD_MB="600",
        MAX_DURATION_MINUTES="120",
        EMAIL_VERIFICATION="none",
        TMPDIR=str(root / "tmp"),
        LOG_LEVEL="INFO",
    )
    manage(env, "migrate", "--noinput")
    manage(env, "create_demo_model", "--repo", str(root / "models"))
    django_setup(env)

    from decimal import Decimal

    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User
    from accounts.services import user_save_new
    from credits.models import CreditTransaction
    from credits.services import ledger_append
    from separation.models import Job

    user = user_save_new(user=User(username="bench", email="bench@example.com"))
    ledger_append(user_id=user.pk, amount=Decimal(1000), kind=CreditTransaction.Kind.ADMIN_GRANT, description="bench")
    job = completed_job(user, root / "media", size=MIB)
    Job.objects.filter(pk=job.pk).update(duration_seconds=200.0)
    return Site(root=root, env=env, token=str(AccessToken.for_user(user)), status_job=str(job.pk))


def completed_job(user, media: Path, *, size: int = 0, link_to: Path | None = None):
    """A completed job with four stems whose zip is `size` bytes (or a hard link to `link_to`)."""
    from django.utils import timezone

    from separation.models import Job, job_folder

    job_id = uuid.uuid4()
    folder = media / job_folder(job_id)
    folder.mkdir(parents=True)
    if link_to is not None:
        os.link(link_to, folder / "stems.zip")
    else:
        (folder / "stems.zip").write_bytes(os.urandom(size))
    names = ("drums", "bass", "other", "vocals")
    return Job.objects.create(
        id=job_id,
        user=user,
        original_filename="A song.wav",
        model="demo",
        cost=1,
        duration_seconds=60.0,
        status=Job.Status.COMPLETED,
        progress=100,
        stems=[
            {"name": name, "file": f"{job_folder(job_id)}/{name}.wav", "waveform": f"{job_folder(job_id)}/{name}.png"}
            for name in names
        ],
        zip_file=f"{job_folder(job_id)}/stems.zip",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )


# --- 1. requests/s ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_ms_per_request: float = 0.0  # in the gunicorn workers (not PostgreSQL, not the client)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, token: str, *, seconds: float, connections: int, threads: int) -> LoadResult:
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        print(f"  wrk socket errors on {url}: {socket_errors.group(1)}")
    return LoadResult(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=int(errors.group(1)) if errors else 0,
        requests=int(re.search(r"(\d+) requests in", output).group(1)),
    )


def _python_load_process(port: int, path: str, token: str, seconds: float, results) -> None:
    """One keep-alive connection, requests back to back (the fallback without wrk)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        errors += response.status != 200
    results.put((latencies, errors))


def python_load(port: int, path: str, token: str, *, seconds: float, connections: int) -> LoadResult:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_python_load_process, args=(port, path, token, seconds, results))
        for _ in range(connections)
    ]
    for process in processes:
        process.start()
    latencies, errors = [], 0
    for _ in processes:
        more, failed = results.get(timeout=seconds + 60)
        latencies += more
        errors += failed
    for process in processes:
        process.join()
    return LoadResult(
        len(latencies) / seconds, percentile(latencies, 0.5), percentile(latencies, 0.99), errors, len(latencies)
    )


def throughput(site: Site, args) -> list[tuple[str, str, str, str]]:
    paths = {"status": f"/api/status/{site.status_job}", "constant": "/bench/constant"}
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    results: dict[str, list[LoadResult]] = {name: [] for name in paths}
    with gunicorn(site, workers=args.web_workers, threads=args.web_threads, name="throughput") as (master, port):
        workers = worker_pids(master.pid)

        def load(name: str, seconds: float) -> LoadResult:
            cpu_before = cpu_seconds(workers)
            result = send(name, seconds)
            result.cpu_ms_per_request = (cpu_seconds(workers) - cpu_before) * 1000 / max(result.requests, 1)
            return result

        def send(name: str, seconds: float) -> LoadResult:
            if use_wrk:
                return wrk(
                    f"http://127.0.0.1:{port}{paths[name]}",
                    site.token,
                    seconds=seconds,
                    connections=args.connections,
                    threads=1,
                )
            return python_load(port, paths[name], site.token, seconds=seconds, connections=args.connections)

        for name in paths:  # warm-up: connections, imports, the database connection of every thread
            load(name, 3)
        for run in range(args.runs):
            order = list(paths) if run % 2 == 0 else list(reversed(paths))
            for name in order:
                result = load(name, args.seconds)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} responses were not 200")
                results[name].append(result)
                print(
                    f"  run {run + 1} {name:8} {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"worker CPU {result.cpu_ms_per_request:5.2f} ms/request"
                )

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(result, field) for result in results[name])

    per_run = [s.requests_per_second / c.requests_per_second for s, c in zip(*results.values(), strict=True)]
    ratio = statistics.median(per_run)
    print(f"\n  per-run ratios: {', '.join(f'{value:.2f}' for value in per_run)}")
    client = "wrk -t1" if use_wrk else "python http.client processes"
    setup = f"gunicorn {args.web_workers}x{args.web_threads} gthread, {client} -c{args.connections}"
    rows = []
    for name in paths:
        rows.append(
            (
                f"{paths[name].split('/')[1]}/{name} ({setup})",
                f"{median(name, 'requests_per_second'):.0f} req/s, p50 {median(name, 'p50_ms'):.2f} ms, "
                f"p99 {median(name, 'p99_ms'):.2f} ms, worker CPU {median(name, 'cpu_ms_per_request'):.2f} ms/req",
                "",
                "",
            )
        )
    cpu_ratio = median("constant", "cpu_ms_per_request") / median("status", "cpu_ms_per_request")
    rows.append(
        (
            f"status req/s / constant req/s >= {RATIO_GOAL}",
            f"median of {args.runs} runs of {args.seconds:g} s",
            f"{ratio:.2f}",
            "pass" if ratio >= RATIO_GOAL else "FAIL",
        )
    )
    rows.append(
        (
            "(diagnostic) constant / status gunicorn-worker CPU per request",
            "less sensitive to other load on the machine",
            f"{cpu_ratio:.2f}",
            "",
        )
    )
    return rows


# --- 2. memory of a 500 MB upload and download ----------------------------------------------------


def write_wav(path: Path, size: int, samplerate: int = 44100, channels: int = 2) -> float:
    """A valid 16-bit PCM wav of about `size` bytes, written in chunks; its duration in seconds."""
    import numpy as np

    frame_bytes = 2 * channels
    data_bytes = (size - 44) // frame_bytes * frame_bytes
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, samplerate, samplerate * frame_bytes, frame_bytes, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    # One second of two tones, repeated.
    t = np.arange(samplerate) / samplerate
    second = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1)[:, :channels]
    chunk = (second * 8000).astype("<i2").tobytes()
    with open(path, "wb") as file:
        file.write(header)
        left = data_bytes
        while left:
            piece = chunk[: min(len(chunk), left)]
            file.write(piece)
            left -= len(piece)
    return data_bytes / frame_bytes / samplerate


def upload_streamed(port: int, token: str, path: Path) -> tuple[int, bytes]:
    """POST /api/upload with the file sent from disk in 1 MiB pieces."""
    boundary = f"----bench{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ndemo\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    connection.endheaders()
    connection.send(head)
    with open(path, "rb") as file:
        while piece := file.read(MIB):
            connection.send(piece)
    connection.send(tail)
    response = connection.getresponse()
    return response.status, response.read()


def download_streamed(port: int, token: str, job_id: str) -> tuple[int, int]:
    """GET /api/download/<id>, read in 1 MiB pieces and thrown away; (status, bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", f"/api/download/{job_id}", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    received = 0
    while piece := response.read(MIB):
        received += len(piece)
    return response.status, received


def memory(site: Site, args) -> list[tuple[str, str, str, str]]:
    import json

    from accounts.models import User
    from separation.models import Job

    user = User.objects.get(username="bench")
    media = site.root / "media"
    size = args.size_mb * MIB
    big_wav = site.root / "big.wav"
    small_wav = site.root / "small.wav"
    started = time.perf_counter()
    minutes = write_wav(big_wav, size) / 60
    write_wav(small_wav, 2 * 44100 * 4)
    seconds = time.perf_counter() - started
    print(f"  wrote {big_wav.stat().st_size / MIB:.0f} MiB wav ({minutes:.1f} min) in {seconds:.1f} s")
    growth: dict[str, list[tuple[float, float]]] = {"upload": [], "download": []}
    for run in range(args.rss_runs):
        with gunicorn(site, workers=1, threads=args.web_threads, name=f"upload-{run}") as (master, port):
            (worker,) = worker_pids(master.pid)
            status, body = upload_streamed(port, site.token, small_wav)  # warm-up
            assert status == 202, (status, body)
            before = memory_mb(worker)
            started = time.perf_counter()
            status, body = upload_streamed(port, site.token, big_wav)
            seconds = time.perf_counter() - started
            after = memory_mb(worker)
            assert status == 202, (status, body)
            job = Job.objects.get(pk=json.loads(body)["job_id"])
            stored = media / job.input_file
            assert stored.stat().st_size == big_wav.stat().st_size
        growth["upload"].append((after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmHWM"]))
        print(
            f"  run {run + 1} upload   {seconds:5.1f} s  RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MB, "
            f"peak {before['VmHWM']:.0f} -> {after['VmHWM']:.0f} MB"
        )
        big_job = completed_job(user, media, link_to=stored)
        with gunicorn(site, workers=1, threads=args.web_threads, name=f"download-{run}") as (master, port):
            (worker,) = worker_pids(master.pid)
            assert download_streamed(port, site.token, site.status_job) == (200, MIB)  # warm-up
            before = memory_mb(worker)
            started = time.perf_counter()
            status, received = download_streamed(port, site.token, str(big_job.pk))
            seconds = time.perf_counter() - started
            after = memory_mb(worker)
            assert (status, received) == (200, stored.stat().st_size), (status, received)
        growth["download"].append((after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmHWM"]))
        print(
            f"  run {run + 1} download {seconds:5.1f} s  RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MB, "
            f"peak {before['VmHWM']:.0f} -> {after['VmHWM']:.0f} MB"
        )
        shutil.rmtree(stored.parent)
        shutil.rmtree(media / Path(big_job.zip_file).parent)
    rows = []
    for name, values in growth.items():
        rss = statistics.median(value[0] for value in values)
        peak = statistics.median(value[1] for value in values)
        worst = max(max(value) for value in values)
        rows.append(
            (
                f"{name} {args.size_mb} MiB: web worker RSS growth <= {RSS_LIMIT_MB} MB",
                f"RSS +{rss:.1f} MB, peak +{peak:.1f} MB (worst +{worst:.1f})",
                f"{max(rss, peak) / RSS_LIMIT_MB:.2f}",
                "pass" if max(rss, peak) <= RSS_LIMIT_MB else "FAIL",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="alternating wrk runs per endpoint (default 10)")
    parser.add_argument("--seconds", type=float, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers for req/s (default 2)")
    parser.add_argument("--web-threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    parser.add_argument("--python-client", action="store_true", help="the Python load generator even with wrk")
    parser.add_argument("--size-mb", type=int, default=500, help="MiB uploaded and downloaded (default 500)")
    parser.add_argument("--rss-runs", type=int, default=3, help="upload+download runs (default 3)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database and temporary folder")
    args = parser.parse_args()

    database = "demucs_webbench_run"
    root = Path(tempfile.mkdtemp(prefix="bench-web-"))
    rows = []
    try:
        site = prepare(root, database)
        if not args.skip_throughput:
            print("requests/s: GET /api/status/<id> vs GET /bench/constant, alternating")
            rows += throughput(site, args)
        if not args.skip_rss:
            print(f"memory: {args.size_mb} MiB upload and download, one gunicorn worker")
            rows += memory(site, args)
    finally:
        if not args.keep:
            if "django.db" in sys.modules:
                from django.db import connections

                connections.close_all()
            drop_database(database)
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept: database {database}, folder {root}")
    load = os.getloadavg()
    print_table(
        "bench/web.py: the web process (issue 5, goal 6)",
        rows,
        command_line(),
        [
            f"{os.cpu_count()} CPUs shared with the load generator and PostgreSQL (and other work on this "
            f"machine: load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}); ratios are side by side in one run",
        ],
    )
    return 0 if all(row[3] != "FAIL" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
