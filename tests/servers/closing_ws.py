"""A push relay that closes every session part-way through the stream and lets nobody back.

    python -m tests.servers.closing_ws --close-at T

Like :mod:`tests.servers.hostile_ws` (whose relay it extends) it forwards each
POSTed event verbatim, as one text message, to every open session. ``T``
seconds after the first real event (warm-up events do not count) it closes
every session with 1001 ("going away", a proper closing handshake, so what
was sent before arrives) and from then on answers every upgrade ``503``: a
target that lost its subscribers for good. With ``--close-at 0`` it never
closes (an honest relay).

``GET /stats`` adds ``delivered`` -- messages of real events written to an
open session, the exact number the harness can have received -- and
``closed``, the sessions it closed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from http import HTTPStatus

import uvloop
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.http11 import Request, Response
from websockets.protocol import State

from deliverybench.core.event import WARMUP_MARK
from targets._process import announce_ready, wait_for_signal

from .hostile_ws import HostileWs

__all__ = ["ClosingWs"]


class ClosingWs(HostileWs):
    """The relay; every session closed ``close_at`` s after the first real event, then no way back in."""

    def __init__(self, *, close_at: float) -> None:
        super().__init__()
        self.close_at = close_at
        self.delivered = 0
        self.closed = 0
        self.shut = False
        self._closing: set[asyncio.Task[None]] = set()

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.shut:
            self.upgrades += 1
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "closed for good\n")
        return super()._upgrade(connection, request)

    async def forward(self, body: bytes) -> None:
        """One event to every open session, counted per session; the first real one starts the clock."""
        open_now = [ws for ws in self.sessions if ws.state is State.OPEN]
        broadcast(open_now, body.decode(), text=True)
        if WARMUP_MARK in body:
            return
        self.forwarded += 1
        self.delivered += len(open_now)
        if self.forwarded == 1 and self.close_at > 0:
            asyncio.get_running_loop().call_later(self.close_at, self._close_all)

    def _close_all(self) -> None:
        self.shut = True
        for ws in list(self.sessions):
            if ws.state is State.OPEN:
                self.closed += 1
                task = asyncio.ensure_future(ws.close(1001, "closing every session on purpose"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"upgrades": self.upgrades, "refused": self.refused, "forwarded": self.forwarded,
                                  "delivered": self.delivered, "closed": self.closed,
                                  "sessions": len(self.sessions)})


async def run(args: argparse.Namespace) -> None:
    server = ClosingWs(close_at=args.close_at)
    announce_ready(await server.start())
    try:
        await wait_for_signal()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers.closing_ws", description=__doc__.split("\n\n")[0])
    p.add_argument("--close-at", type=float, default=0.0,
                   help="close every session T s after the first event, then refuse every upgrade (0: never)")
    uvloop.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
