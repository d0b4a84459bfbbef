"""Outgoing requests to addresses users give (URL import, webhook deliveries) end by their
deadline even when the server trickles its answer's status line and headers a byte at a time
(slowloris): a per-read timeout alone would let such a server hold the thread for hours."""

import socket
import threading
import time

import pytest

from separation import safe_fetch
from webhooks import outbound

pytestmark = pytest.mark.unit

# How long the server below keeps trickling: far past the deadlines under test, so a fetch still
# waiting when it stops has not kept its deadline.
TRICKLE_SECONDS = 8.0


class HeaderTrickler:
    """A TCP server on 127.0.0.1 that answers every connection with a status line and then one
    header byte every 0.2 s, never finishing the headers."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection):
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                stop = time.monotonic() + TRICKLE_SECONDS
                while time.monotonic() < stop:
                    connection.sendall(b"a")
                    time.sleep(0.2)
            except OSError:
                return

    def close(self):
        self.listener.close()


@pytest.fixture
def trickler():
    server = HeaderTrickler()
    yield server
    server.close()


def test_it_ends_a_url_import_whose_headers_trickle_by_its_deadline(trickler, tmp_path):
    started = time.monotonic()
    with open(tmp_path / "song", "wb") as into, pytest.raises(safe_fetch.FetchFailed) as failed:
        safe_fetch.fetch_to_file(
            f"http://127.0.0.1:{trickler.port}/song.wav",
            into=into,
            max_bytes=1_000_000,
            deadline_seconds=1,
            allow_private=True,
        )
    assert time.monotonic() - started < 3
    assert "longer than 1 seconds" in str(failed.value)


def test_it_ends_a_webhook_delivery_whose_headers_trickle_by_its_timeout(trickler):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        outbound.post(
            f"http://127.0.0.1:{trickler.port}/hook",
            body=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=1,
            allow_private=True,
        )
    assert time.monotonic() - started < 3
