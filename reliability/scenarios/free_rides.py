"""Getting audio, storage or worker time without paying for it, or at another's expense: a header
that lies about the length, a stalled run that outlives its retry, a tiny file that expands into
huge stems, and one user's batch in front of another's song."""

from __future__ import annotations

import os
import signal
import time

from reliability.scenarios.common import Row, audit_ledger, balance, make_user
from reliability.scenarios.faults import _job, reap, start_qcluster, wait_mid_job
from testkit.audio import encode, mp3_claiming_seconds, tone_bytes
from testkit.http import wait_until


def decoded_length(stack, *, max_minutes: int) -> Row:
    """1. An MP3 whose Xing header claims 2 s: charged for its decoded length, refused past the limit."""
    name = "Priced by decoded length"
    started = time.monotonic()
    problems = []
    user, token = make_user("liar", 10)
    eleven = mp3_claiming_seconds(tone_bytes(11 * 60.0, fmt="mp3", mp3_kbps=32), 2.0)
    reply = stack.upload(token, "eleven minutes.mp3", eleven)
    cost = reply.json().get("cost") if reply.status == 202 else None
    if reply.status != 202 or cost != "2.00":
        problems.append(f"11-minute MP3 claiming 2 s: {reply.status}, cost {cost} (expected 202, 2.00)")
    else:
        stack.delete(f"/api/job/{reply.json()['job_id']}", token)  # the price was the point; spare the workers
    over = mp3_claiming_seconds(tone_bytes((max_minutes + 1) * 60.0, fmt="mp3", mp3_kbps=32), 2.0)
    refused = stack.upload(token, "too long.mp3", over)
    if refused.status != 400:
        problems.append(
            f"{max_minutes + 1}-minute MP3 claiming 2 s over a {max_minutes}-minute limit: {refused.status}"
        )
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    figure = (
        f"11-minute MP3 whose Xing header claims 2 s: {reply.status}, charged {cost} credits; "
        f"{max_minutes + 1}-minute one over the {max_minutes}-minute limit: {refused.status}; "
        f"(cancelled, refunded): balance {balance(user)} of 10; audit {'clean' if clean else 'BROKEN'}"
    )
    return Row(name, figure, not problems, time.monotonic() - started, tuple(problems))


def _in_stack(stack, code: str) -> str:
    """Python run by `manage.py shell` with the servers' settings; the last line it printed."""
    result = stack.manage("shell", "-c", code)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-800:])
    return result.stdout.strip().splitlines()[-1]


def attempts_never_reused(stack, *, job_timeout: float) -> Row:
    """3. A run that stalls (SIGSTOP, not dead) is failed and an operator requeues the job; the retry
    completes; then the stalled run wakes up. It must not touch the retry's files."""
    name = "Attempts never reused"
    started = time.monotonic()
    problems = []
    user, token = make_user("stall", 3)
    reply = stack.upload(token, "stalled.wav", tone_bytes(60.0, samplerate=22050, channels=1))
    if reply.status != 202:
        return Row(name, f"upload answered {reply.status}", False, time.monotonic() - started)
    job_id = reply.json()["job_id"]
    wait_mid_job(job_id)
    progress_at_stall = _job(job_id).progress
    stalled = stack.processes["qcluster"]
    os.killpg(stalled.pid, signal.SIGSTOP)
    try:
        time.sleep(12)  # the heartbeat goes stale
        reap(stack)  # taken for dead: requeued for attempt 2 (no worker runs it: the only one is stopped)
        # Then failed, and the operator's free retry (services run in the servers' environment: their MEDIA_ROOT).
        requeued = (
            _in_stack(
                stack,
                "from separation.models import Job; from separation.services import job_fail, job_requeue; "
                f"job_fail(job_id='{job_id}', error='Failed by the reliability suite after its worker stalled.'); "
                f"print(job_requeue(job=Job.objects.get(pk='{job_id}')))",
            )
            == "True"
        )
        start_qcluster(stack, "qcluster-retry")  # the stalled cluster stays in the group below
        wait_until(lambda: _job(job_id).status in ("COMPLETED", "FAILED"), timeout=job_timeout, message="the retry")
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    time.sleep(8)  # the stalled run's next progress report is refused; it cleans up its own folder
    os.killpg(stalled.pid, signal.SIGKILL)
    job = _job(job_id)
    download = stack.get(f"/api/download/{job_id}", token)
    files = [stack.media_root / stem["file"] for stem in job.stems]
    if not requeued:
        problems.append("the admin requeue was refused")
    if job.status != "COMPLETED" or job.attempts < 2:
        problems.append(f"job {job.status} on attempt {job.attempts}")
    if download.status != 200 or not files or not all(path.is_file() for path in files):
        problems.append(f"download answered {download.status}; stem files present: {[p.is_file() for p in files]}")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    figure = (
        f"run 1 stalled (SIGSTOP) at {progress_at_stall}%, failed, requeued by "
        f"an operator; the retry ran as attempt {job.attempts} to {job.status}; run 1 resumed: zip {download.status}, "
        f"{sum(path.is_file() for path in files)}/{len(files)} stems on disk; audit {'clean' if clean else 'BROKEN'}"
    )
    return Row(name, figure, not problems, time.monotonic() - started, tuple(problems))


def storage_bounded(stack, *, quota_mb: int, job_timeout: float) -> Row:
    """4. A tiny FLAC at 384 kHz: its stems at the model's rate, silent ones deflated in the zip;
    and uploads past the user's quota refused."""
    import numpy as np

    name = "Storage bounded per credit and user"
    started = time.monotonic()
    problems = []
    user, token = make_user("bomb", 20)
    seconds = 60
    flac = encode(np.zeros((384000 * seconds, 2), dtype=np.float32), 384000, "flac")
    reply = stack.upload(token, "quiet.flac", flac)
    if reply.status != 202:
        return Row(name, f"upload answered {reply.status}: {reply.body[:200]!r}", False, time.monotonic() - started)
    job_id = reply.json()["job_id"]
    wait_until(lambda: _job(job_id).status in ("COMPLETED", "FAILED"), timeout=job_timeout, message="the job")
    job = _job(job_id)
    kept = sum(path.stat().st_size for path in (stack.media_root / f"jobs/{job_id}").rglob("*") if path.is_file())
    bound = len(flac) + 4 * seconds * 44100 * 2 * 2 * 1.1  # four 16-bit stereo stems at 44.1 kHz, +10%
    if job.status != "COMPLETED" or kept > bound:
        problems.append(f"job {job.status}, {kept} bytes kept (bound {bound:.0f})")
    refused_at = None
    fillers = []
    filler = tone_bytes(600.0, fmt="mp3", mp3_kbps=32)  # 2.4 MB at 16 kHz, about 600 MB while it runs
    for index in range(quota_mb // 200 + 5):
        answer = stack.upload(token, f"fill {index}.wav", filler)
        if answer.status == 409:
            refused_at = index + 1
            break
        if answer.status != 202:
            problems.append(f"filling the quota: upload answered {answer.status}")
            break
        fillers.append(answer.json()["job_id"])
    for job_id in fillers:  # cancelled (and refunded): the row needs their bytes, not their stems
        stack.delete(f"/api/job/{job_id}", token)
    if refused_at is None:
        problems.append(f"no upload was refused by the {quota_mb} MB quota")
    figure = (
        f"{seconds} s of 384 kHz silence in a {len(flac) / 1024:.0f} KB FLAC: {job.status}, kept "
        f"{kept / 1e6:.1f} MB (bound {bound / 1e6:.1f} MB, was 8x the 44.1 kHz size plus a stored zip); "
        f"{quota_mb} MB quota: filler upload {refused_at} answered 409"
    )
    return Row(name, figure, not problems, time.monotonic() - started, tuple(problems))


def fair_queue(stack, *, job_timeout: float) -> Row:
    """8. User A queues five songs, then user B one short clip: B's clip must not wait for A's batch."""
    name = "One user cannot hold every worker"
    started = time.monotonic()
    problems = []
    a, a_token = make_user("batch", 5)
    b, b_token = make_user("single", 3)
    clip = tone_bytes(30.0, samplerate=22050, channels=1)
    a_jobs = [stack.upload(a_token, f"a{index}.wav", clip).json()["job_id"] for index in range(5)]
    b_job = stack.upload(b_token, "b.wav", tone_bytes(5.0, samplerate=22050, channels=1)).json()["job_id"]
    ids = [*a_jobs, b_job]
    wait_until(
        lambda: all(_job(job_id).status in ("COMPLETED", "FAILED") for job_id in ids),
        timeout=job_timeout,
        message="the jobs",
    )
    jobs = sorted((_job(job_id) for job_id in ids), key=lambda job: job.started_at)
    b_place = [str(job.pk) for job in jobs].index(b_job) + 1
    a_before = b_place - 1
    waited = (_job(b_job).started_at - _job(b_job).created_at).total_seconds()
    overlap = max(
        sum(1 for other in jobs if other.user_id == a.pk and other.started_at <= job.started_at < other.finished_at)
        for job in jobs
        if job.user_id == a.pk
    )
    limit = int(stack.env.get("MAX_RUNNING_JOBS_PER_USER", "2"))
    if a_before > limit or overlap > limit:
        problems.append(f"B's clip started after {a_before} of A's jobs; A ran {overlap} at once (limit {limit})")
    figure = (
        f"A queued 5 x 30 s, then B a 5 s clip ({stack.env.get('SEPARATION_WORKERS')} workers, "
        f"{limit} per user): B's clip was job {b_place} of 6 to start, after waiting {waited:.1f} s; "
        f"A ran at most {overlap} at once"
    )
    return Row(name, figure, not problems, time.monotonic() - started, tuple(problems))
