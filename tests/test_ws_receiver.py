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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from deliverybench.adapters.ws_receiver import PushSession, PushSessionOptions
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder

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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername"))
        request = await reader.readuntil(b"\r\n\r\n")
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
        after: float = 0.3, local_addr: str | None = None) -> tuple[ProcessRecorder, RawServer, list[Any]]:
    """Serve ``script`` to one PushSession; return the recorder (after a final hand-over)."""
    recorder = ProcessRecorder("push", id_limit=1000)
    notes: list[Any] = []

    async def main() -> None:
        raw = RawServer(script)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = PushSession("s", recorder, PushSessionOptions(url=f"ws://127.0.0.1:{port}/", max_size=max_size,
                                                               reconnect_delay_s=0.1, max_reconnects=1,
                                                               local_addr=local_addr),
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
