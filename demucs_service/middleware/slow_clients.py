"""A request body that trickles in cannot hold a web thread for long.

gunicorn's threaded worker keeps connections that have sent nothing off its threads, but once a
request has started, a thread reads its body to the end, blocking in recv(): a few uploads sent a
byte at a time would hold every thread, and the service would stop answering. So, under gunicorn:

- a stall: a client socket that gets no data for UPLOAD_STALL_SECONDS times out (this also bounds
  a client that stops reading a response);
- a pace: while a large body is read, a watchdog thread of the worker process reads the kernel's
  count of bytes received on the connection (Linux's TCP_INFO) once a second; after
  UPLOAD_GRACE_SECONDS, a body arriving slower on average than UPLOAD_MIN_KBPS has its connection
  shut down, which ends the blocked read at once.

A client can therefore hold a thread only by sending at least UPLOAD_MIN_KBPS: filling every thread
(WEB_WORKERS x WEB_THREADS, gunicorn.conf.py) takes that much bandwidth per thread. A cut body
reaches Django as an unreadable body (UnreadablePostError). runserver, for development, starts a
thread per connection instead and is not watched.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

# struct tcp_info (linux/tcp.h): tcpi_bytes_received, a __u64 at byte 128 (Linux 4.1 and later).
TCP_INFO_BYTES_RECEIVED = 128
TCP_INFO_SIZE = 232
# Bodies this small arrive in a packet or two; only larger ones are watched.
WATCHED_ABOVE_BYTES = 64 * 1024
CHECK_INTERVAL_SECONDS = 1.0


def bytes_received(client: socket.socket) -> int:
    info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    return struct.unpack_from("=Q", info, TCP_INFO_BYTES_RECEIVED)[0]


class Watched:
    def __init__(self, client: socket.socket):
        self.client = client
        self.started = time.monotonic()
        self.baseline = bytes_received(client)


class BodyWatchdog:
    """The connections whose bodies are being read in this process, checked once a second."""

    def __init__(self):
        self.lock = threading.Lock()
        self.watched: dict[int, Watched] = {}
        self.thread: threading.Thread | None = None

    def watch(self, client: socket.socket) -> int | None:
        try:
            watched = Watched(client)
        except OSError:
            return None  # not TCP (a Unix socket), or no TCP_INFO here: the stall timeout still holds
        with self.lock:
            self.watched[id(watched)] = watched
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="body-watchdog", daemon=True)
                self.thread.start()
        return id(watched)

    def forget(self, key: int | None) -> None:
        if key is not None:
            with self.lock:
                self.watched.pop(key, None)

    def check(self) -> None:
        minimum = settings.UPLOAD_MIN_KBPS * 1024
        now = time.monotonic()
        with self.lock:
            current = list(self.watched.items())
        for key, watched in current:
            elapsed = now - watched.started
            if elapsed <= settings.UPLOAD_GRACE_SECONDS:
                continue
            try:
                received = bytes_received(watched.client) - watched.baseline
            except OSError:
                self.forget(key)  # closed meanwhile
                continue
            if received < minimum * elapsed:
                logger.warning(
                    "Cut a request body arriving at %.1f KB/s (under UPLOAD_MIN_KBPS=%s)",
                    received / elapsed / 1024,
                    settings.UPLOAD_MIN_KBPS,
                )
                self.forget(key)
                try:
                    watched.client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_INTERVAL_SECONDS)
            try:
                self.check()
            except Exception:  # the watchdog must outlive any one connection's trouble
                logger.exception("The request body watchdog failed a round")


watchdog = BodyWatchdog()


def _has_large_body(environ) -> bool:
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or (length.isdigit() and int(length) > WATCHED_ABOVE_BYTES)


def paced(application):
    """The WSGI application with its clients' sockets (under gunicorn) timing out after
    UPLOAD_STALL_SECONDS without progress and large bodies held to UPLOAD_MIN_KBPS."""

    def paced_application(environ, start_response):
        client = environ.get("gunicorn.socket")
        if client is None:
            return application(environ, start_response)
        client.settimeout(settings.UPLOAD_STALL_SECONDS)
        key = watchdog.watch(client) if _has_large_body(environ) else None
        try:
            return application(environ, start_response)
        finally:
            watchdog.forget(key)

    return paced_application
