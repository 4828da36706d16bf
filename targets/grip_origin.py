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
* ``GET /health`` -- 200, so a health check through Pushpin proves the chain.

Events never pass through here: they are published to Pushpin's own
``/publish/`` endpoint. Run as ``python -m targets.grip_origin``; it prints
the ready line of :mod:`targets._process`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import uvloop
from aiohttp import web

from deliverybench.core.dialect import DEFAULT_CHANNEL
from targets._process import serve_http

__all__ = ["ws_events", "ws_reply", "make_app", "main"]

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


def make_app(channel: str) -> web.Application:
    """The origin's three routes, for ``channel``."""

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
    return app


async def serve(args: argparse.Namespace) -> None:
    """Bind, announce the origin's URL on stdout, and run until SIGTERM or SIGINT."""
    sig = await serve_http(make_app(args.channel), args.host, args.port, {"origin": "/", "health": "/health"})
    log.info("%s: shut down", sig.name)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.grip_origin", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free one)")
    p.add_argument("--channel", default=DEFAULT_CHANNEL, help="the channel every client is subscribed to")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="grip_origin: %(message)s")
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
