"""The floor for push_capacity.py: N WebSocket sessions that only stamp and append, in one uvloop process.

    python benchmarks/_floor_receiver.py --url ws://127.0.0.1:PORT/ --sessions 10000 --out counts.json

No Locust, no parsing, no recording, no pong: each session is a bare
``asyncio.Protocol`` that sends the opening handshake and, for every chunk,
appends the receive time to a list. What a push delivery costs a harness
process *at the least* on this machine -- kernel, event loop and one Python
call -- measured in the same run as the designs it is the floor of. On
SIGTERM it writes how many chunks arrived (the handshake answers excluded)
and exits. 127.0.0.1 only; bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from urllib.parse import urlsplit

import uvloop

REQUEST = (b"GET %b HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
received: list[int] = []


class Bare(asyncio.Protocol):
    __slots__ = ("opened", "_request")

    def __init__(self, request: bytes) -> None:
        self.opened = False
        self._request = request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        rx = time.time_ns()
        if self.opened:
            received.append(rx)
        else:
            self.opened = True


async def main(args: argparse.Namespace) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parts = urlsplit(args.url)
    request = REQUEST % ((parts.path or "/").encode(), parts.netloc.encode())
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: done.done() or done.set_result(None))
    for i in range(args.sessions):
        await loop.create_connection(lambda: Bare(request), parts.hostname, parts.port)
        if i % 200 == 199:
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(done, args.seconds)
    except asyncio.TimeoutError:
        pass
    with open(args.out, "w") as fh:
        json.dump({"deliveries": len(received)}, fh)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=600.0)
    uvloop.run(main(p.parse_args()))
    sys.exit(0)
