"""Receivers without Locust for push_capacity.py: the floor, and the two WebSocket clients the harness could use.

    python benchmarks/_floor_receiver.py --url ws://127.0.0.1:PORT/ --sessions 10000 --out counts.json
    python benchmarks/_floor_receiver.py --kind sansio ...   # the harness's own receiver, no Locust
    python benchmarks/_floor_receiver.py --kind picows ...   # picows (Cython), same recording

N WebSocket sessions in one uvloop process, by ``--kind``:

* ``floor`` -- bare ``asyncio.Protocol`` s that send the opening handshake and
  append each chunk's receive time to a list. No parsing, no recording, no
  pong: what a push delivery costs a harness process *at the least* on this
  machine (kernel, event loop and one Python call).
* ``sansio`` -- the harness's receiver as shipped
  (:class:`~deliverybench.adapters.ws_receiver.PushSession`: a bare protocol
  with websockets' sans-I/O ``ClientProtocol`` for everything but whole data
  frames), recording into the batched
  :class:`~deliverybench.core.intake.Intake`, folded once a second.
* ``picows`` -- picows' ``WSListener`` with the settings the harness would
  use (2 KB read buffer, no aiofastnet, automatic pongs, one logger),
  recording into the same intake the same way (one read per distinct frame,
  cached like the harness's), folded once a second.

The last two are the choice the harness-cost issue asked to measure: the
same recording, only the WebSocket client differs. On SIGTERM the process
writes how many deliveries (``floor``: chunks) arrived and exits. 127.0.0.1
only; bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REQUEST = (b"GET %b HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
KINDS = ("floor", "sansio", "picows")
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


async def _connect_floor(url: str, sessions: int) -> None:
    parts = urlsplit(url)
    request = REQUEST % ((parts.path or "/").encode(), parts.netloc.encode())
    loop = asyncio.get_running_loop()
    for i in range(sessions):
        await loop.create_connection(lambda: Bare(request), parts.hostname or "127.0.0.1", parts.port or 80)
        if i % 200 == 199:
            await asyncio.sleep(0.02)


async def _connect_sansio(url: str, sessions: int, recorder: Any) -> None:
    from deliverybench.adapters.ws_receiver import PushSession, PushSessionOptions

    options = PushSessionOptions(url=url)
    opened: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()
    for i in range(sessions):
        fut: asyncio.Future[None] = loop.create_future()

        def notify(ok: bool, error: str | None, fut: asyncio.Future[None] = fut) -> None:
            if not fut.done():
                fut.set_result(None)

        PushSession(f"s{i}", recorder, options, notify).start()
        opened.append(fut)
        if i % 200 == 199:
            await asyncio.gather(*opened[-200:])
    await asyncio.gather(*opened)


async def _connect_picows(url: str, sessions: int, recorder: Any) -> None:
    import logging

    from picows import WSListener, WSMsgType, ws_connect  # type: ignore[import-not-found]  # optional, untyped

    from deliverybench.core.event import WARMUP_MARK, MalformedEvent, read_head

    intake = recorder.intake
    appenders = intake.appenders
    heads: dict[bytes, tuple[int, int, int] | None] = {}
    unseen = (-1, -1, -1)  # heads' default: one lookup a frame, and a type mypy can follow
    logger = logging.getLogger("deliverybench.picows")

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self, index: int) -> None:
            self.index = index

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            rx = time.time_ns()
            if frame.msg_type == WSMsgType.TEXT and frame.fin:
                data = frame.get_payload_as_bytes()
                head = heads.get(data, unseen)
                if head is unseen:
                    if len(heads) >= 4096:
                        heads.clear()
                    try:
                        h = read_head(data)
                        head = None if WARMUP_MARK in data else (h[0], h[1], -1 if h[2] is None else h[2])
                    except MalformedEvent:
                        recorder.error("malformed_event", rx)
                        return
                    heads[data] = head
                if head is None:
                    return
                add_sub, add_id, add_due, add_sent, add_rx = appenders
                add_id(head[0])
                add_due(head[1])
                add_sent(head[2])
                add_sub(self.index)
                add_rx(rx)
            elif frame.msg_type == WSMsgType.CLOSE:  # picows does not answer a server's CLOSE by itself
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    pending = []
    for i in range(sessions):
        index = intake.add(f"s{i}")
        intake.open(index, time.time_ns())
        pending.append(ws_connect(lambda index=index: Listener(index), url, read_buffer_init_size=2048,
                                  use_aiofastnet=False, logger_name=logger))
        if len(pending) == 200:
            await asyncio.gather(*pending)
            pending = []
    if pending:
        await asyncio.gather(*pending)


async def _fold_forever(recorder: Any, counts: dict[str, int]) -> None:
    """What the harness does once a second: fold the columns and hand the payload over."""
    while True:
        await asyncio.sleep(1.0)
        payload = recorder.take_payload(final=False, now_ns=time.time_ns())
        counts["deliveries"] += payload["recorder"].count("delivery")


def _resolve(fut: asyncio.Future[None]) -> None:
    """Signal handler: end ``main``'s wait (a second signal finds it done)."""
    if not fut.done():
        fut.set_result(None)


async def main(args: argparse.Namespace) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _resolve, done)
    counts = {"deliveries": 0}
    recorder = None
    if args.kind == "floor":
        await _connect_floor(args.url, args.sessions)
    else:
        from deliverybench.core.process_recorder import ProcessRecorder

        recorder = ProcessRecorder("push")
        loop.create_task(_fold_forever(recorder, counts))
        await (_connect_sansio if args.kind == "sansio" else _connect_picows)(args.url, args.sessions, recorder)
    try:
        await asyncio.wait_for(done, args.seconds)
    except TimeoutError:
        pass
    if recorder is not None:
        payload = recorder.take_payload(final=True, now_ns=time.time_ns())
        counts["deliveries"] += payload["recorder"].count("delivery")
        counts["errors"] = sum(payload["errors"].values())
    else:
        counts["deliveries"] = len(received)
    with open(args.out, "w") as fh:
        json.dump(counts, fh)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=KINDS, default="floor")
    p.add_argument("--seconds", type=float, default=600.0)
    uvloop.run(main(p.parse_args()))
    sys.exit(0)
