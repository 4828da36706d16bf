"""A lean keep-alive HTTP/1.1 POST client for webhook bursts.

Measured on this 2-core machine, aiohttp's ``ClientSession`` spends ~180 µs
of CPU per POST and Locust's FastHttpUser ~250 µs, so a burst measured with
either measures the client as much as the consumer. Here each connection is
a bare ``asyncio.Protocol`` that writes one ready-made request at a time and
hands the bytes it receives to aiohttp's own C response parser
(``aiohttp.http_parser.HttpResponseParser``): the request is a formatted
string, the parsing (status line, headers, chunked bodies, keep-alive rules)
stays aiohttp's.

A :class:`PostPool` owns ``size`` such connections to one origin and feeds
them from a queue; every request ends in exactly one outcome reported to
``on_result``: a status code, ``"timeout"``, or ``"connection"``.
:class:`PostClient` puts an awaitable face on one pool per origin, for the
callback target's dispatcher.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp.http_parser import HttpResponseParser

__all__ = ["PostPool", "PostClient", "Job", "Body", "ResultCallback", "Outcome"]

#: a request body, or a function making it from the moment the request is written (ns)
Body = bytes | Callable[[int], bytes]
#: (caller's token, request target or b"" for the pool's URL, body, extra header lines)
Job = tuple[Any, bytes, Body, bytes]
#: an HTTP status, or "timeout" / "connection"; when a pool is aborted, "unanswered" (written,
#: no answer yet) / "unsent" (still waiting for a connection)
Outcome = int | str
#: (job, outcome, sent_ns, done_ns, Retry-After header or None)
ResultCallback = Callable[[Job, Outcome, int, int, str | None], None]


class _Connection(asyncio.Protocol):
    def __init__(self, pool: PostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.job: Job | None = None
        self.sent_ns = 0
        # typed for aiohttp's BaseProtocol; its body readers only call pause_reading/resume_reading, defined below
        self._parser = HttpResponseParser(self, pool.loop, 2**16,  # type: ignore[arg-type]
                                          response_with_body=True, read_until_eof=False, auto_decompress=False)

    # StreamReader objects made by the parser call these; the bodies are small and ignored.
    def pause_reading(self, **_kw: object) -> None:
        pass

    def resume_reading(self, **_kw: object) -> None:
        pass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, job: Job) -> None:
        assert self.transport is not None
        self.job = job
        self.sent_ns = time.time_ns()
        body = job[2]
        if not isinstance(body, bytes):  # made now, so it can carry the moment it was sent
            body = body(self.sent_ns)
        pool = self.pool
        self.transport.write(b"POST %b HTTP/1.1\r\n%bContent-Length: %d\r\n%b\r\n%b"
                             % (job[1] or pool.target, pool.head, len(body), job[3], body))
        pool.watch()

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self._parser.feed_data(data)
        except Exception:  # a garbled response: this connection is done for
            self._finish("connection", close=True)
            return
        for message, _payload in messages:
            self._finish(message.code, close=message.should_close, retry_after=message.headers.get("Retry-After"))

    def _finish(self, outcome: Outcome, *, close: bool, retry_after: str | None = None) -> None:
        job, self.job = self.job, None
        if job is not None:
            self.pool.on_result(job, outcome, self.sent_ns, time.time_ns(), retry_after)
        if close:
            self._close()
        else:
            self.pool.idle(self)

    def timed_out(self) -> None:
        self._finish("timeout", close=True)

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
            self.pool.lost(self)

    def abort(self, outcome: Outcome = "connection") -> None:
        """End now: a request in flight gets ``outcome`` before this returns."""
        job, self.job = self.job, None
        if job is not None:
            self.pool.on_result(job, outcome, self.sent_ns, time.time_ns(), None)
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.job is not None:
            job, self.job = self.job, None
            self.pool.on_result(job, "connection", self.sent_ns, time.time_ns(), None)
        if self.transport is not None:
            self.transport = None
            self.pool.lost(self)


class PostPool:
    """``size`` keep-alive connections to the origin of ``url``, fed from a queue.

    Lost connections are re-opened; after ``max_connect_failures`` failed
    opens in a row with nothing connected, everything still queued is failed
    with ``"connection"`` so that the burst ends instead of hanging.
    """

    def __init__(self, url: str, *, size: int, timeout_s: float, on_result: ResultCallback,
                 content_type: str = "application/json", max_connect_failures: int = 5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.target = request_target(url)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        # The headers every request to this origin shares; Content-Length and extra lines follow.
        self.head = f"Host: {host_header}\r\nContent-Type: {content_type}\r\n".encode()
        self.size = max(1, size)
        self.timeout_s = timeout_s
        self.on_result = on_result
        self.max_connect_failures = max_connect_failures
        self.loop = asyncio.get_running_loop()
        self.queue: deque[Job] = deque()
        self._idle: list[_Connection] = []
        self._conns: set[_Connection] = set()
        self._live = 0
        self._opening = 0
        self._connect_failures = 0
        self._drained: asyncio.Future[None] | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.aborted = False
        #: how often requests are checked against timeout_s: one timer for the pool, not one per
        #: request (a timer armed and cancelled per request was ~10 % of a POST's cost)
        self.sweep_s = min(0.1, timeout_s / 10)
        self.closed = False
        #: why the last connection could not be opened (None once one is), for a failure line
        self.problem: str | None = None

    def submit(self, job: Job) -> None:
        self.queue.append(job)
        self._pump()

    async def drain(self) -> None:
        """Wait until nothing is queued or in flight (or the pool was aborted)."""
        while (self.queue or self._busy()) and not self.aborted:
            self._drained = self.loop.create_future()
            self._pump()
            await self._drained

    def close(self) -> None:
        self.closed = True
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()

    def abort(self, *, in_flight: Outcome = "connection", queued: Outcome = "connection") -> None:
        """End everything now and drop every connection.

        Every job still owed an outcome gets one before this returns -- those
        written and not answered ``in_flight``, those never written ``queued``
        -- so a caller that aborts can account for every request.
        """
        self.closed = self.aborted = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._fail_queued(queued)
        for conn in list(self._conns):
            conn.abort(in_flight)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._conns.clear()
        self._idle.clear()

    async def prewarm(self, count: int, *, within_s: float) -> int:
        """Open up to ``count`` connections now, waiting at most ``within_s``; returns how many are open.

        Opening dozens of connections the moment a stream starts would make
        its first events late (each connect costs the loop tens of µs); a
        sender that knows its start time opens them beforehand.
        """
        want = min(count, self.size) - self._live - self._opening
        tasks = []
        for _ in range(max(0, want)):
            self._opening += 1
            tasks.append(self.loop.create_task(self._open()))
        if tasks and within_s > 0:
            await asyncio.wait(tasks, timeout=within_s)
        return self._live

    def watch(self) -> None:
        """Make sure the timeout sweep runs while requests are in flight."""
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        deadline = time.time_ns() - int(self.timeout_s * 1e9)
        busy = False
        for conn in list(self._conns):
            if conn.job is None:
                continue
            if conn.sent_ns <= deadline:
                conn.timed_out()
            else:
                busy = True
        if busy:
            self.watch()

    @property
    def in_flight(self) -> int:
        return sum(1 for conn in self._conns if conn.job is not None)

    # -- internals -----------------------------------------------------------------
    def _busy(self) -> bool:
        return self._live + self._opening > len(self._idle)

    def _pump(self) -> None:
        while self.queue and self._idle:
            self._idle.pop().send(self.queue.popleft())
        missing = self.size - self._live - self._opening
        if self.queue and missing > 0 and not self.closed:
            for _ in range(min(missing, len(self.queue))):
                self._opening += 1
                self.loop.create_task(self._open())
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and not self._drained.done() and not self.queue and not self._busy():
            self._drained.set_result(None)

    async def _open(self) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl),
                self.timeout_s)
        except (TimeoutError, OSError) as exc:
            self.problem = f"cannot connect to {self.host}:{self.port}: {exc or 'timed out'}"
            self._opening -= 1
            self._connect_failures += 1
            if self._live == 0 and self._opening == 0 and self._connect_failures >= self.max_connect_failures:
                self._fail_queued()
            elif self.queue:
                await asyncio.sleep(min(0.05 * self._connect_failures, 1.0))
                self._pump()
            self._check_drained()
            return
        self._opening -= 1
        self._live += 1
        self._conns.add(conn)
        self._connect_failures = 0
        self.problem = None
        self.idle(conn)

    def _fail_queued(self, outcome: Outcome = "connection") -> None:
        now = time.time_ns()
        while self.queue:
            self.on_result(self.queue.popleft(), outcome, now, now, None)

    def idle(self, conn: _Connection) -> None:
        if self.closed or conn.transport is None:
            if conn.transport is not None:  # opened after close(): nobody will use it
                conn.transport.close()
            return
        if self.queue:
            conn.send(self.queue.popleft())
            return
        self._idle.append(conn)
        self._check_drained()

    def lost(self, conn: _Connection) -> None:
        self._live -= 1
        self._conns.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._pump()


def request_target(url: str) -> bytes:
    """The path and query of ``url``, as sent on the request line."""
    parts = urlsplit(url)
    return ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/"


class PostClient:
    """``await post(url, body, header_lines)`` over one :class:`PostPool` per origin.

    Returns ``(outcome, retry_after)``. Connections are opened as requests
    need them, up to ``connections_per_origin``; callers bound concurrency.
    """

    def __init__(self, *, connections_per_origin: int, timeout_s: float,
                 content_type: str = "application/json") -> None:
        self.connections_per_origin = connections_per_origin
        self.timeout_s = timeout_s
        self.content_type = content_type
        self._pools: dict[str, PostPool] = {}

    def _pool(self, url: str) -> PostPool:
        key = origin(url)
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            pool = self._pools[key] = PostPool(key, size=self.connections_per_origin, timeout_s=self.timeout_s,
                                               on_result=_settle, content_type=self.content_type,
                                               max_connect_failures=1)
        return pool

    async def post(self, url: str, body: bytes, header_lines: bytes = b"",
                   target: bytes | None = None) -> tuple[Outcome, str | None]:
        future: asyncio.Future[tuple[Outcome, str | None]] = asyncio.get_running_loop().create_future()
        self._pool(url).submit((future, target if target is not None else request_target(url), body, header_lines))
        return await future

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _settle(job: Job, outcome: Outcome, _sent: int, _done: int, retry_after: str | None) -> None:
    future = job[0]
    if not future.done():
        future.set_result((outcome, retry_after))
