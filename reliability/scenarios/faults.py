"""Faults (nothing stuck): the worker killed or stopped mid-job, PostgreSQL restarted under
load, the queue unreachable at upload time, and an operator's refund racing the reaper's.

The worker rows replace the stack's qcluster with a fresh one (as a supervisor would). These
rows run the scheduled reaper (`jobs_reap`) themselves with short windows (JOB_STALE_SECONDS,
JOB_REQUEUE_SECONDS), so a job that lost its worker or its task is re-run or refunded within
seconds instead of the production windows (5 and 10 minutes); the figures say when it was needed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from http.client import HTTPConnection
from pathlib import Path

from reliability.harness import running_stack
from reliability.scenarios.common import Row, audit_ledger, balance, make_user, orphan_charges
from testkit.audio import tone_bytes
from testkit.http import http, wait_until
from testkit.processes import REPO_ROOT, free_port, start_process

STALE_SECONDS = 10  # the reaper's windows in these rows (production: JOB_STALE_SECONDS, JOB_REQUEUE_SECONDS)
REQUEUE_SECONDS = 20
STOP_SECONDS = 60  # a clean stop: the running job (about 20 s here) finished or handed back
# A long mono clip at 22.05 kHz: mid-separation for many seconds, still under the upload limit.
LONG_CLIP = dict(seconds=60.0, samplerate=22050, channels=1)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


def _job(job_id):
    from separation.models import Job

    return Job.objects.get(pk=job_id)


def _refunds(job_id) -> int:
    from credits.models import CreditTransaction

    kinds = [CreditTransaction.Kind.JOB_REFUND, CreditTransaction.Kind.ADMIN_REFUND]
    return CreditTransaction.objects.filter(kind__in=kinds, reference__endswith=str(job_id)).count()


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of `process`'s group is left. The leader is reaped first: an exited
    but unreaped leader (a zombie) still answers killpg(pgid, 0), which read as "not stopped"."""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_qcluster(stack, name: str) -> subprocess.Popen:
    """A fresh qcluster in place of the stack's (stopped with the stack)."""
    log = stack.root / "logs" / f"{name}.log"
    process = start_process([sys.executable, "manage.py", "qcluster"], stack.env, log)
    stack.processes["qcluster"], stack.logs["qcluster"] = process, log
    wait_until(
        lambda: stack.alive() or "running" in log.read_text(errors="replace"), timeout=90, message="a fresh qcluster"
    )
    return process


def reap(stack) -> Counter:
    """The scheduled reaper, run once now on the stack's database with short windows: what it
    did ({"requeued", "failed", "reenqueued"})."""
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import json; from separation.maintenance import jobs_reap; print(json.dumps(jobs_reap()))",
        ],
        cwd=REPO_ROOT,
        env={**stack.env, "JOB_STALE_SECONDS": str(STALE_SECONDS), "JOB_REQUEUE_SECONDS": str(REQUEUE_SECONDS)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"jobs_reap failed: {result.stderr[-500:]}")
    return Counter(json.loads(result.stdout.strip().splitlines()[-1]))


def settle(stack, job_ids, timeout: float, reaped: Counter | None = None) -> dict[str, str]:
    """Runs the reaper whenever a job's heartbeat is stale or a waiting job was queued more than
    REQUEUE_SECONDS ago (its task lost), until every job is final; their statuses. What the
    reaper did is added to `reaped`."""
    from django.db.models import Q
    from django.utils import timezone

    from separation.models import Job

    deadline = time.monotonic() + timeout
    while True:
        jobs = Job.objects.filter(pk__in=list(job_ids))
        statuses = {str(pk): status for pk, status in jobs.values_list("pk", "status")}
        if all(status in Job.FINISHED for status in statuses.values()) or time.monotonic() > deadline:
            return statuses
        now = timezone.now()
        stale = Q(status="PROCESSING", heartbeat_at__lt=now - timedelta(seconds=STALE_SECONDS + 0.5))
        lost = Q(status="PENDING", enqueued_at__lt=now - timedelta(seconds=REQUEUE_SECONDS + 0.5)) | Q(
            status="PENDING", enqueued_at__isnull=True, created_at__lt=now - timedelta(seconds=REQUEUE_SECONDS + 0.5)
        )
        if jobs.filter(stale | lost).exists():
            done = reap(stack)
            if reaped is not None:
                reaped.update(done)
        time.sleep(1)


def wait_mid_job(job_id, timeout: float = 180) -> None:
    """Until the job is PROCESSING and has reported progress (the engine is running)."""
    wait_until(
        lambda: (job := _job(job_id)).status == "PROCESSING" and job.progress >= 1,
        timeout=timeout,
        interval=0.2,
        message="the job to be mid-separation",
    )


def _worker_fault(stack, *, name: str, sig: int, job_timeout: float, to_group: bool = False) -> Row:
    started = time.monotonic()
    problems: list[str] = []
    user, token = make_user("fault", 3)
    before = balance(user)
    reply = stack.upload(token, "long.wav", tone_bytes(**LONG_CLIP))
    if reply.status != 202:
        return Row(name, f"upload answered {reply.status}: {reply.body[:200]!r}", False, time.monotonic() - started)
    job_id = reply.json()["job_id"]
    wait_mid_job(job_id)
    progress_at_signal = _job(job_id).progress
    qcluster = stack.processes["qcluster"]
    signalled = time.monotonic()
    stop_seconds = None
    if sig == signal.SIGKILL:
        os.killpg(qcluster.pid, signal.SIGKILL)
        qcluster.wait(timeout=10)
    else:
        if to_group:
            os.killpg(qcluster.pid, sig)  # to every process of the cluster, as `kill -TERM -PGID` does
        else:
            os.kill(qcluster.pid, sig)  # to the cluster process, as a supervisor or `docker stop` does
        try:
            wait_until(lambda: not _group_alive(qcluster), timeout=STOP_SECONDS, interval=0.2, message="stop")
            stop_seconds = time.monotonic() - signalled
        except TimeoutError:
            problems.append(f"the qcluster group did not exit {STOP_SECONDS} s after SIGTERM (SIGKILLed)")
            os.killpg(qcluster.pid, signal.SIGKILL)
        qcluster.wait(timeout=10)
        if qcluster.returncode not in (0, -signal.SIGTERM):
            problems.append(f"the qcluster exited with {qcluster.returncode}")
    state_after_signal = _job(job_id).status
    start_qcluster(stack, f"qcluster-after-{signal.Signals(sig).name.lower()}")
    final = settle(stack, [job_id], job_timeout).get(str(job_id))
    seconds = time.monotonic() - signalled
    job = _job(job_id)
    refunds = _refunds(job_id)
    if final == "COMPLETED":
        if refunds:
            problems.append(f"COMPLETED yet refunded {refunds} times")
        if balance(user) != before - job.cost:
            problems.append(f"balance {balance(user)}, expected {before - job.cost}")
    elif final == "FAILED":
        if refunds != 1:
            problems.append(f"FAILED and refunded {refunds} times")
        if balance(user) != before:
            problems.append(f"balance {balance(user)}, expected {before}")
    else:
        problems.append(f"job still {final} {job_timeout:g} s after the signal")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    stop = f"group exited {stop_seconds:.1f} s after SIGTERM; " if stop_seconds is not None else ""
    figure = (
        f"{signal.Signals(sig).name} at {progress_at_signal}% of a {LONG_CLIP['seconds']:g} s clip "
        f"({state_after_signal} after it); {stop}fresh qcluster + reaper (stale {STALE_SECONDS} s): "
        f"{final} after attempt {job.attempts}, {seconds:.1f} s from the signal; refunds {refunds}; "
        f"audit_ledger {'clean' if clean else 'BROKEN'}"
    )
    return Row(name, figure, not problems, time.monotonic() - started, tuple(problems))


def worker_sigkill(stack, *, job_timeout: float = 300) -> Row:
    return _worker_fault(stack, name="Worker SIGKILLed mid-job", sig=signal.SIGKILL, job_timeout=job_timeout)


def worker_sigterm(stack, *, job_timeout: float = 300) -> Row:
    return _worker_fault(stack, name="Worker SIGTERMed mid-job", sig=signal.SIGTERM, job_timeout=job_timeout)


def worker_sigterm_group(stack, *, job_timeout: float = 300) -> Row:
    return _worker_fault(
        stack,
        name="Worker's process group SIGTERMed mid-job",
        sig=signal.SIGTERM,
        job_timeout=job_timeout,
        to_group=True,
    )


# --- PostgreSQL restarted ------------------------------------------------------------------


def page_login(stack, user) -> str:
    """Logs `user` in through the login page, as a browser does (CSRF token, form post): the
    Cookie header of the session it got."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    password = f"pw-{uuid.uuid4().hex}"
    hasher = PBKDF2PasswordHasher()  # the servers' hasher, whatever this process's settings say
    type(user).objects.filter(pk=user.pk).update(password=hasher.encode(password, hasher.salt()))
    url = stack.url("/accounts/login/")
    form = urllib.request.urlopen(url, timeout=60)
    cookies = _set_cookies(form.headers)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.read().decode()).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "login": user.username, "password": password})
    connection = HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=60)
    try:
        connection.request(
            "POST",
            "/accounts/login/",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
            },
        )
        reply = connection.getresponse()
        reply.read()
    finally:
        connection.close()
    cookies.update(_set_cookies(reply.headers))
    assert reply.status == 302 and "sessionid" in cookies, f"login answered {reply.status}"
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _set_cookies(headers) -> dict[str, str]:
    pairs = (value.split(";", 1)[0].partition("=") for value in headers.get_all("Set-Cookie") or [])
    return {name.strip(): value for name, _, value in pairs}


def restart_postgres() -> subprocess.CompletedProcess:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )


PG_ROW = "PostgreSQL restarted during a job and uploads"


def postgres_restart(stack, *, job_timeout: float = 300, after_seconds: float = 4) -> Row:
    """A long job mid-separation and six clients (uploads, status reads, a logged-in page) while
    the machine's PostgreSQL restarts (a few seconds: fast shutdown, start)."""
    from separation.models import Job

    started = time.monotonic()
    problems: list[str] = []
    if not Path("/etc/postgresql").is_dir():
        return Row(PG_ROW, "no local cluster to restart", False)
    runner, runner_token = make_user("pgjob", 3)
    uploader, uploader_token = make_user("pgup", 100)
    page_user, _ = make_user("pgpage", 3)
    cookie = page_login(stack, page_user)
    reply = stack.upload(runner_token, "long.wav", tone_bytes(**LONG_CLIP))
    if reply.status != 202:
        return Row(PG_ROW, f"upload answered {reply.status}", False)
    long_job = reply.json()["job_id"]
    wait_mid_job(long_job)
    clip = tone_bytes(2.0)
    phase = {"now": "before"}
    answers: list[tuple[str, str, object]] = []  # (phase, request, status or error)
    accepted: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(kind: str) -> None:
        while not stop.is_set():
            current = phase["now"]
            try:
                if kind == "upload":
                    answer = stack.upload(uploader_token, "during.wav", clip)
                    if answer.status == 202:
                        with lock:
                            accepted.append(answer.json()["job_id"])
                elif kind == "status":
                    answer = stack.get(f"/api/status/{long_job}", runner_token)
                else:
                    answer = http("GET", stack.url("/dashboard/"), headers={"Cookie": cookie})
                    if answer.status == 200 and page_user.username.encode() not in answer.body:
                        answer.status = -200  # a page, but not the logged-in dashboard
                outcome: object = answer.status
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                answers.append((current, kind, outcome))
            time.sleep(0.4 if kind == "upload" else 0.05)  # uploads paced: each one is a job to run

    threads = [threading.Thread(target=client, args=(kind,)) for kind in ("upload", "status", "page") for _ in (0, 1)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    phase["now"] = "outage"
    restart_began = time.monotonic()
    restarted = restart_postgres()
    restart_seconds = time.monotonic() - restart_began
    phase["now"] = "after"
    time.sleep(after_seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    _close_connections()  # this process's connections died with the server
    if restarted.returncode != 0:
        problems.append(f"pg_ctlcluster restart: {restarted.stderr.strip()[-300:]}")

    by_phase = {
        name: Counter(outcome for p, _, outcome in answers if p == name) for name in ("before", "outage", "after")
    }
    server_errors = [(p, kind, o) for p, kind, o in answers if isinstance(o, int) and o >= 500 and o != 503]
    if server_errors:
        problems.append(f"{len(server_errors)} answers >= 500 other than 503: {Counter(server_errors).most_common(6)}")
    unexpected = Counter((p, kind, o) for p, kind, o in answers if o not in (200, 202, 503))
    if unexpected:
        problems.append(f"answers other than 200/202/503: {unexpected.most_common(6)}")
    after_ok = Counter(kind for p, kind, o in answers if p == "after" and o in (200, 202))
    for kind in ("upload", "status", "page"):
        if not after_ok[kind]:
            problems.append(f"no {kind} succeeded in the {after_seconds:g} s after the restart")
    try:
        stack.alive()
    except RuntimeError as error:
        problems.append(f"a server died: {str(error)[:300]}")
    orphans = orphan_charges()
    if orphans:
        problems.append(f"charges without a job: {orphans}")
    # A 503 changed nothing: the uploader's jobs are exactly the uploads answered 202.
    made = {str(pk) for pk in Job.objects.filter(user=uploader).values_list("pk", flat=True)}
    if made != set(accepted):
        problems.append(f"uploads: {len(accepted)} answered 202 but {len(made)} jobs exist")
    reaped: Counter = Counter()
    final = settle(stack, [long_job, *accepted], job_timeout, reaped)
    counts = Counter(final.values())
    stuck = {job: status for job, status in final.items() if status not in ("COMPLETED", "FAILED", "CANCELLED")}
    if stuck:
        detail = Job.objects.filter(pk__in=list(stuck)).values("pk", "status", "attempts", "enqueued_at")
        problems.append(f"{len(stuck)} jobs not final {job_timeout:g} s later: {list(detail)[:3]}")
    long_final, long_refunds = final.get(str(long_job)), _refunds(long_job)
    if not ((long_final == "COMPLETED" and long_refunds == 0) or (long_final == "FAILED" and long_refunds == 1)):
        problems.append(f"the running job is {long_final} with {long_refunds} refunds")
    for job_id in accepted:
        refunds = _refunds(job_id)
        if refunds != (1 if final.get(job_id) == "FAILED" else 0):
            problems.append(f"job {job_id} {final.get(job_id)} with {refunds} refunds")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")

    def fmt(counter: Counter) -> str:
        return ", ".join(f"{count} x {outcome}" for outcome, count in sorted(counter.items(), key=str)) or "none"

    reaper = ", ".join(f"{count} {what}" for what, count in sorted(reaped.items()) if count) or "nothing to do"
    figure = (
        f"restart {restart_seconds:.1f} s under 6 clients (upload/status/page); answers before: "
        f"{fmt(by_phase['before'])}; during: {fmt(by_phase['outage'])}; after: {fmt(by_phase['after'])}; "
        f"running job {long_final} (refunds {long_refunds}); {len(accepted)} uploads accepted = "
        f"{len(made)} jobs, all final: {dict(counts)}; reaper (windows {STALE_SECONDS}/{REQUEUE_SECONDS} s): "
        f"{reaper}; servers up; audit_ledger {'clean' if clean else 'BROKEN'}"
    )
    return Row(PG_ROW, figure, not problems, time.monotonic() - started, tuple(problems))


# --- the queue unreachable -----------------------------------------------------------------


def queue_unreachable(stack) -> Row:
    """A second web stack whose broker (and cache) is a private Redis, stopped before the upload."""
    from credits.models import CreditTransaction

    started = time.monotonic()
    problems: list[str] = []
    port = free_port()
    redis_dir = stack.root / f"redis-{port}"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=redis_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        user, token = make_user("noqueue", 3)
        before = balance(user)
        with running_stack(
            database_url=stack.database_url,
            root=stack.root / "redis-stack",
            model_repo=stack.model_repo,
            secret_key=stack.env["SECRET_KEY"],
            web_workers=1,
            web_threads=4,
            separation_workers=1,
            max_upload_mb=int(stack.env["MAX_UPLOAD_MB"]),
            extra_env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"},
            static_root=Path(stack.env["STATIC_ROOT"]),
        ) as redis_stack:
            redis.kill()
            redis.wait(timeout=10)
            reply = redis_stack.upload(token, "noqueue.wav", tone_bytes(2.0))
            status_reply = redis_stack.get("/api/credits/balance", token)
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(timeout=10)
    after = balance(user)
    rows = list(CreditTransaction.objects.filter(user=user).order_by("created_at", "pk").values_list("kind", "amount"))
    if reply.status != 503:
        problems.append(f"upload answered {reply.status}: {reply.body[:300]!r}")
    if after != before:
        problems.append(f"balance {before} -> {after}")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    ledger = ", ".join(f"{kind} {amount:+}" for kind, amount in rows)
    figure = (
        f"Redis broker stopped: upload {reply.status}, balance {before} -> {after} "
        f"(ledger: {ledger}); balance read {status_reply.status}; audit_ledger {'clean' if clean else 'BROKEN'}"
    )
    return Row("Queue unreachable at upload", figure, not problems, time.monotonic() - started, tuple(problems))


# --- admin refund vs reaper ----------------------------------------------------------------


def refund_race(stack, *, rounds: int = 30, pairs: int = 2) -> Row:
    """Each round: a charged job at its last attempt with a stale heartbeat; `pairs` threads call
    job_refund_by_admin and as many call jobs_reap, all released at once. Refunded once."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone

    from credits.services import credits_charge_job
    from separation.maintenance import jobs_reap
    from separation.models import Job
    from separation.services import job_refund_by_admin

    started = time.monotonic()
    problems: list[str] = []
    admin, _ = make_user("raceadmin", 3)
    user, _ = make_user("race", rounds)
    outcomes: Counter = Counter()
    quiet = override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    quiet.enable()  # the failure mails of the rounds stay in memory
    for index in range(rounds):
        stale = timezone.now() - timedelta(days=1)
        job = Job.objects.create(
            id=uuid.uuid4(),
            user=user,
            original_filename=f"race-{index}.wav",
            model="demo",
            cost=Decimal(1),
            duration_seconds=1.0,
            status=Job.Status.PROCESSING,
            attempts=settings.JOB_MAX_ATTEMPTS,
            started_at=stale,
            heartbeat_at=stale,
        )
        credits_charge_job(job=job)
        barrier = threading.Barrier(2 * pairs)

        def call(kind: str, job=job, barrier=barrier):
            try:
                barrier.wait(timeout=30)
                if kind == "admin":
                    return kind, job_refund_by_admin(job=job, admin=admin)
                return kind, jobs_reap()["failed"]
            except Exception as error:
                return kind, f"{type(error).__name__}: {error}"
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=2 * pairs) as pool:
            results = list(pool.map(call, ["admin", "reap"] * pairs))
        outcomes.update(f"{kind}={result}" for kind, result in results)
        errors = [result for _, result in results if isinstance(result, str)]
        if errors:
            problems.append(f"round {index}: {errors[:2]}")
        refunds = _refunds(job.pk)
        job.refresh_from_db()
        if refunds != 1:
            problems.append(f"round {index}: refunded {refunds} times")
        if job.status != Job.Status.FAILED:
            problems.append(f"round {index}: job {job.status}")
    quiet.disable()
    if balance(user) != rounds:
        problems.append(f"balance {balance(user)}, expected {rounds}")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    figure = (
        f"{rounds} rounds x ({pairs} admin refunds + {pairs} reapers) at once on a stale job at max attempts: "
        f"{rounds - sum(1 for p in problems if 'refunded' in p)}/{rounds} refunded exactly once, all FAILED; "
        f"balance {balance(user)}/{rounds}; audit_ledger {'clean' if clean else 'BROKEN'}"
    )
    return Row("Admin refund vs reaper refund", figure, not problems, time.monotonic() - started, tuple(problems))
