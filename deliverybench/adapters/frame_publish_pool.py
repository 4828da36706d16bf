"""A few long-lived publisher connections that write one frame per event: the common half of ws:// and tcp://.

An HTTP ingress answers every request, so :class:`~deliverybench.adapters.http_post.PostPool`
can wait for a status. A publisher WebSocket or a NATS-style ``PUB`` line gets
no answer per event: neither protocol says more than "the bytes were written".
So here **a frame is accepted when it is written** to its connection's
transport (``sent_ns == done_ns``); an accepted frame the server then drops
shows where it can be seen -- as loss at the subscribers. What this pool does
own is every event *not yet written*:

* events wait in one queue while no connection can take them (opening,
  handshaking, or paused by the transport's flow control because the server
  reads slower than we write); a connection that fails or closes takes only
  its written frames with it, and the events waiting go out on the next
  connection that is ready;
* an event that has waited ``timeout_s`` is refused ``"timeout"`` (the
  analogue of an unanswered request), and when ``max_connect_failures``
  connections in a row failed to open or died young (before
  ``healthy_after_s``) with none left ready, the pool *gives up*: the queue
  and every later event are refused at once with that failure's kind, until
  a connection has stayed up ``healthy_after_s`` (so a greeting the server
  refuses ends the stream quickly instead of trickling events into it);
* :meth:`FramePool.drain` waits until the queue is empty and every
  transport's buffer has gone to the kernel, so stopping never discards
  frames already counted as accepted.

Subclasses (:mod:`.ws_publish_pool`, :mod:`.line_publish_pool`) say how a
connection opens, frames an event and reads what the server sends; all of
that is untrusted and read within bounds. ``problem`` keeps the last thing
that went wrong (escaped, cut) for the publisher's one failure line.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable

from .http_post import Job, Outcome, ResultCallback

__all__ = ["FramePool", "FrameConnection", "WRITTEN"]

#: the outcome of an event written to a publisher connection: accepted (nothing more can be known)
WRITTEN = "written"
NS = 1_000_000_000
#: how often a drain looks at the queue and the transports' buffers
_DRAIN_POLL_S = 0.005
#: how long a politely closed connection waits for the server to close it
_CLOSE_WAIT_S = 2.0


class FrameConnection(asyncio.Protocol):
    """One publisher connection of a :class:`FramePool`; subclasses fill in :meth:`begin`, :meth:`frame`,
    :meth:`receive` and optionally :meth:`goodbye`."""

    def __init__(self, pool: FramePool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        #: when it became ready to carry events (0: not yet)
        self.ready_ns = 0
        self.paused = False
        #: (kind, problem) once this side decided to end the connection
        self.failure: tuple[str, str] | None = None

    # -- for subclasses ---------------------------------------------------------------------
    def begin(self) -> None:
        """The transport is open: start the handshake, or greet and call :meth:`ready`."""
        raise NotImplementedError

    def frame(self, body: bytes) -> None:
        """Write ``body`` as one frame (only called once ready and not failing)."""
        raise NotImplementedError

    def receive(self, data: bytes) -> None:
        """Read what the server sent; call :meth:`fail` on anything that ends the connection."""
        raise NotImplementedError

    def goodbye(self) -> bytes:
        """Bytes that end the connection politely (a close frame), written before closing."""
        return b""

    # -- shared ------------------------------------------------------------------------------
    def ready(self) -> None:
        self.ready_ns = time.time_ns()
        self.pool.became_ready(self)

    def send(self, job: Job) -> None:
        """Write one job's body now and report it accepted."""
        sent_ns = time.time_ns()
        body = job[2]
        self.frame(body if isinstance(body, bytes) else body(sent_ns))
        self.pool.on_result(job, WRITTEN, sent_ns, sent_ns, None)

    def fail(self, kind: str, problem: str, *, flush: bool = False) -> None:
        """End the connection for ``kind`` (one of a few words); ``problem`` says what happened.

        With ``flush``, what is already written (a close frame's answer) goes first; else it ends now.
        """
        if self.failure is None:
            self.failure = (kind, problem)
        self.pool.paused(self)  # no more events on it
        transport = self.transport
        if transport is not None:  # connection_lost follows
            transport.close() if flush else transport.abort()

    def finish(self) -> None:
        """Close: politely if everything written has gone, else at once."""
        transport = self.transport
        if transport is None:
            return
        if not (self.ready_ns and transport.get_write_buffer_size() == 0 and self.failure is None):
            transport.abort()
            return
        goodbye = self.goodbye()
        if not goodbye:
            transport.close()
            return
        transport.write(goodbye)  # the server answers and closes; if it does not, we do
        self.pool.loop.call_later(_CLOSE_WAIT_S, transport.abort)

    @property
    def buffered(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.begin()

    def data_received(self, data: bytes) -> None:
        if self.failure is None:
            self.receive(data)

    def eof_received(self) -> bool | None:
        if self.failure is None:
            self.receive_eof()
        if self.failure is None:
            self.failure = ("connection", "closed by the server")
        return None

    def receive_eof(self) -> None:
        """The server closed its side: a subclass may read what that completes (it may call :meth:`fail`)."""

    def pause_writing(self) -> None:
        self.paused = True
        self.pool.paused(self)

    def resume_writing(self) -> None:
        self.paused = False
        self.pool.resumed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        kind, problem = self.failure or ("connection", str(exc) if exc else "closed by the server")
        self.pool.lost(self, kind, problem)


class FramePool:
    """Up to ``size`` publisher connections to one server, fed from one queue (see the module docstring).

    Args:
        host, port, ssl_context: where to connect (``None``: plain TCP).
        size: connections kept open.
        timeout_s: the longest an event waits to be written, and a connection to open and be ready.
        on_result: called once per job: ``(job, outcome, sent_ns, done_ns, None)``; the outcome is
            :data:`WRITTEN`, ``"timeout"``, the kind of failure that made the pool give up, or, on
            :meth:`abort`, ``queued``.
        greeting: sent once on each connection when it opens.
        max_connect_failures: failed or short-lived connections in a row after which the pool gives up.
        healthy_after_s: how long a connection must stay up to count as a success.
        on_failure: told the kind of every connection that failed to open or ended (none refuses an
            event by itself, but frames written just before may be lost: this says why).
    """

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None, size: int, timeout_s: float,
                 on_result: ResultCallback, greeting: bytes = b"", max_connect_failures: int = 5,
                 healthy_after_s: float = 1.0, on_failure: Callable[[str], None] | None = None) -> None:
        self.host, self.port, self.ssl = host, port, ssl_context
        self.size = max(1, size)
        self.timeout_s = timeout_s
        self.on_result = on_result
        self.greeting = greeting
        self.max_connect_failures = max(1, max_connect_failures)
        self.healthy_after_s = healthy_after_s
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        #: (job, enqueued_ns), oldest first
        self.queue: deque[tuple[Job, int]] = deque()
        #: connections ready to write and not paused; the last is written to first
        self._usable: list[FrameConnection] = []
        self._conns: set[FrameConnection] = set()
        self._opening = 0
        self._failures = 0
        self._reopen: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        #: the kind of failure the pool gave up on (every event is refused with it), or None
        self.broken: str | None = None
        #: what ended the last connection (None once another is ready), for a failure line
        self.problem: str | None = None
        self.closed = False
        self.sweep_s = min(0.1, timeout_s / 10)

    def connection(self) -> FrameConnection:
        """A new, unconnected connection of this pool's kind."""
        raise NotImplementedError

    # -- the publisher's interface ------------------------------------------------------------
    def submit(self, job: Job) -> None:
        usable = self._usable
        if usable and not self.queue:
            usable[-1].send(job)
            return
        if self.broken is not None and not usable:
            now = time.time_ns()
            self.on_result(job, self.broken, now, now, None)
            return
        self.queue.append((job, time.time_ns()))
        self._grow()
        self._pump()
        self._watch()

    async def prewarm(self, count: int, *, within_s: float) -> int:
        """Open the pool's connections, waiting up to ``within_s`` for ``count`` of them to be ready."""
        self._grow()
        want = min(count, self.size)
        deadline = time.monotonic() + within_s
        while len(self._usable) < want and self.broken is None and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL_S)
        return len(self._usable)

    async def drain(self) -> None:
        """Wait until nothing is queued and the written frames have left the transports (bounded)."""
        deadline = time.monotonic() + self.timeout_s
        while not self.closed and (self.queue or (any(c.buffered for c in self._conns)
                                                  and time.monotonic() < deadline)):
            await asyncio.sleep(_DRAIN_POLL_S)

    def abort(self, *, in_flight: Outcome = "connection", queued: Outcome = "connection") -> None:
        """Close every connection and refuse what waits with ``queued`` (nothing written is ever in flight)."""
        del in_flight  # a written frame is already accepted
        self.closed = True
        for handle in (self._reopen, self._sweeper):
            if handle is not None:
                handle.cancel()
        self._reopen = self._sweeper = None
        self._refuse_queued(queued)
        self._usable.clear()
        for conn in list(self._conns):
            conn.finish()

    # -- connections' callbacks ---------------------------------------------------------------
    def became_ready(self, conn: FrameConnection) -> None:
        if self.closed:
            conn.finish()
        elif self.broken is not None:  # on probation: it carries events once it has proved itself
            self.loop.call_later(self.healthy_after_s, self._promote, conn)
        else:
            self.problem = None
            self._use(conn)

    def paused(self, conn: FrameConnection) -> None:
        if conn in self._usable:
            self._usable.remove(conn)

    def resumed(self, conn: FrameConnection) -> None:
        if conn.ready_ns and conn.failure is None and conn in self._conns and self.broken is None:
            self._use(conn)

    def lost(self, conn: FrameConnection, kind: str, problem: str) -> None:
        self._conns.discard(conn)
        if conn in self._usable:
            self._usable.remove(conn)
        if self.closed:
            return
        healthy = conn.ready_ns and time.time_ns() - conn.ready_ns >= self.healthy_after_s * NS
        self._failed(kind, problem, first=bool(healthy))

    # -- internals ------------------------------------------------------------------------------
    def _use(self, conn: FrameConnection) -> None:
        if not conn.paused and conn not in self._usable:
            self._usable.append(conn)
        self._pump()

    def _promote(self, conn: FrameConnection) -> None:
        if conn in self._conns and conn.failure is None and not self.closed:
            self.broken, self._failures, self.problem = None, 0, None
            self._use(conn)

    def _pump(self) -> None:
        queue, usable = self.queue, self._usable
        while queue and usable:
            usable[-1].send(queue.popleft()[0])

    def _grow(self) -> None:
        """Open connections up to ``size``, unless a re-open is waiting out its backoff."""
        if self.closed or self._reopen is not None:
            return
        for _ in range(self.size - len(self._conns) - self._opening):
            self._opening += 1
            self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                self.connection, self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None), self.timeout_s)
        except (TimeoutError, OSError) as exc:
            self._opening -= 1
            if not self.closed:
                self._failed("timeout" if isinstance(exc, TimeoutError) else "connection",
                             f"cannot connect to {self.host}:{self.port}: {exc or 'timed out'}", first=False)
            return
        self._opening -= 1
        if self.closed or conn.transport is None:
            conn.finish()
            return
        self._conns.add(conn)
        if not conn.ready_ns:  # a handshake to wait for: bounded like everything else
            self.loop.call_later(self.timeout_s, self._handshake_deadline, conn)

    def _handshake_deadline(self, conn: FrameConnection) -> None:
        if not conn.ready_ns and conn.transport is not None:
            conn.fail("timeout", f"not ready within {self.timeout_s:g} s of connecting")

    def _failed(self, kind: str, problem: str, *, first: bool) -> None:
        """A connection failed to open or ended: count it, maybe give up, and open another after a backoff."""
        self.problem = problem
        if self.on_failure is not None:
            self.on_failure(kind)
        self._failures = 1 if first else self._failures + 1
        if self._failures >= self.max_connect_failures and not self._usable:
            self.broken = kind
            self._refuse_queued(kind)
        if self._reopen is None:
            delay = 0.0 if self._failures <= 1 else min(0.05 * 2 ** (self._failures - 2), 1.0)
            self._reopen = self.loop.call_later(delay, self._reopened)

    def _reopened(self) -> None:
        self._reopen = None
        self._grow()

    def _refuse_queued(self, outcome: Outcome) -> None:
        now = time.time_ns()
        while self.queue:
            self.on_result(self.queue.popleft()[0], outcome, now, now, None)

    def _watch(self) -> None:
        if self._sweeper is None and self.queue and not self.closed:
            self._sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def _sweep(self) -> None:
        """Refuse events that have waited ``timeout_s`` for a connection."""
        self._sweeper = None
        now = time.time_ns()
        deadline = now - int(self.timeout_s * NS)
        queue = self.queue
        while queue and queue[0][1] <= deadline:
            self.on_result(queue.popleft()[0], "timeout", now, now, None)
        self._watch()
