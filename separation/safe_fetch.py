"""Server-side requests to addresses a user gave, without letting them reach what they should not.

Rules (for URL import, and meant for any outgoing request a user chooses the address of):
- only http and https, no user:password in the address;
- the host name is resolved once, every address it resolves to must be public (no private,
  loopback, link-local, shared, multicast, reserved or unspecified address, IPv4-mapped ones
  included) unless `allow_private`, and the connection is made to that checked address (pinned):
  a DNS answer that changes between the check and the connection (rebinding) changes nothing;
- redirects are followed only to the same host (and scheme), each one resolved and checked again;
- a connect timeout, a timeout for each read and a deadline for the whole exchange, held by
  shutting the socket down when it passes (`Deadline`): per-read timeouts alone let a server that
  trickles its status line or headers a byte at a time (slowloris) hold the thread for hours;
- at most `max_bytes`, counted as the body arrives whatever Content-Length says.

`pinned_connection` is the building block (an http.client connection to the checked address,
TLS verified against the host name); `fetch_to_file` is a GET into a file.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import Message
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 3
READ_CHUNK = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}


class FetchError(Exception):
    """Why a fetch did not give a file: a sentence for the person."""


class FetchRefused(FetchError):
    """The address is not one the server may fetch (scheme, private address, redirect elsewhere)."""


class FetchFailed(FetchError):
    """The address did not answer with a file: no such host, no connection, timeout, an HTTP error."""


class FetchTooLarge(FetchError):
    """The body passed `max_bytes` (it was stopped there)."""


class Deadline:
    """Shuts down the sockets it watches once `seconds` have passed, waking any read or write
    blocked on them (http.client's header reading included, which no per-read timeout bounds).
    It watches a duplicate of each socket's descriptor, so a socket later wrapped in TLS (which
    detaches the original object) is still shut down. `expired` tells the caller why it failed."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self):
        with self._lock:
            self.expired = True
            for sock in self._watched:
                _shutdown(sock)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            duplicate = sock.dup()
            self._watched.append(duplicate)
            if self.expired:
                _shutdown(duplicate)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by its side
        pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str  # without parameters, lower case; "" when none
    filename: str  # from Content-Disposition or the path's last part; "" when neither
    size: int


def target_parse(url: str) -> Target:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise FetchRefused("Only http and https addresses can be fetched.")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("Addresses with a user name or password cannot be fetched.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchRefused("The address has an invalid port.") from None
    if not parts.hostname:
        raise FetchRefused("The address has no host name.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path)


def address_is_public(address: str) -> bool:
    """Whether an IP address is on the public internet (not private, loopback, link-local, shared,
    multicast, reserved or unspecified), looking through IPv4-mapped IPv6 addresses, and through
    6to4 ones (2002::/16), which a relay delivers to the IPv4 address they embed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None and not _is_public(ip.sixtofour):
        return False
    return _is_public(ip)


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def addresses_checked(host: str, port: int, *, allow_private: bool) -> list[tuple]:
    """The host's addresses (getaddrinfo tuples), all of them allowed, or FetchRefused/FetchFailed.
    One address not allowed refuses the host: a name that also points inside is not fetched."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchFailed(f"The host {host} could not be found.") from None
    if not infos:
        raise FetchFailed(f"The host {host} could not be found.")
    if not allow_private:
        for info in infos:
            if not address_is_public(info[4][0]):
                raise FetchRefused(
                    f"The host {host} is a private, local or reserved address; the server does not fetch from those."
                )
    return infos


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, *, infos, deadline: Deadline | None = None, **kwargs):
        super().__init__(host, port, **kwargs)
        self._infos = infos
        self._deadline = deadline

    def _connect_pinned(self):
        error = None
        for family, socktype, proto, _, sockaddr in self._infos:
            sock = socket.socket(family, socktype, proto)
            sock.settimeout(CONNECT_TIMEOUT_SECONDS)
            try:
                sock.connect(sockaddr)
            except OSError as refused:
                sock.close()
                error = refused
                continue
            sock.settimeout(self.timeout)
            if self._deadline is not None:
                self._deadline.watch(sock)
            return sock
        raise error or OSError("no address to connect to")

    def connect(self):
        self.sock = self._connect_pinned()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, host, port, *, infos, **kwargs):
        super().__init__(host, port, infos=infos, **kwargs)
        self._context = ssl.create_default_context()

    def connect(self):
        # TLS to the checked address, verified against the host name (SNI and certificate).
        self.sock = self._context.wrap_socket(self._connect_pinned(), server_hostname=self.host)


def pinned_connection(
    target: Target,
    *,
    allow_private: bool,
    timeout: float = READ_TIMEOUT_SECONDS,
    deadline: Deadline | None = None,
) -> http.client.HTTPConnection:
    """An http.client connection to `target` that can only reach the address checked here; its
    socket is shut down when `deadline` expires."""
    infos = addresses_checked(target.host, target.port, allow_private=allow_private)
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    return connection_class(target.host, target.port, infos=infos, timeout=timeout, deadline=deadline)


def _filename(response: http.client.HTTPResponse, path: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    if disposition:
        message = Message()
        message["Content-Disposition"] = disposition
        name = message.get_filename()
        if name:
            return name
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def fetch_to_file(
    url: str,
    *,
    into: BinaryIO,
    max_bytes: int,
    deadline_seconds: float,
    allow_private: bool,
    refuse_content_type=None,
    progress=None,
) -> Fetched:
    """GET `url` into the file `into`, by the rules above. `refuse_content_type(content_type)` may
    raise to refuse an answer by its Content-Type before its body is read; `progress(size)`, called
    after each chunk is written, may raise to stop the download."""
    started = time.monotonic()
    deadline = Deadline(deadline_seconds)
    try:
        fetched = _fetch(
            url,
            into=into,
            max_bytes=max_bytes,
            started=started,
            deadline_seconds=deadline_seconds,
            deadline=deadline,
            allow_private=allow_private,
            refuse_content_type=refuse_content_type,
            progress=progress,
        )
    except FetchError:
        if deadline.expired:  # the shut-down socket showed up as some other failure
            raise FetchFailed(f"The download took longer than {deadline_seconds:g} seconds.") from None
        raise
    finally:
        deadline.close()
    if deadline.expired:  # a shut-down socket reads as the end of the body
        raise FetchFailed(f"The download took longer than {deadline_seconds:g} seconds.")
    return fetched


def _fetch(
    url, *, into, max_bytes, started, deadline_seconds, deadline, allow_private, refuse_content_type, progress
) -> Fetched:
    target = target_parse(url)
    for _ in range(MAX_REDIRECTS + 1):
        connection = pinned_connection(target, allow_private=allow_private, deadline=deadline)
        try:
            try:
                connection.request(
                    "GET", target.path, headers={"Accept": "audio/*, */*;q=0.5", "User-Agent": "Stemfold-URL-import"}
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                raise FetchFailed(f"{target.host} did not answer ({_reason(error)}).") from None
            if response.status in REDIRECTS:
                target = _redirect_target(target, response.headers.get("Location", ""))
                continue
            if not 200 <= response.status < 300:
                raise FetchFailed(f"{target.host} answered {response.status} {response.reason}, not a file.")
            content_type = response.headers.get_content_type() if response.headers.get("Content-Type") else ""
            if refuse_content_type is not None:
                refuse_content_type(content_type)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(f"The file is larger than {max_bytes} bytes.")
            size = _copy(
                response,
                into,
                max_bytes=max_bytes,
                started=started,
                deadline_seconds=deadline_seconds,
                progress=progress,
            )
            return Fetched(
                url=f"{target.scheme}://{target.host}:{target.port}{target.path}",
                content_type=content_type,
                filename=_filename(response, target.path),
                size=size,
            )
        finally:
            connection.close()
    raise FetchFailed(f"Too many redirects (more than {MAX_REDIRECTS}).")


def _redirect_target(current: Target, location: str) -> Target:
    if not location:
        raise FetchFailed("The address redirected without saying where.")
    following = target_parse(urljoin(f"{current.scheme}://{current.host}:{current.port}{current.path}", location))
    if (following.scheme, following.host, following.port) != (current.scheme, current.host, current.port):
        raise FetchRefused("The address redirected to another host; the server follows redirects only on the same one.")
    return following


def _copy(response, into: BinaryIO, *, max_bytes: int, started: float, deadline_seconds: float, progress) -> int:
    size = 0
    while True:
        if time.monotonic() - started > deadline_seconds:
            raise FetchFailed(f"The download took longer than {deadline_seconds:g} seconds.")
        try:
            chunk = response.read1(READ_CHUNK)
        except (OSError, http.client.HTTPException) as error:
            raise FetchFailed(f"The download stopped ({_reason(error)}).") from None
        if not chunk:
            return size
        size += len(chunk)
        if size > max_bytes:
            raise FetchTooLarge(f"The file is larger than {max_bytes} bytes.")
        into.write(chunk)
        if progress is not None:
            progress(size)


def _reason(error: Exception) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return "TLS failed"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return type(error).__name__
