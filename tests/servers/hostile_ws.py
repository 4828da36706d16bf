"""A push relay that fails WebSocket sessions on purpose, at the protocol's edges.

    python -m tests.servers.hostile_ws [--refuse-upgrades N] [--oversize-after K --oversize-bytes B [--then-refuse]]

Like ``tests.servers.relay`` it forwards each POSTed event verbatim, as one
text message, to every open session. Unlike it, it can:

* ``--refuse-upgrades N``: answer ``503 Service Unavailable`` to the first N
  WebSocket upgrades (a server shedding load at start-up), then accept;
* ``--oversize-after K``: once K real events were forwarded, send every
  session one text frame longer than ``--oversize-bytes`` whose payload is
  itself a run of valid event frames -- ids already delivered and ids not
  yet published -- then close the TCP connection, deaf to the client's
  close frame meanwhile. The frame's header goes
  out first and its payload in a separate write, so a client that keeps
  reading after it refused the frame sees the smuggled frames at a frame
  boundary and would count them. With ``--then-refuse`` every later upgrade
  is answered 503, so what each session received stays exactly the first K.

Usable in-process too (:class:`HostileWs` in a test's own event loop). As a
process it binds 127.0.0.1, port 0, and prints the ``targets._process``
ready line; ``GET /stats`` says what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from http import HTTPStatus

import uvloop
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from deliverybench.core.event import WARMUP_MARK
from targets._process import announce_ready, url_for, wait_for_signal

__all__ = ["HostileWs", "frame_header", "oversized_frame"]

#: what a client accepts by default (websockets' and the harness's ``max_size``)
DEFAULT_MAX_SIZE = 2**20


def frame_header(length: int, *, opcode: int = 1) -> bytes:
    """The header of a final, unmasked server frame of ``length`` payload bytes."""
    if length < 126:
        return bytes([0x80 | opcode, length])
    if length < 65536:
        return bytes([0x80 | opcode, 126]) + length.to_bytes(2, "big")
    return bytes([0x80 | opcode, 127]) + length.to_bytes(8, "big")


def oversized_frame(template: bytes, ids: range, more_than: int) -> tuple[bytes, bytes]:
    """``(header, payload)`` of one text frame over ``more_than`` bytes, its payload event frames.

    Every embedded frame is ``template`` with its id replaced, cycling over ``ids``.
    """
    rest = template.split(b",", 1)[1]
    frames = [frame_header(len(body)) + body for body in (b'{"id":%d,%b' % (i, rest) for i in ids)]
    cycle = b"".join(frames)
    payload = cycle * (more_than // len(cycle) + 1)
    return frame_header(len(payload)), payload


class HostileWs:
    """The relay and its faults; :meth:`start` binds, :meth:`stop` closes."""

    def __init__(self, *, refuse_upgrades: int = 0, oversize_after: int = 0,
                 oversize_bytes: int = DEFAULT_MAX_SIZE, then_refuse: bool = False,
                 refusal_body: str = "refused on purpose\n") -> None:
        self.refuse_upgrades = refuse_upgrades
        self.oversize_after = oversize_after
        self.oversize_bytes = oversize_bytes
        self.then_refuse = then_refuse
        self.refusal_body = refusal_body
        self.sessions: set[ServerConnection] = set()
        self.upgrades = 0
        self.refused = 0
        self.forwarded = 0
        self.oversized = 0
        self._ws: Server | None = None
        self._http: web.AppRunner | None = None

    async def start(self) -> dict[str, str]:
        """Bind both ports; return the URLs (``ingress``, ``push``, ``stats``, ``health``)."""
        self._ws = await serve(self._session, "127.0.0.1", 0, compression=None, max_size=2**24,
                               process_request=self._upgrade)
        app = web.Application(client_max_size=2**24)
        app.router.add_post("/publish", self._publish)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/health", self._health)
        self._http = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._http.setup()
        await web.TCPSite(self._http, "127.0.0.1", 0, backlog=4096).start()
        http_port = self._http.addresses[0][1]
        ws_port = self._ws.sockets[0].getsockname()[1]
        return {"ingress": url_for("http", "127.0.0.1", http_port, "/publish"),
                "push": url_for("ws", "127.0.0.1", ws_port, "/"),
                "stats": url_for("http", "127.0.0.1", http_port, "/stats"),
                "health": url_for("http", "127.0.0.1", http_port, "/health")}

    async def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._http is not None:
            await self._http.cleanup()

    # -- WebSocket side ---------------------------------------------------------------------------
    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades += 1
        if self.upgrades <= self.refuse_upgrades or (self.then_refuse and self.oversized):
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, self.refusal_body)
        return None

    async def _session(self, ws: ServerConnection) -> None:
        self.sessions.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            self.sessions.discard(ws)

    # -- ingress ---------------------------------------------------------------------------------------
    async def forward(self, body: bytes) -> None:
        """Send one event to every session; after the K-th real one, the oversized frame."""
        broadcast(self.sessions, body.decode(), text=True)
        if WARMUP_MARK in body:
            return
        self.forwarded += 1
        if self.oversize_after and self.forwarded == self.oversize_after:
            await self._oversize(body)

    async def _oversize(self, template: bytes) -> None:
        header, payload = oversized_frame(template, range(2 * self.forwarded), self.oversize_bytes)
        sessions = list(self.sessions)
        self.oversized += len(sessions)
        for ws in sessions:
            ws.transport.pause_reading()  # deaf to the client's close frame: the payload goes out regardless
            ws.transport.write(header)
        await asyncio.sleep(0.05)  # the header alone first: the payload starts a read of its own
        for ws in sessions:
            ws.transport.write(payload)
        await asyncio.sleep(0.2)
        for ws in sessions:
            ws.transport.close()

    async def _publish(self, request: web.Request) -> web.Response:
        await self.forward(await request.read())
        return web.Response(status=202, text="accepted\n")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"upgrades": self.upgrades, "refused": self.refused, "forwarded": self.forwarded,
                                  "oversized": self.oversized, "sessions": len(self.sessions)})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


async def run(args: argparse.Namespace) -> None:
    server = HostileWs(refuse_upgrades=args.refuse_upgrades, oversize_after=args.oversize_after,
                       oversize_bytes=args.oversize_bytes, then_refuse=args.then_refuse)
    announce_ready(await server.start())
    try:
        await wait_for_signal()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers.hostile_ws", description=__doc__.split("\n\n")[0])
    p.add_argument("--refuse-upgrades", type=int, default=0, help="answer the first N upgrades 503")
    p.add_argument("--oversize-after", type=int, default=0,
                   help="after the K-th event, one oversized frame of event frames to every session, then close")
    p.add_argument("--oversize-bytes", type=int, default=DEFAULT_MAX_SIZE,
                   help="the oversized frame's payload is longer than this")
    p.add_argument("--then-refuse", action="store_true", help="after the oversized frame, answer every upgrade 503")
    uvloop.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
