"""The callback receiver's HTTP side on real sockets: pipelining, keep-alive, hostile senders, held answers.

Each test starts a :class:`CallbackReceiver` on 127.0.0.1 (port 0) in its own
event loop, with a real :class:`ProcessRecorder`, and talks to it through
plain asyncio streams that write exactly the bytes a test chooses -- whole
requests, several in one write, one byte at a time, broken framing -- and
read the answers back in order. The recorder's counters and errors must say
exactly what happened.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import pytest
import uvloop
from helpers import scaled
from standardwebhooks.webhooks import Webhook

from deliverybench.adapters import undecodable
from deliverybench.adapters.callback_receiver import CallbackReceiver, ReceiverBehaviour, _share
from deliverybench.adapters.http_receiver import hook_name
from deliverybench.core.audit import SubscriberRecord
from deliverybench.core.delay import DelaySpec
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder

SECRET = "whsec_" + base64.b64encode(b"a secret only these tests know").decode()
SIGNER = Webhook(SECRET)
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Harness:
    receiver: CallbackReceiver
    recorder: ProcessRecorder
    records: dict[str, SubscriberRecord]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.receiver.port)

    @property
    def counters(self) -> dict[str, int]:
        return {kind: n for kind, n in self.recorder.counters.items() if n}

    @property
    def errors(self) -> dict[str, int]:
        return {kind: n for kind, n in self.recorder.errors.items() if n}


def run(script: Callable[[Harness], Awaitable[None]], *, behaviour: ReceiverBehaviour | None = None,
        subscribers: tuple[str, ...] = ("1", "2"), loop: str = "uvloop", **options: float | str) -> None:
    """Run ``script`` against a started receiver with ``subscribers``; stop it after."""

    async def main() -> None:
        recorder = ProcessRecorder("callback")
        receiver = CallbackReceiver(lambda: recorder, behaviour or ReceiverBehaviour(SECRET), **options)  # type: ignore[arg-type]
        await receiver.start()
        records = {}
        for name in subscribers:
            record = records[name] = recorder.subscriber(f"callback:{name}")
            record.open(time.time_ns())
            receiver.add(name, record)
        try:
            await asyncio.wait_for(script(Harness(receiver, recorder, records)), scaled(20))
        finally:
            await receiver.stop()

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


def request(event_id: int, path: str = "/hook/1", *, msg_id: str | None = None, stamp: int | None = None,
            signature: str | None = None, headers: str = "", body: bytes | None = None, version: str = "1.1",
            chunked: list[bytes] | None = None) -> bytes:
    """A webhook POST as a dispatcher sends it, signed with the tests' secret unless told otherwise."""
    now = time.time_ns()
    payload = body if body is not None else encode_event(Event(event_id, now), now, 256)
    msg_id = msg_id or f"msg_{event_id}"
    stamp = int(time.time()) if stamp is None else stamp
    if signature is None:
        signature = SIGNER.sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), payload)
    framing = (f"Content-Length: {len(payload)}\r\n" if chunked is None else "Transfer-Encoding: chunked\r\n")
    head = (f"POST {path} HTTP/{version}\r\nHost: receiver\r\nContent-Type: application/json\r\n{framing}"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\nwebhook-signature: {signature}\r\n"
            f"{headers}\r\n").encode()
    if chunked is None:
        return head + payload
    return head + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in chunked) + b"0\r\n\r\n"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def answer(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(timeout_s))
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(lines[0].split()[1]), headers, body)


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the receiver closed the connection (EOF or reset) with nothing more to say."""
    try:
        return await asyncio.wait_for(reader.read(1), scaled(5)) == b""
    except ConnectionResetError:
        return True


def delivered(record: SubscriberRecord) -> set[int]:
    return {i for i in range(64) if i in record.received}


# -- pipelining and keep-alive ----------------------------------------------------------------


def test_three_pipelined_requests_in_one_write_get_three_answers_in_order_all_recorded() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0) + request(1, "/hook/2") + request(2))
        statuses = [(await answer(reader)).status for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert delivered(h.records["1"]) == {0, 2} and delivered(h.records["2"]) == {1}
        assert h.counters == {"receiver_requests": 3, "acked": 3} and h.errors == {}
        writer.write(request(3, signature="v1,bm90IGl0") + request(4, "/hook/9") + request(5))
        statuses = [(await answer(reader)).status for _ in range(3)]
        assert statuses == [401, 410, 200]  # each answer where its request was
        writer.close()

    run(script)


def test_the_answer_to_200_is_the_precomputed_bytes() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0))
        assert await asyncio.wait_for(reader.readexactly(len(OK_HEAD)), scaled(5)) == OK_HEAD
        writer.close()

    run(script)


def test_a_request_sent_one_byte_at_a_time_is_stamped_at_its_first_byte() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        data = request(7)
        started = time.time_ns()
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            if i % 64 == 0:
                await asyncio.sleep(0.01)  # the whole request takes ~0.1 s to arrive
        assert (await answer(reader)).status == 200
        assert time.time_ns() - started > 50_000_000
        assert delivered(h.records["1"]) == {7}
        h.recorder.fold_buffer()
        latency = h.recorder.recorder.total("delivery")  # µs
        # from its due time (just before ``started``) to its first byte, not its last
        assert latency.get_total_count() == 1 and latency.get_max_value() < 40_000
        writer.close()

    run(script)


def test_one_connection_carries_many_requests() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        for i in range(50):
            writer.write(request(i % 64, msg_id=f"keep_{i}"))
            assert (await answer(reader)).status == 200
        assert len(h.receiver._server.connections) == 1  # type: ignore[union-attr]
        assert h.counters == {"receiver_requests": 50, "acked": 50}
        assert delivered(h.records["1"]) == set(range(50))
        writer.close()

    run(script)


def test_connection_close_is_honoured_and_nothing_after_it_is_read() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, headers="Connection: close\r\n") + request(1))
        reply = await answer(reader)
        assert reply.status == 200 and reply.headers["connection"] == "close"
        assert await closed(reader)
        assert delivered(h.records["1"]) == {0}  # the request after the close was never read

    run(script)


def test_http_1_0_closes_after_its_answer_unless_it_asks_for_keep_alive() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, version="1.0"))
        assert (await answer(reader)).status == 200
        assert await closed(reader)
        reader, writer = await h.connect()
        writer.write(request(1, version="1.0", headers="Connection: keep-alive\r\n"))
        reply = await answer(reader)
        assert reply.status == 200 and reply.headers["connection"] == "keep-alive"
        writer.write(request(2, version="1.0", headers="Connection: keep-alive\r\n"))
        assert (await answer(reader)).status == 200
        assert delivered(h.records["1"]) == {0, 1, 2}
        writer.close()

    run(script)


def test_a_chunked_body_is_read_whole() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        now = time.time_ns()
        payload = encode_event(Event(3, now), now, 300)
        writer.write(request(3, body=payload, chunked=[payload[:10], payload[10:200], payload[200:]]))
        assert (await answer(reader)).status == 200
        assert delivered(h.records["1"]) == {3}
        writer.close()

    run(script)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        data = request(5, headers="Expect: 100-continue\r\n")
        head, body = data.split(b"\r\n\r\n", 1)
        writer.write(head + b"\r\n\r\n")
        assert (await answer(reader)).status == 100
        writer.write(body)
        assert (await answer(reader)).status == 200
        assert delivered(h.records["1"]) == {5}
        writer.close()

    run(script)


def test_it_runs_on_the_plain_asyncio_loop_too() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0) + request(1))
        assert [(await answer(reader)).status for _ in range(2)] == [200, 200]
        writer.close()

    run(script, loop="asyncio")


# -- the audit ----------------------------------------------------------------------------------


def test_a_bad_signature_is_answered_401_and_never_recorded() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        other = Webhook("whsec_" + base64.b64encode(b"someone else").decode())
        now = time.time_ns()
        body = encode_event(Event(0, now), now, 256)
        forged = other.sign("msg_0", datetime.now(tz=UTC), body)
        writer.write(request(0, body=body, signature=forged))
        assert (await answer(reader)).status == 401
        writer.write(request(1, stamp=int(time.time()) - 3600))  # well signed, an hour old
        assert (await answer(reader)).status == 401
        writer.write(request(2, msg_id="", signature="v1,x"))  # no webhook-id at all
        assert (await answer(reader)).status == 401
        assert delivered(h.records["1"]) == set() and h.records["1"].received.arrivals == 0
        assert h.counters == {"receiver_requests": 3, "rejected_signature": 2, "rejected_timestamp": 1}
        assert h.errors == {"rejected_signature": 2, "rejected_timestamp": 1}
        writer.close()

    run(script)


def test_a_duplicate_webhook_id_is_counted_not_recorded_twice() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(4, msg_id="msg_same") + request(4, msg_id="msg_same"))
        assert [(await answer(reader)).status for _ in range(2)] == [200, 200]
        record = h.records["1"]
        assert delivered(record) == {4} and record.received.duplicates == 1
        assert h.counters == {"receiver_requests": 2, "acked": 1, "duplicates_webhook_id": 1}
        writer.close()

    run(script)


def test_after_unsubscribe_a_request_is_answered_410_and_the_connection_kept() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        h.receiver.remove("1")
        writer.write(request(0))
        assert (await answer(reader)).status == 410
        writer.write(request(1, "/hook/2"))
        assert (await answer(reader)).status == 200
        assert h.counters == {"receiver_requests": 2, "after_unsubscribe": 1, "acked": 1}
        writer.close()

    run(script)


def test_other_paths_and_methods_are_answered_404_and_405_and_counted() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(b"GET /hook/1 HTTP/1.1\r\nHost: r\r\n\r\n")
        assert (await answer(reader)).status == 405
        writer.write(request(0, "/elsewhere") + request(1, "/hook/1/more"))
        assert [(await answer(reader)).status for _ in range(2)] == [404, 404]
        writer.write(request(2, "/hook/1?from=test"))
        assert (await answer(reader)).status == 200
        assert h.counters == {"method_not_allowed": 1, "not_found": 2, "receiver_requests": 1, "acked": 1}
        assert h.errors == {"method_not_allowed": 1, "not_found": 2}
        writer.close()

    run(script)


def test_a_request_target_names_its_hook() -> None:
    assert hook_name(b"/hook/12") == b"12"
    assert hook_name(b"/hook/12?x=1#f") == b"12"
    assert hook_name(b"/hook/a%20b") == b"a b"
    assert hook_name(b"http://host:1/hook/3") == b"3"
    for target in (b"/hook/", b"/hook/1/2", b"/hooks/1", b"*", b"http://host", b"/HOOK/1"):
        assert hook_name(target) is None, target


# -- hostile senders ----------------------------------------------------------------------------


def test_a_malformed_request_line_is_answered_400_closed_and_counted() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0) + b"NOT AN HTTP REQUEST\r\n\r\n")
        assert (await answer(reader)).status == 200  # what came before it is still answered
        reply = await answer(reader)
        assert reply.status == 400 and reply.headers["connection"] == "close"
        assert await closed(reader)
        assert h.counters == {"receiver_requests": 1, "acked": 1, "malformed_request": 1}
        assert h.errors == {"malformed_request": 1}

    run(script)


def test_conflicting_framing_is_malformed() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(b"POST /hook/1 HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n")
        assert (await answer(reader)).status == 400
        assert await closed(reader)
        assert h.errors == {"malformed_request": 1}

    run(script)


@pytest.mark.parametrize("pieces", [1, 40])
def test_oversized_headers_are_answered_431_and_closed(pieces: int) -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        data = request(0, headers=f"X-Padding: {'p' * 70_000}\r\n")
        step = len(data) // pieces + 1
        for i in range(0, len(data), step):
            writer.write(data[i:i + step])
            await writer.drain()
            await asyncio.sleep(0.005)
        reply = await answer(reader)
        assert reply.status == 431 and reply.headers["connection"] == "close"
        assert await closed(reader)
        assert h.errors == {"oversized_headers": 1} and delivered(h.records["1"]) == set()

    run(script)


def test_too_many_headers_are_answered_431() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, headers="".join(f"X-H{i}: v\r\n" for i in range(150))))
        assert (await answer(reader)).status == 431
        assert await closed(reader)
        assert h.errors == {"too_many_headers": 1}

    run(script)


def test_broken_chunked_framing_is_a_truncated_body() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        data = request(0, chunked=[b"x" * 10])
        writer.write(data.replace(b"a\r\nxxxxxxxxxx", b"zz\r\nxxxxxxxxxx"))
        reply = await answer(reader)
        assert reply.status == 400 and reply.body == b"incomplete body\n"
        assert await closed(reader)
        assert h.errors == {"truncated_body": 1}

    run(script)


def test_a_sender_that_closes_mid_body_is_counted_truncated() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0)[:-20])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.1)
        assert h.errors == {"truncated_body": 1} and h.receiver.budget.in_use == 0

    run(script)


def test_bodies_over_the_cap_and_the_budget_are_refused_and_closed() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, body=b"x" * 5000))  # declared over the 4 KiB cap: refused unread
        reply = await answer(reader)
        assert reply.status == 413 and await closed(reader)
        reader, writer = await h.connect()
        writer.write(request(1, chunked=[b"x" * 3000, b"x" * 3000]))
        assert (await answer(reader)).status == 413 and await closed(reader)
        held_r, held_w = await h.connect()  # holds 3,000 of the 6,000-byte budget
        held_w.write(request(2, body=b"x" * 4000)[:-1000])
        await held_w.drain()
        await asyncio.sleep(0.05)
        reader, writer = await h.connect()
        writer.write(request(3, body=b"y" * 4000))
        reply = await answer(reader)
        assert reply.status == 503 and reply.headers["retry-after"] == "1" and await closed(reader)
        held_w.write(b"x" * 1000)  # the held body ends: it fits, is signed, and is no event
        assert (await answer(held_r)).status == 200
        assert h.receiver.budget.in_use == 0 and h.receiver.budget.peak == 4000
        assert h.errors == {"oversized_body": 2, "receiver_busy": 1, "malformed_event": 1}
        held_w.close()

    run(script, body_cap=4096, body_budget=6000)


def test_a_slowloris_sender_is_closed_and_counted_while_another_connection_is_served() -> None:
    async def script(h: Harness) -> None:
        slow_r, slow_w = await h.connect()
        slow_w.write(b"POST /hook/1 HTTP/1.1\r\nHost: r\r\n")  # and then nothing
        reader, writer = await h.connect()
        started = time.monotonic()
        for i in range(20):
            sent = time.monotonic()
            writer.write(request(i))
            assert (await answer(reader)).status == 200
            assert time.monotonic() - sent < scaled(0.1)
            await asyncio.sleep(0.03)
        reply = await answer(slow_r)
        assert reply.status == 408 and await closed(slow_r)
        assert 0.3 <= time.monotonic() - started < scaled(2)
        assert h.errors == {"request_timeout": 1} and h.counters["acked"] == 20
        writer.close()

    run(script, request_timeout_s=0.3)


def test_idle_keep_alive_connections_are_closed_quietly() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0))
        assert (await answer(reader)).status == 200
        assert await closed(reader)
        assert h.errors == {}

    run(script, idle_timeout_s=0.2)


# -- held answers -------------------------------------------------------------------------------


def test_an_answer_held_by_the_ack_delay_does_not_delay_another_connection() -> None:
    async def script(h: Harness) -> None:
        held_r, held_w = await h.connect()
        started = time.monotonic()
        held_w.write(request(0))
        await asyncio.sleep(0.05)
        reader, writer = await h.connect()
        writer.write(request(1, "/hook/9"))  # not held: a 410 needs no acknowledgement delay
        assert (await answer(reader)).status == 410
        assert time.monotonic() - started < 0.3
        assert (await answer(held_r)).status == 200
        assert time.monotonic() - started >= 0.4
        writer.close()
        held_w.close()

    run(script, behaviour=ReceiverBehaviour(SECRET, ack_delay=DelaySpec("fixed", 400)))


def test_answers_behind_a_held_one_keep_their_order() -> None:
    held_id = next(f"m{i}" for i in range(1000) if _share(f"m{i}".encode(), b"timeout") < 0.5)
    free_id = next(f"m{i}" for i in range(1000) if _share(f"m{i}".encode(), b"timeout") >= 0.5)

    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        started = time.monotonic()
        writer.write(request(0, msg_id=held_id) + request(1, msg_id=free_id) + request(2, "/hook/9"))
        statuses = [(await answer(reader)).status for _ in range(3)]
        assert statuses == [504, 200, 410] and time.monotonic() - started >= 0.3
        assert h.counters["simulated_timeouts"] == 1 and delivered(h.records["1"]) == {1}
        writer.close()

    run(script, behaviour=ReceiverBehaviour(SECRET, timeout_ratio=0.5, timeout_hold_s=0.3))


def test_stop_closes_every_connection_and_drops_held_answers() -> None:
    async def script(h: Harness) -> None:
        held_r, held_w = await h.connect()
        held_w.write(request(0))
        await asyncio.sleep(0.05)
        idle_r, _ = await h.connect()
        await asyncio.sleep(0.05)
        await h.receiver.stop()
        assert await closed(held_r) and await closed(idle_r)
        assert h.errors == {} and delivered(h.records["1"]) == {0}  # recorded before its answer was held

    run(script, behaviour=ReceiverBehaviour(SECRET, ack_delay=DelaySpec("fixed", 5000)))


# -- a real sender's envelope (Alertmanager) -----------------------------------------------------

ALERTS = "/alerts/*/annotations/event"
UNSIGNED = ReceiverBehaviour(SECRET, signed=False)


def alertmanager_body(*event_ids: int, receiver: str = "subscriber-1") -> bytes:
    """A webhook body as Alertmanager 0.25 sends it, one alert per event, the event as an annotation string."""
    now = time.time_ns()
    alerts = [{"status": "firing", "labels": {"alertname": "deliverybench", "id": str(i)},
               "annotations": {"event": encode_event(Event(i, now), now, 64).decode()},
               "startsAt": "2026-12-04T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
               "fingerprint": f"{i:016x}"} for i in event_ids]
    return json.dumps({"receiver": receiver, "status": "firing", "alerts": alerts, "groupLabels": {},
                       "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
                       "version": "4", "groupKey": "{}/{}:{}", "truncatedAlerts": 0}).encode()


def test_every_event_of_an_alertmanager_body_is_recorded_from_a_real_client() -> None:
    async def script(h: Harness) -> None:
        base = f"http://127.0.0.1:{h.receiver.port}/hook"
        async with aiohttp.ClientSession() as client:
            for path, body in (("1", alertmanager_body(0, 1)), ("2", alertmanager_body(2)),
                               ("1", alertmanager_body(3))):
                async with client.post(f"{base}/{path}", data=body,
                                       headers={"Content-Type": "application/json"}) as response:
                    assert response.status == 200
        assert delivered(h.records["1"]) == {0, 1, 3} and delivered(h.records["2"]) == {2}
        assert h.counters == {"receiver_requests": 3, "acked": 3} and h.errors == {}

    run(script, behaviour=UNSIGNED, event_path=ALERTS)


def test_a_resent_alertmanager_body_is_one_message_and_its_retry_after_a_failure_is_recorded() -> None:
    body = alertmanager_body(5)

    async def script(h: Harness) -> None:
        url = f"http://127.0.0.1:{h.receiver.port}/hook/1"
        async with aiohttp.ClientSession() as client:
            statuses = []
            for _ in range(3):
                async with client.post(url, data=body) as response:
                    statuses.append(response.status)
        assert statuses == [503, 200, 200]  # failed on purpose, then the retry, then a duplicate
        record = h.records["1"]
        assert delivered(record) == {5} and record.received.duplicates == 1
        assert h.counters == {"receiver_requests": 3, "simulated_failures": 1, "acked": 1,
                              "duplicates_webhook_id": 1}

    run(script, behaviour=ReceiverBehaviour(SECRET, signed=False, fail_ratio=1.0, fail_status=503),
        event_path=ALERTS)


def test_a_body_without_the_envelope_is_malformed_answered_and_not_recorded() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        now = time.time_ns()
        bare = encode_event(Event(7, now), now, 64)  # our event, not Alertmanager's envelope
        for n, body in enumerate((b"not json", bare, b'{"alerts":[{"annotations":{"event":17}}]}')):
            writer.write(request(0, body=body, msg_id=f"m{n}", signature="unsigned"))
            assert (await answer(reader)).status == 200
        assert delivered(h.records["1"]) == set()
        assert h.errors == {"malformed_event": 3} and h.counters["acked"] == 3
        writer.close()

    undecodable.forget()
    run(script, behaviour=UNSIGNED, event_path=ALERTS)
    assert undecodable.first == ("'not json'", f"a JSON message with the event at {ALERTS}")  # the first kept
    undecodable.forget()


@pytest.mark.parametrize("event_path", ["", ALERTS])
def test_the_first_body_that_is_no_event_is_kept_as_the_sample(event_path: str) -> None:
    wrapped = b'{"type":"event","data":{"id":1}}'
    body = alertmanager_body(0).replace(b'"alerts": [', b'"alerts": [{"annotations": {"event": "%s"}}, '
                                         % wrapped.replace(b'"', b'\\"')) if event_path else wrapped

    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, body=body) + request(1, body=alertmanager_body(1) if event_path else None))
        assert [(await answer(reader)).status for _ in range(2)] == [200, 200]
        assert h.errors == {"malformed_event": 1} and delivered(h.records["1"]) == ({0, 1} if event_path else {1})
        writer.close()

    undecodable.forget()
    run(script, event_path=event_path)
    assert undecodable.first == (f"'{wrapped.decode()}'", 'an event: {"id":…,"due_ns":…,…}')
    undecodable.forget()


def test_a_signed_sender_with_an_envelope_is_verified_and_unwrapped() -> None:
    async def script(h: Harness) -> None:
        reader, writer = await h.connect()
        writer.write(request(0, body=alertmanager_body(8, 9)) + request(1, body=alertmanager_body(10),
                                                                        signature="v1,bm90IGl0"))
        assert [(await answer(reader)).status for _ in range(2)] == [200, 401]
        assert delivered(h.records["1"]) == {8, 9}
        writer.close()

    run(script, event_path=ALERTS)


def test_an_unsigned_receiver_still_refuses_a_bad_event_path() -> None:
    with pytest.raises(ValueError, match="JSON pointer"):
        CallbackReceiver(lambda: None, UNSIGNED, event_path="alerts")
