"""The built-in webhook consumer for burst tests.

Run as ``python -m targets.sink_server --host 127.0.0.1 --port 0``.

In a burst the harness plays the webhook producer and times the consumer's
acknowledgement; this is the consumer to point it at when the user has none
of their own. It acknowledges every ``POST /hook`` with ``--status`` after an
optional ``--delay-ms`` of simulated processing, and counts what it got, so a
run can check that nothing was lost on the way.

* ``POST /hook`` -- any body; answers ``--status`` (default 200).
* ``GET /health`` -- ``{"ok": true}``.
* ``GET /stats`` -- ``{"requests": n, "bytes": n, "by_status": {"200": n}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Sequence

import uvloop
from aiohttp import web

from deliverybench.adapters.process_tuning import raise_open_files_limit, settle_gc
from targets._process import serve_http

__all__ = ["SinkServer", "main"]

log = logging.getLogger("targets.sink_server")

_MAX_BODY = 256 * 2**20


class SinkServer:
    """Counts webhook deliveries and acknowledges them.

    Args:
        delay_ms: simulated processing time before each answer.
        status: the HTTP status every delivery gets.
    """

    def __init__(self, *, delay_ms: float = 0.0, status: int = 200) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.delay_s = delay_ms / 1000.0
        self.status = status
        self.requests = 0
        self.bytes = 0
        self.by_status: Counter[str] = Counter()

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        self.bytes += len(body)
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        self.by_status[str(self.status)] += 1
        return web.Response(status=self.status)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "bytes": self.bytes, "by_status": dict(self.by_status)})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/hook", self.hook)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        return app


async def run(args: argparse.Namespace) -> None:
    server = SinkServer(delay_ms=args.delay_ms, status=args.status)

    def bound(port: int) -> None:
        settle_gc()  # keep full collections out of the measured latencies
        log.info("sink server ready on port %s", port)

    sig = await serve_http(server.app(), args.host, args.port,
                           {"consumer": "/hook", "health": "/health", "stats": "/stats"}, backlog=4096, bound=bound)
    log.info("%s: shut down", sig.name)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.sink_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="HTTP port; 0 picks a free one (default: 0)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="processing time per delivery (default: 0)")
    p.add_argument("--status", type=int, default=200, help="status every delivery gets (default: 200)")
    args = p.parse_args(argv)
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    if not 200 <= args.status <= 599:
        p.error("--status must be a final HTTP status code (200-599)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise_open_files_limit()
    uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
