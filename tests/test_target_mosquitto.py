"""The ``mosquitto`` target: MQTT over WebSocket held to loopback, every event counted.

mosquitto's WebSocket listener binds every interface unless it also says
``socket_domain ipv4`` (measured with ``ss``); the first test checks that
the started broker listens on 127.0.0.1 alone. One test speaks MQTT to the
broker directly (the launcher apart from the harness); one runs
``run_bench.py --target mosquitto``.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import websockets
from helpers import scaled
from target_runs import push_run_counts_every_event, target_cpu

from deliverybench.core.mqtt import MqttReader, connect_packet, publish_packet, subscribe_packet
from deliverybench.core.protocols import MalformedMessage, subscriber_protocol
from deliverybench.core.publish_template import PublishTemplate, unescape_bytes
from targets.base import get_target
from targets.mosquitto import MosquittoTarget, missing

needs_mosquitto = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def test_the_dialect_greets_and_publishes_in_mqtt_packets() -> None:
    target = get_target("mosquitto")()
    assert isinstance(target, MosquittoTarget) and target.egress_url("push") is None
    dialect = target.dialect("push")
    assert unescape_bytes(dialect.publish_greeting) == connect_packet()
    body = PublishTemplate.parse(dialect.publish_template).render(b'{"id":7}', channel="deliverybench", event_id=7)
    assert body == publish_packet("deliverybench", b'{"id":7}') == b'0\x17\x00\x0ddeliverybench{"id":7}'
    protocol = subscriber_protocol(dialect)
    assert protocol.subprotocols == ("mqtt",) and protocol.binary and protocol.stateful
    assert protocol.greeting == (connect_packet(), subscribe_packet("deliverybench"))


def test_the_reader_keeps_a_split_packet_and_refuses_what_the_broker_refuses() -> None:
    reader = MqttReader()
    packet = publish_packet("t", b"x" * 300)  # a two-byte remaining length
    assert reader.read(packet[:1]).events == () and reader.pending
    assert reader.read(packet[1:2]).events == () and reader.pending
    reading = reader.read(packet[2:] + publish_packet("t", b"y") + b"\xd0\x00")
    assert reading.events == (b"x" * 300, b"y") and not reading.whole and not reader.pending
    with pytest.raises(MalformedMessage) as refused:
        MqttReader().read(b"\x20\x02\x00\x05")  # CONNACK: not authorised
    assert refused.value.kind == "refused_by_server"
    with pytest.raises(MalformedMessage, match="remaining length longer than 4 bytes"):
        MqttReader().read(b"\x30\xff\xff\xff\xff\x01")


@needs_mosquitto
@pytest.mark.e2e
def test_the_broker_listens_on_loopback_only_and_relays_mqtt_publishes() -> None:
    target = MosquittoTarget()
    target.start()
    try:
        assert target.pids() and target.health()
        pid = target.pids()[0]
        import psutil

        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening and {ip for ip, _ in listening} == {"127.0.0.1"}, listening

        async def subscribe_and_publish() -> list[bytes]:
            async with websockets.connect(str(target.egress_url("push")), subprotocols=["mqtt"]) as ws:
                reader, got = MqttReader(), []
                for greeting in subscriber_protocol(target.dialect("push")).greeting:
                    await ws.send(greeting)
                for _ in range(2):  # CONNACK, SUBACK
                    assert reader.read(await asyncio.wait_for(ws.recv(), scaled(5))).events == ()
                port = int(str(target.ingress_url).rsplit(":", 1)[1])
                with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as pub:
                    pub.sendall(unescape_bytes(target.dialect("push").publish_greeting))
                    template = PublishTemplate.parse(target.dialect("push").publish_template)
                    for i in range(50):
                        pub.sendall(template.render(b'{"id":%d}' % i, channel="deliverybench", event_id=i))
                    while len(got) < 50:
                        data = await asyncio.wait_for(ws.recv(), scaled(5))
                        got.extend(reader.read(data if isinstance(data, bytes) else data.encode()).events)
                return got

        assert asyncio.run(subscribe_and_publish()) == [b'{"id":%d}' % i for i in range(50)]
    finally:
        target.stop()
    assert not target.pids() and target.workdir is None


@needs_mosquitto
@pytest.mark.e2e
def test_run_bench_counts_every_event_to_every_mqtt_subscriber_once(tmp_path: Path) -> None:
    mode = push_run_counts_every_event(tmp_path, "mosquitto", users=200, rate=50)
    assert mode["target"]["dialect"]["push"]["protocol"] == "mqtt"
    assert any(cpu > 0 for cpu in target_cpu(mode).values())
