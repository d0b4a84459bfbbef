"""Separation speed and memory (issue 5, goals 1-5), measured side by side on this machine.

Every figure is a ratio of two things measured in the same run, interleaved, medians of
--runs runs. A "service job" is the real thing: the job is created through the upload path
(upload_accept: the file checked and stored, the job charged and queued) and run by a real
`manage.py qcluster` worker; its time is the job's own timestamps, created_at (the upload
accepted) -> finished_at (COMPLETED). "Warm" means the worker has run a job before (and
preloaded its model at start). What a deployment runs beside a job runs here too (--web, on by
default): gunicorn serving the site, and a client asking `GET /api/status/<id>` every second
while the job runs, as the job page's poll does; the driver itself looks at the database once a
second. --backends measures each DEMUCS_BACKEND (openvino, the default; onnxruntime; torch) with its own worker, one
after the other in the same run.

    python bench/separation.py overhead --model htdemucs --minutes 3 --runs 3   # goal 1
    python bench/separation.py cli      --model htdemucs --minutes 3 --runs 3   # goal 2
    python bench/separation.py cold     --model htdemucs --minutes 3 --runs 3   # goal 3
    python bench/separation.py rss      --model htdemucs --minutes 3 --long-minutes 60  # goal 4
    python bench/separation.py stems    --model htdemucs_ft --minutes 3 --runs 3  # goal 5
    python bench/separation.py overhead cli --minutes 3 --runs 3                 # 1 and 2, interleaved
    python bench/separation.py all      --minutes 3 --runs 3                     # 1-5
    python bench/separation.py overhead --model demo --minutes 0.25 --runs 2    # a quick check
    python bench/separation.py cli --backends torch openvino onnxruntime --minutes 3 --runs 2  # the backends

Goals: (1) warm job / bare demucs apply_model on the same decoded audio, model and settings
<= 1.10, with where the rest goes; (2) warm job / `python -m demucs --repo DIR -n MODEL` on the
same file and settings <= 0.85; (3) first job after a worker starts / warm job <= 1.05, one
model load per worker; (4) peak worker RSS, 60-minute track / 3-minute track <= 1.5 (the
full-size model needs ~0.75 s of CPU per second of audio here: 60 minutes is ~45 minutes of
compute, so the default long track is 10 minutes and the table says what was measured);
(5) two-stem job / four-stem job on an htdemucs_ft-like bag <= 0.35.

Models are untrained, of real size: `create_demo_model --preset htdemucs|htdemucs_ft` written
under the names the service offers into a model folder of the bench's own (--workdir). The
bench uses its own PostgreSQL database (--database-url, recreated on each run), a fresh
MEDIA_ROOT, and seeded test audio generated once into --workdir. Keep the machine quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script: the repository root instead of bench/ (whose separation.py would shadow the app).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._common import (  # noqa: E402
    Cluster,
    Row,
    cpu_seconds,
    load_average,
    median,
    peak_rss_mib,
    pids_named,
    print_table,
    recreate_database,
    spread,
)
from separation.demo_models import PRESETS, create_demo_model  # noqa: E402
from testkit.audio import write_test_audio  # noqa: E402
from testkit.http import wait_until  # noqa: E402
from testkit.processes import REPO_ROOT, free_port, group_members, stop_group  # noqa: E402
from testkit.servers import start_gunicorn  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/demucs_bench_separation"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "demucs-bench-separation"
WARM_LINE = r"Worker \S+ \(pid (\d+)\) loaded the model '{model}' in ([\d.]+) s before its first task"
NO_PRELOAD_LINE = r"Worker \S+ \(pid (\d+)\) preloads no models"
TASK_LOAD_LINE = r"Job (\S+) loaded its model"


# ---------------------------------------------------------------------------------------
# Set-up: models, audio, the environment shared by the driver and the qcluster


class Bench:
    """One benchmark run: its folders, its database, its environment."""

    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir)
        self.models = self.workdir / "models"
        self.run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._mkdir(self.workdir / "runs")))
        self.media = self._mkdir(self.run_dir / "media")
        self.logs = self._mkdir(self.run_dir / "logs")
        self.secret = secrets.token_urlsafe(40)
        self.clusters = 0
        self.site = None  # (gunicorn process, port, bearer token) with --web

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, **overrides: str) -> dict[str, str]:
        args = self.args
        env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "SENTRY_DSN", "EMAIL_URL")}
        env.update(
            DJANGO_SETTINGS_MODULE="demucs_service.settings",
            DATABASE_URL=args.database_url,
            DEBUG="0",
            SECRET_KEY=self.secret,
            DATA_DIR=str(self.run_dir / "data"),
            MEDIA_ROOT=str(self.media),
            DEMUCS_MODEL_REPO=str(self.models),
            DEMUCS_DEVICE="cpu",
            DEMUCS_SHIFTS=str(args.shifts),
            DEMUCS_OVERLAP=str(args.overlap),
            DEMUCS_SEGMENT="" if args.segment is None else str(args.segment),
            SEPARATION_WORKERS="1",
            WORKER_PRELOAD_MODELS="installed",
            MAX_UPLOAD_MB="100000",
            MAX_DURATION_MINUTES="1000",
            JOB_TIMEOUT_SECONDS=str(24 * 3600),
            JOB_STALE_SECONDS=str(24 * 3600),
            JOB_REQUEUE_SECONDS=str(24 * 3600),
            HF_HUB_OFFLINE="1",
            DEMUCS_BACKEND=args.backends[0],
            DEMUCS_PRECISION=args.precision,
            DEMUCS_ONNX_CACHE=str(self.workdir / "onnx"),  # exports kept between runs, as a worker's are
            LOG_LEVEL="INFO",
            LOG_FORMAT="text",
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    def setup_django(self) -> None:
        """Configure this (driver) process: the bench database, freshly migrated."""
        os.environ.update(self.env(LOG_LEVEL="WARNING"))
        recreate_database(self.args.database_url)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def ensure_model(self, name: str) -> None:
        """The untrained model of preset `name`, written under that name."""
        path, written = create_demo_model(self.models, name=name, preset=name)
        print(f"model {name}: {'wrote' if written else 'using'} {path}", flush=True)

    def audio(self, minutes: float) -> Path:
        path = self.workdir / "audio" / f"test-{minutes:g}min.wav"
        if not path.exists():
            print(f"writing {minutes:g} minutes of test audio to {path}", flush=True)
        return write_test_audio(path, minutes * 60, seed=0)

    def cluster(self, model: str, preload: str | None = None, backend: str | None = None) -> Cluster:
        """A qcluster with one worker preloading `model` (or `preload`: none, ...)."""
        self.clusters += 1
        log = self.logs / f"qcluster-{self.clusters}.log"
        env = self.env(WORKER_PRELOAD_MODELS=preload or model, DEMUCS_BACKEND=backend or self.args.backends[0])
        return Cluster(env=env, log_path=log)

    def start_site(self) -> None:
        """gunicorn serving the site (2 workers x 4 threads, as deploy/ runs it), and a token."""
        from rest_framework_simplejwt.tokens import AccessToken

        port = free_port()
        process = start_gunicorn(port=port, env=self.env(), log_path=self.logs / "gunicorn.log", workers=2, threads=4)
        self.site = (process, port, str(AccessToken.for_user(db_retry(bench_user))))
        wait_until(lambda: poll_once(port, "/healthz", None) == 200, timeout=90, message="gunicorn")

    def stop_site(self) -> None:
        if self.site is not None:
            stop_group(self.site[0])
            self.site = None

    def wait_warm(self, cluster: Cluster, model: str, preload: str | None = None) -> int:
        """Wait for the worker's start-up (its preload) to end; its pid."""
        timeout = self.args.start_timeout
        if preload == "none":
            match = cluster.wait_for(NO_PRELOAD_LINE, timeout=timeout)[0]
        else:
            match = cluster.wait_for(WARM_LINE.format(model=re.escape(model)), timeout=timeout)[0]
        cluster.wait_for(r"Q Cluster .* running", timeout=timeout)
        return int(match.group(1))


# ---------------------------------------------------------------------------------------
# Service jobs


def db_retry(function, seconds: float = 60):
    """function(), again after a dropped connection (a restarted database server) for a while."""
    from django.db import OperationalError, connection

    deadline = time.monotonic() + seconds
    while True:
        try:
            return function()
        except OperationalError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def bench_user():
    from decimal import Decimal

    from allauth.account.models import EmailAddress

    from accounts.models import User
    from credits.services import credits_admin_grant

    user = User.objects.filter(username="bench").first()
    if user is None:
        user = User.objects.create_user(username="bench", email="bench@example.com", password=secrets.token_hex(16))
        User.objects.filter(pk=user.pk).update(email_on_job_finished=False)
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        credits_admin_grant(
            user=user, amount=Decimal(1_000_000), reason="benchmarks", granted_by=user, request_token="bench"
        )
    return user


class LinkedUpload:
    """The audio file as an already streamed upload (what Django's TemporaryUploadedFile is
    after a request): a hard link the storage moves into place, so the source stays."""

    content_type = "audio/wav"

    def __init__(self, source: Path, folder: Path):
        self.path = folder / f".upload-{uuid.uuid4().hex}{source.suffix}"
        try:
            os.link(source, self.path)
        except OSError:
            shutil.copyfile(source, self.path)
        from django.core.files import File

        self._file = File(open(self.path, "rb"), name=source.name)
        self.name = source.name
        self.size = self.path.stat().st_size

    def temporary_file_path(self) -> str:
        return str(self.path)

    def __getattr__(self, attribute):
        return getattr(self._file, attribute)

    def close(self):
        self._file.close()
        self.path.unlink(missing_ok=True)


def poll_once(port: int, path: str, token: str | None) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


class StatusPoller:
    """What a person on the job page adds: one status request a second until the job ends."""

    def __init__(self, site, job_id):
        import threading

        _, self.port, self.token = site
        self.path = f"/api/status/{job_id}"
        self.answers: list[int] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stopped.wait(1.0):
            self.answers.append(poll_once(self.port, self.path, self.token))

    def stop(self) -> list[int]:
        self.stopped.set()
        self.thread.join()
        return self.answers


def cpu_now(bench: Bench, cluster: Cluster, worker: int) -> dict[str, dict[int, float]]:
    """CPU seconds used so far, per process, by the worker and by what runs beside it."""
    groups = {
        "worker": [worker],
        "cluster": [pid for pid in group_members(cluster.process.pid) if pid != worker],
        "postgres": pids_named("postgres"),
    }
    if bench.site is not None:
        groups["gunicorn"] = group_members(bench.site[0].pid)
    return {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in groups.items()}


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """Per group, the CPU its processes used between the two snapshots (one that started meanwhile
    from its start; one that ended meanwhile is not counted)."""
    return {
        name: sum(seconds - before[name].get(pid, 0.0) for pid, seconds in pids.items()) for name, pids in after.items()
    }


def run_job(bench: Bench, audio: Path, model: str, stem_mode: str = "all") -> dict:
    """Upload `audio` as a job and wait for it (with a status poller when the site runs); its
    timings in seconds."""
    from separation.models import Job
    from separation.uploads import JobOptions, upload_accept

    upload = LinkedUpload(audio, bench.media)
    try:
        options = JobOptions(model=model, stems=stem_mode, output_format="wav")
        job, _ = upload_accept(user=db_retry(bench_user), uploaded_file=upload, options=options)
    finally:
        upload.close()
    timeout = bench.args.job_timeout or 300 + 8 * job.duration_seconds * (4 if model == "htdemucs_ft" else 1)
    poller = StatusPoller(bench.site, job.pk) if bench.site is not None else None
    try:
        done = wait_until(
            lambda: db_retry(lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).first()),
            timeout=timeout,
            message=f"job {job.pk}",
            interval=1.0,
        )
    finally:
        answers = poller.stop() if poller is not None else []
    if any(answer != 200 for answer in answers):
        raise RuntimeError(f"the status poller got {sorted(set(answers))}")
    if done.status != Job.Status.COMPLETED:
        raise RuntimeError(f"job {job.pk} ended {done.status}: {done.error}")
    return {
        "total": (done.finished_at - done.created_at).total_seconds(),
        "queue": (done.started_at - done.created_at).total_seconds(),
        "worker": (done.finished_at - done.started_at).total_seconds(),
    }


# ---------------------------------------------------------------------------------------
# The bare demucs runner (a subprocess: this driver never runs torch)


class BareRunner:
    """`python bench/separation.py _bare ...`: loads the model with demucs, decodes and
    normalises the audio once, then times apply_model (and the phases around it) on request."""

    def __init__(self, bench: Bench, model: str, audio: Path):
        args = bench.args
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_bare",
            "--model",
            model,
            "--repo",
            str(bench.models),
            "--input",
            str(audio),
            "--shifts",
            str(args.shifts),
            "--overlap",
            str(args.overlap),
        ]
        if args.segment is not None:
            command += ["--segment", str(args.segment)]
        self.command = command
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=bench.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bare runner exited with {self.process.wait()}")
        return json.loads(line)

    def run(self, phases: bool = False) -> dict:
        self.process.stdin.write("phases\n" if phases else "run\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def bare_main(argv: list[str]) -> None:
    """The _bare subprocess: pure demucs, as demucs.api.Separator does it."""
    parser = argparse.ArgumentParser(prog="separation.py _bare")
    parser.add_argument("--model", required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--shifts", type=int, default=1)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--segment", type=float, default=None)
    args = parser.parse_args(argv)

    import zipfile

    import sphn
    import torch
    from demucs.apply import apply_model
    from demucs.audio import convert_audio, save_audio
    from demucs.pretrained import get_model

    torch.set_num_threads(max(1, os.cpu_count() or 1))  # the engine's choice for one worker
    started = time.monotonic()
    model = get_model(args.model, repo=args.repo)
    model.eval()
    load_seconds = time.monotonic() - started

    def decode():
        data, samplerate = sphn.read(str(args.input))
        return torch.from_numpy(data), samplerate

    def normalise(data, samplerate):
        wav = convert_audio(data, samplerate, model.samplerate, model.audio_channels)
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std() + 1e-8
        return (wav - mean) / std, mean, std

    data, samplerate = decode()
    wav, mean, std = normalise(data, samplerate)
    print(json.dumps({"load": load_seconds, "threads": torch.get_num_threads()}), flush=True)

    out_dir = Path(tempfile.mkdtemp(prefix="bare-"))
    for command in sys.stdin:
        started = time.monotonic()
        with torch.no_grad():
            out = apply_model(
                model, wav[None], segment=args.segment, shifts=args.shifts, split=True, overlap=args.overlap
            )
        result = {"apply_model": time.monotonic() - started}
        if command.strip() == "phases":
            # What the service does around the model, each measured on its own here.
            timer = time.monotonic()
            decoded, rate = decode()
            result["decode"] = time.monotonic() - timer
            timer = time.monotonic()
            normalised, m, s = normalise(decoded, rate)
            stems = out[0] * s + m
            result["normalise"] = time.monotonic() - timer
            del decoded, normalised
            paths = []
            timer = time.monotonic()
            for name, stem in zip(model.sources, stems, strict=True):
                paths.append(out_dir / f"{name}.wav")
                save_audio(stem, paths[-1], model.samplerate, clip="rescale", bits_per_sample=16)
            result["encode"] = time.monotonic() - timer
            timer = time.monotonic()
            for name, stem in zip(model.sources, stems, strict=True):
                waveform_png(stem.mean(0).numpy(), out_dir / f"{name}.png")
            result["waveform"] = time.monotonic() - timer
            timer = time.monotonic()
            with zipfile.ZipFile(out_dir / "stems.zip", "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                for path in paths:
                    z.write(path, arcname=f"stems/{path.name}")
            result["zip"] = time.monotonic() - timer
            for path in out_dir.iterdir():
                path.unlink()
        del out
        print(json.dumps(result), flush=True)


def waveform_png(mono, path: Path, width: int = 1000, height: int = 120) -> None:
    """What the service draws per stem: min/max per pixel column of the mono mix-down, as a PNG."""
    import numpy as np
    from PIL import Image

    starts = np.minimum((np.arange(width) * mono.shape[-1]) // width, mono.shape[-1] - 1)
    low, high = np.minimum.reduceat(mono, starts), np.maximum.reduceat(mono, starts)
    scale = max(float(np.abs(mono).max(initial=0.0)), 0.05)
    middle = (height - 1) / 2
    top = np.floor(middle - np.clip(high / scale, -1, 1) * middle).astype(int)
    bottom = np.ceil(middle - np.clip(low / scale, -1, 1) * middle).astype(int)
    rows = np.arange(height)[:, None]
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[(rows >= top[None, :]) & (rows <= bottom[None, :])] = (0x5B, 0x3D, 0xF5, 255)
    Image.fromarray(pixels, "RGBA").save(path, format="PNG", optimize=False)


def cli_command(bench: Bench, model: str, audio: Path, out_dir: Path) -> list[str]:
    args = bench.args
    command = [sys.executable, "-m", "demucs", "--repo", str(bench.models), "-n", model, "-o", str(out_dir)]
    command += ["-d", "cpu", "--shifts", str(args.shifts), "--overlap", str(args.overlap)]
    if args.segment is not None:
        if float(args.segment) != int(args.segment):
            raise SystemExit("the demucs CLI takes a whole number of seconds for --segment")
        command += ["--segment", str(int(args.segment))]
    return [*command, str(audio)]


def run_cli(bench: Bench, model: str, audio: Path) -> tuple[float, list[str]]:
    out_dir = Path(tempfile.mkdtemp(prefix="cli-", dir=bench.run_dir))
    command = cli_command(bench, model, audio, out_dir)
    with open(bench.logs / "demucs-cli.log", "ab") as log:
        started = time.monotonic()
        subprocess.run(command, cwd=bench.run_dir, env=bench.env(), check=True, stdout=log, stderr=log)
        seconds = time.monotonic() - started
    stems = sorted(path.name for path in out_dir.rglob("*.wav"))
    if len(stems) != 4:
        raise RuntimeError(f"the demucs CLI wrote {stems}")
    subprocess.run(["rm", "-rf", str(out_dir)], check=True)
    return seconds, command


# ---------------------------------------------------------------------------------------
# The goals


def measure_overhead_and_cli(bench: Bench, *, bare: bool, cli: bool) -> list[Row]:
    """Goals 1 and 2: warm jobs interleaved with bare apply_model runs and demucs CLI runs, per
    backend (a worker each, one after the other)."""
    args = bench.args
    model = args.model
    audio = bench.audio(args.minutes)
    jobs: dict[str, list[dict]] = {backend: [] for backend in args.backends}
    bares, clis = [], []
    command = None
    runner = BareRunner(bench, model, audio) if bare else None
    try:
        for backend in args.backends:
            with bench.cluster(model, backend=backend) as cluster:
                worker = bench.wait_warm(cluster, model)
                print(f"{backend}: warm-up job (not counted) ...", flush=True)
                run_job(bench, audio, model)
                for index in range(args.runs):
                    before = cpu_now(bench, cluster, worker)
                    jobs[backend].append(run_job(bench, audio, model))
                    after = cpu_now(bench, cluster, worker)
                    jobs[backend][-1]["cpu"] = cpu_used(before, after)
                    line = f"{backend} run {index + 1}/{args.runs}: job {jobs[backend][-1]['total']:.2f} s"
                    if runner is not None:
                        bares.append(runner.run(phases=True))
                        line += f", apply_model {bares[-1]['apply_model']:.2f} s"
                    if cli:
                        seconds, command = run_cli(bench, model, audio)
                        clis.append(seconds)
                        line += f", demucs CLI {seconds:.2f} s"
                    print(line, flush=True)
                task_loads = re.findall(TASK_LOAD_LINE, cluster.log())
                if task_loads:
                    print(f"WARNING: the worker loaded a model during a job: {task_loads}")
    finally:
        if runner is not None:
            runner.close()

    rows = []
    beside = "gunicorn + a 1/s status poll" if bench.site is not None else "no web process"
    settings = f"{args.precision}, shifts {args.shifts}, overlap {args.overlap:g}"
    what = f"{args.minutes:g} min track, {model}, {settings}, {beside}"
    for backend, measured in jobs.items():
        job_total = [job["total"] for job in measured]
        label = f" ({backend})" if len(jobs) > 1 else ""
        if bare:
            bare_model = [run["apply_model"] for run in bares]
            rows.append(
                Row(
                    f"1 warm job{label} / bare apply_model",
                    f"job {median(job_total):.2f} s / apply_model {median(bare_model):.2f} s ({what})",
                    median(job_total) / median(bare_model),
                    1.10,
                    note=f"job {spread(job_total)}; apply_model {spread(bare_model)}; "
                    f"bare runner: {shlex.join(runner.command)}",
                )
            )
            rows.append(where_the_rest_goes(measured, bares, label))
        cpu = {key: median([job["cpu"][key] for job in measured]) for key in measured[0]["cpu"]}
        rows.append(
            Row(
                f"  CPU during the job{label}",
                f"worker {cpu.pop('worker'):.1f} s over {median(job_total):.1f} s; beside it: "
                + ", ".join(f"{key} {value:.2f} s" for key, value in cpu.items()),
                None,
                None,
                note="CPU seconds (user + system) from /proc during each job, medians: the worker process, "
                "the cluster's other processes (sentinel, pusher, monitor: the broker's polling and "
                "heartbeats), every PostgreSQL process, and gunicorn with the status poll",
            )
        )
        if cli:
            rows.append(
                Row(
                    f"2 warm job{label} / python -m demucs",
                    f"job {median(job_total):.2f} s / demucs CLI {median(clis):.2f} s ({what})",
                    median(job_total) / median(clis),
                    0.85,
                    note=f"CLI {spread(clis)}: {shlex.join(command)}",
                )
            )
    return rows


def where_the_rest_goes(jobs: list[dict], bares: list[dict], label: str) -> Row:
    queue = median([job["queue"] for job in jobs])
    in_worker = median([job["worker"] for job in jobs])
    bare_model = median([run["apply_model"] for run in bares])
    parts = {key: median([run[key] for run in bares if key in run]) for key in bares[0] if key != "apply_model"}
    rest = in_worker - bare_model - sum(parts.values())
    breakdown = [f"queue pickup {queue:.2f} s"] + [f"{key} {value:.2f} s" for key, value in parts.items()]
    breakdown.append(f"database, progress and the rest {rest:.2f} s")
    return Row(
        f"1 where the rest goes{label}",
        f"job - apply_model = {median([job['total'] for job in jobs]) - bare_model:.2f} s",
        None,
        None,
        note=", ".join(breakdown) + " (each phase timed on its own in the bare runner on the same audio, "
        "medians; queue pickup: created_at -> started_at; the rest: started_at -> finished_at minus the "
        "model and the phases)",
    )


def measure_cold(bench: Bench) -> list[Row]:
    """Goal 3: per run a fresh qcluster; its first job, then a second (warm) one."""
    args = bench.args
    model = args.model
    audio = bench.audio(args.minutes)
    rows = []
    for preload in [model, *(["none"] if args.compare_no_preload else [])]:
        colds, warms, loads = [], [], []
        for index in range(args.runs):
            with bench.cluster(model, preload=preload) as cluster:
                pid = bench.wait_warm(cluster, model, preload=preload)
                colds.append(run_job(bench, audio, model)["total"])
                warms.append(run_job(bench, audio, model)["total"])
                log = cluster.log()
            start_loads = len(re.findall(WARM_LINE.format(model=re.escape(model)), log))
            task_loads = len(re.findall(TASK_LOAD_LINE, log))
            loads.append(start_loads + task_loads)
            print(
                f"preload {preload}, run {index + 1}/{args.runs}: worker {pid}: first job {colds[-1]:.2f} s, "
                f"second {warms[-1]:.2f} s, model loads {loads[-1]} ({start_loads} at start, {task_loads} in jobs)",
                flush=True,
            )
        label = "3 first job / warm job" if preload != "none" else "3 (reference) same without preloading"
        rows.append(
            Row(
                label,
                f"first {median(colds):.2f} s / warm {median(warms):.2f} s; model loads per worker: "
                f"{sorted(set(loads))} for 2 jobs ({args.minutes:g} min, {model}, WORKER_PRELOAD_MODELS={preload})",
                median(colds) / median(warms),
                1.05 if preload != "none" else None,
                note=f"first {spread(colds)}; warm {spread(warms)}; each run a fresh qcluster, the first job "
                "uploaded once the worker has started (its preload logged)",
            )
        )
    return rows


def measure_rss(bench: Bench) -> list[Row]:
    """Goal 4: the worker's peak RSS (VmHWM) over one job, for a short and a long track."""
    args = bench.args
    model = args.model
    peaks = {}
    for minutes in (args.minutes, args.long_minutes):
        audio = bench.audio(minutes)
        with bench.cluster(model) as cluster:
            pid = bench.wait_warm(cluster, model)
            before, _ = peak_rss_mib(pid)
            started = time.monotonic()
            job = run_job(bench, audio, model)
            peak, now = peak_rss_mib(pid)
        peaks[minutes] = peak
        print(
            f"{minutes:g} min: worker {pid} peak RSS {peak:.0f} MiB (after start-up {before:.0f} MiB, "
            f"after the job {now:.0f} MiB); job {job['total']:.1f} s, wall {time.monotonic() - started:.1f} s",
            flush=True,
        )
    ratio = peaks[args.long_minutes] / peaks[args.minutes]
    note = "peak RSS (VmHWM) of the qcluster worker process that ran the job, model preloaded"
    if args.long_minutes != 60:
        note += f"; the goal is stated for 60 minutes: this run measured {args.long_minutes:g} (--long-minutes 60)"
    return [
        Row(
            f"4 peak worker RSS {args.long_minutes:g} min / {args.minutes:g} min",
            f"{peaks[args.long_minutes]:.0f} MiB / {peaks[args.minutes]:.0f} MiB ({model})",
            ratio,
            1.5,
            note=note,
        )
    ]


def measure_stems(bench: Bench) -> list[Row]:
    """Goal 5: two-stem jobs and four-stem jobs, interleaved, on one warm worker."""
    args = bench.args
    model = args.stems_model
    audio = bench.audio(args.minutes)
    fours, twos = [], []
    with bench.cluster(model) as cluster:
        bench.wait_warm(cluster, model)
        print("warm-up job (not counted) ...", flush=True)
        run_job(bench, audio, model, stem_mode=args.stem)
        for index in range(args.runs):
            fours.append(run_job(bench, audio, model)["total"])
            twos.append(run_job(bench, audio, model, stem_mode=args.stem)["total"])
            print(f"run {index + 1}/{args.runs}: 4 stems {fours[-1]:.2f} s, {args.stem} {twos[-1]:.2f} s", flush=True)
    return [
        Row(
            f"5 two-stem ({args.stem}) job / 4-stem job",
            f"{median(twos):.2f} s / {median(fours):.2f} s ({args.minutes:g} min, {model})",
            median(twos) / median(fours),
            0.35,
            note=f"two-stem {spread(twos)}; four-stem {spread(fours)}",
        )
    ]


# ---------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_bare":
        bare_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("goal", nargs="+", choices=["overhead", "cli", "cold", "rss", "stems", "all"])
    parser.add_argument("--model", default="htdemucs", choices=sorted(PRESETS), help="model for goals 1-4")
    parser.add_argument("--stems-model", default="htdemucs_ft", choices=sorted(PRESETS), help="model for goal 5")
    parser.add_argument("--stem", default="vocals", help="the stem of the two-stem job (goal 5)")
    parser.add_argument("--minutes", type=float, default=3.0, help="track length (goal 4: the short track)")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="goal 4's long track (the goal: 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (medians)")
    parser.add_argument("--shifts", type=int, default=1, help="DEMUCS_SHIFTS, and the same for the references")
    parser.add_argument("--overlap", type=float, default=0.25, help="DEMUCS_OVERLAP, and the same for the references")
    parser.add_argument("--segment", type=float, default=None, help="DEMUCS_SEGMENT (default: the model's)")
    parser.add_argument(
        "--compare-no-preload", action="store_true", help="goal 3: also measure WORKER_PRELOAD_MODELS=none"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["openvino"],
        choices=["openvino", "onnxruntime", "torch"],
        help="DEMUCS_BACKEND of the service's worker (goals 1 and 2 measure each; the others the first)",
    )
    parser.add_argument(
        "--precision", default="float32", choices=["float32", "bfloat16", "float16"], help="DEMUCS_PRECISION"
    )
    parser.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run gunicorn and a client polling each job's status once a second, as a deployment does",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="a demucs_bench* database (recreated)")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="models and audio are kept here between runs")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds for a qcluster to start")
    parser.add_argument("--keep-run", action="store_true", help="keep the run folder (outputs, logs) afterwards")
    parser.add_argument("--job-timeout", type=float, default=None, help="seconds for one job (default: from length)")
    args = parser.parse_args()

    command = ["python", "bench/separation.py", *sys.argv[1:]]
    bench = Bench(args)
    load = load_average()
    print(f"command: {shlex.join(command)}")
    print(f"cpus {os.cpu_count()}, load average {load:.2f}{'  (NOT QUIET: figures may be off)' if load > 0.5 else ''}")
    print(f"run folder {bench.run_dir}; database {args.database_url}", flush=True)
    bench.setup_django()
    goals = ["overhead", "cli", "cold", "rss", "stems"] if "all" in args.goal else args.goal
    needed = {args.stems_model} if goals == ["stems"] else {args.model}
    if "stems" in goals:
        needed.add(args.stems_model)
    for name in sorted(needed):
        bench.ensure_model(name)

    rows: list[Row] = []
    try:
        if args.web:
            bench.start_site()
        if "overhead" in goals or "cli" in goals:
            rows += measure_overhead_and_cli(bench, bare="overhead" in goals, cli="cli" in goals)
        if "cold" in goals:
            rows += measure_cold(bench)
        if "rss" in goals:
            rows += measure_rss(bench)
        if "stems" in goals:
            rows += measure_stems(bench)
    finally:
        bench.stop_site()
        if args.keep_run:
            print(f"kept the run folder (outputs, qcluster logs): {bench.run_dir}")
        else:
            shutil.rmtree(bench.run_dir, ignore_errors=True)  # the jobs' outputs: up to GBs
    print_table("separation benchmarks (issue 5)", rows, command)
    if load_average() > 0.5 + os.cpu_count():
        print("note: the machine was busy during the run")


if __name__ == "__main__":
    main()
