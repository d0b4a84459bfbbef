"""Hostile input, made at test time and sent through gunicorn one at a time. Each must get a
4xx (or 202 and then separate to COMPLETED): never a 5xx, never a charge without a job, never a
file outside MEDIA_ROOT."""

from __future__ import annotations

import io
import json
import os
import socket
import time
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from reliability.scenarios.common import Row, audit_ledger, balance, make_user, orphan_charges, wait_final
from testkit.audio import SAMPLERATE, encode, png_bytes, tone_bytes, tones, wav
from testkit.http import http, multipart
from testkit.processes import REPO_ROOT

SKIPPED_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules"}
MARK = f"relescape{uuid.uuid4().hex[:8]}"


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def zip_bytes(compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("song.wav", tone_bytes(1.0))
    return buffer.getvalue()


def mp3(seconds: float = 4.0) -> bytes:
    return encode(tones(seconds), SAMPLERATE, "mp3")


def lying_wav() -> bytes:
    """A 2 s wav whose RIFF and data sizes claim ten minutes."""
    data = bytearray(tone_bytes(2.0))
    index = data.find(b"data")
    claimed = 600 * SAMPLERATE * 4
    data[index + 4 : index + 8] = claimed.to_bytes(4, "little")
    data[4:8] = (claimed + index).to_bytes(4, "little")
    return bytes(data)


def float_wav_with(value: float) -> bytes:
    samples = tones(2.0)
    samples[1000:2000, :] = value
    return wav(samples, subtype="FLOAT")


def raw(stack, token: str, head_length: int | str | None, body: bytes, *, shut: bool = True) -> str:
    """An upload on a raw socket with a Content-Length that does not match the body; the status
    line of the answer, or how the connection ended."""
    boundary = "rawboundary7f3a"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="raw.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    payload = part + body + f"\r\n--{boundary}--\r\n".encode()
    head_length = len(payload) if head_length is None else head_length
    host, port = stack.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {head_length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sent_error = None
        try:
            sock.sendall(head + payload)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except OSError as error:  # the server may answer and close before reading it all
            sent_error = type(error).__name__
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError as error:
            if not answer:
                return f"closed ({type(error).__name__})"
    if not answer:
        return f"closed (no answer{', ' + sent_error + ' while sending' if sent_error else ''})"
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def status_of(line: str) -> int | None:
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit() else None


def cases(stack, token: str, max_upload_mb: int) -> dict:
    """name -> a function that sends the case and returns (status or None, note)."""

    def file(name: str, data: bytes):
        return lambda: (stack.upload(token, name, data).status, "")

    def form(fields: dict, files: list):
        def send():
            body, content_type = multipart(fields, files)
            reply = http(
                "POST", stack.url("/api/upload"), body=body, headers={"Content-Type": content_type, **stack.auth(token)}
            )
            return reply.status, ""

        return send

    def plain(body: bytes, content_type: str):
        def send():
            headers = {"Content-Type": content_type, **stack.auth(token)}
            return http("POST", stack.url("/api/upload"), body=body, headers=headers).status, ""

        return send

    def raw_case(length, body: bytes, shut: bool = True):
        def send():
            line = raw(stack, token, length, body, shut=shut)
            return status_of(line), line

        return send

    over = os.urandom((max_upload_mb + 1) * 1024 * 1024)
    full_mp3 = mp3(4.0)
    return {
        "zero bytes": file("song.wav", b""),
        "random bytes named .wav": file("song.wav", os.urandom(64 * 1024)),
        "PNG renamed .mp3": file("song.mp3", png_bytes((64, 64))),
        "PDF renamed .mp3": file("song.mp3", pdf()),
        "ZIP renamed .mp3": file("song.mp3", zip_bytes()),
        "ZIP (stored, holding a wav) renamed .mp3": file("song.mp3", zip_bytes(zipfile.ZIP_STORED)),
        "truncated mp3": file("song.mp3", full_mp3[: len(full_mp3) // 2 + 17]),
        "mp3 cut inside its first frame": file("song.mp3", full_mp3[:300]),
        "wav header cut": file("song.wav", tone_bytes(2.0)[:44]),
        "wav header lies about its length": file("song.wav", lying_wav()),
        "1-sample wav": file("song.wav", wav(tones(1 / SAMPLERATE))),
        "0.05 s wav": file("song.wav", wav(tones(0.05))),
        "8 channels": file("song.wav", wav(tones(2.0, channels=8))),
        "8 kHz": file("song.wav", wav(tones(2.0, samplerate=8000), 8000)),
        "96 kHz": file("song.wav", wav(tones(2.0, samplerate=96000), 96000)),
        "silence": file("song.wav", wav(np.zeros((2 * SAMPLERATE, 2), dtype=np.float32))),
        "NaN samples (float wav)": file("song.wav", float_wav_with(float("nan"))),
        "inf samples (float wav)": file("song.wav", float_wav_with(float("inf"))),
        f"over {max_upload_mb} MB, honest Content-Length": raw_case(None, over),
        "over the limit, Content-Length says 1000": raw_case(1000, over),
        "Content-Length 10^12, small body": raw_case(10**12, tone_bytes(2.0)),
        "Content-Length 10^12, body never ends (no shutdown)": raw_case(10**12, tone_bytes(2.0), shut=False),
        "Content-Length not a number": raw_case("12abc", tone_bytes(2.0)),
        "filename ../../ escape": file(f"../../../../../tmp/{MARK}.wav", tone_bytes(2.0)),
        "filename absolute /tmp path": file(f"/tmp/{MARK}-abs.wav", tone_bytes(2.0)),
        "filename with NUL": file(f"{MARK}\x00.wav", tone_bytes(2.0)),
        "filename of 300 characters": file("a" * 296 + ".wav", tone_bytes(2.0)),
        "filename with emoji": file("🎵🎸 song ✨.wav", tone_bytes(2.0)),
        "multipart without a file": form({"model": "demo"}, []),
        "multipart with two files": form(
            {}, [("file", "one.wav", tone_bytes(2.0), "audio/wav"), ("file", "two.wav", tone_bytes(2.0), "audio/wav")]
        ),
        "not multipart (JSON)": plain(json.dumps({"file": "song.wav"}).encode(), "application/json"),
        "not multipart (raw wav body)": plain(tone_bytes(2.0), "audio/wav"),
        "multipart with a broken boundary": plain(b"--nope\r\ngarbage", "multipart/form-data; boundary=other"),
    }


def snapshot(folders: list[Path], skip: list[Path]) -> set[Path]:
    files = set()
    for folder in folders:
        if not folder.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and here / d not in skip]
            files.update(here / name for name in filenames)
    return files


def escaped_files() -> list[Path]:
    """Files named after the escape attempts anywhere we can look cheaply."""
    found = []
    for folder in (Path("/tmp"), REPO_ROOT, Path.cwd(), Path("/")):
        try:
            found += [path for path in folder.iterdir() if MARK in path.name]
        except OSError:
            pass
    return found


def run(stack, *, max_upload_mb: int = 5, job_timeout: float = 600) -> Row:
    from separation.models import Job

    started = time.monotonic()
    user, token = make_user("hostile", 100)
    watched = [REPO_ROOT, stack.root]
    skip = [stack.media_root, stack.root / "logs"]
    before = snapshot(watched, skip)
    problems: list[str] = []
    results: dict[str, int | None] = {}
    accepted: dict[str, str] = {}
    for name, send in cases(stack, token, max_upload_mb).items():
        credits_before, jobs_before = balance(user), Job.objects.filter(user=user).count()
        try:
            status, note = send()
        except OSError as error:
            status, note = None, f"{type(error).__name__}: {error}"
        results[name] = status
        credits_after, jobs = balance(user), list(Job.objects.filter(user=user).order_by("-created_at"))
        new_jobs = len(jobs) - jobs_before
        if status is None:
            # The server closed the connection without an answer: acceptable only with no effect.
            if credits_after != credits_before or new_jobs:
                problems.append(f"{name}: no answer ({note}) but charged or made a job")
        elif status == 202:
            job = jobs[0]
            accepted[name] = str(job.pk)
            if new_jobs != 1 or credits_before - credits_after != job.cost:
                problems.append(f"{name}: 202 with {new_jobs} new jobs, charged {credits_before - credits_after}")
        elif 400 <= status < 500:
            if credits_after != credits_before or new_jobs:
                problems.append(f"{name}: {status} but charged {credits_before - credits_after}, {new_jobs} new jobs")
        else:
            problems.append(f"{name}: answered {status} {note}")
    final = wait_final(accepted.values(), job_timeout)
    for name, job_id in accepted.items():
        if final.get(job_id) != Job.Status.COMPLETED:
            job = Job.objects.get(pk=job_id)
            problems.append(f"{name}: accepted, then {job.status} ({job.error})")
    new_files = sorted(snapshot(watched, skip) - before)
    if new_files:
        problems.append(f"files outside MEDIA_ROOT: {[str(p) for p in new_files[:10]]}")
    escaped = escaped_files()
    if escaped:
        problems.append(f"escaped files: {escaped}")
    leftover_tmp = [str(p) for p in stack.tmp_dir.rglob("*") if p.is_file()]
    if leftover_tmp:
        problems.append(f"temp files left in TMPDIR: {leftover_tmp[:5]}")
    orphans = orphan_charges()
    if orphans:
        problems.append(f"charges without a job: {orphans}")
    clean, said = audit_ledger(stack)
    if not clean:
        problems.append(f"audit_ledger: {said}")
    statuses = Counter("no answer" if s is None else s for s in results.values())
    completed = sum(1 for job_id in accepted.values() if final.get(job_id) == Job.Status.COMPLETED)
    five = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    figure = (
        f"{len(results)} inputs: {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items(), key=str))}; "
        f"{five} x 5xx; {completed}/{len(accepted)} accepted COMPLETED; "
        f"charges = jobs ({'yes' if not orphans else 'NO'}); {len(new_files) + len(escaped)} files outside MEDIA_ROOT"
    )
    return Row("Hostile input corpus", figure, not problems, time.monotonic() - started, tuple(problems), results)
