"""The HTTP/1.1 side of the callback receiver: a bare asyncio Protocol per connection over llhttp.

The aiohttp server this replaces cost ~80 µs per webhook, ten times a push
delivery; most of it was aiohttp's request object, its handler task and its
response machinery. So, as for push sessions (:mod:`.ws_receiver`), a
connection here is one :class:`HttpConnection` with an ``httptools``
(llhttp, C) parser and no task, no request object, no per-request timer:

* **Stamped when the bytes arrive.** ``data_received`` reads the clock once
  per chunk; a request's receive time is the time of the chunk holding its
  first byte (``on_message_begin`` copies it), so the second of three
  pipelined requests in one chunk is not charged for the time spent
  verifying and recording the first.
* **Answered in order, without blocking anyone.** Complete requests are
  handed to the :class:`Endpoint` from the parser's callback; its answer is
  precomputed bytes (:class:`Reply`), and the answers of one chunk go out in
  one write. An answer held on purpose (an acknowledgement delay, a simulated
  timeout) waits on ``loop.call_later``, and any answer behind it on the same
  connection waits in the connection's queue, so HTTP/1.1 pipelining keeps
  its order while other connections carry on.
* **Keep-alive as llhttp says** (``should_keep_alive``: ``Connection: close``
  and HTTP/1.0 without keep-alive close after their answer).
* **Hostile input is answered, counted by kind and closed**, never left to
  stall: bad framing or syntax 400 (``malformed_request``; a broken or cut
  body of a delivery ``truncated_body``), a head over ``max_head_bytes`` or
  with more than ``max_headers`` 431 (``oversized_headers``,
  ``too_many_headers``), a request not complete within
  ``request_timeout_s`` 408 (``request_timeout``: slowloris senders), body
  limits per :mod:`.body_limits`. Routing answers 404 / 405
  (``not_found``, ``method_not_allowed``) and keeps the connection. Idle
  keep-alive connections close quietly after ``idle_timeout_s``. Timeouts
  are checked by one sweep per server, not a timer per request.

What a request means is the endpoint's business (:class:`Endpoint`: route,
deliver, count); this module knows HTTP and the limits only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from . import worker_clock
from .body_limits import OVERSIZED, TRUNCATED, BodyBudget, BodyGate, Refusal

__all__ = ["Endpoint", "Reply", "HttpConnection", "HttpReceiverServer", "MAX_HEAD_BYTES", "MAX_HEADERS",
           "REQUEST_TIMEOUT_S", "IDLE_TIMEOUT_S", "BACKLOG", "MAX_QUEUED", "hook_name"]

_LOG = logging.getLogger("deliverybench.http_receiver")

#: the request line and headers of one request, in bytes (aiohttp allowed 8 KiB per line; 64 KiB in all)
MAX_HEAD_BYTES = 64 * 1024
#: headers in one request (a webhook has about ten)
MAX_HEADERS = 100
#: seconds a request may take from its first byte to its last: longer is a slowloris sender
REQUEST_TIMEOUT_S = 30.0
#: seconds an idle keep-alive connection stays open (aiohttp's keepalive_timeout)
IDLE_TIMEOUT_S = 75.0
#: the listening socket's accept queue: a dispatcher opening hundreds of connections at once is not refused
BACKLOG = 4096
#: answers queued behind a held one on one connection before it is read no further (until they drain)
MAX_QUEUED = 1024
_PREFIX = b"/hook/"
_NO_HOLD = 0.0


class Reply:
    """One answer as bytes, built once: to keep the connection, to close it, and for HTTP/1.0 keep-alive."""

    __slots__ = ("status", "keep", "close", "keep10")

    def __init__(self, status: int, text: str = "", retry_after_s: int | None = None) -> None:
        body = text.encode()
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        if body:
            head += "Content-Type: text/plain; charset=utf-8\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        if retry_after_s is not None:
            head += f"Retry-After: {retry_after_s}\r\n"
        self.status = status
        self.keep = f"{head}\r\n".encode() + body
        self.close = f"{head}Connection: close\r\n\r\n".encode() + body
        self.keep10 = f"{head}Connection: keep-alive\r\n\r\n".encode() + body


_BAD_REQUEST = Reply(400, "bad request\n")
_HEAD_TOO_LARGE = Reply(431, "request header fields too large\n")
_TIMEOUT = Reply(408, "request timeout\n")
_NOT_FOUND = Reply(404, "not found\n")
_NOT_ALLOWED = Reply(405, "method not allowed\n")
_INTERNAL = Reply(500, "internal error\n")
#: the interim answer to ``Expect: 100-continue`` (curl sends it for bodies over 1 KiB), as aiohttp gave it
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REFUSALS: dict[Refusal, Reply] = {}
#: the parser of every closed connection: calls nothing
_DEAD_PARSER = HttpRequestParser(object())


def _refusal_reply(refusal: Refusal) -> Reply:
    reply = _REFUSALS.get(refusal)
    if reply is None:
        reply = _REFUSALS[refusal] = Reply(refusal.status, refusal.text, refusal.retry_after_s)
    return reply


def hook_name(target: bytes) -> bytes | None:
    """The ``<name>`` of a request target ``/hook/<name>`` (query dropped, percent-decoded), else None."""
    if not target.startswith(_PREFIX):
        if not target.startswith((b"http://", b"https://")):
            return None
        slash = target.find(b"/", target.index(b"//") + 2)  # absolute-form: drop scheme and authority
        if slash < 0 or not target.startswith(_PREFIX, slash):
            return None
        target = target[slash:]
    name = target[len(_PREFIX):]
    if b"?" in name or b"#" in name:
        name = name.split(b"?", 1)[0].split(b"#", 1)[0]
    if not name or b"/" in name:
        return None
    return unquote_to_bytes(name) if b"%" in name else name


class Endpoint(Protocol):
    """What a request means: the callback receiver. All calls come from the loop thread."""

    def route(self, name: bytes, content_length: int | None, receive_ns: int) -> Any:
        """A ``POST /hook/<name>`` head arrived: a target to deliver the body to, or a :class:`Reply` to
        give once the body is discarded, or a :class:`Refusal` (answered now; the connection closes)."""

    def deliver(self, target: Any, msg_id: bytes, timestamp: bytes, signature: bytes, body: bytes,
                receive_ns: int) -> tuple[Reply, float]:
        """A whole body for ``target``: the answer, and seconds to hold it (0 for none)."""

    def count(self, kind: str, at_ns: int) -> None:
        """Count one request refused or malformed, by kind."""


class HttpConnection(asyncio.Protocol):
    """One client connection (see the module docstring). Attributes are state, read by the server's sweep."""

    __slots__ = ("server", "endpoint", "parser", "transport", "gate", "chunk_ns", "receive_ns", "requests",
                 "busy", "in_head", "url", "msg_id", "timestamp", "signature", "content_length",
                 "connection_header", "expect", "header_count", "head_bytes", "fed", "target", "discard",
                 "discarded", "out", "close_after", "stopped", "queue", "eof", "write_paused", "queue_paused")

    def __init__(self, server: HttpReceiverServer) -> None:
        self.server = server
        self.endpoint = server.endpoint
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.gate = BodyGate(server.budget, server.body_cap)
        #: when the current chunk arrived; also when the connection was last busy (the idle sweep reads it)
        self.chunk_ns = worker_clock.now_ns()
        self.receive_ns = 0
        self.requests = 0
        self.busy = self.in_head = False
        self.url = self.msg_id = self.timestamp = self.signature = b""
        self.content_length: bytes | None = None
        self.connection_header = self.expect = False
        self.header_count = self.head_bytes = self.fed = 0
        #: what the body being read is for (the endpoint's target), else None
        self.target: Any = None
        #: the answer to give once a body that is not read is over, else None
        self.discard: Reply | None = None
        self.discarded = 0
        #: answers of the current chunk, written together when it is parsed
        self.out = b""
        self.close_after = self.stopped = self.eof = False
        #: answers waiting behind a held one: [bytes or None while held, close after it, timer]
        self.queue: deque[list[Any]] = deque()
        self.write_paused = self.queue_paused = False

    # -- asyncio callbacks ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.chunk_ns = worker_clock.now_ns()
        if self.stopped:
            return  # an answer that closes the connection is decided: nothing more is read
        busy, serial = self.busy, self.requests
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            if not self.stopped:  # not a refusal that stopped the parser: a bug in a callback
                self._internal(exc.__context__ or exc)
        except HttpParserUpgrade:
            self._stop_after_answers()  # answered as a plain request; no other protocol is spoken here
        except HttpParserError:
            if self.target is not None:
                self._refuse(TRUNCATED.kind, _refusal_reply(TRUNCATED))  # a broken chunked body
            else:
                self._refuse("malformed_request", _BAD_REQUEST, self.chunk_ns)
        else:
            if busy and self.busy and self.requests == serial:
                self._continued(len(data))  # the whole chunk belongs to one request still under way
        out = self.out
        if out:
            self.out = b""
            transport = self.transport
            if transport is not None:
                transport.write(out)
                if self.close_after:
                    transport.close()

    def eof_received(self) -> bool:
        if self.queue and not self.busy:  # answers still held: write them, then close
            self.stopped = self.eof = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.stopped = True
        self.parser = _DEAD_PARSER  # it held this protocol's bound methods: no cycle is left for the collector
        for entry in self.queue:
            if entry[2] is not None:
                entry[2].cancel()
        self.queue.clear()
        if self.target is not None:
            self.target = None
            if not self.server.closing:
                self.endpoint.count(TRUNCATED.kind, self.receive_ns)  # the sender went away mid-body
        self.gate.release()

    def pause_writing(self) -> None:
        self.write_paused = True  # the client reads no answers: read no more requests from it
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.queue_paused:
            self.transport.resume_reading()

    # -- parser callbacks (httptools calls only those defined) ----------------------------------------
    def on_message_begin(self) -> None:
        self.receive_ns = self.chunk_ns
        self.requests += 1
        self.busy = self.in_head = True
        self.url = self.msg_id = self.timestamp = self.signature = b""
        self.content_length = None
        self.connection_header = self.expect = False
        self.header_count = self.head_bytes = self.fed = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        n = len(name)
        self.header_count += 1
        self.head_bytes += n + len(value) + 4
        if (n == 10 or n == 17 or n == 14 or n == 6) and self.in_head:  # lengths of the names kept; no trailers
            key = name.lower()
            if key == b"webhook-id":
                self.msg_id = value
            elif key == b"webhook-timestamp":
                self.timestamp = value
            elif key == b"webhook-signature":
                self.signature = value
            elif key == b"content-length":
                self.content_length = value
            elif key == b"connection":
                self.connection_header = True
            elif key == b"expect":
                self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.in_head = False
        server = self.server
        if self.head_bytes > server.max_head_bytes:
            self._stop("oversized_headers", _HEAD_TOO_LARGE)
        if self.header_count > server.max_headers:
            self._stop("too_many_headers", _HEAD_TOO_LARGE)
        name = hook_name(self.url)
        if name is None:
            self._discard("not_found", _NOT_FOUND)
        elif self.parser.get_method() != b"POST":
            self._discard("method_not_allowed", _NOT_ALLOWED)
        else:
            declared = self.content_length
            routed = self.endpoint.route(name, None if declared is None else int(declared), self.receive_ns)
            if isinstance(routed, Refusal):
                self._stop(routed.kind, _refusal_reply(routed))
            elif isinstance(routed, Reply):
                self.discard = routed
                self.discarded = 0
            else:
                self.target = routed
        if self.expect:
            self._answer(_CONTINUE, _NO_HOLD, False)  # the body is wanted (a refusal above did not return)

    def on_body(self, body: bytes) -> None:
        if self.target is not None:
            refusal = self.gate.feed(body)
            if refusal is not None:
                self._stop(refusal.kind, _refusal_reply(refusal))
        else:
            self.discarded += len(body)
            if self.discarded > self.server.body_cap and self.discard is not None:
                self._answer(self.discard.close, _NO_HOLD, True)  # not read past the cap, even to discard
                raise _Stop

    def on_message_complete(self) -> None:
        self.busy = False
        keep = self.parser.should_keep_alive()
        target = self.target
        if target is not None:
            self.target = None
            gate = self.gate
            try:
                reply, hold = self.endpoint.deliver(target, self.msg_id, self.timestamp, self.signature,
                                                    gate.body(), self.receive_ns)
            finally:
                gate.release()
        else:
            reply, hold = self.discard or _NOT_FOUND, _NO_HOLD
            self.discard = None
        if keep:
            data = reply.keep
            if self.connection_header and self.parser.get_http_version() == "1.0":
                data = reply.keep10
            if hold or self.queue:
                self._answer(data, hold, False)
            else:
                self.out += data  # the common answer: nothing held before it, nothing to hold
        else:
            self._answer(reply.close, hold, True)
            raise _Stop  # nothing after a request that closes the connection is read

    # -- answering -----------------------------------------------------------------------------------
    def _answer(self, data: bytes, hold: float, close: bool) -> None:
        """Send ``data`` after every earlier answer, in ``hold`` seconds; ``close`` the connection after."""
        if close:
            self.stopped = True
        queue = self.queue
        if hold > 0:
            entry: list[Any] = [None, close, None]
            entry[2] = self.server.loop.call_later(hold, self._release, entry, data)
            queue.append(entry)
            self._bound_queue()
        elif queue:
            queue.append([data, close, None])
            self._bound_queue()
        else:
            self.out += data
            self.close_after = self.close_after or close

    def _release(self, entry: list[Any], data: bytes) -> None:
        entry[0], entry[2] = data, None
        transport = self.transport
        if transport is None:
            return
        self.chunk_ns = worker_clock.now_ns()
        queue, ready = self.queue, b""
        while queue and queue[0][0] is not None:
            data, close, _ = queue.popleft()
            ready += data
            if close:
                transport.write(ready)
                transport.close()
                return
        if ready:
            transport.write(ready)
        if not queue and self.eof:
            transport.close()
        elif self.queue_paused and len(queue) <= MAX_QUEUED // 2:
            self.queue_paused = False
            if not self.write_paused:
                transport.resume_reading()

    def _bound_queue(self) -> None:
        if len(self.queue) >= MAX_QUEUED and not self.queue_paused and self.transport is not None:
            self.queue_paused = True
            self.transport.pause_reading()

    def _stop_after_answers(self) -> None:
        if not self.queue:
            self.close_after = True
        else:
            self.queue[-1][1] = True
        self.stopped = True

    # -- refusals ------------------------------------------------------------------------------------
    def _refuse(self, kind: str, reply: Reply, at_ns: int | None = None) -> None:
        """Count ``kind``, answer ``reply`` after the earlier answers and close; the body read is dropped."""
        self.endpoint.count(kind, self.receive_ns if at_ns is None else at_ns)
        self.target = self.discard = None
        self.gate.release()
        self._answer(reply.close, _NO_HOLD, True)

    def _stop(self, kind: str, reply: Reply) -> None:
        """Refuse from inside a parser callback: the parser stops at once."""
        self._refuse(kind, reply)
        raise _Stop

    def _discard(self, kind: str, reply: Reply) -> None:
        self.endpoint.count(kind, self.receive_ns)
        self.discard = reply
        self.discarded = 0

    def _continued(self, n: int) -> None:
        """A chunk wholly inside one request: bound what the parser holds between callbacks."""
        self.fed += n
        server = self.server
        if self.in_head:
            if self.fed > server.max_head_bytes or self.head_bytes > server.max_head_bytes:
                self._refuse("oversized_headers", _HEAD_TOO_LARGE)
            elif self.header_count > server.max_headers:
                self._refuse("too_many_headers", _HEAD_TOO_LARGE)
        elif self.fed > server.request_cap:  # trailers or chunk framing beyond any body under the cap
            self._refuse(OVERSIZED.kind, _refusal_reply(OVERSIZED))

    def timed_out(self) -> None:
        """The request under way took longer than the server's request timeout (called by its sweep)."""
        self.endpoint.count("request_timeout", self.receive_ns)
        self.target = self.discard = None
        self.gate.release()
        transport = self.transport
        if transport is None:
            return
        self.stopped = True
        if not self.queue:
            transport.write(_TIMEOUT.close)
        transport.close()

    def _internal(self, exc: BaseException) -> None:
        _LOG.error("callback receiver: a request failed unexpectedly", exc_info=exc)
        self._refuse("receiver_internal", _INTERNAL, self.chunk_ns)

    def close(self) -> None:
        """Close now: answers already written go out, held ones are dropped (the receiver is stopping)."""
        transport = self.transport
        if transport is not None:
            self.stopped = True
            transport.close()


class _Stop(Exception):
    """Raised inside a parser callback to stop the parser: the connection's answer is already decided."""


class HttpReceiverServer:
    """One listening socket and its connections, for one :class:`Endpoint`; runs in the loop thread.

    Args:
        body_cap: the largest body read (see :func:`~.body_limits.body_cap_for`).
        budget: the body bytes all connections of the process may hold at once.
        request_timeout_s: the longest a request may take, first byte to last (slowloris senders).
        idle_timeout_s: how long an idle keep-alive connection stays open.
    """

    def __init__(self, endpoint: Endpoint, *, body_cap: int, budget: BodyBudget,
                 max_head_bytes: int = MAX_HEAD_BYTES, max_headers: int = MAX_HEADERS,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.body_cap = body_cap
        self.budget = budget
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        #: bytes one request may feed the parser past its first chunk: a body at the cap, its chunk framing
        #: (as large again), and a head
        self.request_cap = 2 * body_cap + max_head_bytes
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self.loop: asyncio.AbstractEventLoop  # set by start(), before any connection exists
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on ``host:port``; the port bound."""
        loop = self.loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpConnection(self), host, port, backlog=BACKLOG)
        self._sweep_later()
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every connection; held answers are dropped."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self.connections):
            connection.close()
        if server is not None:
            await server.wait_closed()

    def _sweep_later(self) -> None:
        interval = min(1.0, self.request_timeout_s / 4, self.idle_timeout_s / 4)
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close requests over the request timeout (counted) and idle connections (quietly).

        Ages are wall-clock (the stamps already read per chunk, so a request costs no clock read for
        this); a step of the system clock can end one sweep's requests early or late by the step.
        """
        now = worker_clock.now_ns()
        request_ns, idle_ns = int(self.request_timeout_s * 1e9), int(self.idle_timeout_s * 1e9)
        slow = [c for c in self.connections if c.busy and not c.stopped and now - c.receive_ns > request_ns]
        idle = [c for c in self.connections
                if not c.busy and not c.queue and not c.stopped and now - c.chunk_ns > idle_ns]
        for connection in slow:
            connection.timed_out()
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()
        self._sweep_later()
