"""The push receiver against a real server that writes exactly the bytes a test chooses.

The server (on 127.0.0.1, port 0) completes a genuine WebSocket handshake
and then writes raw frames -- whole, split across writes, fragmented,
pings, closes, masked, oversize, binary -- so every path of
``deliverybench/adapters/ws_receiver.py`` is met on a real socket. The
audit must stay exact whatever the framing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from deliverybench.adapters import undecodable
from deliverybench.adapters.ws_receiver import PushReceiver, PushSession, PushSessionOptions
from deliverybench.core.dialect import Dialect
from deliverybench.core.event import Event, encode_event, read_head
from deliverybench.core.process_recorder import ProcessRecorder
from deliverybench.core.protocols import SubscriberProtocol, subscriber_protocol

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, *, opcode: int = 1, fin: bool = True, mask: bytes | None = None) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + payload
    return head + payload


def event(i: int, size: int = 256) -> bytes:
    now = time.time_ns()
    return encode_event(Event(i, now - 1_000_000), now - 500_000, size)


class RawServer:
    """Accepts one WebSocket client and hands its writer to the test's script."""

    def __init__(self, script: Callable[[RawServer], Awaitable[None]]) -> None:
        self.script = script
        self.received = bytearray()
        self.writer: asyncio.StreamWriter | None = None
        self.done = asyncio.Event()
        self.connections = 0
        self.peers: list[Any] = []
        self.request = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername"))
        request = await reader.readuntil(b"\r\n\r\n")
        self.request = self.request or request
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        self.writer = writer

        async def pump() -> None:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                self.received += data

        reading = asyncio.get_running_loop().create_task(pump())
        if self.connections == 1:
            await self.script(self)
            self.done.set()
        await asyncio.sleep(0.3)
        reading.cancel()

    async def send(self, *chunks: bytes, pause: float = 0.0) -> None:
        assert self.writer is not None
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)


def run(script: Callable[[RawServer], Awaitable[None]], *, max_size: int = 2**20,
        after: float = 0.3, local_addr: str | None = None,
        protocol: SubscriberProtocol | None = None) -> tuple[ProcessRecorder, RawServer, list[Any]]:
    """Serve ``script`` to one PushSession; return the recorder (after a final hand-over)."""
    recorder = ProcessRecorder("push", id_limit=1000)
    notes: list[Any] = []

    async def main() -> None:
        raw = RawServer(script)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = PushSession("s", recorder, PushSessionOptions(url=f"ws://127.0.0.1:{port}/", max_size=max_size,
                                                               reconnect_delay_s=0.1, max_reconnects=1,
                                                               local_addr=local_addr, protocol=protocol),
                              notify=lambda ok, error: notes.append((ok, error)))
        session.start()
        await asyncio.wait_for(raw.done.wait(), 10)
        await asyncio.sleep(after)
        session.stop(time.time_ns())
        await asyncio.sleep(0.2)
        notes.append(raw)
        server.close()

    uvloop.run(main())
    return recorder, notes[-1], notes[:-1]


def delivered(recorder: ProcessRecorder) -> tuple[int, Any]:
    payload = recorder.take_payload(final=True, now_ns=time.time_ns())
    records = payload["subscribers"]
    return payload["recorder"].count("delivery"), (records, payload["errors"])


def test_whole_frames_in_one_chunk_are_each_recorded() -> None:
    async def script(raw: RawServer) -> None:
        await raw.send(b"".join(frame(event(i)) for i in range(10)))

    recorder, _, notes = run(script)
    count, (records, errors) = delivered(recorder)
    assert notes[0] == (True, None)
    assert count == 10 and records[0].received.unique == 10 and not errors


def test_a_frame_split_across_writes_is_recorded_once_when_whole() -> None:
    data = b"".join(frame(event(i, 300)) for i in range(3))

    async def script(raw: RawServer) -> None:
        await raw.send(data[:1], data[1:3], data[3:200], data[200:650], data[650:], pause=0.05)

    recorder, _, _ = run(script)
    count, (records, errors) = delivered(recorder)
    assert count == 3 and records[0].received.duplicates == 0 and not errors


def test_a_fragmented_message_is_joined_by_way_of_the_library() -> None:
    body = event(1)

    async def script(raw: RawServer) -> None:
        await raw.send(frame(body[:50], fin=False), frame(body[50:120], opcode=0, fin=False),
                       frame(body[120:], opcode=0), frame(event(2)))

    recorder, _, _ = run(script)
    count, (records, errors) = delivered(recorder)
    assert count == 2 and records[0].received.unique == 2 and not errors


def test_pings_are_answered_and_deliveries_continue() -> None:
    async def script(raw: RawServer) -> None:
        await raw.send(frame(event(1)) + frame(b"are-you-there", opcode=9) + frame(event(2)))
        await asyncio.sleep(0.2)

    recorder, raw, _ = run(script)
    count, _ = delivered(recorder)
    assert count == 2
    # the client's pong: masked, opcode 10, carrying the ping's payload
    assert raw.received[0] == 0x8A and raw.received[1] == 0x80 | len(b"are-you-there")
    mask, masked = raw.received[2:6], raw.received[6:6 + 13]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(masked)) == b"are-you-there"


def _unmask(data: bytes | bytearray) -> tuple[int, bytes]:
    """The opcode and payload of the first (masked, short) frame a client sent."""
    assert data[1] & 0x80, "a client frame must be masked"
    n, mask = data[1] & 0x7F, data[2:6]
    return data[0], bytes(b ^ mask[i % 4] for i, b in enumerate(data[6:6 + n]))


def test_an_idle_sessions_own_close_is_a_masked_1000() -> None:
    """An open session that has only seen whole data frames keeps no library protocol; closing it makes one."""
    async def script(raw: RawServer) -> None:
        await raw.send(frame(event(1)))

    recorder, raw, _ = run(script, after=0.1)
    opcode, payload = _unmask(raw.received)
    assert opcode == 0x88 and int.from_bytes(payload[:2], "big") == 1000
    assert delivered(recorder)[0] == 1


def test_a_ping_inside_a_fragmented_message_is_answered_and_the_message_joined() -> None:
    body = event(1)

    async def script(raw: RawServer) -> None:
        await raw.send(frame(body[:50], fin=False) + frame(b"mid", opcode=9) + frame(body[50:], opcode=0))
        await asyncio.sleep(0.2)

    recorder, raw, _ = run(script)
    assert _unmask(raw.received) == (0x8A, b"mid")
    count, (records, errors) = delivered(recorder)
    assert count == 1 and records[0].received.unique == 1 and not errors


def test_a_server_close_is_answered_counted_and_reconnected() -> None:
    async def script(raw: RawServer) -> None:
        await raw.send(frame(event(1)) + frame((1001).to_bytes(2, "big") + b"going away", opcode=8))
        await asyncio.sleep(0.1)
        assert raw.writer is not None
        raw.writer.close()

    recorder, raw, _ = run(script, after=0.6)
    assert raw.received[0] == 0x88  # the client echoed the close
    assert raw.connections == 2  # and came back
    count, (records, errors) = delivered(recorder)
    assert count == 1 and errors == {"closed_1001": 1}
    assert len(records[0].windows) == 2


@pytest.mark.parametrize("bad, code", [
    (frame(b'{"id":1}', mask=b"\x01\x02\x03\x04"), 1002),     # servers must not mask
    (bytes([0xC1, 5]) + b"hello", 1002),                       # RSV1 without an extension
    (frame(b"x" * 2000), 1009),                                # over max_size
], ids=["masked", "rsv", "too-big"])
def test_protocol_violations_fail_the_connection_with_the_right_code(bad: bytes, code: int) -> None:
    async def script(raw: RawServer) -> None:
        await raw.send(frame(event(1)) + bad)
        await asyncio.sleep(0.2)

    recorder, raw, _ = run(script, max_size=1000)
    assert raw.received[0] == 0x88 and raw.received[1] & 0x80  # a masked close frame from the client
    length = raw.received[1] & 0x7F
    mask, masked = raw.received[2:6], raw.received[6:6 + length]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
    assert int.from_bytes(payload[:2], "big") == code
    count, _ = delivered(recorder)
    assert count == 1


def test_binary_garbage_and_hostile_values_are_counted_not_recorded() -> None:
    now = time.time_ns()

    async def script(raw: RawServer) -> None:
        await raw.send(frame(b"\xff\xfe\x00", opcode=2)
                       + frame(b'{"id":5,"due_ns":%d,"sent_ns":1,"stream":"s","pad":""}' % 2**70)
                       + frame(b'{"id":%d,"due_ns":%d,"sent_ns":%d,"stream":"s","pad":""}' % (2**40, now, now))
                       + frame(b'{"id":6,"due_ns":' + str(now).encode())
                       + frame(event(7)))

    recorder, _, _ = run(script)
    count, (records, errors) = delivered(recorder)
    assert count == 1 and records[0].received.unique == 1
    assert errors == {"malformed_event": 2, "malformed_due": 1, "unexpected_id": 1}


def test_a_handshake_refused_is_named() -> None:
    recorder = ProcessRecorder("push", id_limit=10)
    notes: list[Any] = []

    async def main() -> None:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = PushSession("s", recorder, PushSessionOptions(url=f"ws://127.0.0.1:{port}/", max_reconnects=0),
                              notify=lambda ok, error: notes.append((ok, error)))
        session.start()
        await asyncio.sleep(0.5)
        session.stop(time.time_ns())
        server.close()

    uvloop.run(main())
    assert notes and notes[0][0] is False and notes[0][1].startswith("handshake:")
    assert recorder.connect_failures == {"connect_handshake": 1}


def test_a_session_connects_from_its_source_address() -> None:
    """--source-addresses: the port is picked at connect time (IP_BIND_ADDRESS_NO_PORT), the address is ours."""
    async def script(raw: RawServer) -> None:
        await raw.send(frame(event(1)))

    recorder, raw, notes = run(script, local_addr="127.0.0.2")
    assert notes[0] == (True, None)
    assert raw.peers[0][0] == "127.0.0.2" and raw.peers[0][1] > 0
    assert delivered(recorder)[0] == 1


# -- dialects: greetings, replies, readers ------------------------------------------------------------
def client_frames(data: bytes | bytearray) -> list[bytes]:
    """The payloads of the (masked, whole) frames a client wrote."""
    out, i = [], 0
    while i < len(data):
        n, i = data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        mask, i = data[i:i + 4], i + 4
        out.append(bytes(b ^ mask[k % 4] for k, b in enumerate(data[i:i + n])))
        i += n
    return out


def test_graphql_ws_offers_its_subprotocol_greets_subscribes_on_ack_and_answers_pings() -> None:
    nxt = b'{"id":"1","type":"next","payload":{"data":{"onEvent":%b}}}'

    async def script(raw: RawServer) -> None:
        await asyncio.sleep(0.1)
        await raw.send(frame(b'{"type":"connection_ack"}') + frame(b'{"type":"ping"}'))
        await asyncio.sleep(0.1)
        second = frame(nxt % event(2))
        await raw.send(frame(nxt % event(1)), second, second, pause=0.05)  # whole frames: the last one remembered

    dialect = Dialect(protocol="graphql-ws", subscribe_message="subscription { onEvent }")
    recorder, raw, _ = run(script, protocol=subscriber_protocol(dialect))
    assert b"sec-websocket-protocol: graphql-transport-ws\r\n" in raw.request.lower()
    init, subscribe, pong = client_frames(raw.received)[:3]
    assert init == b'{"type":"connection_init"}' and pong == b'{"type":"pong"}'
    assert json.loads(subscribe)["payload"]["query"] == "subscription { onEvent }"
    count, (records, errors) = delivered(recorder)
    assert count == 2 and records[0].received.unique == 2 and records[0].received.duplicates == 1 and not errors


def test_a_raw_subscribe_message_is_sent_once_open_and_envelopes_are_read() -> None:
    async def script(raw: RawServer) -> None:
        await asyncio.sleep(0.1)
        await raw.send(frame(b'{"type":"event","data":%b}' % event(1)),
                       frame(b'{"type":"event","data":%b}' % event(2)) + frame(b'{"type":"welcome"}'))

    dialect = Dialect(subscribe_message='{"subscribe":"{channel}"}', event_path="/data", channel="c1")
    undecodable.forget()
    recorder, raw, _ = run(script, protocol=subscriber_protocol(dialect))
    assert client_frames(raw.received)[0] == b'{"subscribe":"c1"}'
    assert b"sec-websocket-protocol" not in raw.request.lower()
    count, (_, errors) = delivered(recorder)
    assert count == 2 and errors == {"malformed_event": 1}
    assert undecodable.first == ("\'{\"type\":\"welcome\"}\'", "a JSON message with the event at /data")


def test_nats_operations_split_across_frames_and_chunks_are_read_once_each() -> None:
    msgs = [b"MSG deliverybench 1 %d\r\n%b\r\n" % (len(e), e) for e in (event(1), event(2), event(3))]
    stream = b"INFO {}\r\n" + msgs[0] + b"PING\r\n" + msgs[1] + msgs[2]

    async def script(raw: RawServer) -> None:
        data = b"".join(frame(stream[i:i + 50]) for i in range(0, len(stream), 50))
        await raw.send(data[:7], data[7:120], data[120:], pause=0.05)
        await raw.send(frame(msgs[0]))  # whole: read, then remembered

    recorder, raw, _ = run(script, protocol=subscriber_protocol(Dialect(protocol="nats")))
    greeting, pong = client_frames(raw.received)[:2]
    assert greeting.startswith(b"CONNECT ") and greeting.endswith(b"SUB deliverybench 1\r\n")
    assert pong == b"PONG\r\n"
    count, (records, errors) = delivered(recorder)
    assert count == 3 and records[0].received.unique == 3 and records[0].received.duplicates == 1 and not errors


class _Wire:
    """A transport that keeps what the receiver writes."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data


def _open_receiver(recorder: ProcessRecorder, dialect: Dialect, name: str = "s") -> PushReceiver:
    """A receiver past its handshake (no socket): chunks go straight to ``data_received``."""
    options = PushSessionOptions(url="ws://127.0.0.1:9/", protocol=subscriber_protocol(dialect))
    session = PushSession(name, recorder, options, notify=lambda ok, error: None)
    receiver = PushReceiver(session)
    receiver.transport = _Wire()  # type: ignore[assignment]
    receiver.opened = receiver.live = True
    receiver.proto = None
    recorder.intake.open(session.index, time.time_ns())
    return receiver


def test_a_chunk_remembered_for_one_protocol_means_nothing_to_another() -> None:
    recorder = ProcessRecorder("push", id_limit=100)
    chunk = frame(b'42["event",%b]' % event(1))
    socketio = _open_receiver(recorder, Dialect(protocol="socketio"), "a")
    other = _open_receiver(recorder, Dialect(protocol="socketio"), "b")
    raw = _open_receiver(recorder, Dialect(), "c")
    for receiver in (socketio, other, raw, socketio):
        receiver.data_received(chunk)
    assert [read_head(event(1))[0]] * 3 == list(recorder.intake.ids)
    assert list(recorder.intake.sub) == [socketio.index, other.index, socketio.index]
    assert recorder.errors == {"malformed_event": 1}  # raw: a Socket.IO packet is no event
    socketio.data_received(frame(b'0{"sid":"x"}') + frame(b"2"))
    assert client_frames(socketio.transport.written) == [b"40", b"3"]  # type: ignore[union-attr]


def test_while_a_nats_operation_is_pending_no_chunk_is_taken_from_the_cache() -> None:
    recorder = ProcessRecorder("push", id_limit=100)
    payload = b'{"data":%b}' % event(1)
    operation = b"MSG deliverybench 1 %d\r\n%b\r\n" % (len(payload), payload)
    whole = frame(operation)
    receiver = _open_receiver(recorder, Dialect(protocol="nats", event_path="/data"))
    receiver.data_received(whole)  # read, remembered
    receiver.data_received(whole)  # remembered
    # an operation whose payload is the next two frames: the remembered chunk is now part of a payload
    receiver.data_received(frame(b"MSG deliverybench 1 %d\r\n" % (len(operation) + 3)))
    receiver.data_received(whole)
    receiver.data_received(frame(b"xyz\r\n"))
    assert len(recorder.intake.ids) == 2 and recorder.errors == {"malformed_event": 1}
    receiver.data_received(whole)  # nothing pending: remembered again
    assert len(recorder.intake.ids) == 3


def test_mqtt_greets_in_binary_frames_and_reads_packets_split_across_them() -> None:
    from deliverybench.core.mqtt import connect_packet, publish_packet, subscribe_packet

    connack, suback = b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x00"
    packets = connack + suback + publish_packet("c", event(1)) + publish_packet("c", event(2))

    async def script(raw: RawServer) -> None:
        await asyncio.sleep(0.1)
        await raw.send(frame(packets[:30], opcode=2), frame(packets[30:], opcode=2))

    recorder, raw, _ = run(script, protocol=subscriber_protocol(Dialect(protocol="mqtt", channel="c")))
    assert b"sec-websocket-protocol: mqtt\r\n" in raw.request.lower()
    assert raw.received[0] == 0x82  # binary, as MQTT over WebSocket must be
    assert client_frames(raw.received)[:2] == [connect_packet(), subscribe_packet("c")]
    count, (_, errors) = delivered(recorder)
    assert count == 2 and not errors
