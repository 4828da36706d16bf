"""The ``socketio`` target: a real Socket.IO 4.8 server on Node, spoken to in Engine.IO framing, every event counted.

The end-to-end tests start ``targets/socketio_server/server.js`` (skipped
when Node or its npm packages are missing; ``.ci/run`` runs ``npm ci``). One
drives the target directly -- raw WebSocket sessions that answer ``0{…}``
with ``40`` and read ``42[…]`` packets, a urllib publisher -- so the launcher
is checked apart from the harness; one runs ``run_bench.py --target socketio``.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from helpers import scaled
from target_runs import listening_push_server, push_run_counts_every_event, target_cpu

import targets.socketio as socketio_target
from deliverybench.core.protocols import subscriber_protocol
from targets.base import TargetError, get_target
from targets.socketio import SocketIOTarget, missing, ready_port

needs_socketio = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def test_the_target_is_registered_and_offers_nothing_until_started() -> None:
    target = get_target("socketio")()
    assert isinstance(target, SocketIOTarget)
    assert target.ingress_url is None and target.egress_url("push") is None and target.pids() == []
    assert target.dialect("push").protocol == "socketio" and not target.dialect("push").publish_template


def test_the_ready_line_gives_the_port_and_nothing_else_does() -> None:
    assert ready_port('(node) warning\n{"ready":true,"pid":12,"port":40123}\n') == 40123
    assert ready_port('{"ready":true,"pid":12,"po') is None  # still being written
    assert ready_port('{"ready":true,"pid":12,"port":0}\nlistening on 80\n') is None


def test_missing_npm_packages_are_one_line_saying_how_to_install_them(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socketio_target, "SERVER_DIR", tmp_path)
    with pytest.raises(TargetError) as caught:
        SocketIOTarget().start()
    message = str(caught.value)
    if "node is not installed" not in message:
        assert message == f"the Socket.IO server's npm packages are not installed: run npm ci --prefix {tmp_path}"
    assert "\n" not in message


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=scaled(5)) as response:  # noqa: S310 - loopback test server
        return json.loads(response.read())


async def _subscribe_publish_count(target: SocketIOTarget, sessions: int, events: int) -> list[list[int]]:
    """Open ``sessions`` Socket.IO sessions over raw WebSockets, POST ``events``, return the ids each got."""
    reader = subscriber_protocol(target.dialect("push")).reader()
    url, ingress = target.egress_url("push"), target.ingress_url
    assert url is not None and ingress is not None
    conns = [await websockets.connect(url) for _ in range(sessions)]
    for ws in conns:
        opened = await asyncio.wait_for(ws.recv(), scaled(5))
        assert isinstance(opened, str) and opened.startswith("0{")
        await ws.send(reader.read(opened.encode()).replies[0].decode())  # 40: join the default namespace
    while _get(target.health_url or "")["connected"] < sessions:
        await asyncio.sleep(0.05)

    def publish() -> None:
        for i in range(events):
            body = b'{"id":%d,"due_ns":%d,"stream":"s","pad":""}' % (i, time.time_ns())
            request = urllib.request.Request(ingress, data=body, method="POST")
            with urllib.request.urlopen(request, timeout=scaled(5)) as response:  # noqa: S310 - loopback
                assert response.status == 204

    await asyncio.to_thread(publish)
    got: list[list[int]] = []
    for ws in conns:
        ids: list[int] = []
        while len(ids) < events:
            message = await asyncio.wait_for(ws.recv(), scaled(5))
            reading = reader.read(message.encode() if isinstance(message, str) else message)
            ids.extend(json.loads(event)["id"] for event in reading.events)
        got.append(ids)
        await ws.close()
    return got


@pytest.mark.e2e
@needs_socketio
def test_the_server_listens_on_loopback_only_emits_42_packets_and_leaves_nothing_behind() -> None:
    target = SocketIOTarget()
    with target:
        pid = target.pid
        listening = listening_push_server(target, pid)
        assert listening == {("127.0.0.1", target.port)}
        assert target.describe()["version"].startswith("4.8.")
        got = asyncio.run(_subscribe_publish_count(target, sessions=20, events=50))
        assert got == [list(range(50))] * 20  # every event, once, in order, on every session
        request = urllib.request.Request(target.ingress_url or "", data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=scaled(5))  # noqa: S310 - loopback test server
        assert refused.value.code == 400
    assert not Path(f"/proc/{pid}").exists() and not target.health()


@pytest.mark.e2e
@needs_socketio
def test_run_bench_counts_every_event_to_every_socketio_subscriber_once(tmp_path: Path) -> None:
    mode = push_run_counts_every_event(tmp_path, "socketio", users=300, rate=100, duration=2)
    assert mode["target"]["dialect"]["push"]["protocol"] == "socketio"
    cpu = target_cpu(mode)
    assert len(cpu) == 1 and max(cpu.values()) > 0, cpu  # node is one process
