"""The SSE subscriber against real aiohttp servers on 127.0.0.1 (port 0): no mocks.

A small hub publishes events (the harness's own encoding, due now) to every
open stream, ``id:`` per event; each test chooses how the server misbehaves
-- drops every stream after a few events, replays from ``Last-Event-ID`` or
not, answers 503 or ``text/html``, sends an oversized line -- and reads
what a real :class:`ProcessRecorder` measured, down to the audit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from aiohttp import web
from helpers import scaled

from deliverybench.adapters import undecodable
from deliverybench.adapters.sse_receiver import RECONNECTS, SseSession, SseSessionOptions
from deliverybench.core.audit import AuditTotals, PublishedLog, audit
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder
from deliverybench.core.sse import LINE_TOO_LONG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """Events by id, and every open stream waiting for the next one."""

    def __init__(self, *, replay: bool = True, drop_after: int | None = None, abort: bool = False,
                 envelope: bytes = b"%b") -> None:
        #: each event's data: ``envelope`` around it
        self.envelope = envelope
        self.events: list[bytes] = []
        self.log = PublishedLog()
        self.replay, self.drop_after, self.abort = replay, drop_after, abort
        self.requests: list[dict[str, str]] = []
        self.tick = asyncio.Event()
        self.done = False

    def publish(self) -> None:
        now = time.time_ns()
        i = len(self.events)
        self.events.append(encode_event(Event(i, now), now, 200))
        self.log.add(i, now, now, True)
        self.tick.set()
        self.tick = asyncio.Event()

    def finish(self) -> None:
        self.done = True
        self.tick.set()

    async def stream(self, request: web.Request, *, head: bytes = b"retry: 50\n\n") -> web.StreamResponse:
        """Serve the stream from the id after ``Last-Event-ID`` (with replay), else from now."""
        self.requests.append(dict(request.headers))
        last = request.headers.get("Last-Event-ID")
        i = int(last) + 1 if self.replay and last else len(self.events)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        await response.write(head)
        sent = 0
        while not self.done:
            tick = self.tick
            while i < len(self.events):
                await response.write(b"id: %d\ndata: %b\n\n" % (i, self.envelope % self.events[i]))
                i += 1
                sent += 1
                if self.drop_after and sent >= self.drop_after:
                    if self.abort:
                        assert request.transport is not None
                        request.transport.abort()
                    return response
            await tick.wait()
        return response


async def serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/events", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + scaled(seconds)
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def run(handler_of: Callable[[Hub], Handler], hub_options: dict[str, Any], *, sessions: int = 1, events: int = 0,
        interval: float = 0.005, settle: float = 0.3, expect: int | None = None, linger: float = 0.0,
        **options: Any) -> dict[str, Any]:
    """Serve, subscribe ``sessions``, publish ``events`` once all are connected, stop; what was measured.

    It stops once ``expect`` deliveries (default every event to every
    session) arrived, or ``settle`` seconds after the last event; ``linger``
    seconds at the least.
    """
    recorder = ProcessRecorder("sse", id_limit=10_000)
    notes: list[tuple[bool, str | None]] = []
    out: dict[str, Any] = {"notes": notes, "recorder": recorder}

    async def main() -> None:
        hub = Hub(**hub_options)
        runner, port = await serve(handler_of(hub))
        options.setdefault("reconnect_delay_s", 0.05)
        opts = SseSessionOptions(url=f"http://127.0.0.1:{port}/events?channel=a", **options)
        subscribers = [SseSession(f"s{i}", recorder, opts, lambda ok, error: notes.append((ok, error)))
                       for i in range(sessions)]
        started = time.monotonic()
        for session in subscribers:
            session.start()
        await until(lambda: len(notes) == sessions, 5)  # every first attempt told
        if events:
            await until(lambda: recorder.connected == sessions, 5)
        for _ in range(events):
            hub.publish()
            await asyncio.sleep(interval)
        wanted = sessions * events if expect is None else expect
        await until(lambda: recorder.intake.pending() >= wanted, settle)
        await asyncio.sleep(max(0.0, linger - (time.monotonic() - started)))
        stop_ns = time.time_ns()
        for session in subscribers:
            session.stop(stop_ns)
        out["seconds"] = time.monotonic() - started
        await asyncio.sleep(0.05)
        hub.finish()
        await runner.cleanup()
        out.update(hub=hub, stop_ns=stop_ns, connected_after=recorder.connected)

    uvloop.run(main())
    payload = recorder.take_payload(final=True, now_ns=time.time_ns())
    hub: Hub = out["hub"]
    out.update(payload=payload, delivered=payload["recorder"].count("delivery"), errors=dict(payload["errors"]),
               counters=dict(payload["counters"]), records={r.subscriber: r for r in payload["subscribers"]})
    out["audit"] = audit(hub.log, payload["subscribers"], join_grace_ns=0, drain_ns=0, end_ns=out["stop_ns"])
    return out


def exact(totals: AuditTotals) -> None:
    assert totals.balanced and totals.expected == totals.delivered_unique + totals.lost


def test_every_event_reaches_every_subscriber_with_its_latency() -> None:
    got = run(lambda hub: hub.stream, {}, sessions=5, events=40)
    totals = got["audit"]
    exact(totals)
    assert totals.expected == 200 and totals.lost == 0 and totals.duplicates == 0
    assert got["delivered"] == 200 and got["errors"] == {} and got["notes"] == [(True, None)] * 5
    assert got["payload"]["recorder"].count("connect") == 5
    assert all(r.received.unique == 40 for r in got["records"].values())
    request = got["hub"].requests[0]
    assert request["Accept"] == "text/event-stream" and request["Cache-Control"] == "no-cache"
    assert request["Host"].startswith("127.0.0.1:") and "Last-Event-ID" not in request
    assert got["connected_after"] == 0


def test_a_stream_cut_in_odd_places_with_crlf_batches_pings_and_warm_up_is_read_exactly() -> None:
    now = time.time_ns()
    first, second, third = (encode_event(Event(i, now), now, 300) for i in range(3))
    warm = encode_event(Event(0, now, "__warmup__"), now, 100)
    body = (b": ping\r\n\r\nid: w\r\ndata: " + warm + b"\r\n\r\nid: 0\r\ndata: " + first
            + b"\r\n\r\n: ping\r\ndata: " + second + b"\r\ndata: " + third + b"\r\n\r\n")

    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for at in range(0, len(body), 37):  # 37-byte writes: lines, CRLFs and events split anywhere
                await response.write(body[at:at + 37])
                await asyncio.sleep(0.002)
            hub.finish()
            await asyncio.sleep(10)
            return response
        return handler

    got = run(handler_of, {}, expect=3, settle=2.0)
    record = got["records"]["s0"]
    assert got["delivered"] == 3 and record.received.unique == 3 and got["errors"] == {}


def test_an_event_path_reads_each_events_data_as_an_envelope_and_what_does_not_decode_is_kept() -> None:
    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            welcome = b'data: {"type":"welcome"}\n\n'  # nothing at /data: counted, the first kept
            return await hub.stream(request, head=welcome)
        return handler

    undecodable.forget()
    got = run(handler_of, {"envelope": b'{"type":"event","data":%b}'}, sessions=3, events=20, event_path="/data")
    totals = got["audit"]
    exact(totals)
    assert totals.expected == 60 and totals.lost == 0 and got["delivered"] == 60
    assert got["errors"] == {"malformed_event": 3}
    assert undecodable.first == ('\'{"type":"welcome"}\'', "a JSON message with the event at /data")


def test_an_envelope_holding_several_events_takes_the_careful_path() -> None:
    now = time.time_ns()
    first, second = (encode_event(Event(i, now), now, 50) for i in range(2))
    pair = b'{"items":[{"e":%b},{"e":%b}]}' % (first, second)

    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"data: " + pair + b"\n\n")
            hub.finish()
            await asyncio.sleep(10)
            return response
        return handler

    got = run(handler_of, {}, sessions=2, expect=4, settle=2.0, event_path="/items/*/e")
    assert got["delivered"] == 4 and got["errors"] == {}


def test_dropped_streams_resume_from_the_last_id_and_nothing_is_lost_when_the_server_replays() -> None:
    # the server's "retry: 50" is the wait after a drop: with the session's own 5 s this could not finish
    got = run(lambda hub: hub.stream, {"drop_after": 7}, sessions=3, events=60, settle=3.0, reconnect_delay_s=5.0)
    totals, hub = got["audit"], got["hub"]
    exact(totals)
    assert totals.expected == 180 and totals.lost == 0 and totals.duplicates == 0 and got["delivered"] == 180
    # each stream ends after its 7th event (ids 6, 13, ... 55): 8 drops a subscriber, each resumed from there
    resumed = sorted(int(r["Last-Event-ID"]) for r in hub.requests if "Last-Event-ID" in r)
    assert resumed == sorted(list(range(6, 60, 7)) * 3) and len(hub.requests) == 3 + 24
    assert got["counters"] == {RECONNECTS: 24} and got["errors"] == {"closed_stream_end": 24}
    assert all(len(r.windows) == 9 for r in got["records"].values())


def test_gaps_are_lost_in_the_audit_when_the_server_does_not_replay() -> None:
    got = run(lambda hub: hub.stream, {"drop_after": 5, "replay": False, "abort": True}, sessions=2, events=60,
              interval=0.01)
    totals = got["audit"]
    exact(totals)
    unique = sum(r.received.unique for r in got["records"].values())
    assert totals.expected == 120 and totals.delivered_unique == unique and totals.lost == 120 - unique > 0
    assert totals.subscribers_with_loss == 2
    assert got["counters"][RECONNECTS] >= 2 and got["errors"].get("closed_abnormal", 0) >= 2


def test_a_server_answering_html_is_an_error_by_kind_and_no_hang() -> None:
    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            hub.requests.append(dict(request.headers))
            return web.Response(text="<html>login</html>", content_type="text/html")
        return handler

    got = run(handler_of, {}, max_reconnects=2, linger=0.6)
    assert got["errors"] == {"sse_not_event_stream": 3} and len(got["hub"].requests) == 3
    assert got["notes"][0][0] is False and got["notes"][0][1].startswith("sse_not_event_stream: HTTP 200")
    assert got["delivered"] == 0 and got["seconds"] < scaled(8)


def test_a_503_first_is_retried_and_then_streams() -> None:
    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if not hub.requests:
                hub.requests.append(dict(request.headers))
                return web.Response(status=503, text="busy")
            return await hub.stream(request)
        return handler

    got = run(handler_of, {}, events=10)
    assert got["errors"] == {"connect_http_503": 1} and got["notes"][0] == (False, "http_503: HTTP 503")
    assert got["delivered"] == 10 and got["audit"].lost == 0
    assert got["recorder"].connect_failures == {"connect_http_503": 1}
    assert RECONNECTS not in got["counters"]  # a retried connection is not a reconnect: the first stream


def test_an_oversized_line_is_an_error_by_kind_and_the_connection_is_closed() -> None:
    def handler_of(hub: Hub) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if hub.requests:  # the reconnection: an ordinary stream, resumed
                return await hub.stream(request)
            hub.requests.append(dict(request.headers))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            hub.publish()
            await response.write(b"id: 0\ndata: " + hub.events[0] + b"\n\n")
            await response.write(b"data: " + b"x" * 5000 + b"\n\n")
            try:
                for _ in range(200):
                    await response.write(b": still here\n\n")
                    await asyncio.sleep(0.01)
            except ConnectionResetError:
                hub.requests[0]["closed"] = "yes"
            return response
        return handler

    got = run(handler_of, {}, events=3, max_event_bytes=1000, settle=2.0, expect=4, linger=0.5)
    hub = got["hub"]
    assert hub.requests[0].get("closed") == "yes"  # the server's writes failed: the client had closed
    assert got["errors"] == {LINE_TOO_LONG: 1}
    assert got["delivered"] == 4 and got["records"]["s0"].received.unique == 4
    assert hub.requests[1]["Last-Event-ID"] == "0" and got["counters"][RECONNECTS] == 1


def raw_run(reply: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
            **options: Any) -> tuple[ProcessRecorder, list[tuple[bool, str | None]], float]:
    """One session against a raw TCP server that answers as ``reply`` says; until its first attempt is told."""
    recorder = ProcessRecorder("sse", id_limit=10)
    notes: list[tuple[bool, str | None]] = []
    took: list[float] = []

    async def main() -> None:
        server = await asyncio.start_server(reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = SseSession("s", recorder, SseSessionOptions(url=f"http://127.0.0.1:{port}/", max_reconnects=0,
                                                              **options),
                             lambda ok, error: notes.append((ok, error)))
        started = time.monotonic()
        session.start()
        await until(lambda: bool(notes), 5)
        took.append(time.monotonic() - started)
        session.stop(time.time_ns())
        server.close()

    uvloop.run(main())
    return recorder, notes, took[0]


def test_a_server_that_never_answers_times_out_by_kind() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(2)

    recorder, notes, took = raw_run(silent, open_timeout_s=0.3)
    assert notes == [(False, "timeout: no event stream within 0.3 s")] and took < scaled(1.5)
    assert recorder.connect_failures == {"connect_timeout": 1}


def test_a_response_head_past_64_kib_is_refused_without_waiting_for_its_end() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        for i in range(2000):
            writer.write(b"X-Filler-%d: %b\r\n" % (i, b"f" * 60))
        await writer.drain()
        await asyncio.sleep(2)

    recorder, notes, took = raw_run(endless)
    assert notes and notes[0][1] is not None and notes[0][1].startswith("oversized_head:")
    assert recorder.connect_failures == {"connect_oversized_head": 1} and took < scaled(1.5)


def test_only_plain_http_urls_are_taken() -> None:
    recorder = ProcessRecorder("sse", id_limit=10)
    for url in ("https://example.com/events", "ws://example.com/", "http:///nohost"):
        try:
            SseSession("s", recorder, SseSessionOptions(url=url), lambda ok, error: None)
        except ValueError as exc:
            assert "http://host" in str(exc)
        else:
            raise AssertionError(f"{url} was taken")
