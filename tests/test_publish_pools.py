"""The publisher's ws:// and tcp:// pools (and an HTTP template) against real servers on 127.0.0.1.

Every case counts exactly: each scheduled event is accepted (written),
refused or never sent, and what the server read is compared event by event
with what was written. The servers are websockets' own, an asyncio server
speaking the part of NATS's client protocol a publisher meets (INFO,
CONNECT, PUB, PING/PONG, -ERR), and the real ``nats-server`` when installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from helpers import scaled
from test_http_post import serve_posts
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from deliverybench.adapters.frame_publish_pool import WRITTEN
from deliverybench.adapters.line_publish_pool import LinePublishPool
from deliverybench.adapters.publish_pool import is_accepted, open_pool
from deliverybench.adapters.publisher import Publisher, PublisherOptions, PublishOutcome
from deliverybench.adapters.ws_publish_pool import WsPublishPool
from deliverybench.core.dialect import Dialect
from deliverybench.core.schedule import Schedule

NATS_GREETING = 'CONNECT {"verbose":false}\\r\\n'
NATS_PUB = "PUB {channel} {event|length}\\r\\n{event}\\r\\n"


async def _publish(url: str, schedule: Schedule, dialect: Dialect | None = None, **options: Any) -> PublishOutcome:
    """Run one Publisher to ``url`` (its schedule starts 0.3 s from now), then let the server read 0.1 s more."""
    publisher = Publisher(PublisherOptions(ingress_url=url, schedule=schedule, payload_bytes=64,
                                           request_timeout_s=2.0, dialect=dialect or Dialect(), **options))
    out = await asyncio.wait_for(publisher.run(time.time_ns() + 300_000_000), scaled(30))
    await asyncio.sleep(0.1)
    return out


def _balanced(out: PublishOutcome, events: int) -> tuple[int, int, int]:
    """(accepted, refused, unsent), which add up to ``events``."""
    log = out.log
    unsent = log.scheduled_count - log.published
    assert log.scheduled_count == events
    assert log.accepted + log.refused + unsent == events
    return log.accepted, log.refused, unsent


def _ids(bodies: list[bytes]) -> list[int]:
    return [json.loads(body)["id"] for body in bodies]


# -- ws:// -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def _ws_server(handler: Callable[[ServerConnection], Awaitable[None]], **kwargs: Any) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/publish"


def test_ws_every_event_is_one_text_frame_after_the_greeting_and_pings_are_answered() -> None:
    frames: list[list[str]] = []  # per connection, in order

    async def handler(ws: ServerConnection) -> None:
        mine: list[str] = []
        frames.append(mine)
        async for message in ws:
            assert isinstance(message, str)  # text frames
            mine.append(message)

    async def main() -> PublishOutcome:
        # the server pings every 50 ms and drops a connection whose pong is 100 ms late
        async with _ws_server(handler, ping_interval=0.05, ping_timeout=0.1) as url:
            return await _publish(url, Schedule(rate=500, duration_s=1.5),
                                  Dialect(publish_greeting='{"hello":"{channel}"}', channel="room-7",
                                          publish_template='{"data":{event}}'))

    out = asyncio.run(main())
    assert out.ok and out.errors == {}
    assert _balanced(out, 750) == (750, 0, 0)
    assert out.requests == 750  # one frame per event
    assert frames and all(conn[0] == '{"hello":"room-7"}' for conn in frames)  # greeted once, first
    events = [json.loads(m)["data"] for conn in frames for m in conn[1:]]
    assert sorted(e["id"] for e in events) == list(range(750))
    assert all(e["sent_ns"] >= e["due_ns"] - 2_000_000 for e in events)  # the body was made when written


class _Reader:
    """A server handler that counts the frames it reads, and stops reading after ``stop_after`` of them."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.read, self.stop_after = 0, stop_after

    async def __call__(self, ws: ServerConnection) -> None:
        async for _ in ws:
            self.read += 1
            if self.read == self.stop_after:
                await ws.wait_closed()  # stops reading: its queue, then the socket buffers fill


def test_ws_pool_counts_every_job_once_at_10k_events_per_second() -> None:
    reader = _Reader()
    outcomes: list[int | str] = []

    async def main() -> float:
        async with _ws_server(reader) as url:
            pool = open_pool(url, concurrency=256, timeout_s=5.0,
                             on_result=lambda job, outcome, *_: outcomes.append(outcome))
            assert isinstance(pool, WsPublishPool) and pool.size == 4
            assert await pool.prewarm(4, within_s=5.0) == 4
            body = b'{"id":1,"due_ns":1,"sent_ns":1,"pad":"' + b"x" * 200 + b'"}'
            cpu = time.process_time()
            for i in range(10_000):
                pool.submit((i, b"", body, b""))
            spent = time.process_time() - cpu
            await pool.drain()
            pool.abort()
            for _ in range(100):
                if reader.read == 10_000:
                    break
                await asyncio.sleep(0.02)
            return spent

    spent = asyncio.run(main())
    assert outcomes == [WRITTEN] * 10_000 and all(is_accepted(o) for o in outcomes[:1])
    assert reader.read == 10_000
    assert spent < 1.0  # 10,000 frames cost well under a second of CPU (~0.1 s measured)


def test_ws_server_that_stops_reading_pauses_the_pool_and_waiting_events_time_out() -> None:
    outcomes: list[int | str] = []

    async def main() -> WsPublishPool:
        async with _ws_server(_Reader(stop_after=5), close_timeout=0.2) as url:
            pool = WsPublishPool(url, size=1, timeout_s=0.5,
                                 on_result=lambda job, outcome, *_: outcomes.append(outcome))
            await pool.prewarm(1, within_s=5.0)
            body = b"x" * 2**16
            for i in range(500):  # 32 MiB: far more than loopback's buffers hold
                pool.submit((i, b"", body, b""))
            await asyncio.sleep(1.5)
            pool.abort(queued="unsent")
            return pool

    pool = asyncio.run(main())
    counts = {kind: outcomes.count(kind) for kind in set(outcomes)}
    assert len(outcomes) == 500 and set(counts) == {WRITTEN, "timeout"}, counts
    assert 5 <= counts[WRITTEN] < 500 and pool.problem is None


def test_ws_server_closing_mid_stream_refuses_the_rest_and_the_publisher_stops() -> None:
    # the server reads 100 frames, then closes every connection (1001) and takes no more
    state: dict[str, Any] = {"frames": 0}

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            state["frames"] += 1
            if state["frames"] == 100:
                state["server"].close()

    async def main() -> PublishOutcome:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            state["server"] = server
            port = server.sockets[0].getsockname()[1]
            return await _publish(f"ws://127.0.0.1:{port}/", Schedule(rate=200, duration_s=10),
                                  max_consecutive_failures=20, give_up_after_s=2.0)

    started = time.monotonic()
    out = asyncio.run(main())
    accepted, refused, unsent = _balanced(out, 2000)
    assert time.monotonic() - started < 8  # it stopped by itself, long before the schedule's 10 s
    assert 100 <= accepted < 200 and refused >= 20 and unsent > 1000
    assert out.failure is not None and "\n" not in out.failure
    assert out.failure.startswith("target ingress ws://127.0.0.1:")
    assert "events in a row" in out.failure and "stopped publishing after" in out.failure
    assert sum(out.errors.values()) == refused == out.failed_requests
    assert set(out.errors) <= {"ws_closed", "connection"}, out.errors
    # every publisher connection was closed by the server (1001), then none could be opened again: the
    # pool gave up after 5 in a row
    failures = out.connection_failures
    assert failures["ws_closed"] == 4 and failures["connection"] >= 1 and failures.total() >= 5, failures


def test_ws_refused_handshake_is_one_line_naming_the_status() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    def refuse(_conn: ServerConnection, _request: Request) -> Response:
        return Response(404, "Not Found", Headers(), b"no publishers here\n")

    async def main() -> PublishOutcome:
        async with _ws_server(handler, process_request=refuse) as url:
            return await _publish(url, Schedule(rate=100, duration_s=10))

    out = asyncio.run(main())
    accepted, refused, _ = _balanced(out, 1000)
    assert accepted == 0 and refused >= 20
    assert out.failure is not None and "\n" not in out.failure
    assert "(last: ws_handshake: the WebSocket handshake failed:" in out.failure and "404" in out.failure


# -- tcp:// ------------------------------------------------------------------------------------------------


class _NatsLike:
    """The publisher's part of NATS's client protocol: INFO, CONNECT, PUB, PING/PONG; ``-ERR`` on a bad CONNECT."""

    def __init__(self, *, ping_every_s: float = 0.05) -> None:
        self.ping_every_s = ping_every_s
        self.connects: list[bytes] = []
        self.messages: list[tuple[bytes, bytes]] = []  # (subject, payload)
        self.pongs = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"test","max_payload":1048576}\r\n')
        pinger = asyncio.get_running_loop().create_task(self._ping(writer))
        try:
            while line := await reader.readline():
                op, _, rest = line.rstrip(b"\r\n").partition(b" ")
                if op == b"CONNECT":
                    self.connects.append(rest)
                    if not rest.startswith(b"{"):
                        writer.write(b"-ERR 'Unknown Protocol Operation'\r\n")
                        await writer.drain()
                        break
                elif op == b"PUB":
                    subject, size = rest.split(b" ")
                    payload = await reader.readexactly(int(size) + 2)
                    assert payload.endswith(b"\r\n")
                    self.messages.append((subject, payload[:-2]))
                elif op == b"PONG":
                    self.pongs += 1
                else:
                    writer.write(b"-ERR 'Unknown Protocol Operation'\r\n")
                    break
        finally:
            pinger.cancel()
            writer.close()

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.ping_every_s)
            writer.write(b"PING\r\n")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        async with self.server:
            yield f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


def test_tcp_pub_lines_carry_every_event_and_pings_are_answered() -> None:
    nats = _NatsLike()

    async def main() -> PublishOutcome:
        async with nats.running() as url:
            return await _publish(url, Schedule(rate=1000, duration_s=1.5),
                                  Dialect(channel="prices", publish_greeting=NATS_GREETING, publish_template=NATS_PUB))

    out = asyncio.run(main())
    assert out.ok and out.errors == {} and not out.connection_failures
    assert _balanced(out, 1500) == (1500, 0, 0)
    assert nats.connects and set(nats.connects) == {b'{"verbose":false}'}
    assert {subject for subject, _ in nats.messages} == {b"prices"}
    assert sorted(_ids([payload for _, payload in nats.messages])) == list(range(1500))
    assert nats.pongs >= 10  # every connection answered the server's pings


def test_tcp_err_on_a_bad_greeting_ends_the_stream_with_one_line() -> None:
    nats = _NatsLike()

    async def main() -> PublishOutcome:
        async with nats.running() as url:
            return await _publish(url, Schedule(rate=100, duration_s=10),
                                  Dialect(publish_greeting="CONNECT nonsense\\r\\n", publish_template=NATS_PUB))

    started = time.monotonic()
    out = asyncio.run(main())
    accepted, refused, _ = _balanced(out, 1000)
    assert time.monotonic() - started < 8
    assert refused >= 20 and out.errors.keys() == {"tcp_err"}
    assert out.connection_failures.keys() == {"tcp_err"} and out.connection_failures["tcp_err"] >= 5
    assert out.failure is not None and "\n" not in out.failure
    assert "(last: tcp_err: the server said '-ERR 'Unknown Protocol Operation'')" in out.failure
    assert not nats.messages or accepted >= len(nats.messages)


def test_line_pool_bounds_what_the_server_sends() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * (200 * 1024))  # no newline, ever
        await reader.read()

    outcomes: list[object] = []

    async def main() -> LinePublishPool:
        server = await asyncio.start_server(flood, "127.0.0.1", 0)
        async with server:
            url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            pool = LinePublishPool(url, size=1, timeout_s=1.0, max_connect_failures=2,
                                   on_result=lambda job, outcome, *_: outcomes.append(outcome))
            await pool.prewarm(1, within_s=1.0)
            for _ in range(100):
                if pool.broken:
                    break
                await asyncio.sleep(0.02)
            pool.submit((0, b"", b"PUB x 1\r\nx\r\n", b""))
            pool.abort()
            return pool

    pool = asyncio.run(main())
    assert pool.broken == "tcp_protocol" and outcomes == ["tcp_protocol"]
    assert pool.problem is not None and pool.problem.startswith("the server sent a line over 65,536 bytes: 'xxx")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed")
def test_real_nats_server_takes_every_pub_and_a_subscriber_sees_each_event() -> None:
    port = _free_port()
    server = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    seen: list[bytes] = []

    async def subscribe(ready: asyncio.Event, done: asyncio.Event) -> None:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b'CONNECT {"verbose":false}\r\nSUB ticks 1\r\nPING\r\n')
        while line := await reader.readline():
            if line == b"PONG\r\n":
                ready.set()
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                seen.append((await reader.readexactly(size + 2))[:-2])
                if len(seen) == 2000:
                    done.set()
            elif line == b"PING\r\n":
                writer.write(b"PONG\r\n")
        writer.close()

    async def main() -> PublishOutcome:
        ready, done = asyncio.Event(), asyncio.Event()
        task = asyncio.get_running_loop().create_task(subscribe(ready, done))
        await asyncio.wait_for(ready.wait(), scaled(10))
        out = await _publish(f"tcp://127.0.0.1:{port}", Schedule(rate=2000, duration_s=1),
                             Dialect(channel="ticks", publish_greeting=NATS_GREETING, publish_template=NATS_PUB))
        await asyncio.wait_for(done.wait(), scaled(10))
        task.cancel()
        return out

    try:
        out = asyncio.run(main())
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert out.ok and out.errors == {}
    assert _balanced(out, 2000) == (2000, 0, 0)
    assert sorted(_ids(seen)) == list(range(2000))


# -- http:// with a template ----------------------------------------------------------------------------


def test_http_template_is_one_event_per_request_made_when_written() -> None:
    seen: list[tuple[str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.content_type, await request.read()))
        return web.Response(status=202)

    async def main(template: str) -> PublishOutcome:
        runner, url = await serve_posts(handler)
        try:
            return await _publish(url, Schedule(kind="burst", burst_size=50, duration_s=0.5),
                                  Dialect(channel="c1", publish_template=template), batch=10)
        finally:
            await runner.cleanup()

    out = asyncio.run(main('{"items":[{"channel":"{channel}","id":{id},"content":{event|json}}]}'))
    assert _balanced(out, 50) == (50, 0, 0) and out.requests == 50  # --publish-batch gives way to the template
    assert {ctype for ctype, _ in seen} == {"application/json"}
    items = [json.loads(body)["items"][0] for _, body in seen]
    assert all(item["channel"] == "c1" and json.loads(item["content"])["id"] == item["id"] for item in items)
    assert sorted(item["id"] for item in items) == list(range(50))
    seen.clear()
    out = asyncio.run(main("event={event|json}"))
    assert _balanced(out, 50) == (50, 0, 0)
    assert {ctype for ctype, _ in seen} == {"text/plain"}
    assert all(body.startswith(b'event="{\\"id\\":') for _, body in seen)
