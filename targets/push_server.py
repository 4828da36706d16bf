"""The built-in push target: events POSTed over HTTP, fanned out over WebSocket.

Run as ``python -m targets.push_server --host 127.0.0.1 --port 0 --ws-port 0``.

It is meant to be a fast, honest reference: each published event's bytes go
verbatim, as one text frame, to every open session via
:func:`websockets.asyncio.server.broadcast` (about 20 µs per frame), with no
per-frame Python work of its own, so what the harness measures is the
delivery mechanism rather than this server's bookkeeping.

HTTP (``--port``):

* ``POST /publish`` -- one event or an NDJSON batch; ``202 {"accepted": n}``,
  ``400`` if the body is empty or any line is not an event (then nothing is
  published).
* ``GET /events?after=N`` -- the same stream for the polling baseline.
* ``GET /sse`` and ``GET /longpoll`` -- the same stream again, as Server-Sent
  Events and long-polling (:mod:`targets.stream_endpoints`); every batch
  :meth:`PushServer.deliver` broadcasts to the WebSocket sessions goes to
  them in the same call.
* ``GET /health`` -- ``{"ok": true, "subscribers": n}``: WebSocket sessions,
  SSE streams and long-polls being held.
* ``GET /stats`` -- counters.

WebSocket (``--ws-port``, any path): every frame a subscriber sends is echoed
back to that subscriber unchanged, so push round trips can be measured when
clocks cannot be trusted across machines.

``--delay-ms D`` is for tests only: it holds every event D ms before it is
delivered (to push and poll alike), so a test can check that the harness
reports a latency it knows in advance.

``--frame envelope|nats|socketio`` is for benchmarks only: every WebSocket
message is framed as a real server of that kind frames it (``{"type":"event",
"data":<event>}``; NATS ``MSG deliverybench 1 <n>\r\n<event>\r\n``;
Socket.IO ``42["event",<event>]``), framed once per event, and frames from
subscribers are not echoed (they are the protocol's greetings), so the
harness's cost of reading each framing is measured against the same server.

``--sse-ping-s S`` is the silence after which every SSE stream gets a
``: ping`` comment (default 15).

``--workers N`` spreads the WebSocket sessions over N processes sharing one
port (``SO_REUSEPORT``: the kernel hands each new connection to one of
them), for more sessions than one process's open-files limit allows. This
process keeps the HTTP side; every event it delivers is also written,
length-prefixed, down a pipe to each worker, which broadcasts it to its own
sessions (SSE streams and long-polls stay in this process, on the HTTP
port). Workers report their session counts back, so ``/health`` and
``/stats`` count every session, and the ready line names every pid so the
harness charges all of them to the target.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence

import uvloop
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from deliverybench.adapters.children import child_options, stop_group
from deliverybench.adapters.process_tuning import raise_open_files_limit, settle_gc
from deliverybench.core.event import MalformedEvent, decode_head, split_batch
from targets import hold
from targets._process import announce_ready, url_for, wait_for_signal
from targets.event_buffer import EventBuffer, poll_handler
from targets.service_queue import ServiceQueue
from targets.stream_endpoints import DEFAULT_PING_S, StreamHub

__all__ = ["PushServer", "main"]

log = logging.getLogger("targets.push_server")

_MAX_FRAME = 16 * 2**20
_MAX_BODY = 256 * 2**20


def _envelope(raw: bytes) -> bytes:
    return b'{"type":"event","data":%b}' % raw


def _nats(raw: bytes) -> bytes:
    return b"MSG deliverybench 1 %d\r\n%b\r\n" % (len(raw), raw)


def _socketio(raw: bytes) -> bytes:
    return b'42["event",%b]' % raw


#: ``--frame``: how each WebSocket message is framed (benchmarks only); None: the event as it came
FRAMES: dict[str, Callable[[bytes], bytes] | None] = {"raw": None, "envelope": _envelope, "nats": _nats,
                                                      "socketio": _socketio}


class PushServer:
    """The state shared by the WebSocket side and the HTTP side.

    Args:
        delay_ms: test-only hold before each event is delivered.
        buffer: how many recent events ``GET /events`` retains.
        capacity: test-only limit, deliveries per second (:class:`ServiceQueue`; 0: none).
        sse_ping_s: silence after which every SSE stream gets ``: ping``.
    """

    def __init__(self, *, delay_ms: float = 0.0, buffer: int = 10_000, capacity: float = 0.0,
                 sse_ping_s: float = DEFAULT_PING_S, frame: str = "raw") -> None:
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {', '.join(FRAMES)}")
        self.frame = FRAMES[frame]
        #: echo what subscribers send (echo probes); not when framing, where they send protocol greetings
        self.echo = self.frame is None
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.delay_s = delay_ms / 1000.0
        self.service = ServiceQueue(capacity)
        self.buffer = EventBuffer(buffer)
        self.streams = StreamHub(self.buffer, ping_s=sse_ping_s)
        self.subscribers: set[ServerConnection] = set()
        self.published = 0
        self.frames_sent = 0
        self.connections_total = 0
        self.echoed = 0
        self._held: deque[tuple[float, list[int], list[bytes]]] = deque()
        self._timer: asyncio.Handle | None = None
        self.worker_pipes: list[asyncio.WriteTransport] = []
        self.worker_sessions: list[int] = []
        self.worker_tasks: list[asyncio.Task[None]] = []

    # -- WebSocket side ----------------------------------------------------

    async def session(self, ws: ServerConnection) -> None:
        self.subscribers.add(ws)
        self.connections_total += 1
        try:
            async for message in ws:  # str stays a text frame, bytes binary
                if self.echo:
                    await ws.send(message)
                    self.echoed += 1
        except ConnectionClosed:  # a subscriber that vanishes is normal under load
            pass
        finally:
            self.subscribers.discard(ws)

    # -- delivery ----------------------------------------------------------

    def deliver(self, ids: list[int], raws: list[bytes]) -> None:
        conns = self.subscribers
        append = self.buffer.append
        framed = raws if self.frame is None else [self.frame(raw) for raw in raws]
        for event_id, raw, message in zip(ids, raws, framed):
            append(event_id, raw)
            broadcast(conns, message, text=True)
        self.frames_sent += len(raws) * (len(conns) + sum(self.worker_sessions))
        self.streams.deliver(ids, raws)  # after the buffer has the batch: held polls read it from there
        if self.worker_pipes:
            packet = b"".join(len(raw).to_bytes(4, "big") + raw for raw in framed)
            for pipe in self.worker_pipes:
                pipe.write(packet)

    def sessions(self) -> int:
        """Subscribers being delivered to: WebSocket sessions here and in every worker, SSE streams, held polls."""
        return len(self.subscribers) + sum(self.worker_sessions) + self.streams.streams + self.streams.held

    def hold(self, ids: list[int], raws: list[bytes]) -> None:
        # One timer and a FIFO, not a timer per batch, so held events keep
        # their publication order whatever the loop does with equal deadlines
        # (the service queue's release times never decrease).
        # The clock is targets.hold's (sub-millisecond), not the loop's (milliseconds).
        at = self.service.release_at(hold.now() + self.delay_s, len(raws) * self.sessions())
        self._held.append((at, ids, raws))
        if self._timer is None:
            self._arm()

    def _release(self) -> None:
        self._timer = None
        now = hold.now()
        held = self._held
        while held and held[0][0] <= now:
            _, ids, raws = held.popleft()
            self.deliver(ids, raws)
        if held:
            self._arm()

    def _arm(self) -> None:
        """Wake for the first held event: exactly for --delay-ms, on the loop's timer for capacity alone."""
        self._timer = hold.wake_at(asyncio.get_running_loop(), self._held[0][0], self._release,
                                   precise=self.delay_s > 0)

    def cancel_held(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()

    # -- HTTP side ---------------------------------------------------------

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            body.decode("utf-8")  # text frames must be valid UTF-8
            raws = split_batch(body)
            if not raws:
                raise MalformedEvent("empty body")
            ids = [decode_head(raw).id for raw in raws]
        except (UnicodeDecodeError, MalformedEvent) as exc:
            return web.json_response({"error": f"not an event or NDJSON batch of events: {exc}"}, status=400)
        self.published += len(raws)
        if self.delay_s > 0 or self.service.capacity > 0:
            self.hold(ids, raws)
        else:
            self.deliver(ids, raws)
        return web.json_response({"accepted": len(raws)}, status=202)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "subscribers": self.sessions()})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "published": self.published,
                "held": sum(len(ids) for _, ids, _ in self._held),
                "frames_sent": self.frames_sent,
                "subscribers": self.sessions(),
                "workers": 1 + len(self.worker_pipes),
                "connections_total": self.connections_total,
                "echoed": self.echoed,
                "last_id": self.buffer.last_id,
                **self.streams.stats(),
            }
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/publish", self.publish)
        app.router.add_get("/events", poll_handler(self.buffer))
        self.streams.add_routes(app)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        return app


async def run(args: argparse.Namespace) -> None:
    server = PushServer(delay_ms=args.delay_ms, buffer=args.buffer, capacity=args.capacity,
                        sse_ping_s=args.sse_ping_s, frame=args.frame)
    ws_server = await serve(
        server.session,
        args.host,
        args.ws_port,
        compression=None,  # events are small and latency-bound; deflate costs per frame
        max_size=_MAX_FRAME,
        close_timeout=2,
        reuse_port=args.workers > 1,
    )
    # handler_cancellation: a held long-poll or SSE stream whose client goes ends at once
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        site = web.TCPSite(runner, args.host, args.port, backlog=4096)
        await site.start()
        http_port = runner.addresses[0][1]
        ws_port = ws_server.sockets[0].getsockname()[1]
        for _ in range(args.workers - 1):
            workers.append(await _start_worker(server, args.host, ws_port))
        settle_gc()  # keep full collections out of the measured latencies
        announce_ready(
            {
                "ingress": url_for("http", args.host, http_port, "/publish"),
                "push": url_for("ws", args.host, ws_port, "/"),
                "poll": url_for("http", args.host, http_port, "/events"),
                "sse": url_for("http", args.host, http_port, "/sse"),
                "longpoll": url_for("http", args.host, http_port, "/longpoll"),
                "health": url_for("http", args.host, http_port, "/health"),
                "stats": url_for("http", args.host, http_port, "/stats"),
            },
            pids=[os.getpid(), *(w.pid for w in workers)] if workers else None,
        )
        log.info("push server ready: http %s, ws %s, %d worker(s)", http_port, ws_port, len(workers))
        sig = await wait_for_signal()
        log.info("%s: shutting down", sig.name)
    finally:
        server.cancel_held()
        server.streams.close()  # held handlers end, so the runner's cleanup does not wait on them
        for pipe in server.worker_pipes:
            pipe.close()
        for worker in workers:
            stop_group(worker, grace_s=3.0)
        ws_server.close()
        await ws_server.wait_closed()
        await runner.cleanup()


async def _start_worker(server: PushServer, host: str, ws_port: int) -> subprocess.Popen[bytes]:
    """A worker process holding sessions on the same port; events reach it down its stdin."""
    proc = subprocess.Popen([sys.executable, "-m", "targets.push_server", "--worker", "--host", host,
                             "--ws-port", str(ws_port), "--frame", "raw" if server.echo else "nats"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            **child_options())
    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()
    pipe, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
    slot = len(server.worker_sessions)
    server.worker_sessions.append(0)
    server.worker_pipes.append(pipe)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)

    async def counts() -> None:
        while line := await reader.readline():
            if line.strip() == b"ready":
                ready.set()
            elif line.strip().isdigit():
                server.worker_sessions[slot] = int(line)

    ready = asyncio.Event()
    server.worker_tasks.append(loop.create_task(counts()))  # a task nobody holds may be collected
    await asyncio.wait_for(ready.wait(), 15)
    return proc


async def run_worker(args: argparse.Namespace) -> None:
    """A worker: sessions on the shared port, events from stdin, its session count to stdout."""
    server = PushServer()
    server.echo = args.frame == "raw"  # events come framed already; only whether to echo matters here
    ws_server = await serve(server.session, args.host, args.ws_port, compression=None, max_size=_MAX_FRAME,
                            close_timeout=2, reuse_port=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_BODY)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer

    def report() -> None:
        out.write(b"%d\n" % len(server.subscribers))
        out.flush()
        loop.call_later(0.25, report)

    settle_gc()
    out.write(b"ready\n")
    out.flush()
    report()
    try:
        while True:
            head = await reader.readexactly(4)
            raw = await reader.readexactly(int.from_bytes(head, "big"))
            broadcast(server.subscribers, raw, text=True)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the main process is gone: so are we
    finally:
        ws_server.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.push_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="HTTP port; 0 picks a free one (default: 0)")
    p.add_argument("--ws-port", type=int, default=0, help="WebSocket port; 0 picks a free one (default: 0)")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="TEST ONLY: hold every event this long before delivering it (default: 0)")
    p.add_argument("--capacity", type=float, default=0.0,
                   help="TEST ONLY: serve at most this many deliveries per second, one event at a time "
                        "(a known capacity for sweeps; default: 0, no limit)")
    p.add_argument("--buffer", type=int, default=10_000,
                   help="events kept for GET /events, /longpoll and SSE replay (default: 10000)")
    p.add_argument("--sse-ping-s", type=float, default=DEFAULT_PING_S,
                   help="seconds of silence after which SSE streams get a ': ping' comment (default: 15)")
    p.add_argument("--frame", choices=tuple(FRAMES), default="raw",
                   help="benchmarks only: frame WebSocket messages as an envelope, NATS or Socket.IO server would")
    p.add_argument("--workers", type=int, default=1,
                   help="processes holding WebSocket sessions on one port (SO_REUSEPORT; default: 1)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    if not args.capacity >= 0:
        p.error("--capacity must be >= 0")
    if not args.sse_ping_s > 0:
        p.error("--sse-ping-s must be > 0")
    if args.buffer < 1:
        p.error("--buffer must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # one line per connection is too many
    raise_open_files_limit()
    uvloop.run(run_worker(args) if args.worker else run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
