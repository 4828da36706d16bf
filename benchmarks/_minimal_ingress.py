"""A minimal HTTP/1.1 ingress for publisher benchmarks: answer every POST 202, as cheaply as possible.

    python benchmarks/_minimal_ingress.py [--single] [--stall-every S --stall-for D]

A bare uvloop ``asyncio.Protocol`` that splits requests on the header end and
``Content-Length`` and writes a fixed response -- so the publisher, not the
server, is what the benchmark measures. ``--single`` answers a body with more
than one line 400 (an ingress that takes one event per request);
``--stall-every/--stall-for`` hold every response that falls inside a stall
until the stall ends. It prints one JSON line with its port and the wall time
its stall clock started, binds 127.0.0.1 only, and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import uvloop

OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


class Ingress(asyncio.Protocol):
    def __init__(self, args: argparse.Namespace, t0: float) -> None:
        self.args, self.t0 = args, t0
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        answers = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at, length = head.find(b"content-length:"), 0
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15:eol if eol >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            answers.append(BAD if self.args.single and b"\n" in body.strip() else OK)
        self.buf = buf
        if answers:
            self._answer(b"".join(answers))

    def _answer(self, data: bytes) -> None:
        args = self.args
        if args.stall_every > 0:
            phase = (time.time() - self.t0) % args.stall_every
            if phase >= args.stall_every - args.stall_for:
                asyncio.get_running_loop().call_later(args.stall_every - phase, self._write, data)
                return
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _resolve(fut: asyncio.Future[None]) -> None:
    """Signal handler: end ``main``'s wait (a second signal finds it done)."""
    if not fut.done():
        fut.set_result(None)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    t0 = time.time()
    server = await loop.create_server(lambda: Ingress(args, t0), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "t0": t0}), flush=True)
    done: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _resolve, done)
    await done
    server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--single", action="store_true")
    p.add_argument("--stall-every", type=float, default=0.0)
    p.add_argument("--stall-for", type=float, default=0.0)
    uvloop.run(main(p.parse_args()))
    sys.exit(0)
