"""A small HTTP client on urllib (no requests here), a multipart/form-data encoder, and waiting
for something to become true."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    seconds: float = 0.0  # from sending the request to the end of the body

    def json(self):
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> Reply:
    """One request; an HTTP error status is a Reply too, not an exception."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            return Reply(response.status, data, _lower(response.headers), time.perf_counter() - started)
    except urllib.error.HTTPError as error:
        data = error.read()
        return Reply(error.code, data, _lower(error.headers), time.perf_counter() - started)


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def post_json(url: str, data: dict, token: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json", **bearer(token)}
    return http("POST", url, body=json.dumps(data).encode(), headers=headers)


def get(url: str, token: str | None = None) -> Reply:
    return http("GET", url, headers=bearer(token))


def multipart(
    fields: dict[str, str], files: list[tuple[str, str, bytes, str]], boundary: str | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; files are (field, filename, data, type),
    the filename sent exactly as given (quotes escaped), which Django's test client would not do
    (it strips folders)."""
    boundary = boundary or f"----testkit{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data, content_type in files:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode("utf-8", "surrogatepass") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wait_until(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, message: str | Callable[[], str] = ""
):
    """The first truthy value of predicate(), or TimeoutError after `timeout` seconds; `message`
    (or what it returns, called at the time) says what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)
