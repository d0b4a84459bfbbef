"""SENTRY_DSN: errors reach Sentry, including exceptions inside django-q2 tasks. A local HTTP
server stands in for Sentry and keeps the envelopes it receives."""

import gzip
import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Value

import pytest
import sentry_sdk
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from demucs_service.observability.sentry import sentry_init
from separation import tasks
from separation.models import Job
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append(body.decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _events(envelopes: list[str]) -> list[dict]:
    """The error events in the envelopes (header, item header, payload: one JSON per line)."""
    events = []
    for envelope in envelopes:
        for line in envelope.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and ("exception" in item or "logentry" in item):
                events.append(item)
    return events


@pytest.fixture
def sentry_server():
    """A DSN pointing at the stand-in; yields (dsn, events()). Sentry is off again afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.envelopes = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def events():
        sentry_sdk.flush(timeout=5)
        return _events(server.envelopes)

    try:
        yield f"http://public@127.0.0.1:{server.server_port}/1", events
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)
        server.shutdown()
        server.server_close()


def test_it_stays_off_without_a_dsn():
    assert sentry_init(dsn="", environment="test") is False
    assert not sentry_sdk.get_client().is_active()


def test_a_bad_dsn_stops_start_up_naming_it():
    with pytest.raises(ImproperlyConfigured, match="SENTRY_DSN"):
        sentry_init(dsn="not a dsn", environment="test")


def test_an_unexpected_failure_in_a_separation_task_is_reported(user, demo_model, sentry_server):
    dsn, events = sentry_server
    assert sentry_init(dsn=dsn, environment="test", release="test-release")
    job = make_job(user)
    # Where the run's folder should go there is a file: the engine cannot write its outputs.
    (demo_model / f"jobs/{job.pk}/stems-1").write_bytes(b"in the way")

    tasks.separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    [event] = [e for e in events() if "exception" in e]
    assert event["exception"]["values"][-1]["type"] == "FileExistsError"
    assert event["environment"] == "test" and event["release"] == "test-release"
    assert event["logger"] == "separation.worker"
    assert event["logentry"]["formatted"] == f"Separation of job {job.pk} failed"
    assert "user" not in event or not event["user"].get("email")  # no personal data


def explode():
    raise ValueError("a task blew up")


def test_an_exception_inside_a_django_q_task_is_reported(sentry_server, monkeypatch):
    """Through django-q2's own worker and monitor, in this process: the worker catches the
    exception, the monitor logs it at error level, and the logging integration sends it."""
    import django_q.monitor
    import django_q.worker

    dsn, events = sentry_server
    assert sentry_init(dsn=dsn, environment="test")
    # The cluster closes stale connections between tasks; here that would end the test's transaction.
    monkeypatch.setattr(django_q.worker, "close_old_django_connections", lambda: None)
    monkeypatch.setattr(django_q.monitor, "close_old_django_connections", lambda: None)
    task_queue, result_queue = queue.Queue(), queue.Queue()
    task = {
        "id": "0f4a9c1e2b3d4c5e8f9a0b1c2d3e4f50",
        "name": "explode-once",
        "func": "tests.test_sentry.explode",
        "args": (),
        "kwargs": {},
        "started": timezone.now(),
    }
    task_queue.put(task)
    task_queue.put("STOP")

    django_q.worker.worker(task_queue, result_queue, Value("f", -1), timeout=-1)
    result_queue.put("STOP")
    django_q.monitor.monitor(result_queue)

    reported = [e for e in events() if "a task blew up" in json.dumps(e)]
    assert reported, events()
    assert reported[0]["logger"] == "django-q"
    assert reported[0]["level"] == "error"
