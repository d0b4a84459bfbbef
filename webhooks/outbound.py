"""One outgoing POST to an address a user gave, made safe against server-side request forgery.

- Only http and https, no credentials in the URL, a short timeout for the whole exchange.
- The host name is resolved once, at connect time, every address it resolves to is checked, and
  the connection goes to the checked address (pinned), so a second lookup cannot swap in another.
  Private, loopback, link-local, multicast, reserved and unspecified addresses are refused unless
  `allow_private` (WEBHOOK_ALLOW_PRIVATE=1, for tests and private deployments).
- Redirects are not followed: a 3xx is an answer like any other non-2xx.
- The timeout holds for the whole exchange, headers included: the socket is shut down when it
  passes (safe_fetch.Deadline), so a receiver trickling its answer cannot hold a worker.

The lead may fold this into one shared module with the URL import's fetcher.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from separation.safe_fetch import Deadline, address_is_public

MAX_RESPONSE_BYTES = 64 * 1024


class UnsafeAddress(ValueError):
    """The URL may not be requested: what is wrong, for its owner."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes


def address_allowed(address: str) -> bool:
    # URL import's rule, so both refuse the same addresses (reserved, NAT64 and 6to4 ones too).
    return address_is_public(address)


def _ip_literal(host: str) -> str | None:
    """The address a host that is an IP literal stands for, or None for a name. getaddrinfo reads
    IPv4 the way inet_aton does, so 2130706433, 127.1, 0x7f000001 and 0177.0.0.1 are all
    127.0.0.1: read them the same here, not as names."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def url_check(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL we may send to, as far as can be told without resolving it:
    http(s), a host, no credentials, a literal IP address only if allowed. UnsafeAddress otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeAddress(f"Not a valid URL ({error}).") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeAddress("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise UnsafeAddress("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeAddress("The URL may not carry a user name or password.")
    host = parts.hostname
    if not allow_private:
        name = host.rstrip(".")  # "localhost." is the same name, fully qualified
        if name == "localhost" or name.endswith(".localhost"):
            raise UnsafeAddress("Private, loopback and link-local addresses are not allowed.")
        literal = _ip_literal(host)
        if literal is not None and not address_allowed(literal):
            raise UnsafeAddress("Private, loopback and link-local addresses are not allowed.")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _pinned_connect(host: str, port: int, *, allow_private: bool, deadline: Deadline):
    """A socket.create_connection for http.client that resolves `host` itself, refuses it if any
    address is not allowed, and connects to the address it checked."""

    def connect(address, timeout=None, source_address=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise UnsafeAddress(f"The host name does not resolve ({error.strerror}).") from None
        if not allow_private and any(not address_allowed(info[4][0]) for info in infos):
            raise UnsafeAddress("The host resolves to a private, loopback or link-local address.")
        last_error: OSError | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                deadline.watch(sock)
                return sock
            except OSError as error:
                sock.close()
                last_error = error
        raise last_error or OSError("no address to connect to")

    return connect


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> Answer:
    """POST `body` to `url`; the answer's status and the start of its body. Raises UnsafeAddress
    for an address we may not reach, OSError (TimeoutError included) or http.client.HTTPException
    when no answer came in `timeout` seconds."""
    scheme, host, port = url_check(url, allow_private=allow_private)
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    deadline = time.monotonic() + timeout
    shutdown = Deadline(timeout)
    connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = connection_class(host, port, timeout=timeout)
    # Host and TLS (SNI, certificate) still name the host; only the socket goes to the pinned address.
    connection._create_connection = _pinned_connect(host, port, allow_private=allow_private, deadline=shutdown)
    try:
        connection.request("POST", target, body=body, headers=headers)
        if connection.sock is not None:  # the whole exchange shares one deadline
            connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        received = bytearray()
        while len(received) < MAX_RESPONSE_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the answer took too long")
            if connection.sock is not None:
                connection.sock.settimeout(remaining)
            chunk = response.read1(8192) if hasattr(response, "read1") else response.read(8192)
            if not chunk:
                break
            received += chunk
    except (OSError, http.client.HTTPException):
        if shutdown.expired:  # the shut-down socket showed up as some other failure
            raise TimeoutError("the answer took too long") from None
        raise
    finally:
        shutdown.close()
        connection.close()
    if shutdown.expired:  # a shut-down socket reads as the end of the answer
        raise TimeoutError("the answer took too long")
    return Answer(status_code=response.status, body=bytes(received[:MAX_RESPONSE_BYTES]))
