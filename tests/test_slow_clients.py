"""A few uploads trickling in a byte at a time do not starve the web server: under gunicorn (two
threads here), bodies slower than UPLOAD_MIN_KBPS are cut after UPLOAD_GRACE_SECONDS, so other
requests are answered. Real gunicorn, real sockets."""

import socket
import threading
import time

import pytest

from testkit.http import http, wait_until
from testkit.processes import database_url, free_port, stop_group
from testkit.servers import server_env, start_gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def trickle(port: int, stop: threading.Event, outcome: list) -> None:
    """A login request declaring a 1 MB body, then sending it two bytes every half second."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        started = time.monotonic()
        try:
            while not stop.is_set():
                client.sendall(b"  ")
                time.sleep(0.5)
        except OSError:
            outcome.append(time.monotonic() - started)  # the server cut the connection


def test_slow_bodies_are_cut_and_other_requests_answered(tmp_path):
    port = free_port()
    server = start_gunicorn(
        port=port,
        env=server_env(
            DATABASE_URL=database_url(),
            DEBUG="1",
            DATA_DIR=str(tmp_path / "data"),
            UPLOAD_MIN_KBPS="64",
            UPLOAD_GRACE_SECONDS="2",
        ),
        log_path=tmp_path / "gunicorn.log",
        workers=1,
        threads=2,
    )
    stop, cut = threading.Event(), []
    try:
        wait_until(lambda: _up(port), timeout=60, message="gunicorn")
        slow = [threading.Thread(target=trickle, args=(port, stop, cut)) for _ in range(3)]
        for thread in slow:
            thread.start()
        time.sleep(1)  # both threads are now reading slow bodies

        started = time.monotonic()
        reply = http("GET", f"http://127.0.0.1:{port}/healthz")
        answered = time.monotonic() - started

        assert reply.status == 200
        assert answered < 10, f"/healthz waited {answered:.1f} s behind slow uploads"
        wait_until(lambda: len(cut) == 3, timeout=20, message="the slow uploads to be cut")
        assert max(cut) < 15
    finally:
        stop.set()
        stop_group(server)
    print(f"\n/healthz answered in {answered:.1f} s; slow bodies cut after {sorted(round(s, 1) for s in cut)} s")


def _up(port: int) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{port}/healthz").status == 200
    except OSError:
        return False
