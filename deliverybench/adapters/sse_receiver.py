"""An SSE subscriber as a bare asyncio Protocol: one ``GET``, one long ``text/event-stream`` response.

Built like the push session (:mod:`.ws_receiver`), for the same reasons --
no task, no queue, no response object per connection:

* :class:`SseReceiver` -- one ``asyncio.Protocol`` per connection. It writes
  ``GET path?query`` with ``Accept: text/event-stream``,
  ``Cache-Control: no-cache`` and, when resuming, ``Last-Event-ID``; reads
  the response with ``httptools``' C parser (llhttp: the head, and chunked
  bodies de-chunked); stamps the receive time once per chunk, before any
  parsing; and feeds the body to the incremental event-stream parser
  (:class:`~deliverybench.core.sse.SseParser`). Each event's data is an
  event (or a batch of lines) whose head -- id, due, sent -- is appended to
  the process's :class:`~deliverybench.core.intake.Intake` columns, read once
  per distinct event per process (every subscriber is sent the same bytes).
  With an event path (``--event-path``, for a server of one's own that
  wraps events in an envelope; nchan and Pushpin send them verbatim) each
  event's data is read as the ``raw`` protocol's envelope
  (:mod:`~deliverybench.core.protocols`), remembered in a cache of that
  path's own; data that does not decode is counted by kind and the first
  kept as a sample (:mod:`.undecodable`).
* A head larger than 64 KiB, a status other than 200 (``connect_http_<status>``)
  and a 200 that is not ``text/event-stream`` (``sse_not_event_stream``) end
  the attempt, counted by kind, and the session tries again later: never a
  hang. A stream over its bounds (a line or an event over
  ``max_event_bytes``) is counted by the parser's kind and the connection
  closed; nothing it sent after is read.
* :class:`SseSession` -- the subscriber: connects (from a chosen source
  address if asked), reconnects after a failure, a drop or the end of the
  stream with jittered, capped backoff (the server's ``retry:`` is the first
  wait after a drop), resumes with ``Last-Event-ID`` = the last id seen,
  counts its reconnects (``sse_reconnects``) and keeps its subscription
  windows as a push session does: a stream that was down is a gap the audit
  counts as lost unless the server replays it on resumption.

Plain ``http://`` only. Nothing here knows about Locust.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpResponseParser

from ..core.process_recorder import ProcessRecorder
from ..core.protocols import MalformedMessage, Reader, envelope_reader
from ..core.sse import MAX_EVENT_BYTES, SseParser
from . import worker_clock
from .dial import dial
from .ws_receiver import PushSession, _error_kind, first_head, reconnect_delay

__all__ = ["SseSessionOptions", "SseSession", "SseReceiver", "MAX_HEAD_BYTES", "NOT_EVENT_STREAM", "RECONNECTS"]

#: the response's status line and headers, in bytes
MAX_HEAD_BYTES = 64 * 1024
#: the error kind of a 200 answer that is not an event stream
NOT_EVENT_STREAM = "sse_not_event_stream"
#: the counter of reconnections: every time a session's stream opens again after it had been open
RECONNECTS = "sse_reconnects"
#: the longest and shortest first wait a server's ``retry:`` may ask for (what arrives is untrusted)
_MAX_RETRY_S = 60.0
_MIN_RETRY_S = 0.01
#: event data already read, and its (id, due, sent): each distinct event is read once per process.
#: Bounded (cleared when full); the loop thread alone uses it.
_HEADS: dict[bytes, tuple[int, int, int]] = {}
_HEADS_KEPT = 4096
#: what says "read it with care" (a warm-up event's head, :func:`.ws_receiver.first_head`'s, is dropped too)
_CAREFUL = (-2, -2, -2)


@dataclass(frozen=True, slots=True)
class SseSessionOptions:
    url: str
    open_timeout_s: float = 10.0
    local_addr: str | None = None
    #: the first wait before connecting again after a failure (doubling per failure in a row, up to
    #: ``reconnect_max_delay_s``), and after a drop when the server set no ``retry:``
    reconnect_delay_s: float = 1.0
    reconnect_max_delay_s: float = 5.0
    #: failed attempts in a row before the session gives up
    max_reconnects: int = 10
    #: the largest event data accepted; a longer line or event fails the stream
    max_event_bytes: int = MAX_EVENT_BYTES
    #: a JSON pointer to the event inside each event's data (an envelope); empty: the data is the event
    event_path: str = ""


class SseReceiver(asyncio.Protocol):
    """One HTTP connection of an :class:`SseSession` (see the module docstring).

    ``httptools`` calls the ``on_*`` methods from ``feed_data``.
    """

    __slots__ = ("session", "transport", "parser", "events", "appenders", "index", "rx_ns", "head_bytes",
                 "streaming", "opened", "ended", "content_type", "outcome", "heads", "reader")

    def __init__(self, session: SseSession) -> None:
        self.session = session
        self.appenders = session.recorder.intake.appenders
        self.index = session.index
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.events = SseParser(last_id=session.last_id, retry_ms=session.retry_ms,
                                max_event=session.options.max_event_bytes)
        self.rx_ns = 0
        self.head_bytes = 0
        #: the head was a 200 event stream, and the connection is not ending: body bytes are events
        self.streaming = False
        self.opened = False
        #: the server ended the response (its last chunk, or its declared length)
        self.ended = False
        self.content_type = b""
        #: the kind this side ended the connection with, counted already (the close is not counted again)
        self.outcome: str | None = None
        self.reader = session.reader
        self.heads = _heads_of(session.options.event_path)

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.session.request())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.rx_ns = worker_clock.now_ns()
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            if self.outcome is None:  # not a refusal of ours: bad HTTP from the server
                self._stop("sse_malformed_http" if self.opened else "connect_malformed_http", str(exc))
            return
        if not self.opened and self.outcome is None:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._stop("connect_oversized_head", f"no end of the response head in {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            self.session.lost(self, exc)

    # -- httptools callbacks ------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status != 200:
            self._stop(f"connect_http_{status}", f"HTTP {status}")
            return
        media = self.content_type.split(b";", 1)[0].strip().lower()
        if media != b"text/event-stream":
            shown = self.content_type.decode("latin-1")[:80] or "none"
            self._stop(NOT_EVENT_STREAM, f"HTTP 200 with Content-Type {shown}, not text/event-stream")
            return
        self.streaming = self.opened = True
        self.session.opened(self, self.rx_ns)

    def on_body(self, body: bytes) -> None:
        if not self.streaming:
            return
        events = self.events.feed(body)
        if events:
            rx_ns, heads = self.rx_ns, self.heads
            for event in events:
                data = event[0]
                head = heads.get(data)
                if head is None:
                    head = _first_sight(data, self.reader, heads)
                if head[0] < 0:  # a warm-up event (dropped), or anything but one plain event
                    if head is _CAREFUL:
                        self.session.message(data, rx_ns)
                    continue
                add_sub, add_id, add_due, add_sent, add_rx = self.appenders
                add_id(head[0])
                add_due(head[1])
                add_sent(head[2])
                add_sub(self.index)
                add_rx(rx_ns)
        if self.events.failed is not None:
            self._stop(self.events.failed, "the event stream went over its bounds")

    def on_message_complete(self) -> None:
        self.ended = True
        self.close()

    # -- ending ----------------------------------------------------------------------------------------
    def _stop(self, kind: str, reason: str) -> None:
        """This side ends the connection, counted as ``kind`` (as a refusal if the stream never opened)."""
        self.streaming = False
        self.outcome = kind
        if self.opened:
            self.session.recorder.error(kind, self.rx_ns)
        else:
            self.session.refused(self, kind, reason)
        self.abort()

    def close(self) -> None:
        self.streaming = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _first_sight(data: bytes, reader: Reader | None, heads: dict[bytes, tuple[int, int, int]]
                 ) -> tuple[int, int, int]:
    """The head of event data not seen before (cached), or :data:`_CAREFUL` for the careful path.

    With a ``reader`` (an envelope) only data holding exactly one event is
    remembered; the careful path reads the rest again, and counts what does not decode.
    """
    event = data
    if reader is not None:
        try:
            found = reader.read(data).events
        except MalformedMessage:
            return _CAREFUL
        if len(found) != 1:
            return _CAREFUL
        event = found[0]
    head = first_head(event)  # None: a batch, an echo reply, not an event, beyond 64 bits -- counted there
    if head is None:
        return _CAREFUL
    if len(heads) >= _HEADS_KEPT:
        heads.clear()
    heads[data] = head
    return head


@lru_cache(maxsize=16)
def _heads_of(event_path: str) -> dict[bytes, tuple[int, int, int]]:
    """The event-data cache for ``event_path``: the verbatim one, or one of that path's own."""
    return _HEADS if not event_path else {}


class SseSession:
    """One subscriber: connect, receive until stopped, resume after a drop.

    ``notify(ok, error)`` is called (in the loop thread) once, after the
    first connection attempt. All methods run in the loop thread.
    """

    __slots__ = ("name", "recorder", "options", "index", "last_id", "retry_ms", "_notify", "_stopping",
                 "_receiver", "_attempts", "_timer", "_started", "_host", "_port", "_request", "_streams", "reader")

    def __init__(self, name: str, recorder: ProcessRecorder, options: SseSessionOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self.recorder = recorder
        self.options = options
        self._host, self._port, self._request = _endpoint(options.url)
        #: the envelope around each event, if it has one
        self.reader = envelope_reader(options.event_path)
        self.index = recorder.intake.add(name)
        #: the last event id the server gave (sent back as ``Last-Event-ID``), and its ``retry:``
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._notify: Callable[[bool, str | None], None] | None = notify
        self._stopping = False
        self._receiver: SseReceiver | None = None
        self._attempts = 0
        self._timer: asyncio.TimerHandle | None = None
        self._started = 0
        self._streams = 0  # streams opened so far

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._connect()

    def stop(self, at_ns: int) -> None:
        """Unsubscribe as of ``at_ns`` (when the user asked), then close."""
        self._stopping = True
        self.recorder.intake.close(self.index, at_ns)
        self._cancel_timer()
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            if receiver.opened:
                self.recorder.connected -= 1
            receiver.close()
        self.recorder.retire_index(self.index)
        self._tell(False, "stopped before connecting")

    def request(self) -> bytes:
        """The request of the next connection: resuming after the last id, if there is one."""
        if self.last_id:
            return b"%bLast-Event-ID: %b\r\n\r\n" % (self._request, self.last_id.encode())
        return self._request + b"\r\n"

    def _connect(self) -> None:
        self._timer = None
        if self._stopping:
            return
        self._attempts += 1
        loop = asyncio.get_running_loop()
        self._started = worker_clock.now_ns()
        receiver = self._receiver = SseReceiver(self)
        if self.options.local_addr:  # the source port is picked at connect(), as for push (see .dial)
            opening = dial(loop, lambda: receiver, self._host, self._port, self.options.local_addr)
        else:
            opening = loop.create_connection(lambda: receiver, self._host, self._port)
        connecting = asyncio.ensure_future(opening)
        self._timer = loop.call_later(self.options.open_timeout_s, self._open_timed_out, receiver, connecting)
        connecting.add_done_callback(partial(self._connected, receiver))

    def _connected(self, receiver: SseReceiver, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or receiver is not self._receiver:
            return
        exc = fut.exception()
        if exc is not None:
            self._cancel_timer()
            self._failed(f"connect_{_error_kind(exc)}", str(exc) or type(exc).__name__)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _open_timed_out(self, receiver: SseReceiver, connecting: asyncio.Future[Any]) -> None:
        self._timer = None
        if receiver.opened or receiver is not self._receiver:
            return
        connecting.cancel()
        receiver.outcome = "connect_timeout"
        receiver.abort()
        self._failed("connect_timeout", f"no event stream within {self.options.open_timeout_s:g} s")

    # -- called by the receiver -----------------------------------------------------------------------
    def opened(self, receiver: SseReceiver, at_ns: int) -> None:
        self._cancel_timer()
        if self._stopping:
            receiver.close()
            return
        recorder = self.recorder
        recorder.recorder.record("connect", at_ns - self._started, at_ns)
        recorder.intake.open(self.index, at_ns)
        recorder.connected += 1
        if self._streams:
            recorder.counters[RECONNECTS] += 1
        self._streams += 1
        self._attempts = 0
        self._tell(True, None)

    def refused(self, receiver: SseReceiver, kind: str, reason: str) -> None:
        if receiver is not self._receiver:
            return
        self._cancel_timer()
        self._failed(kind, reason)

    def lost(self, receiver: SseReceiver, exc: Exception | None) -> None:
        if receiver is not self._receiver:
            return
        self._receiver = None
        if self._stopping:
            return
        if not receiver.opened:
            self._cancel_timer()
            kind = "handshake" if exc is None else _error_kind(exc)
            self._failed(f"connect_{kind}", "connection closed before the response head")
            return
        self.last_id, self.retry_ms = receiver.events.last_id, receiver.events.retry_ms
        now = worker_clock.now_ns()
        self.recorder.connected -= 1
        self.recorder.intake.close(self.index, now)
        if receiver.outcome is None:  # the server's doing: the end of its response, or of the connection
            self.recorder.error("closed_stream_end" if receiver.ended else "closed_abnormal", now)
        self._retry(dropped=True)

    def message(self, data: bytes, rx_ns: int) -> None:
        """Event data off the hot path (batches, non-canonical events, values over 64 bits): read, or counted.

        The push session's careful path, called as it is (it needs only
        ``recorder``, ``index``, ``malformed`` and ``realign``) until it
        moves out of ws_receiver.py; with an envelope, on each event it holds.
        """
        if self.reader is None:
            PushSession.message(self, data, rx_ns)  # type: ignore[arg-type]
            return
        try:
            events = self.reader.read(data).events
        except MalformedMessage as exc:
            PushSession.undecodable(self, data, exc, rx_ns)  # type: ignore[arg-type]
            return
        for event in events:
            PushSession.message(self, event, rx_ns)  # type: ignore[arg-type]

    malformed = PushSession.malformed
    realign = PushSession.realign

    # -- internals -----------------------------------------------------------------------------------
    def _failed(self, kind: str, reason: str) -> None:
        self.recorder.error(kind, worker_clock.now_ns())
        self._receiver = None
        self._retry()  # first: whatever the listener does, the session tries again
        self._tell(False, f"{kind.removeprefix('connect_')}: {reason}")

    def _retry(self, *, dropped: bool = False) -> None:
        options = self.options
        if self._stopping or self._attempts > options.max_reconnects:
            return
        first, cap = options.reconnect_delay_s, options.reconnect_max_delay_s
        if dropped and self.retry_ms is not None:  # the server's wish, within bounds
            first = min(max(self.retry_ms / 1000, _MIN_RETRY_S), _MAX_RETRY_S)
            cap = max(cap, first)
        delay = reconnect_delay(self._attempts, first, cap, random.random())
        self._timer = asyncio.get_running_loop().call_later(delay, self._connect)

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)


@lru_cache(maxsize=64)
def _endpoint(url: str) -> tuple[str, int, bytes]:
    """Host, port and the request head (but its final blank line) of ``url``: one copy per process."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"an SSE URL must be http://host[:port]/path, got {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None:
        host += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
    return parts.hostname, parts.port or 80, head.encode("ascii")
