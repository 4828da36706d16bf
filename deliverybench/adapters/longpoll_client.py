"""A long-poll subscriber: one request always outstanding, asked again the moment it is answered.

Each :class:`LongPoller` holds one keep-alive connection, a bare
``asyncio.Protocol`` (:class:`LongPollConnection`) whose bytes go through
httptools' llhttp ``HttpResponseParser``: no task, no request or response
object per answer. (Measured on the development machine against the
built-in target, 50 subscribers asking without pause: aiohttp's client,
as :mod:`.poll_client` used it then, cost 57-70 µs of harness CPU per request,
this 17.5-18.4 µs; and it got 2x the requests/s out of the same server.) An answer is
stamped when its first byte arrives, before any parsing -- the moment the
server let go of the held request -- and every event in it shares that
stamp, as every event of a poll page does.

The position a subscriber resumes from is kept in one of two styles:

* ``after`` -- the built-in poll contract: ``?after=N&limit=M`` (and
  ``hold=`` when given); N is the id of the newest event answered. The
  subscriber starts with one ``?after=-1&limit=1&hold=0`` request whose
  ``X-Last-Id`` says where the stream is, so it starts at the newest event
  like a fresh subscriber of every other mode.
* ``etag`` -- HTTP caching, as nginx + nchan does it: every request sends
  back the last answer's ``Last-Modified`` and ``Etag`` as
  ``If-Modified-Since`` and ``If-None-Match``; the first has neither (the
  server starts it at its newest message), and the subscriber counts as
  subscribed once that request is written.

``200`` with a body: every line is an event, recorded through
:meth:`~deliverybench.core.process_recorder.ProcessRecorder.on_event`
(which bounds ids and times before they index anything). ``200`` with no
body, ``204``, ``304`` and ``408`` (what nchan answers when its
``nchan_subscriber_timeout`` passes) are empty answers: a hold that ended.
Anything else is an error counted by status, asked again after
``retry_delay_s``. What a server sends is untrusted: headers past
:data:`MAX_HEADER_BYTES`, bodies past ``max_body``, an ``X-Last-Id`` or an
event id that is not an id of this stream, validators with control
characters -- each is counted by kind and never trusted. An answer that
does not come within ``answer_timeout_s`` (hold plus open timeout), a
connection lost or refused: counted by kind, and the subscriber connects
again (jittered backoff) and asks from the same position, so nothing the
server still holds is lost.

Counters (the recorder's, per process): ``longpoll_requests``,
``longpoll_empty``, ``longpoll_gaps`` (answers with ``X-Gap``), ``longpoll_held_us`` (the sum of the time each request
was held, written to first byte of its answer), ``longpoll_reconnects``;
the ``longpoll_request`` histogram holds the same times one by one.
Errors: ``longpoll_http_<status>``, ``longpoll_timeout``,
``longpoll_closed``, ``longpoll_refused``, ``longpoll_oserror_<errno>``,
``longpoll_malformed_response``, ``longpoll_oversized``,
``longpoll_bad_last_id``, ``longpoll_bad_validators``; a subscriber
that never got going: ``connect_<kind>``.

Nothing here knows about Locust; it runs in whatever loop it is started in.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from ..core.event import MalformedEvent, read_head
from ..core.process_recorder import ProcessRecorder
from . import worker_clock
from .http_client_conn import MAX_HEADER_BYTES, Endpoint, HttpClientConnection, error_kind, open_connection
from .ws_receiver import reconnect_delay

__all__ = ["LongPollOptions", "LongPoller", "LongPollConnection", "RESUME_STYLES", "MAX_HEADER_BYTES"]

RESUME_STYLES = ("after", "etag")
#: a validator echoed back longer than this is not one (nchan's are ~30 characters)
_MAX_VALIDATOR = 256
#: answers that say "nothing newer": 304 for an ``If-None-Match``, 408 is nchan's when its subscriber timeout passes
_EMPTY_STATUSES = frozenset({204, 304, 408})
_MAX_ID_CHARS = 19


@dataclass(frozen=True, slots=True)
class LongPollOptions:
    url: str
    #: ``after`` (``?after=N``, ``X-Last-Id``) or ``etag`` (``If-Modified-Since`` + ``If-None-Match``)
    resume: str = "after"
    #: events one answer may hold (``?limit=``, ``after`` style)
    limit: int = 1000
    #: seconds the server is asked to hold a request (``?hold=``); None sends none (the server's own)
    hold_s: float | None = None
    open_timeout_s: float = 10.0
    #: seconds an answer may take; None: the hold (30 s when not given) plus ``open_timeout_s``
    answer_timeout_s: float | None = None
    #: largest answer body read; a larger one is counted and its connection dropped
    max_body: int = 16 * 2**20
    #: wait after an error status before asking again (a server answering 503 is not hammered)
    retry_delay_s: float = 0.5
    reconnect_delay_s: float = 0.1
    reconnect_max_delay_s: float = 5.0
    #: failed connection attempts in a row before the subscriber gives up
    max_reconnects: int = 10

    def __post_init__(self) -> None:
        if self.resume not in RESUME_STYLES:
            raise ValueError(f"resume must be one of {', '.join(RESUME_STYLES)}, not {self.resume!r}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"long-poll URL must be http(s)://host[:port]/path, not {self.url!r}")
        if self.limit < 1 or self.max_body < 1:
            raise ValueError("limit and max_body must be >= 1")

    @property
    def answer_timeout(self) -> float:
        if self.answer_timeout_s is not None:
            return self.answer_timeout_s
        return (30.0 if self.hold_s is None else self.hold_s) + self.open_timeout_s


class LongPollConnection(HttpClientConnection):
    """One keep-alive connection of a :class:`LongPoller` (see :class:`.http_client_conn.HttpClientConnection`)."""

    __slots__ = ("poller",)

    def __init__(self, poller: LongPoller) -> None:
        super().__init__(poller, max_body=poller.options.max_body, prefix="longpoll_")
        self.poller = poller


class LongPoller:
    """One long-poll subscriber (see the module docstring). All methods run in the loop thread.

    ``notify(ok, error)`` is called once, when the subscriber has started
    (or could not), so the Locust side knows.
    """

    __slots__ = ("name", "_recorder_ref", "options", "_notify", "position", "_validators", "_conn", "_timer",
                 "_sent_ns", "_attempts", "_started", "_stopping", "_subscribed", "_endpoint")

    def __init__(self, name: str, recorder_ref: Callable[[], ProcessRecorder], options: LongPollOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self._recorder_ref = recorder_ref
        self.options = options
        self._notify: Callable[[bool, str | None], None] | None = notify
        #: ``after`` style: the newest event id answered (-1: none yet)
        self.position = -1
        #: ``etag`` style: the last answer's (Last-Modified, Etag)
        self._validators: tuple[bytes, bytes] | None = None
        self._conn: LongPollConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent_ns = 0
        self._attempts = 0
        self._started = 0
        self._stopping = False
        #: the audit window is open (the subscriber knows where the stream is)
        self._subscribed = False
        self._endpoint = Endpoint(options.url)

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = worker_clock.now_ns()
        self._connect()

    def stop(self, at_ns: int) -> None:
        """Unsubscribe as of ``at_ns`` (when the user asked), then close."""
        self._stopping = True
        self._recorder_ref().unsubscribe(self.name, at_ns)
        self._cancel_timer()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.failed = True  # our own close: nothing to count
            conn.abort()
        self._tell(False, "stopped before it started")

    def _connect(self) -> None:
        if self._stopping:
            return
        self._attempts += 1
        loop = asyncio.get_running_loop()
        conn = self._conn = LongPollConnection(self)
        connecting = open_connection(self._endpoint, conn)
        self._timer = loop.call_later(self.options.open_timeout_s, self._open_timed_out, conn, connecting)
        connecting.add_done_callback(partial(self._connected, conn))

    def _connected(self, conn: LongPollConnection, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or conn is not self._conn:
            return
        self._cancel_timer()
        exc = fut.exception()
        if exc is not None:
            self._conn = None
            self._connect_failed(error_kind(exc, "longpoll_"))
            return
        if self._subscribed:  # "in a row" counts attempts to connect; before the start, attempts to start
            self._attempts = 0
        self._ask()

    def _open_timed_out(self, conn: LongPollConnection, connecting: asyncio.Future[Any]) -> None:
        self._timer = None
        if conn is not self._conn:
            return
        connecting.cancel()
        conn.failed = True
        conn.abort()
        self._conn = None
        self._connect_failed("longpoll_timeout")

    def _connect_failed(self, kind: str) -> None:
        now = worker_clock.now_ns()
        recorder = self._recorder_ref()
        if self._subscribed:
            recorder.error(kind, now)
            self._reconnect()
            return
        kind = "connect_" + kind.removeprefix("longpoll_")  # never got going: counted as push counts it
        recorder.error(kind, now)
        self._reconnect()  # first: it keeps trying, whatever the listener does
        self._tell(False, f"{kind}: could not start long-polling {self.options.url}")

    def _reconnect(self) -> None:
        options = self.options
        if self._stopping or self._attempts > options.max_reconnects:
            return
        self._recorder_ref().counters["longpoll_reconnects"] += 1
        delay = reconnect_delay(self._attempts, options.reconnect_delay_s, options.reconnect_max_delay_s,
                                random.random())
        self._timer = asyncio.get_running_loop().call_later(delay, self._connect)

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- asking -----------------------------------------------------------------------------------
    def _request(self) -> bytes:
        options = self.options
        params: list[bytes] = []
        extra = b""
        if options.resume == "after":
            starting = not self._subscribed
            params.append(b"after=%d&limit=%d" % (self.position, 1 if starting else options.limit))
            if starting:
                params.append(b"hold=0")
        elif self._validators is not None:
            extra = b"If-Modified-Since: %b\r\nIf-None-Match: %b\r\n" % self._validators
        if options.hold_s is not None and not (options.resume == "after" and not self._subscribed):
            params.append(b"hold=%s" % repr(float(options.hold_s)).encode())
        return self._endpoint.get(params, extra)

    def _ask(self) -> None:
        conn = self._conn
        if conn is None or self._stopping:
            return
        options = self.options
        # the ``after`` style's start request is answered at once (hold=0): the open timeout bounds it
        starting = not self._subscribed and options.resume == "after"
        self._sent_ns = worker_clock.now_ns()
        conn.send(self._request())
        self._timer = asyncio.get_running_loop().call_later(
            options.open_timeout_s if starting else options.answer_timeout, self._answer_timed_out, conn)
        if not self._subscribed and options.resume == "etag":  # nothing to learn first: subscribed once asked
            self._subscribe(self._sent_ns)

    def _answer_timed_out(self, conn: LongPollConnection) -> None:
        self._timer = None
        if conn is self._conn:
            conn.fail("longpoll_timeout", worker_clock.now_ns())

    def _subscribe(self, at_ns: int) -> None:
        self._subscribed = True
        recorder = self._recorder_ref()
        recorder.recorder.record("connect", at_ns - self._started, at_ns)
        recorder.subscriber(self.name).open(at_ns)
        recorder.connected += 1
        self._tell(True, None)

    # -- called by the connection ---------------------------------------------------------------
    def failed(self, conn: LongPollConnection, kind: str, at_ns: int) -> None:
        if conn is not self._conn:
            return
        self._cancel_timer()
        self._conn = None
        if self._stopping:
            return
        if self._subscribed:
            self._recorder_ref().error(kind, at_ns)
            self._reconnect()
        else:
            self._connect_failed(kind)

    def answered(self, conn: LongPollConnection, status: int, body: bytes, headers: dict[bytes, bytes],
                 rx_ns: int, keep_alive: bool) -> None:
        if conn is not self._conn:
            return
        self._cancel_timer()
        self._attempts = 0
        recorder = self._recorder_ref()
        if not self._subscribed:  # the start request of the ``after`` style: where the stream is
            if status != 200:
                self._conn = None
                conn.failed = True
                conn.abort()
                self._connect_failed(f"http_{status}")
                return
            last = self._last_id(headers, recorder, rx_ns)
            self.position = -1 if last is None else last
            self._subscribe(rx_ns)
        else:
            self._record(status, body, headers, rx_ns, recorder)
        if not keep_alive:  # the server closes after each answer: a new connection, at once
            self._conn = None
            conn.failed = True
            conn.abort()
            if status == 200 or status in _EMPTY_STATUSES:
                self._connect()
            else:
                self._timer = asyncio.get_running_loop().call_later(self.options.retry_delay_s, self._connect)
            return
        if status == 200 or status in _EMPTY_STATUSES:
            self._ask()
        else:
            self._timer = asyncio.get_running_loop().call_later(self.options.retry_delay_s, self._ask)

    def _record(self, status: int, body: bytes, headers: dict[bytes, bytes], rx_ns: int,
                recorder: ProcessRecorder) -> None:
        counters = recorder.counters  # swapped every second: read it now
        counters["longpoll_requests"] += 1
        held_ns = rx_ns - self._sent_ns
        counters["longpoll_held_us"] += held_ns // 1000
        recorder.recorder.record("longpoll_request", held_ns, rx_ns)
        if status != 200 and status not in _EMPTY_STATUSES:
            recorder.error(f"longpoll_http_{status}", rx_ns)
            return
        if status != 200 or not body.strip():
            counters["longpoll_empty"] += 1
            if self.options.resume == "etag":  # a 304 may confirm or move the position; nchan's 408 has no date
                self._keep_validators(headers, recorder, rx_ns, required=False)
            elif b"x-last-id" in headers:
                self._last_id(headers, recorder, rx_ns)  # checked and counted, never followed
            return
        if b"x-gap" in headers:  # the server no longer had every event newer than the position
            counters["longpoll_gaps"] += 1
        record = recorder.subscribers.get(self.name)
        if record is not None:
            recorder.on_event(record, body, rx_ns)
        if self.options.resume == "etag":
            self._keep_validators(headers, recorder, rx_ns, required=True)
            return
        newest = _newest_id(body, recorder.id_limit)
        if newest is None:
            newest = self._last_id(headers, recorder, rx_ns)
        if newest is not None and newest > self.position:
            self.position = newest

    def _last_id(self, headers: dict[bytes, bytes], recorder: ProcessRecorder, rx_ns: int) -> int | None:
        """A valid ``X-Last-Id`` (-1 .. the stream's length), else None and counted when it was sent at all."""
        raw = headers.get(b"x-last-id")
        if raw is None:
            return None
        value = raw.strip()
        if value == b"-1":
            return -1
        if value.isdigit() and len(value) <= _MAX_ID_CHARS and int(value) < recorder.id_limit:
            return int(value)
        recorder.error("longpoll_bad_last_id", rx_ns)
        return None

    def _keep_validators(self, headers: dict[bytes, bytes], recorder: ProcessRecorder, rx_ns: int, *,
                         required: bool) -> None:
        """The answer's ``Last-Modified`` and ``Etag``, to send back; the old ones kept if they are not usable."""
        modified, tag = headers.get(b"last-modified"), headers.get(b"etag")
        if modified is None or tag is None:
            if required:  # an answer with events must say where they end
                recorder.error("longpoll_bad_validators", rx_ns)
            return
        if not (_safe_validator(modified) and _safe_validator(tag)):
            recorder.error("longpoll_bad_validators", rx_ns)
            return
        self._validators = (modified, tag)


def _safe_validator(value: bytes) -> bool:
    """A header value that can be sent back as it is: printable ASCII, short."""
    return 0 < len(value) <= _MAX_VALIDATOR and value.isascii() and all(32 <= c < 127 for c in value)


def _newest_id(body: bytes, id_limit: int) -> int | None:
    """The id of the answer's last event that is one of this stream's (answers are in id order).

    Only the last line is read when it is an event of ours, as it is unless something is wrong.
    """
    for line in reversed(body.split(b"\n")):
        try:
            event_id = read_head(line.strip())[0]
        except MalformedEvent:
            continue
        if 0 <= event_id < id_limit:
            return event_id
    return None
