"""A push relay for tests, written to misbehave in the ways real servers do.

    python -m tests.servers.relay [--single] [--stall-every S --stall-for D] [--refuse-every N]

Like a real pub/sub server it forwards each POSTed body *verbatim*, as one
WebSocket message, to every session on its WebSocket port -- so an NDJSON
batch arrives as one message holding several events. On purpose, it can:

* ``--single``: take exactly one JSON event per POST, and answer an NDJSON
  batch 400 (many real ingresses do);
* ``--stall-every S --stall-for D``: stop answering for D seconds out of every
  S -- requests that arrive in a stall wait until it ends, then are
  forwarded in order (a GC pause, a slow disk, a lock);
* ``--refuse-every N``: answer every Nth POST 503 and drop it;
* ``--drop-sessions-at T``: close every WebSocket session T seconds after the
  first event was published (subscribers reconnect; the run must say so);
* ``--hostile``: after every event, send each session five frames no
  harness should trust: an id far outside the stream (2⁴⁰), a due time past
  64 bits, a binary frame that is not UTF-8, a truncated event, and text
  that is not JSON.

It counts what it did in ``GET /stats``. Binds 127.0.0.1, port 0, and prints
the ready line of ``targets._process`` so tests start it with
:class:`targets._process.ServerProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast, serve

from targets._process import serve_http, url_for


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: set[ServerConnection] = set()
        self.posts = 0
        self.forwarded = 0
        self.refused = 0
        self.rejected_batches = 0
        self.stalled = 0
        self.dropped = 0
        self.hostile_frames = 0
        self.started = 0.0

    async def session(self, ws: ServerConnection) -> None:
        self.sessions.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            self.sessions.discard(ws)

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts += 1
        args = self.args
        if args.stall_every > 0:
            loop = asyncio.get_running_loop()
            phase = (loop.time() - self.started) % args.stall_every
            if phase >= args.stall_every - args.stall_for:
                self.stalled += 1
                await asyncio.sleep(args.stall_every - phase)
        if args.single and b"\n" in body.strip():
            self.rejected_batches += 1
            return web.Response(status=400, text="one event per request\n")
        if args.refuse_every and self.posts % args.refuse_every == 0:
            self.refused += 1
            return web.Response(status=503, text="refused on purpose\n")
        broadcast(self.sessions, body.decode(), text=True)
        self.forwarded += 1
        if args.hostile:
            self._hostile(body)
        if args.drop_sessions_at > 0 and self.forwarded == 1:
            asyncio.get_running_loop().call_later(args.drop_sessions_at, self._drop_sessions)
        return web.Response(status=202, text="accepted\n")

    def _hostile(self, body: bytes) -> None:
        head = body.split(b",", 3)
        real_id = head[0][len(b'{"id":'):]
        frames = [
            b'{"id":1099511627776,"due_ns":%b,%b' % (head[1].split(b":", 1)[1], b",".join(head[2:])),
            b'{"id":%b,"due_ns":%d,%b' % (real_id, 2**70, b",".join(head[2:])),
            body[: len(body) // 3],
            b"{not json at all",
        ]
        for frame in frames:
            broadcast(self.sessions, frame.decode(errors="replace"), text=True)
        broadcast(self.sessions, b"\x00\xff\xfe binary", text=False)
        self.hostile_frames += 5

    def _drop_sessions(self) -> None:
        self.dropped = len(self.sessions)
        for ws in list(self.sessions):
            ws.transport.abort()  # no close frame: what a crashed or overloaded server does

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "forwarded": self.forwarded, "refused": self.refused,
                                  "rejected_batches": self.rejected_batches, "stalled": self.stalled,
                                  "dropped": self.dropped, "hostile_frames": self.hostile_frames,
                                  "sessions": len(self.sessions)})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


async def run(args: argparse.Namespace) -> None:
    relay = Relay(args)
    relay.started = asyncio.get_running_loop().time()
    ws_server = await serve(relay.session, "127.0.0.1", 0, compression=None, max_size=2**24)
    app = web.Application(client_max_size=2**26)
    app.router.add_post("/publish", relay.publish)
    app.router.add_get("/stats", relay.stats)
    app.router.add_get("/health", relay.health)
    ws_port = ws_server.sockets[0].getsockname()[1]
    try:
        await serve_http(app, "127.0.0.1", 0, {"ingress": "/publish", "stats": "/stats", "health": "/health"},
                         backlog=4096, more={"push": url_for("ws", "127.0.0.1", ws_port, "/")})
    finally:
        ws_server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers.relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--single", action="store_true", help="one JSON event per POST; a batch gets 400")
    p.add_argument("--stall-every", type=float, default=0.0, help="seconds between the starts of two stalls")
    p.add_argument("--stall-for", type=float, default=0.0, help="seconds each stall lasts")
    p.add_argument("--refuse-every", type=int, default=0, help="answer every Nth POST 503")
    p.add_argument("--hostile", action="store_true", help="send untrustworthy frames after every event")
    p.add_argument("--drop-sessions-at", type=float, default=0.0, help="abort every session T s after the first event")
    uvloop.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
