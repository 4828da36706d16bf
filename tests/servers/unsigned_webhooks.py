"""A webhook sender that signs nothing: the subscription API of the relay contract, plain POSTs out.

    python -m tests.servers.unsigned_webhooks

Many teams' own senders (and Alertmanager) POST a webhook with no
signature headers at all. This one takes subscriptions (``POST
/subscriptions`` with ``{"url": …}`` answers ``{"id": …}``; ``DELETE
/subscriptions/{id}``), and each event POSTed to ``/publish`` (one JSON
event per line) is POSTed as it is, with no ``webhook-*`` header, to every
subscribed URL, once (an answer other than 2xx is counted, not retried).
``GET /stats`` says how many were sent and how many were refused.
Binds 127.0.0.1, port 0, and prints the ``targets._process`` ready line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

import aiohttp
import uvloop
from aiohttp import web

from targets._process import serve_http


class Sender:
    def __init__(self) -> None:
        self.subscribers: dict[str, str] = {}
        self.ids = itertools.count(1)
        self.sent = 0
        self.refused = 0
        self.http: aiohttp.ClientSession | None = None

    async def subscribe(self, request: web.Request) -> web.Response:
        url = str((await request.json())["url"])
        sid = str(next(self.ids))
        self.subscribers[sid] = url
        return web.json_response({"id": sid}, status=201)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        self.subscribers.pop(request.match_info["sid"], None)
        return web.Response(status=204)

    async def _post(self, url: str, body: bytes) -> None:
        assert self.http is not None
        async with self.http.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            await response.read()
            self.sent += 1
            self.refused += not 200 <= response.status < 300

    async def publish(self, request: web.Request) -> web.Response:
        if self.http is None:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        lines = [line for line in (await request.read()).split(b"\n") if line.strip()]
        for line in lines:
            json.loads(line)  # an event is JSON: a bad publish is a 500 here, not a silent pass
        await asyncio.gather(*(self._post(url, line) for line in lines for url in list(self.subscribers.values())))
        return web.Response(status=202, text="sent\n")

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"subscribers": len(self.subscribers), "sent": self.sent, "refused": self.refused})


async def run() -> None:
    sender = Sender()
    app = web.Application()
    app.router.add_post("/subscriptions", sender.subscribe)
    app.router.add_delete("/subscriptions/{sid}", sender.unsubscribe)
    app.router.add_post("/publish", sender.publish)
    app.router.add_get("/stats", sender.stats)
    try:
        await serve_http(app, "127.0.0.1", 0, {"ingress": "/publish", "callback": "/subscriptions",
                                                "stats": "/stats"})
    finally:
        if sender.http is not None:
            await sender.http.close()


if __name__ == "__main__":
    uvloop.run(run())
    sys.exit(0)
