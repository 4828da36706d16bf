"""The built-in push target's ``GET /sse`` and ``GET /longpoll``, read by plain clients (aiohttp, websockets).

One server for the module, with a short ``--sse-ping-s`` so the keep-alive comments can be seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from helpers import scaled
from websockets.asyncio.client import connect

from deliverybench.core.event import Event, encode_event
from targets._process import ServerProcess

PING_S = 0.3


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    proc = ServerProcess("targets.push_server", ["--host", "127.0.0.1", "--port", "0", "--ws-port", "0",
                                                 "--sse-ping-s", str(PING_S), "--buffer", "50"])
    proc.start()
    try:
        yield proc.urls
    finally:
        proc.stop()


def events(ids: range) -> list[bytes]:
    now = time.time_ns()
    return [encode_event(Event(i, now), now, 100) for i in ids]


async def stats(http: aiohttp.ClientSession, urls: dict[str, str]) -> dict[str, Any]:
    async with http.get(urls["stats"]) as answer:
        result: dict[str, Any] = await answer.json()
        return result


async def base_id(http: aiohttp.ClientSession, urls: dict[str, str]) -> int:
    """The next event id of the module's one stream (tests share the server)."""
    return int((await stats(http, urls))["last_id"]) + 1


async def publish(http: aiohttp.ClientSession, urls: dict[str, str], raws: list[bytes]) -> None:
    async with http.post(urls["ingress"], data=b"\n".join(raws)) as answer:
        assert answer.status == 202


async def until_stats(http: aiohttp.ClientSession, urls: dict[str, str], **want: int) -> None:
    deadline = time.monotonic() + scaled(5)
    while True:
        now = await stats(http, urls)
        if all(now[key] == value for key, value in want.items()):
            return
        assert time.monotonic() < deadline, f"stats never reached {want}: {now}"
        await asyncio.sleep(0.01)


async def block(stream: aiohttp.ClientResponse, *, skip_pings: bool = True) -> list[bytes]:
    """The lines of the next SSE block (up to a blank line), ping comments skipped unless asked for."""
    while True:
        lines: list[bytes] = []
        while (line := await asyncio.wait_for(stream.content.readline(), scaled(5))) not in (b"\n", b""):
            lines.append(line.rstrip(b"\n"))
        if not (skip_pings and lines == [b": ping"]):
            return lines


def sse_event(i: int, raw: bytes) -> list[bytes]:
    return [b"id: %d" % i, b"data: " + raw]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_sse_carries_every_event_with_its_id_the_same_stream_as_websocket(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http, connect(urls["push"], compression=None) as ws:
            first = await base_id(http, urls)
            streams = [await http.get(urls["sse"], headers={"Accept": "text/event-stream"}) for _ in range(2)]
            for stream in streams:
                assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
                assert await block(stream) == [b"retry: 1000"]
            await until_stats(http, urls, sse_streams=2, subscribers=3)
            raws = events(range(first, first + 4))
            await publish(http, urls, raws[:1])
            await publish(http, urls, raws[1:])  # an NDJSON batch: one block per event
            for stream in streams:
                assert [await block(stream) for _ in raws] == [sse_event(first + k, raw) for k, raw in enumerate(raws)]
            assert [await ws.recv(decode=False) for _ in raws] == raws
            assert (await stats(http, urls))["sse_events_sent"] >= 2 * len(raws)
            for stream in streams:
                stream.close()
            await until_stats(http, urls, sse_streams=0, subscribers=1)

    run(main())


def test_last_event_id_replays_what_the_buffer_holds_newer_than_it(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            first = await base_id(http, urls)
            raws = events(range(first, first + 6))
            await publish(http, urls, raws[:5])
            resumed = await http.get(urls["sse"], headers={"Last-Event-ID": str(first + 1)})
            assert await block(resumed) == [b"retry: 1000"]
            assert [await block(resumed) for _ in range(3)] == [sse_event(first + k, raws[k]) for k in (2, 3, 4)]
            fresh = await http.get(urls["sse"], headers={"Last-Event-ID": "not an id"})  # as if none was sent
            assert await block(fresh) == [b"retry: 1000"]
            await until_stats(http, urls, sse_streams=2)
            await publish(http, urls, raws[5:])
            assert await block(resumed) == sse_event(first + 5, raws[5])
            assert await block(fresh) == sse_event(first + 5, raws[5])
            assert (await stats(http, urls))["sse_resumed"] >= 1
            resumed.close()
            fresh.close()
            await until_stats(http, urls, sse_streams=0)

    run(main())


def test_an_idle_stream_gets_ping_comments(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            stream = await http.get(urls["sse"])
            assert await block(stream) == [b"retry: 1000"]
            began = time.monotonic()
            assert await block(stream, skip_pings=False) == [b": ping"]
            assert await block(stream, skip_pings=False) == [b": ping"]
            elapsed = time.monotonic() - began
            assert PING_S * 1.5 <= elapsed <= scaled(PING_S * 2 + 0.5), elapsed
            stream.close()

    run(main())


def test_health_and_stats_count_sse_streams_and_held_polls(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            await until_stats(http, urls, subscribers=0)
            streams = [await http.get(urls["sse"]) for _ in range(2)]
            after = str(await base_id(http, urls) - 1)
            polls = [asyncio.ensure_future(http.get(urls["longpoll"], params={"after": after, "hold": "10"}))
                     for _ in range(3)]
            await until_stats(http, urls, sse_streams=2, held_polls=3, subscribers=5)
            async with http.get(urls["health"]) as answer:
                assert await answer.json() == {"ok": True, "subscribers": 5}
            for stream in streams:
                stream.close()
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
            await until_stats(http, urls, sse_streams=0, held_polls=0, subscribers=0)  # seen at once, not at the hold

    run(main())


def test_longpoll_after_answers_when_newer_or_empty_after_the_hold(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            first = await base_id(http, urls)
            raws = events(range(first, first + 3))
            began = time.monotonic()
            async with http.get(urls["longpoll"], params={"after": str(first - 1), "hold": "0.2"}) as empty:
                assert empty.status == 200 and await empty.read() == b""
                assert empty.headers["X-Last-Id"] == str(first - 1)  # unchanged
            assert time.monotonic() - began >= 0.19
            held = asyncio.ensure_future(http.get(urls["longpoll"], params={"after": str(first - 1), "hold": "10"}))
            await until_stats(http, urls, held_polls=1)
            await publish(http, urls, raws)
            answer = await held
            assert answer.status == 200 and answer.headers["X-Last-Id"] == str(first + 2)
            assert (await answer.read()).split(b"\n") == raws
            async with http.get(urls["longpoll"], params={"after": str(first), "limit": "1"}) as page:
                assert await page.read() == raws[1]  # newer exists: answered at once, the poll contract
            for bad in ({"after": "x"}, {"hold": "nan"}, {"hold": "soon"}):
                async with http.get(urls["longpoll"], params=bad) as refused:
                    assert refused.status == 400

    run(main())


def test_longpoll_caching_style_answers_with_validators_and_304_after_the_hold(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            first = await base_id(http, urls)
            raws = events(range(first, first + 3))
            held = asyncio.ensure_future(http.get(urls["longpoll"], params={"hold": "10"}))  # no validators: from now
            await until_stats(http, urls, held_polls=1)
            await publish(http, urls, raws[:2])
            answer = await held
            assert answer.status == 200 and (await answer.read()).split(b"\n") == raws[:2]
            assert answer.headers["Etag"] == f'"{first + 1}"'
            asked = {"If-Modified-Since": answer.headers["Last-Modified"], "If-None-Match": answer.headers["Etag"]}
            async with http.get(urls["longpoll"], params={"hold": "0.2"}, headers=asked) as unchanged:
                assert unchanged.status == 304 and unchanged.headers["Etag"] == asked["If-None-Match"]
            await publish(http, urls, raws[2:])
            async with http.get(urls["longpoll"], params={"hold": "10"}, headers=asked) as following:
                assert following.status == 200 and await following.read() == raws[2]
                assert following.headers["Etag"] == f'"{first + 2}"'
            other_life = {**asked, "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
            async with http.get(urls["longpoll"], params={"hold": "0.1"}, headers=other_life) as restarted:
                assert restarted.status == 304 and restarted.headers["Etag"] == f'"{first + 2}"'  # from now

    run(main())


def test_open_streams_and_held_polls_do_not_delay_the_shutdown() -> None:
    proc = ServerProcess("targets.push_server", ["--host", "127.0.0.1", "--port", "0", "--ws-port", "0"])
    proc.start()

    async def main() -> float:
        async with aiohttp.ClientSession() as http:
            stream = await http.get(proc.urls["sse"])
            poll = asyncio.ensure_future(http.get(proc.urls["longpoll"], params={"hold": "60"}))
            await until_stats(http, proc.urls, sse_streams=1, held_polls=1)
            began = time.monotonic()
            await asyncio.to_thread(proc.stop)
            stopped = time.monotonic() - began
            stream.close()
            await asyncio.gather(poll, return_exceptions=True)
            return stopped

    assert run(main()) < scaled(3)


def test_a_stream_that_stops_reading_is_cut_not_buffered_without_end(urls: dict[str, str]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            await until_stats(http, urls, sse_streams=0)
            cut_before = (await stats(http, urls))["sse_cut_slow"]
            port = int(urls["sse"].split(":")[2].split("/")[0])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # never read from
            writer.write(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await until_stats(http, urls, sse_streams=1)
            now = time.time_ns()
            first = await base_id(http, urls)
            for batch in range(64):  # 40 MB: past the 16 MiB backlog and whatever the kernel buffers
                ids = range(first + 10 * batch, first + 10 * batch + 10)
                await publish(http, urls, [encode_event(Event(i, now), now, 64 * 1024) for i in ids])
            await until_stats(http, urls, sse_streams=0, sse_cut_slow=cut_before + 1)
            writer.close()

    run(main())
