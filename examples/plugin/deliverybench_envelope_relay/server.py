"""The envelope relay: what many teams' own gateways look like, small enough to read in one sitting.

Run as ``python -m deliverybench_envelope_relay.server --host 127.0.0.1 --port 0``
(the target does). One aiohttp app on one port:

* ``POST /publish`` -- one JSON object, the event; it is wrapped once as
  ``{"type":"event","data":<event>}`` and that text frame goes to every
  WebSocket open on ``/ws``. ``202 {"delivered_to": n}``; ``400`` when the
  body is not a JSON object (then nothing is sent).
* ``GET /ws`` -- a subscriber's WebSocket; what a subscriber sends is ignored.
* ``GET /health`` -- ``{"ok": true, "subscribers": n}``.

The event is parsed and re-encoded rather than spliced as bytes, as a real
gateway that routes on its contents would; it is encoded compactly, so the
harness sees the event's own bytes inside the envelope. Once bound it prints
deliverybench's ready line (:func:`targets._process.announce_ready`) and it
exits 0 on SIGTERM, closing every WebSocket with 1001 first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket

from aiohttp import WSCloseCode, web

from targets._process import announce_ready, url_for, wait_for_signal

__all__ = ["envelope", "make_app", "main"]

_SUBSCRIBERS = web.AppKey("subscribers", set[web.WebSocketResponse])


def envelope(body: bytes) -> str | None:
    """The frame every subscriber gets for one published body, or None when the body is not a JSON object."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    return json.dumps({"type": "event", "data": event}, separators=(",", ":"))


async def publish(request: web.Request) -> web.Response:
    frame = envelope(await request.read())
    if frame is None:
        return web.json_response({"error": "the body must be one JSON object"}, status=400)
    subscribers = request.app[_SUBSCRIBERS]
    sessions = list(subscribers)  # a copy: a subscriber may leave while a send awaits
    for ws in sessions:
        try:
            await ws.send_str(frame)
        except ConnectionError:  # closed between the copy and the send; its handler drops it
            pass
    return web.json_response({"delivered_to": len(sessions)}, status=202)


async def subscribe(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    subscribers = request.app[_SUBSCRIBERS]
    subscribers.add(ws)
    try:
        async for _ in ws:  # read until the subscriber closes, so closes and pings are handled
            pass
    finally:
        subscribers.discard(ws)
    return ws


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "subscribers": len(request.app[_SUBSCRIBERS])})


async def _close_subscribers(app: web.Application) -> None:
    subscribers = app[_SUBSCRIBERS]
    for ws in list(subscribers):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def make_app() -> web.Application:
    """The relay's routes, with no socket bound (tests can serve it on their own)."""
    app = web.Application()
    app[_SUBSCRIBERS] = set()
    app.router.add_post("/publish", publish)
    app.router.add_get("/ws", subscribe)
    app.router.add_get("/health", health)
    app.on_shutdown.append(_close_subscribers)
    return app


async def serve(host: str, port: int) -> None:
    """Bind, announce the URLs on stdout, and serve until SIGTERM or SIGINT."""
    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    bound = sock.getsockname()[1]
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    announce_ready({"ingress": url_for("http", host, bound, "/publish"), "push": url_for("ws", host, bound, "/ws"),
                    "health": url_for("http", host, bound, "/health")})
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deliverybench_envelope_relay.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
