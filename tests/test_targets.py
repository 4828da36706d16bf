"""Targets against real servers over loopback: no mocks, every port is 0."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect

from deliverybench.core.event import Event, encode_event
from targets import Target, TargetError, available_targets, get_target
from targets._process import ServerProcess
from targets.builtin import PushTarget, SinkTarget
from targets.relay import RelayTarget
from targets.start import StartedTarget, TargetUrls, start_target

#: Scale every wait on a slow machine.
SLOW = 1.0


# -- helpers ------------------------------------------------------------------


def events(ids: range, size: int = 120) -> list[bytes]:
    now = time.time_ns()
    return [encode_event(Event(i, now), now, size) for i in ids]


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with session.post(url, data=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def subscribe(target: Target, n: int) -> list[ClientConnection]:
    """Open ``n`` sessions and wait until the server counts them all.

    The client's handshake can complete before the server's handler has
    registered the session, so a publish right after connect could miss it.
    """
    url = target.egress_url("push")
    assert url is not None
    clients = [await connect(url, compression=None) for _ in range(n)]
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 5 * SLOW
        while (await get_json(session, target.health_url))["subscribers"] < n:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "subscribers never registered"
            await asyncio.sleep(0.01)
    return clients


async def nothing_more(ws: ClientConnection, wait_s: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait_s * SLOW)
    except TimeoutError:
        return True
    return False


@pytest.fixture(scope="module")
def push() -> Iterator[PushTarget]:
    with PushTarget() as target:
        yield target


# -- push server --------------------------------------------------------------


def test_push_fans_out_each_event_verbatim_and_in_order(push: PushTarget) -> None:
    sent = events(range(3))

    async def scenario() -> None:
        clients = await subscribe(push, 5)
        async with aiohttp.ClientSession() as session:
            status, reply = await post(session, push.ingress_url, b"\n".join(sent) + b"\n")  # type: ignore[arg-type]
        assert (status, reply) == (202, {"accepted": 3})
        for ws in clients:
            got = [await asyncio.wait_for(ws.recv(), 2 * SLOW) for _ in sent]
            assert all(isinstance(frame, str) for frame in got), "events must be text frames"
            assert [frame.encode() for frame in got] == sent
        assert all(await asyncio.gather(*(nothing_more(ws) for ws in clients))), "no extra frames"
        for ws in clients:
            await ws.close()

    asyncio.run(scenario())


def test_push_echoes_what_a_subscriber_sends(push: PushTarget) -> None:
    async def scenario() -> None:
        [ws] = await subscribe(push, 1)
        await ws.send("ping 42")
        assert await asyncio.wait_for(ws.recv(), 2 * SLOW) == "ping 42"
        await ws.send(b"\x00\xffbinary")
        assert await asyncio.wait_for(ws.recv(), 2 * SLOW) == b"\x00\xffbinary"
        await ws.close()

    asyncio.run(scenario())


def test_poll_returns_events_after_n(push: PushTarget) -> None:
    sent = events(range(1000, 1005))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            status, _ = await post(session, push.ingress_url, b"\n".join(sent))  # type: ignore[arg-type]
            assert status == 202
            async with session.get(push.egress_url("poll"), params={"after": "1002"}) as resp:  # type: ignore[arg-type]
                assert resp.status == 200
                assert resp.headers["X-Last-Id"] == "1004"
                assert (await resp.read()).split(b"\n") == sent[3:]

    asyncio.run(scenario())


def test_bad_publish_bodies_are_rejected_whole(push: PushTarget) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            before = (await get_json(session, push.stats_url))["published"]  # type: ignore[arg-type]
            for body in (b"", b"\n \n", b"not json", b"[1,2]", events(range(1))[0] + b"\n{garbage", b"\xff\xfe"):
                status, reply = await post(session, push.ingress_url, body)  # type: ignore[arg-type]
                assert status == 400, body
                assert "error" in reply
            assert (await get_json(session, push.stats_url))["published"] == before  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_health_and_stats_count_exactly() -> None:
    async def scenario(target: PushTarget) -> None:
        clients = await subscribe(target, 3)
        async with aiohttp.ClientSession() as session:
            assert await get_json(session, target.health_url) == {"ok": True, "subscribers": 3}  # type: ignore[arg-type]
            await post(session, target.ingress_url, b"\n".join(events(range(3))))  # type: ignore[arg-type]
            await post(session, target.ingress_url, events(range(3, 4))[0])  # type: ignore[arg-type]
            for ws in clients:
                for _ in range(4):
                    await asyncio.wait_for(ws.recv(), 2 * SLOW)
            await clients[0].send("x")
            await asyncio.wait_for(clients[0].recv(), 2 * SLOW)
            stats = await get_json(session, target.stats_url)  # type: ignore[arg-type]
        assert stats["published"] == 4
        assert stats["frames_sent"] == 4 * 3
        assert stats["subscribers"] == 3
        assert stats["connections_total"] == 3
        assert stats["echoed"] == 1
        for ws in clients:
            await ws.close()

    with PushTarget(buffer=100) as target:
        assert target.health()
        assert len(target.pids()) == 1
        assert set(target.modes()) == {"push", "sse", "longpoll", "poll"}  # issue 26: one broadcast, four egresses
        assert target.egress_url("callback") is None
        asyncio.run(scenario(target))


def test_delay_ms_holds_delivery_for_push_and_poll() -> None:
    async def scenario(target: PushTarget) -> float:
        [ws] = await subscribe(target, 1)
        async with aiohttp.ClientSession() as session:
            t0 = time.monotonic()
            await post(session, target.ingress_url, events(range(1))[0])  # type: ignore[arg-type]
            async with session.get(target.egress_url("poll")) as resp:  # type: ignore[arg-type]
                assert await resp.read() == b"", "poll must not see a held event"
            await asyncio.wait_for(ws.recv(), 2 * SLOW)
            elapsed = time.monotonic() - t0
        await ws.close()
        return elapsed

    with PushTarget(delay_ms=100) as target:
        elapsed = asyncio.run(scenario(target))
    assert 0.100 <= elapsed < 0.400 * SLOW


def test_stop_is_idempotent_and_exits_cleanly() -> None:
    target = PushTarget()
    target.stop()  # never started: nothing to do
    target.start()
    proc = target._proc
    assert proc is not None and proc.alive
    target.stop()
    target.stop()
    assert proc.returncode == 0, "SIGTERM must be a clean exit"
    assert target.pids() == [] and not target.health()


def test_stop_after_the_process_died() -> None:
    target = SinkTarget()
    target.start()
    assert target._proc is not None
    target._proc._proc.kill()  # type: ignore[union-attr]
    target._proc._proc.wait()  # type: ignore[union-attr]
    target.stop()
    assert target.pids() == []
    assert target._proc.log_path is not None, "a crashed server keeps its log"
    target._proc.log_path.unlink()


# -- sink -----------------------------------------------------------------------


def test_sink_counts_requests_bytes_and_status() -> None:
    async def scenario(target: SinkTarget) -> None:
        url = target.egress_url("burst")
        assert url is not None and url.endswith("/hook")
        async with aiohttp.ClientSession() as session:
            for body in (b"a", b"bb" * 100, b""):
                async with session.post(url, data=body) as resp:
                    assert resp.status == 202
            stats = await get_json(session, target.stats_url)  # type: ignore[arg-type]
        assert stats == {"requests": 3, "bytes": 201, "by_status": {"202": 3}}

    with SinkTarget(status=202) as target:
        assert target.ingress_url is None and target.modes() == ["burst"]
        asyncio.run(scenario(target))


# -- relay (external) ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relay_unreachable_port_is_a_target_error() -> None:
    port = _closed_port()
    relay = RelayTarget(publish_url=f"http://127.0.0.1:{port}/publish", subscribe_url=f"ws://127.0.0.1:{port}/")
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="cannot reach relay publish"):
        relay.start()
    assert time.monotonic() - t0 < 4 * SLOW
    assert not relay.health()


@pytest.mark.parametrize(
    ("publish_url", "subscribe_url", "role"),
    [
        ("ftp://127.0.0.1:1/", "ws://127.0.0.1:1/", "publish"),
        ("http://127.0.0.1:1/", "http://127.0.0.1:1/", "subscribe"),
        ("http://127.0.0.1:99999/", "ws://127.0.0.1:1/", "publish"),
        ("127.0.0.1:1", "ws://127.0.0.1:1/", "publish"),
    ],
)
def test_relay_bad_urls_are_target_errors(publish_url: str, subscribe_url: str, role: str) -> None:
    with pytest.raises(TargetError, match=f"relay {role} URL") as info:
        RelayTarget(publish_url=publish_url, subscribe_url=subscribe_url).start()
    assert "\n" not in str(info.value)


def test_relay_attaches_to_a_running_push_server(push: PushTarget) -> None:
    relay = RelayTarget(publish_url=push.ingress_url, subscribe_url=push.egress_url("push"))  # type: ignore[arg-type]
    with relay:
        assert relay.health()
        assert relay.pids() == []
        info = relay.describe()
        assert info["kind"] == "external"
        assert info["urls"] == {"ingress": push.ingress_url, "push": push.egress_url("push")}


# -- registry -----------------------------------------------------------------


def test_registry_lists_builtins() -> None:
    found = available_targets()
    assert {"push", "callback", "sink", "relay"} <= set(found)
    assert found["push"] is PushTarget and get_target("relay") is RelayTarget
    assert all(issubclass(cls, Target) for cls in found.values())


def test_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(TargetError, match=r"unknown target 'nope'; available: .*push"):
        get_target("nope")


def test_constructors_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        PushTarget("127.0.0.1")  # type: ignore[misc]
    with pytest.raises(TypeError):
        SinkTarget(colour="blue")  # type: ignore[call-arg]


# -- ServerProcess ------------------------------------------------------------


def test_server_that_never_gets_ready_is_killed_with_its_stderr() -> None:
    proc = ServerProcess("tests._never_ready", [], ready_timeout_s=1.0 * SLOW)
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="not ready after") as info:
        proc.start()
    assert time.monotonic() - t0 < 3.0 * SLOW
    assert "booting, slowly" in str(info.value)
    assert not proc.alive
    assert proc.log_path is not None, "a failed server keeps its log for the user"
    proc.log_path.unlink()


def test_server_that_exits_early_reports_why() -> None:
    proc = ServerProcess("targets.push_server", ["--buffer", "0"], ready_timeout_s=10.0 * SLOW)
    with pytest.raises(TargetError, match="exited with code 2") as info:
        proc.start()
    assert "--buffer must be >= 1" in str(info.value)
    assert proc.log_path is not None
    proc.log_path.unlink()


# -- one start function for run_bench.py and plain locust -f ---------------------


def test_a_locustfile_given_urls_attaches_and_starts_nothing() -> None:
    started = start_target("push", {"publish_url": "http://127.0.0.1:9/publish", "subscribe_url": "ws://127.0.0.1:9/",
                                    "target_name": "", "stats_url": "http://127.0.0.1:9/stats", "target_pids": "12,34"})
    assert started.target is None
    assert started.urls == TargetUrls("external", ingress="http://127.0.0.1:9/publish", egress="ws://127.0.0.1:9/",
                                      stats="http://127.0.0.1:9/stats", pids=(12, 34))
    assert started.describe() == {"name": "external", "kind": "external",
                                  "urls": {"ingress": "http://127.0.0.1:9/publish", "push": "ws://127.0.0.1:9/"}}


def test_without_urls_the_built_in_target_of_the_mode_starts() -> None:
    started = start_target("poll", {"publish_url": "", "subscribe_url": "", "target_delay_ms": 0.0})
    try:
        assert isinstance(started.target, PushTarget)  # poll is served by the push server's poll URL
        urls = started.urls
        assert urls.name == "push" and urls.accepts_batches and urls.pids == tuple(started.target.pids())
        assert urls.egress == started.target.egress_url("poll") and urls.ingress == started.target.ingress_url
        assert started.describe()["kind"] == "builtin"
    finally:
        started.stop()
    assert not started.target.health()


def test_run_bench_s_relay_attaches_and_a_missing_consumer_is_a_target_error(push: PushTarget) -> None:
    values = {"target": "relay", "publish_url": push.ingress_url, "subscribe_url": push.egress_url("push"),
              "poll_url": "", "callback_url": ""}
    started = start_target("push", values)
    assert started == StartedTarget("push", None, TargetUrls("relay", ingress=push.ingress_url or "",
                                                             egress=push.egress_url("push") or ""))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TargetError, match="cannot reach consumer"):
        start_target("burst", {"consumer_url": f"http://127.0.0.1:{port}/hooks"})


def test_target_host_binds_the_builtin_target_where_load_machines_reach_it() -> None:
    """--target-host: the built-in target's sockets and URLs on that address; a real server refuses it."""
    started = start_target("push", {"target": "builtin", "target_host": "127.0.0.2"})
    try:
        assert started.urls.egress.startswith("ws://127.0.0.2:") and started.urls.ingress.startswith("http://127.0.0.2:")
        port = int(started.urls.egress.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.2", port), timeout=2):
            pass
        with pytest.raises(OSError):  # not on loopback's usual address: bound to the one asked for
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        started.stop()
    with pytest.raises(TargetError, match="--target-host binds the built-in targets; the nats target listens on "
                                          "127.0.0.1"):
        start_target("push", {"target": "nats", "target_host": "127.0.0.2"})


def test_a_mode_a_named_target_does_not_offer_is_refused_before_its_server_starts() -> None:
    """``locust -f`` with ``--target nats`` and callback mode: one line, and no server was started for it."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with pytest.raises(TargetError, match=r"^the nats target offers push, not callback$"):
        start_target("callback", {"target": "nats"})
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= before
    assert get_target("nchan").offers == ("push", "sse", "longpoll")
    assert get_target("push").offers == ("push", "sse", "longpoll", "poll")  # from its egress keys
    assert get_target("relay").offers is None  # an attached server: known only from the URLs given
