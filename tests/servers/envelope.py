"""Push servers for tests that speak as real ones do, not as the harness's relay contract.

    python -m tests.servers.envelope [--style envelope|graphql|undecodable] [--subscribe TEXT]

Events are POSTed to ``/publish`` (one JSON event per line) and reach every
session on the WebSocket port, framed by ``--style``:

* ``envelope`` (default): each event wrapped as ``{"type":"event","data":<event>}``
  -- the aiohttp relay of issue 27 that the harness could not read before;
* ``graphql``: a minimal ``graphql-transport-ws`` server. A session must
  offer that subprotocol (else it is closed 4406), send ``connection_init``
  (answered ``connection_ack``, then a ``ping`` the client must ``pong``),
  then ``subscribe``; each event goes out as
  ``{"id":<its id>,"type":"next","payload":{"data":{"onEvent":<event>}}}``.
  A subscribe before the acknowledgement closes the session 4401, as the
  reference server does;
* ``undecodable``: each event is announced by an HTML page instead.

``GET /sse`` is an event stream carrying the same frames as ``data:`` lines
(an SSE server of one's own that wraps its events).

``--subscribe TEXT``: a WebSocket session is sent nothing until it has sent exactly
TEXT (a server that wants a subscribe message after the handshake).
``GET /stats`` counts sessions, subscribed ones, pongs, refusals. Binds
127.0.0.1, port 0, and prints the ready line of ``targets._process``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import uvloop
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.typing import Subprotocol

from targets._process import serve_http, url_for

GRAPHQL = Subprotocol("graphql-transport-ws")


class EnvelopeServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.style: str = args.style
        self.subscribe: str = args.subscribe
        #: sessions that get events, with the subscription id each asked for (graphql)
        self.subscribed: dict[ServerConnection, str] = {}
        self.sessions = 0
        self.pongs = 0
        self.refused: dict[str, int] = {}
        self.published = 0
        self.all: set[ServerConnection] = set()
        self.streams: set[web.StreamResponse] = set()

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    async def session(self, ws: ServerConnection) -> None:
        self.sessions += 1
        self.all.add(ws)
        try:
            if self.style == "graphql":
                await self._graphql(ws)
                return
            async for message in ws:
                if self.subscribe and message == self.subscribe:
                    self.subscribed[ws] = ""
                elif self.subscribe:
                    self._refuse("unknown_message")
        finally:
            self.all.discard(ws)
            self.subscribed.pop(ws, None)

    async def _graphql(self, ws: ServerConnection) -> None:
        if ws.subprotocol != GRAPHQL:
            self._refuse("subprotocol")
            await ws.close(4406, "Subprotocol not acceptable")
            return
        acknowledged = False
        async for message in ws:
            doc: Any = json.loads(message)
            kind = doc.get("type")
            if kind == "connection_init":
                acknowledged = True
                await ws.send('{"type":"connection_ack"}')
                await ws.send('{"type":"ping"}')
            elif kind == "subscribe":
                if not acknowledged:
                    self._refuse("unauthorized")
                    await ws.close(4401, "Unauthorized")
                    return
                if "subscription" not in str(doc.get("payload", {}).get("query", "")):
                    self._refuse("query")
                    await ws.send(json.dumps({"id": doc.get("id"), "type": "error",
                                              "payload": [{"message": "not a subscription"}]}))
                    continue
                self.subscribed[ws] = str(doc["id"])
            elif kind == "pong":
                self.pongs += 1
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
            else:
                self._refuse("unknown_message")

    def frame(self, event: str, subscription: str) -> str:
        if self.style == "graphql":
            return f'{{"id":{json.dumps(subscription)},"type":"next","payload":{{"data":{{"onEvent":{event}}}}}}}'
        if self.style == "undecodable":
            return "<html><body>event published</body></html>"
        return f'{{"type":"event","data":{event}}}'

    async def publish(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        for line in filter(None, (part.strip() for part in body.split("\n"))):
            json.loads(line)  # an event is JSON: a bad publish is a 500 here, not a silent pass
            self.published += 1
            if self.style == "graphql":  # each session's own subscription id
                for ws, subscription in list(self.subscribed.items()):
                    broadcast([ws], self.frame(line, subscription))
            else:
                targets = self.subscribed if self.subscribe else self.all
                broadcast(list(targets), self.frame(line, ""))
                data = f"data: {self.frame(line, '')}\n\n".encode()
                for stream in list(self.streams):
                    await stream.write(data)
        return web.Response(status=202, text="accepted\n")

    async def sse(self, request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await stream.prepare(request)
        self.streams.add(stream)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            self.streams.discard(stream)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"sessions": self.sessions, "subscribed": len(self.subscribed),
                                  "pongs": self.pongs, "refused": self.refused, "published": self.published})


async def run(args: argparse.Namespace) -> None:
    server = EnvelopeServer(args)
    ws_server = await serve(server.session, "127.0.0.1", 0, compression=None,
                            subprotocols=[GRAPHQL] if args.style == "graphql" else None)
    app = web.Application()
    app.router.add_post("/publish", server.publish)
    app.router.add_get("/stats", server.stats)
    app.router.add_get("/sse", server.sse)
    ws_port = ws_server.sockets[0].getsockname()[1]
    try:
        await serve_http(app, "127.0.0.1", 0, {"ingress": "/publish", "sse": "/sse", "stats": "/stats"},
                         more={"push": url_for("ws", "127.0.0.1", ws_port, "/")})
    finally:
        ws_server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers.envelope", description=__doc__.split("\n\n")[0])
    p.add_argument("--style", choices=("envelope", "graphql", "undecodable"), default="envelope")
    p.add_argument("--subscribe", default="", help="send a session nothing until it has sent exactly this")
    uvloop.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
