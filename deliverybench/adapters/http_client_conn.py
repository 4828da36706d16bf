"""One keep-alive HTTP/1.1 client connection as a bare asyncio protocol, shared by the poll clients.

Interval polling (:mod:`.poll_client`) and long-polling
(:mod:`.longpoll_client`) both ask a ``GET`` and read one answer at a time
over a connection they keep. aiohttp's client spent 57-70 µs of harness
CPU per request doing that (a task, a request and a response object, a
header multidict each time); an :class:`HttpClientConnection` hands the
bytes to httptools' llhttp ``HttpResponseParser`` and the finished answer
to its owner in one call -- no task and no object per answer. An answer
is stamped when its first byte arrives, before any parsing.

What a server sends is untrusted: header bytes past
:data:`MAX_HEADER_BYTES` (counted as they arrive: llhttp hands a header over
only once it is complete) or a body past ``max_body`` end the connection as
``<prefix>oversized``, bytes nobody asked for or that llhttp refuses as
``<prefix>malformed_response``; the owner is told (:meth:`ConnectionOwner.failed`)
and the connection is aborted. The owner decides what counts as an error.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools

from . import worker_clock

__all__ = ["HttpClientConnection", "ConnectionOwner", "Endpoint", "MAX_HEADER_BYTES", "KEPT_HEADERS", "error_kind",
           "open_connection"]

#: response header bytes read before a connection is given up (a hostile server's endless headers)
MAX_HEADER_BYTES = 64 * 1024
#: the response headers the poll clients read; every other header is only counted toward the cap
KEPT_HEADERS = frozenset({b"x-last-id", b"x-gap", b"etag", b"last-modified"})


class ConnectionOwner(Protocol):
    """What a connection tells: a complete answer, or that it is finished (with the kind of why)."""

    def answered(self, conn: Any, status: int, body: bytes, headers: dict[bytes, bytes], rx_ns: int,
                 keep_alive: bool) -> None: ...

    def failed(self, conn: Any, kind: str, at_ns: int) -> None: ...


class HttpClientConnection(asyncio.Protocol):
    """Bytes stamped, parsed by llhttp, answers handed to ``owner`` (see the module docstring).

    The parser calls the ``on_*`` methods from inside :meth:`data_received`;
    only :data:`KEPT_HEADERS` are kept, with lower-case names.
    """

    __slots__ = ("owner", "transport", "parser", "rx_ns", "waiting", "status", "body", "body_size",
                 "header_bytes", "headers", "failed", "max_body", "prefix", "asked", "head_bytes")

    def __init__(self, owner: ConnectionOwner, *, max_body: int, prefix: str) -> None:
        self.owner = owner
        #: largest answer body read; a larger one ends the connection as ``<prefix>oversized``
        self.max_body = max_body
        #: error kinds are ``prefix`` + ``closed``, ``oversized``, ``malformed_response``, ...
        self.prefix = prefix
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        #: arrival of the current answer's first byte (0: none yet)
        self.rx_ns = 0
        #: a request is outstanding
        self.waiting = False
        self.status = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.header_bytes = 0
        self.headers: dict[bytes, bytes] = {}
        self.failed = False
        #: requests sent on this connection
        self.asked = 0
        #: bytes of the current answer read before its headers were complete (llhttp keeps an unfinished header)
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> None:
        if self.transport is not None:
            self.waiting = True
            self.rx_ns = 0
            self.status = self.head_bytes = 0
            self.asked += 1
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        rx_ns = worker_clock.now_ns()
        if self.failed:
            return
        if not self.waiting:  # bytes nobody asked for
            self.fail(self.prefix + "malformed_response", rx_ns)
            return
        if not self.rx_ns:
            self.rx_ns = rx_ns
        asked = self.asked
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail(self.prefix + "malformed_response", rx_ns)
            return
        if not self.status and asked == self.asked and not self.failed:  # still in this answer's headers
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEADER_BYTES:
                self.fail(self.prefix + "oversized", rx_ns)

    # -- llhttp's callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.body = []
        self.body_size = self.header_bytes = 0
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self.fail(self.prefix + "oversized", worker_clock.now_ns())
            return
        key = name.lower()
        if key in KEPT_HEADERS:
            self.headers[key] = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.failed:
            return
        self.body_size += len(body)
        if self.body_size > self.max_body:
            self.fail(self.prefix + "oversized", worker_clock.now_ns())
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.failed:
            return
        self.waiting = False
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        self.owner.answered(self, self.status, body, self.headers, self.rx_ns, self.parser.should_keep_alive())

    # -- ends -------------------------------------------------------------------------------------
    def fail(self, kind: str, at_ns: int) -> None:
        """Count ``kind`` and drop the connection: nothing more read from it."""
        if not self.failed:
            self.failed = True
            self.owner.failed(self, kind, at_ns)
            self.abort()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.failed:
            self.failed = True
            kind = self.prefix + "closed" if exc is None else error_kind(exc, self.prefix)
            self.owner.failed(self, kind, worker_clock.now_ns())


class Endpoint:
    """Where a URL's requests go, and the bytes of a ``GET`` to it (the URL's own query first)."""

    __slots__ = ("host", "port", "ssl", "path", "query", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.ssl = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.ssl else 80)
        self.path = (parts.path or "/").encode()
        self.query = parts.query.encode()
        default_port = self.port == (443 if self.ssl else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if default_port else f"{host}:{self.port}").encode()

    def get(self, params: list[bytes], extra_headers: bytes = b"") -> bytes:
        """``GET path?query&params`` with ``Host``; ``extra_headers`` are whole ``Name: value\\r\\n`` lines."""
        if self.query:
            params = [self.query, *params]
        target = self.path + (b"?" + b"&".join(params) if params else b"")
        return b"GET %b HTTP/1.1\r\nHost: %b\r\nAccept: */*\r\n%b\r\n" % (target, self.host_header, extra_headers)


def open_connection(endpoint: Endpoint, conn: HttpClientConnection) -> asyncio.Future[Any]:
    """Start connecting ``conn`` to ``endpoint`` in the running loop (TLS for https); the future says how it went."""
    kwargs: dict[str, Any] = {"ssl": True, "server_hostname": endpoint.host} if endpoint.ssl else {}
    loop = asyncio.get_running_loop()
    return asyncio.ensure_future(loop.create_connection(lambda: conn, endpoint.host, endpoint.port, **kwargs))


def error_kind(exc: BaseException, prefix: str) -> str:
    """The error kind of a failed connect or a lost connection: ``prefix`` + timeout, refused, oserror_<errno>..."""
    if isinstance(exc, TimeoutError):
        return prefix + "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return prefix + "refused"
    if isinstance(exc, OSError):
        if exc.errno == errno.EMFILE:
            return prefix + "emfile"
        return f"{prefix}oserror_{exc.errno}" if exc.errno else prefix + "closed"
    return f"{prefix}{type(exc).__name__}"
