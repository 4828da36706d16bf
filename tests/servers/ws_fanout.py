"""A Node-``ws``-style fan-out for tests: what a publisher socket sends, every subscriber socket gets.

    python -m tests.servers.ws_fanout [--envelope]

Many teams' push servers are this small: publishers and subscribers are all
WebSocket clients of one server, told apart by path; each text frame that
arrives on a publisher socket (``/publish``) is forwarded verbatim, as one
message, to every socket open on any other path. With ``--envelope`` each is
wrapped as ``{"type":"event","data":<frame>}`` first. ``GET /stats`` on the
same port (a plain HTTP request, answered before any upgrade) counts
publisher sockets, frames and subscribers. Binds 127.0.0.1, port 0, and
prints the ready line of ``targets._process``.
"""

from __future__ import annotations

import argparse
import json
import sys
from http import HTTPStatus

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from targets._process import announce_ready, url_for, wait_for_signal


class Fanout:
    def __init__(self, envelope: bool) -> None:
        self.envelope = envelope
        self.subscribers: set[ServerConnection] = set()
        self.publishers = 0
        self.frames = 0

    async def session(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.startswith("/publish"):
            self.publishers += 1
            async for message in ws:
                self.frames += 1
                text = message if isinstance(message, str) else message.decode()
                broadcast(self.subscribers, f'{{"type":"event","data":{text}}}' if self.envelope else text)
            return
        self.subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.subscribers.discard(ws)

    def stats(self, _conn: ServerConnection, request: Request) -> Response | None:
        if request.path != "/stats":
            return None
        body = json.dumps({"publishers": self.publishers, "frames": self.frames,
                           "subscribers": len(self.subscribers)}).encode()
        return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": "application/json",
                                                      "Content-Length": str(len(body))}), body)


async def run(args: argparse.Namespace) -> None:
    fanout = Fanout(args.envelope)
    async with serve(fanout.session, "127.0.0.1", 0, compression=None, process_request=fanout.stats) as server:
        port = server.sockets[0].getsockname()[1]
        announce_ready({"ingress": url_for("ws", "127.0.0.1", port, "/publish"),
                        "push": url_for("ws", "127.0.0.1", port, "/"),
                        "stats": url_for("http", "127.0.0.1", port, "/stats")})
        await wait_for_signal()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers.ws_fanout", description=__doc__.split("\n\n")[0])
    p.add_argument("--envelope", action="store_true", help='wrap each frame as {"type":"event","data":…}')
    uvloop.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
