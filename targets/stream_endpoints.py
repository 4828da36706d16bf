"""Server-Sent Events and long-polling on the built-in push target's HTTP side, fed by its one broadcast.

:class:`StreamHub` is handed every delivered batch by
:meth:`targets.push_server.PushServer.deliver`, the same call that
broadcasts it to the WebSocket sessions, after the batch is in the
target's :class:`~targets.event_buffer.EventBuffer`; so all five transports
see one stream in one order.

``GET /sse`` -- ``text/event-stream``. The stream opens with ``retry: 1000``;
every event is one ``id: <event id>`` / ``data: <event JSON>`` block. A
``Last-Event-ID`` request header (a decimal id) replays what the buffer
still holds newer than it; without one the stream starts at the newest
event. An idle stream gets a ``: ping`` comment every ``ping_s`` seconds.
Like :func:`websockets.asyncio.server.broadcast`, a batch is formatted
once and written straight to every stream's transport (HTTP/1.1 chunk
framing added here, once): no coroutine per stream. A stream whose
unsent backlog passes ``max_backlog`` bytes is cut (counted); its client
resumes with ``Last-Event-ID``.

``GET /longpoll`` -- one request held until the buffer has an event newer
than the request's position, or ``?hold=`` seconds passed (default 30,
at most 120; 0 answers at once). Two ways to give the position:

* ``?after=N[&limit=M]``: the poll contract of ``GET /events``
  (:func:`~targets.event_buffer.poll_answer`, not a copy): NDJSON of the
  events newer than N, ``X-Last-Id``, ``X-Gap``. A hold that ends with
  nothing newer answers **200 with an empty body** (never 204), its
  ``X-Last-Id`` unchanged.
* HTTP caching, as nginx + nchan does it (no ``after``): every answer
  carries ``Last-Modified`` (this server's start, so a restarted server's
  validators are told apart) and ``Etag`` (``"<id>"``, the newest event
  answered); the client sends them back as ``If-Modified-Since`` and
  ``If-None-Match``. Without them, or with ones of another server life,
  the position is the newest event (nchan's ``first_message newest``).
  Unlike nchan, which answers one message per response, the answer is
  every event newer than the position (up to ``limit``, NDJSON, in id
  order). A hold that ends with nothing newer answers **304 Not Modified**
  with the validators unchanged.

Disconnects are seen at once: the HTTP runner must be made with
``handler_cancellation=True`` (a held handler is cancelled when its
client goes). :meth:`StreamHub.close` ends every stream and held request,
so the runner's shutdown never waits for them.
"""

from __future__ import annotations

import asyncio
from email.utils import formatdate

from aiohttp import web
from aiohttp.http import HttpVersion11

from targets.event_buffer import DEFAULT_HOLD_S, MAX_HOLD_S, EventBuffer, longpoll_query, poll_answer

__all__ = ["StreamHub", "DEFAULT_HOLD_S", "MAX_HOLD_S", "DEFAULT_PING_S"]

DEFAULT_PING_S = 15.0
#: unsent bytes a stream may hold before it is cut (a subscriber that stopped reading)
DEFAULT_MAX_BACKLOG = 16 * 2**20
_PING = b": ping\n\n"
_MAX_ID_CHARS = 19  # a 64-bit id; anything longer is not one of ours


def _chunk(payload: bytes) -> bytes:
    """``payload`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _frames(ids: list[int], raws: list[bytes]) -> bytes:
    """SSE blocks of events; a CR inside an event (JSON whitespace) would end its line, so it starts a new one."""
    return b"".join(b"id: %d\ndata: %b\n\n" % (i, raw.replace(b"\r", b"\ndata: ") if b"\r" in raw else raw)
                    for i, raw in zip(ids, raws))


def _event_id(value: str | None) -> int | None:
    """A decimal event id from an untrusted header (``Last-Event-ID``, an ``Etag``), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if value == "-1":
        return -1
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_ID_CHARS:
        return None
    return int(value)


class StreamHub:
    """SSE streams and held long-polls of one push server (see the module docstring).

    Args:
        buffer: the target's event buffer (replay and the poll contract).
        ping_s: seconds of silence after which every SSE stream gets ``: ping``.
        retry_ms: the ``retry:`` a stream opens with.
        max_backlog: unsent bytes after which a stream is cut.
    """

    def __init__(self, buffer: EventBuffer, *, ping_s: float = DEFAULT_PING_S, retry_ms: int = 1000,
                 max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        if not ping_s > 0:
            raise ValueError("ping_s must be > 0")
        self.buffer = buffer
        self.ping_s = ping_s
        self.max_backlog = max_backlog
        self._retry = b"retry: %d\n\n" % retry_ms
        #: live streams by framing: HTTP/1.1 (chunked) and HTTP/1.0 (bytes as they are)
        self._chunked: set[asyncio.Transport] = set()
        self._plain: set[asyncio.Transport] = set()
        self._ends: dict[asyncio.Transport, asyncio.Future[None]] = {}
        self._wake: asyncio.Future[None] | None = None
        self._ping: asyncio.TimerHandle | None = None
        self._last_write = 0.0
        self._closing = False
        self.last_modified = formatdate(usegmt=True)
        self.held = 0
        self.sse_opened = 0
        self.sse_resumed = 0
        self.sse_events_sent = 0
        self.sse_cut_slow = 0
        self.sse_pings = 0
        self.longpoll_requests = 0
        self.longpoll_empty = 0

    @property
    def streams(self) -> int:
        return len(self._ends)

    def stats(self) -> dict[str, int]:
        return {"sse_streams": self.streams, "sse_opened": self.sse_opened,
                "sse_resumed": self.sse_resumed, "sse_events_sent": self.sse_events_sent,
                "sse_cut_slow": self.sse_cut_slow, "sse_pings": self.sse_pings, "held_polls": self.held,
                "longpoll_requests": self.longpoll_requests, "longpoll_empty": self.longpoll_empty}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sse", self.sse)
        app.router.add_get("/longpoll", self.longpoll)

    # -- the broadcast ----------------------------------------------------------------------------
    def deliver(self, ids: list[int], raws: list[bytes]) -> None:
        """A batch the server just buffered: written to every stream, and every held poll woken."""
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)
        if not self._ends:
            return
        self._write_all(_frames(ids, raws))
        self.sse_events_sent += len(raws) * (len(self._chunked) + len(self._plain))

    def _write_all(self, payload: bytes) -> None:
        limit = self.max_backlog
        slow: list[asyncio.Transport] = []
        for streams, data in ((self._chunked, _chunk(payload)), (self._plain, payload)):
            for transport in streams:
                if transport.get_write_buffer_size() > limit:
                    slow.append(transport)
                else:
                    transport.write(data)
        for transport in slow:
            self.sse_cut_slow += 1
            self._chunked.discard(transport)
            self._plain.discard(transport)
            transport.abort()
        self._last_write = asyncio.get_running_loop().time()

    def _pinger(self) -> None:
        self._ping = None
        if not self._ends:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_write >= self.ping_s * 0.999:  # the timer's granularity: not a whole lap late
            self.sse_pings += len(self._ends)
            self._write_all(_PING)
        self._ping = loop.call_at(self._last_write + self.ping_s, self._pinger)

    def close(self) -> None:
        """End every stream and held request (the server is stopping)."""
        self._closing = True
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)
        for end in self._ends.values():
            if not end.done():
                end.set_result(None)
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None

    # -- GET /sse ---------------------------------------------------------------------------------
    async def sse(self, request: web.Request) -> web.StreamResponse:
        resume = _event_id(request.headers.get("Last-Event-ID"))
        start = self.buffer.last_id if resume is None else resume
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        transport = request.transport
        if transport is None or transport.is_closing() or self._closing:
            return response
        if resume is not None:
            self.sse_resumed += 1
        ids, raws, _ = self.buffer.entries_after(start, self.buffer.capacity)
        try:
            await response.write(self._retry + _frames(ids, raws))  # the headers go with it
        except ConnectionError:  # gone already
            return response
        last = ids[-1] if ids else start
        # What was delivered while that write waited for the socket, then live: no await in between.
        ids, raws, _ = self.buffer.entries_after(last, self.buffer.capacity)
        chunked = request.version >= HttpVersion11
        if ids:
            transport.write(_chunk(_frames(ids, raws)) if chunked else _frames(ids, raws))
        end: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._chunked if chunked else self._plain).add(transport)
        self._ends[transport] = end
        self.sse_opened += 1
        if self._ping is None:
            self._last_write = asyncio.get_running_loop().time()
            self._pinger()
        try:
            await end
        finally:  # the client went (the handler is cancelled), or the server is stopping
            self._chunked.discard(transport)
            self._plain.discard(transport)
            del self._ends[transport]
        return response

    # -- GET /longpoll ----------------------------------------------------------------------------
    async def longpoll(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            after, limit, hold = longpoll_query(query)
        except ValueError:
            return web.Response(status=400, text="after, limit and hold must be numbers\n")
        self.longpoll_requests += 1
        if "after" in query:
            if not await self._hold(after, hold):
                self.longpoll_empty += 1
            return poll_answer(self.buffer, after, limit)
        position = _event_id(request.headers.get("If-None-Match"))
        if position is None or request.headers.get("If-Modified-Since") != self.last_modified:
            position = self.buffer.last_id  # a new subscriber (or one of another server life): from now
        if not await self._hold(position, hold):
            self.longpoll_empty += 1
            return web.Response(status=304, headers=self._validators(position))
        ids, raws, gap = self.buffer.entries_after(position, limit)
        headers = self._validators(ids[-1] if ids else position)
        headers["X-Last-Id"] = str(self.buffer.last_id)
        if gap:
            headers["X-Gap"] = "1"
        return web.Response(body=b"\n".join(raws), headers=headers, content_type="application/x-ndjson")

    def _validators(self, position: int) -> dict[str, str]:
        return {"Last-Modified": self.last_modified, "Etag": f'"{position}"', "Cache-Control": "no-cache"}

    async def _hold(self, position: int, hold_s: float) -> bool:
        """Wait until the buffer has an id newer than ``position``, at most ``hold_s``; whether it has."""
        buffer = self.buffer
        if buffer.last_id > position or hold_s <= 0 or self._closing:
            return buffer.last_id > position
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        self.held += 1
        try:
            while buffer.last_id <= position and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wake = self._wake
                if wake is None:
                    wake = self._wake = loop.create_future()
                await asyncio.wait((wake,), timeout=remaining)
        finally:
            self.held -= 1
        return buffer.last_id > position
