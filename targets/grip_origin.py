"""The tiny GRIP origin behind Pushpin (``--target pushpin``): it subscribes every client, then steps aside.

Pushpin is a proxy: it holds the client connections, but an origin server
decides, per request, what each one is subscribed to. This origin answers
exactly that and nothing else, so after the handshake every delivery is
Pushpin's own work:

* ``POST /ws`` -- WebSocket-over-HTTP (the route is ``over_http``): an
  ``OPEN`` event is accepted with ``OPEN`` and a ``c:{"type":"subscribe",
  "channel":…}`` control message (``Sec-WebSocket-Extensions: grip`` enables
  control messages); ``PING`` is answered ``PONG``, ``CLOSE`` with ``CLOSE``,
  anything else with nothing.
* ``GET /sse`` -- ``Grip-Hold: stream`` on the channel, ``text/event-stream``,
  with a comment line as Pushpin's keep-alive on an idle stream.
* ``GET /lp?after=N`` -- long-poll, the built-in target's ``after``
  contract (:mod:`targets.event_buffer`): events newer than N are answered
  at once; with none, the request is held (``Grip-Hold: response``) on the
  channel with ``prev-id`` the newest id kept (the poller has it), and the
  response Pushpin times out with is an empty ``200`` with ``X-Last-Id``.
* ``POST /publish`` -- long-poll's ingress (one JSON event per line): each
  event is kept for the pollers between two requests, then forwarded to
  Pushpin's ``/publish/`` in arrival order as an item with ``id`` (the
  event's id), ``prev-id`` (the id forwarded before it, ``-1`` first) and an
  ``http-response`` format. An event published while a poller is between
  two requests is answered from the kept ones when it asks again; one that
  reaches Pushpin while a hold names another ``prev-id`` makes Pushpin ask
  the origin again (GRIP's reliability), so a poller neither misses an event
  nor gets one twice. Answered ``202`` once Pushpin took the events.
* ``GET /health`` -- 200, so a health check through Pushpin proves the chain.

Push and SSE events never pass through here: they are published to
Pushpin's own ``/publish/`` endpoint. Run as ``python -m
targets.grip_origin``; it prints the ready line of :mod:`targets._process`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from deliverybench.core.dialect import DEFAULT_CHANNEL
from targets._process import serve_http
from targets.event_buffer import EventBuffer, longpoll_query, poll_answer

__all__ = ["ws_events", "ws_reply", "LongPollChannel", "publish_item", "make_app", "main"]

log = logging.getLogger("deliverybench.grip_origin")

_WS_EVENTS = "application/websocket-events"
#: Pushpin writes this comment on a stream idle for 20 s (``cstring``: the backslash escapes are decoded)
_SSE_KEEP_ALIVE = r":\n\n; format=cstring; timeout=20"


def ws_events(body: bytes) -> list[tuple[str, bytes]]:
    """The WebSocket-over-HTTP events of a request body: ``TYPE[ hexlen]\\r\\n[content\\r\\n]`` each.

    Raises:
        ValueError: a body that is not in that format.
    """
    events: list[tuple[str, bytes]] = []
    at = 0
    while at < len(body):
        end = body.find(b"\r\n", at)
        if end < 0:
            raise ValueError("an event line without CRLF")
        kind, _, size = body[at:end].partition(b" ")
        at = end + 2
        content = b""
        if size:
            length = int(size, 16)
            content = body[at:at + length]
            if len(content) != length or body[at + length:at + length + 2] != b"\r\n":
                raise ValueError("an event shorter than its length")
            at += length + 2
        events.append((kind.decode("ascii", "replace"), content))
    return events


def _event(kind: str, content: bytes | None = None) -> bytes:
    if content is None:
        return kind.encode() + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (kind.encode(), len(content), content)


def ws_reply(events: list[tuple[str, bytes]], channel: str) -> bytes:
    """What the origin answers to ``events``: accept and subscribe on OPEN, PONG a PING, CLOSE a CLOSE."""
    out: list[bytes] = []
    for kind, content in events:
        if kind == "OPEN":
            control = b"c:" + json.dumps({"type": "subscribe", "channel": channel}).encode()
            out += [_event("OPEN"), _event("TEXT", control)]
        elif kind == "PING":
            out.append(_event("PONG", content))
        elif kind == "CLOSE":
            out.append(_event("CLOSE", content))
    return b"".join(out)


_NDJSON = "application/x-ndjson"


def publish_item(channel: str, event_id: int, prev_id: int, event: bytes) -> dict[str, Any]:
    """One Pushpin publish item: ``event`` as the whole answer to a held long-poll, chained by id."""
    return {"channel": channel, "id": str(event_id), "prev-id": str(prev_id),
            "formats": {"http-response": {"code": 200, "body": event.decode(),
                                          "headers": {"Content-Type": _NDJSON, "X-Last-Id": str(event_id)}}}}


class LongPollChannel:
    """The events long-poll was published through the origin: kept for resumes, forwarded to Pushpin in order.

    Args:
        channel: the channel the items go to and the holds name.
        publish_url: Pushpin's ``/publish/`` endpoint.
    """

    def __init__(self, channel: str, publish_url: str) -> None:
        self.channel = channel
        self.publish_url = publish_url
        self.buffer = EventBuffer()
        #: the id of the event last handed to Pushpin (``-1``: none yet): the next item's ``prev-id``
        self.forwarded = -1
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

    async def publish(self, body: bytes) -> web.Response:
        events: list[tuple[int, bytes]] = []
        last = self.buffer.last_id
        for line in filter(None, (part.strip() for part in body.split(b"\n"))):
            try:
                event_id = json.loads(line)["id"]
            except (ValueError, TypeError, KeyError):
                return web.Response(status=400, text="each line must be a JSON event with an id\n")
            if not isinstance(event_id, int) or event_id <= last:
                return web.Response(status=400, text="event ids must be integers, each newer than the last\n")
            events.append((event_id, line))
            last = event_id
        for event_id, line in events:
            self.buffer.append(event_id, line)  # kept first: a poller asking now is answered from here
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._lock:  # items reach Pushpin in the order their prev-ids chain them
            items = []
            for event_id, line in events:
                items.append(publish_item(self.channel, event_id, self.forwarded, line))
                self.forwarded = event_id
            try:
                async with self._http.post(self.publish_url, json={"items": items}) as answer:
                    text = await answer.text()
                    if answer.status >= 300:
                        return web.Response(status=502, text=f"Pushpin answered {answer.status}: {text[:200]}\n")
            except aiohttp.ClientError as exc:
                return web.Response(status=502, text=f"Pushpin could not be reached: {exc}\n")
        return web.Response(status=202, text="accepted\n")

    def longpoll(self, request: web.Request) -> web.Response:
        try:
            after, limit, hold = longpoll_query(request.query)
        except ValueError:
            return web.Response(status=400, text="after, limit and hold must be numbers\n")
        if self.buffer.last_id > after or hold <= 0:
            return poll_answer(self.buffer, after, limit)
        # nothing newer: Pushpin holds the request until an item follows the newest, or answers this at the end
        return web.Response(body=b"", content_type=_NDJSON, headers={
            "X-Last-Id": str(self.buffer.last_id), "Grip-Hold": "response",
            "Grip-Channel": f"{self.channel}; prev-id={self.buffer.last_id}",
            "Grip-Timeout": str(max(1, math.ceil(hold)))})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def make_app(channel: str, publish_url: str = "") -> web.Application:
    """The origin's routes, for ``channel``; long-poll's when ``publish_url`` (Pushpin's ``/publish/``) is given."""

    async def websocket(request: web.Request) -> web.Response:
        try:
            events = ws_events(await request.read())
        except ValueError as exc:
            return web.Response(status=400, text=f"not WebSocket-over-HTTP: {exc}\n")
        return web.Response(body=ws_reply(events, channel), content_type=_WS_EVENTS,
                            headers={"Sec-WebSocket-Extensions": "grip"})

    async def sse(_request: web.Request) -> web.Response:
        return web.Response(body=b"", headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "Grip-Hold": "stream", "Grip-Channel": channel,
                                               "Grip-Keep-Alive": _SSE_KEEP_ALIVE})

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_post("/ws", websocket)
    app.router.add_get("/sse", sse)
    app.router.add_get("/health", health)
    if publish_url:
        polls = LongPollChannel(channel, publish_url)

        async def publish(request: web.Request) -> web.Response:
            return await polls.publish(await request.read())

        async def longpoll(request: web.Request) -> web.Response:
            return polls.longpoll(request)

        async def close(_app: web.Application) -> None:
            await polls.close()

        app.router.add_post("/publish", publish)
        app.router.add_get("/lp", longpoll)
        app.on_cleanup.append(close)
    return app


async def serve(args: argparse.Namespace) -> None:
    """Bind, announce the origin's URL on stdout, and run until SIGTERM or SIGINT."""
    paths = {"origin": "/", "health": "/health", **({"publish": "/publish"} if args.pushpin_publish else {})}
    sig = await serve_http(make_app(args.channel, args.pushpin_publish), args.host, args.port, paths)
    log.info("%s: shut down", sig.name)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.grip_origin", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free one)")
    p.add_argument("--channel", default=DEFAULT_CHANNEL, help="the channel every client is subscribed to")
    p.add_argument("--pushpin-publish", default="", metavar="URL",
                   help="Pushpin's /publish/ URL: serve long-poll (/lp) and its ingress (/publish)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="grip_origin: %(message)s")
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
