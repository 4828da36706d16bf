"""The ``nats`` target: nats-server started by the harness, spoken to in NATS framing, every event counted.

The end-to-end tests start Debian's ``nats-server`` (skipped when it is not
installed; ``.ci/run`` installs it). One drives the target directly -- raw
WebSocket sessions that send the subscriber greeting and read ``MSG``
frames, a raw TCP publisher -- so the launcher is checked apart from the
harness; one runs ``run_bench.py --target nats``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import websockets
from helpers import scaled
from target_runs import listening_push_server, push_run_counts_every_event, target_cpu

from deliverybench.core.protocols import subscriber_protocol
from deliverybench.core.publish_template import PublishTemplate
from targets.base import get_target
from targets.nats import PUBLISH_GREETING, NatsPorts, NatsTarget, missing, render_config

needs_nats = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def test_the_target_is_registered_and_offers_nothing_until_started() -> None:
    target = get_target("nats")()
    assert isinstance(target, NatsTarget)
    assert target.ingress_url is None and target.egress_url("push") is None and target.pids() == []
    dialect = target.dialect("push")
    assert dialect.protocol == "nats" and dialect.channel == "deliverybench"
    assert dialect.publish_greeting == PUBLISH_GREETING and dialect.publish_greeting.endswith("\r\n")
    body = PublishTemplate.parse(dialect.publish_template).render(b'{"id":7}', channel="deliverybench", event_id=7)
    assert body == b'PUB deliverybench 8\r\n{"id":7}\r\n'


def test_every_listener_of_the_config_is_on_loopback() -> None:
    text = render_config(NatsPorts(client=4001, websocket=4002, monitor=4003))
    assert 'listen: "127.0.0.1:4001"' in text and 'http: "127.0.0.1:4003"' in text
    block = text[text.index("websocket {"):]
    assert 'listen: "127.0.0.1:4002"' in block and "no_tls: true" in block
    assert text.count("127.0.0.1:") == 3 and "0.0.0.0" not in text


async def _subscribe_publish_count(target: NatsTarget, sessions: int, events: int) -> list[list[int]]:
    """Open ``sessions`` WebSockets speaking NATS, publish ``events`` with PUB, return the ids each got."""
    dialect = target.dialect("push")
    protocol = subscriber_protocol(dialect)
    url = target.egress_url("push")
    assert url is not None and target.ingress_url is not None
    conns = []
    for _ in range(sessions):
        ws = await websockets.connect(url)
        for frame in protocol.greeting:
            await ws.send(frame)
        await ws.send(b"PING\r\n")  # the PONG says the SUB before it is in place
        conns.append((ws, protocol.reader()))
    for ws, _ in conns:
        while b"PONG" not in _as_bytes(await asyncio.wait_for(ws.recv(), scaled(5))):
            pass
    host, _, port = target.ingress_url.removeprefix("tcp://").rpartition(":")
    template = PublishTemplate.parse(dialect.publish_template)
    with socket.create_connection((host, int(port)), timeout=scaled(5)) as publisher:
        publisher.sendall(dialect.publish_greeting.encode())
        for i in range(events):
            event = b'{"id":%d,"due_ns":%d,"stream":"s","pad":""}' % (i, time.time_ns())
            publisher.sendall(template.render(event, channel=dialect.channel, event_id=i))
        got: list[list[int]] = []
        for ws, reader in conns:
            ids: list[int] = []
            while len(ids) < events:
                reading = reader.read(_as_bytes(await asyncio.wait_for(ws.recv(), scaled(5))))
                ids.extend(json.loads(event)["id"] for event in reading.events)
            got.append(ids)
            await ws.close()
    return got


def _as_bytes(message: str | bytes) -> bytes:
    return message.encode() if isinstance(message, str) else message


def _ports(target: NatsTarget) -> set[int]:
    assert target.ports is not None
    return {target.ports.client, target.ports.websocket, target.ports.monitor}


@pytest.mark.e2e
@needs_nats
def test_the_server_listens_on_loopback_only_delivers_msg_frames_and_leaves_nothing_behind() -> None:
    target = NatsTarget()
    with target:
        pid = target.pid
        listening = listening_push_server(target, pid)
        assert listening == {("127.0.0.1", port) for port in _ports(target)}
        got = asyncio.run(_subscribe_publish_count(target, sessions=20, events=50))
        assert got == [list(range(50))] * 20  # every event, once, in order, on every session
        with urllib.request.urlopen(target.health_url or "", timeout=5) as response:  # noqa: S310 - loopback
            assert json.loads(response.read()) == {"status": "ok"}
        workdir = target.workdir
        assert workdir is not None and (workdir / "nats.conf").is_file()
    assert not Path(f"/proc/{pid}").exists() and not workdir.exists() and not target.health()


@pytest.mark.e2e
@needs_nats
def test_run_bench_counts_every_event_to_every_nats_subscriber_once(tmp_path: Path) -> None:
    mode = push_run_counts_every_event(tmp_path, "nats", users=300, rate=100, duration=2)
    assert mode["target"]["dialect"]["push"]["protocol"] == "nats"
    cpu = target_cpu(mode)
    assert len(cpu) == 1 and max(cpu.values()) > 0, cpu  # nats-server is one process
