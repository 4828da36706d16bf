"""A poll subscriber: "anything new since id N?" on an interval, in the loop thread.

The baseline both push and callback exist to replace. Each poller first asks
for the newest id (``GET <url>?after=-1&limit=1``, header ``X-Last-Id``, so
it starts where the stream is, like a fresh subscriber of the other modes),
opens its audit window, and then asks ``GET <url>?after=N&limit=M`` every
``interval_s`` from a random phase so pollers don't arrive in lock-step; a
full page is followed at once by the next. Every event in an answer shares
the answer's receive time -- when its first byte arrived -- which is exactly
what a polling client experiences. Requests per delivered event are the
mode's cost, so every answered request is counted, including empty ones.

Each poller keeps one keep-alive connection, an
:class:`~.http_client_conn.HttpClientConnection` (a bare asyncio protocol
over httptools' llhttp, as the long-poll client's): no task, no request or
response object per poll. (Measured on the development machine against the
built-in target in another process, 200 pollers every 50 ms, ~4,000 polls/s:
aiohttp's client, as this module used it before, cost 97-124 µs of harness
CPU per poll request, this 34-49 µs -- most of it now the kernel's
loopback write and read; a whole ``--modes poll`` run of 1,000 pollers
went from 4.7-5.4 to 2.4-2.9 harness CPU-s.) A connection the server
closes between polls is not an error: the next poll opens another. A
poll written on a kept connection that closes before any byte of an
answer (the server's keep-alive timeout racing the request) is asked once
more on a new connection, uncounted, as HTTP clients retry an idempotent
request; a second close is counted.

Counters (the recorder's, per process): ``poll_requests`` (answered
requests), ``poll_empty``, ``poll_gaps`` (answers with ``X-Gap``),
``poll_full_pages``; the ``poll_request`` histogram holds the time from a
poll's start (connecting included) to the first byte of its answer. Errors:
``poll_http_<status>``, ``poll_timeout`` (no answer within ``timeout_s`` of
the poll's start, connecting included), ``poll_malformed_event``, and,
after which the next poll waits at least ``min(1 s, interval_s)``:
``poll_closed``, ``poll_refused``, ``poll_oserror_<errno>``,
``poll_malformed_response``, ``poll_oversized`` (headers past 64 KiB or a
body past ``max_body``: what a hostile server sends is never read whole).
A poller whose first request fails counts ``poll_start_failed`` and stops.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..core.event import MalformedEvent, decode_head, split_batch
from ..core.process_recorder import ProcessRecorder
from . import worker_clock
from .http_client_conn import Endpoint, HttpClientConnection, error_kind, open_connection

__all__ = ["PollOptions", "Poller"]

_PREFIX = "poll_"
#: failures that are the answer's fault, not a lost connection's: never asked again on a new one
_ANSWER_FAULTS = frozenset({_PREFIX + "oversized", _PREFIX + "malformed_response"})


@dataclass(frozen=True, slots=True)
class PollOptions:
    url: str
    interval_s: float = 1.0
    limit: int = 1000
    #: seconds from a poll's start (connecting included) to its whole answer
    timeout_s: float = 10.0
    #: largest answer body read; a larger one is counted (``poll_oversized``) and its connection dropped
    max_body: int = 16 * 2**20


class Poller:
    """One poll subscriber (see the module docstring). All methods run in the loop thread.

    ``notify(ok, error)`` is called once, when the poller has started (or
    could not), so the Locust side knows.
    """

    __slots__ = ("name", "_recorder_ref", "options", "_notify", "after", "_endpoint", "_loop", "_conn",
                 "_connecting", "_conn_answers", "_timer", "_began", "_sent_ns", "_retried", "_started",
                 "_subscribed", "_stopping")

    def __init__(self, name: str, recorder_ref: Callable[[], ProcessRecorder], options: PollOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self._recorder_ref = recorder_ref
        self.options = options
        self._notify: Callable[[bool, str | None], None] | None = notify
        #: the newest event id answered (-1: none yet)
        self.after = -1
        self._endpoint = Endpoint(options.url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: HttpClientConnection | None = None
        self._connecting: asyncio.Future[Any] | None = None
        #: answers read on the current connection (more than none: a close before an answer may be a stale one)
        self._conn_answers = 0
        #: the next poll, or the current poll's timeout
        self._timer: asyncio.TimerHandle | None = None
        self._began = 0.0
        self._sent_ns = 0
        self._retried = False
        self._started = 0
        #: the first request was answered: the audit window is open
        self._subscribed = False
        self._stopping = False

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = worker_clock.now_ns()
        self._poll()

    def stop(self, at_ns: int) -> None:
        """Unsubscribe as of ``at_ns`` (when the user asked), then close."""
        self._stopping = True
        self._recorder_ref().unsubscribe(self.name, at_ns)
        self._cancel_timer()
        self._drop_connection()
        self._tell(False, "stopped")

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop_connection(self) -> None:
        """Close the connection on our side (nothing to count), or stop opening one."""
        conn, self._conn = self._conn, None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        if conn is not None:
            conn.failed = True
            conn.abort()

    def _schedule(self, delay: float) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(delay, self._poll)

    # -- one poll ---------------------------------------------------------------------------------
    def _poll(self) -> None:
        """Ask once (the start request first); the timeout runs from here, connecting included."""
        self._timer = None
        if self._stopping or self._loop is None:
            return
        self._began = self._loop.time()
        self._sent_ns = worker_clock.now_ns()
        self._retried = False
        self._timer = self._loop.call_later(self.options.timeout_s, self._timed_out)
        self._send()

    def _request(self) -> bytes:
        limit = self.options.limit if self._subscribed else 1
        return self._endpoint.get([b"after=%d&limit=%d" % (self.after, limit)])

    def _send(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.send(self._request())
            return
        conn = self._conn = HttpClientConnection(self, max_body=self.options.max_body, prefix=_PREFIX)
        self._conn_answers = 0
        self._connecting = open_connection(self._endpoint, conn)
        self._connecting.add_done_callback(partial(self._connected, conn))

    def _connected(self, conn: HttpClientConnection, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if conn is not self._conn:  # given up on (timeout, stop) while it connected
            if exc is None:
                conn.failed = True
                conn.abort()
            return
        self._connecting = None
        if exc is not None:
            self._conn = None
            self._poll_failed(error_kind(exc, _PREFIX), worker_clock.now_ns())
            return
        conn.send(self._request())

    def _timed_out(self) -> None:
        self._timer = None
        self._drop_connection()
        if self._subscribed:
            self._recorder_ref().error(_PREFIX + "timeout", worker_clock.now_ns())
            self._next_poll(0.0)
        else:
            self._start_failed(f"TimeoutError: no answer from {self.options.url} within {self.options.timeout_s} s")

    def _next_poll(self, at_least: float) -> None:
        """The next poll, one interval after this one began, and not sooner than ``at_least`` s from now."""
        assert self._loop is not None
        elapsed = self._loop.time() - self._began
        self._schedule(max(at_least, self.options.interval_s - elapsed))

    def _poll_failed(self, kind: str, at_ns: int) -> None:
        self._cancel_timer()
        if not self._subscribed:
            self._start_failed(f"{kind}: could not start polling {self.options.url}")
            return
        self._recorder_ref().error(kind, at_ns)
        self._next_poll(min(1.0, self.options.interval_s))  # a failing server is not hammered

    def _start_failed(self, why: str) -> None:
        self._drop_connection()
        self._recorder_ref().error("poll_start_failed", worker_clock.now_ns())
        self._tell(False, why)

    # -- called by the connection -----------------------------------------------------------------
    def failed(self, conn: HttpClientConnection, kind: str, at_ns: int) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self._stopping:
            return
        if not conn.waiting and kind not in _ANSWER_FAULTS:
            return  # the server closed a kept connection between polls: the next poll opens another
        if conn.rx_ns == 0 and self._conn_answers and not self._retried and kind not in _ANSWER_FAULTS:
            self._retried = True  # a stale keep-alive connection: the same poll once more on a new one
            self._send()
            return
        self._poll_failed(kind, at_ns)

    def answered(self, conn: HttpClientConnection, status: int, body: bytes, headers: dict[bytes, bytes],
                 rx_ns: int, keep_alive: bool) -> None:
        if conn is not self._conn:
            return
        self._cancel_timer()
        self._conn_answers += 1
        if not keep_alive:  # the server closes after each answer: the next poll opens a new connection
            self._drop_connection()
        if not self._subscribed:
            self._start(status, headers, rx_ns)
            return
        if self._record(status, body, headers, rx_ns):
            self._poll()  # a full page: more is waiting, fetch it now as a real poller would
        else:
            self._next_poll(0.0)

    def _start(self, status: int, headers: dict[bytes, bytes], rx_ns: int) -> None:
        """The first answer says where the stream is: the audit window opens, polling starts from a random phase."""
        if status != 200:
            self._start_failed(f"RuntimeError: poll URL answered {status}")
            return
        try:
            self.after = int(headers.get(b"x-last-id", b"-1").decode("latin-1"))
        except ValueError as exc:
            self._start_failed(f"ValueError: {exc}")
            return
        self._subscribed = True
        recorder = self._recorder_ref()
        recorder.recorder.record("connect", rx_ns - self._started, rx_ns)
        recorder.subscriber(self.name).open(rx_ns)
        recorder.connected += 1
        self._tell(True, None)
        self._schedule(random.uniform(0, self.options.interval_s))

    def _record(self, status: int, body: bytes, headers: dict[bytes, bytes], received: int) -> bool:
        """Count and record one answer; True when the page was full."""
        recorder = self._recorder_ref()
        counters = recorder.counters  # swapped every second: read it now
        counters["poll_requests"] += 1
        recorder.recorder.record("poll_request", received - self._sent_ns, received)
        if status != 200:
            recorder.error(f"poll_http_{status}", received)
            return False
        if headers.get(b"x-gap"):
            counters["poll_gaps"] += 1
        events = split_batch(body)
        if not events:
            counters["poll_empty"] += 1
            return False
        record = recorder.subscribers.get(self.name)
        if record is None:
            return False
        for raw in events:
            recorder.on_event(record, raw, received)
        try:
            self.after = max(self.after, decode_head(events[-1]).id)  # responses are in id order
        except MalformedEvent:
            recorder.error("poll_malformed_event", received)
        if len(events) >= self.options.limit:
            counters["poll_full_pages"] += 1
            return True
        return False
