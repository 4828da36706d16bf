"""The long-poll subscriber against real servers on 127.0.0.1: the built-in push target, and small aiohttp
servers that answer from a script (empty after their hold, several events at once, hostile, never).

Every scripted server ends its script by holding the next request until the test ends, so the client's
counts can be compared with what the server answered, exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web
from helpers import scaled
from servers import nchan as nchan_server
from servers.nchan import free_port

from deliverybench.adapters.longpoll_client import LongPoller, LongPollOptions
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder
from targets._process import ServerProcess

LAST_MODIFIED = "Thu, 03 Dec 2026 10:00:00 GMT"


def event(i: int) -> bytes:
    now = time.time_ns()
    return encode_event(Event(i, now), now, 120)


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + scaled(within_s)
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def start_pollers(recorder: ProcessRecorder, options: LongPollOptions, n: int) -> tuple[list[LongPoller], list[Any]]:
    notes: list[Any] = []
    pollers = [LongPoller(f"s{i}", lambda: recorder, options, notify=lambda ok, error: notes.append((ok, error)))
               for i in range(n)]
    for poller in pollers:
        poller.start()
    return pollers, notes


def finish(recorder: ProcessRecorder, pollers: list[LongPoller]) -> dict[str, Any]:
    """Stop every poller and hand everything over, as the test's end does; counters are summed across takes."""
    counters = recorder.counters.copy()
    now = time.time_ns()
    for poller in pollers:
        poller.stop(now)
    payload = recorder.take_payload(final=True, now_ns=now)
    payload["counters"] = counters
    return payload


# -- the built-in target ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> Iterator[dict[str, str]]:
    proc = ServerProcess("targets.push_server", ["--host", "127.0.0.1", "--port", "0", "--ws-port", "0"])
    proc.start()
    try:
        yield proc.urls
    finally:
        proc.stop()


@pytest.mark.parametrize("resume", ["after", "etag"])
def test_every_event_reaches_every_subscriber_exactly_once(builtin: dict[str, str], resume: str) -> None:
    subscribers, events = 6, 60
    recorder = ProcessRecorder("longpoll", id_limit=1000)

    async def main() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            base = (await (await http.get(builtin["stats"])).json())["last_id"] + 1
            options = LongPollOptions(url=builtin["longpoll"], resume=resume, hold_s=5, open_timeout_s=5)
            pollers, notes = start_pollers(recorder, options, subscribers)
            await until(lambda: len(notes) == subscribers, 10, "subscribers")
            assert notes == [(True, None)] * subscribers
            # every held request registered: the server counts them (an etag subscriber is subscribed once asked)
            while (await (await http.get(builtin["stats"])).json())["held_polls"] < subscribers:
                await asyncio.sleep(0.01)
            ids = iter(range(base, base + events))
            for size in (1, 5, 1, 1, 10, 2, 20, 1, 19):  # singles and NDJSON batches
                body = b"\n".join(event(next(ids)) for _ in range(size))
                async with http.post(builtin["ingress"], data=body) as answer:
                    assert answer.status == 202
                await asyncio.sleep(0.01)
            records = recorder.subscribers
            await until(lambda: all(r.received.unique == events for r in records.values()), 10, "every event")
            return finish(recorder, pollers)

    payload = uvloop.run(main())
    assert not payload["errors"]
    assert len(payload["subscribers"]) == subscribers
    for record in payload["subscribers"]:
        assert record.received.unique == events and record.received.duplicates == 0
        assert record.received.out_of_order == 0
    assert payload["recorder"].count("delivery") == subscribers * events
    counters = payload["counters"]
    assert counters["longpoll_empty"] == 0 and counters["longpoll_requests"] >= subscribers


# -- scripted servers -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0


@dataclass
class Scripted:
    """Answers requests from a script, then holds the next one until the test ends; remembers every request."""

    script: deque[Answer]
    requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    answered: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.query), dict(request.headers)))
        if not self.script:
            await self.release.wait()
            return web.Response(status=503)
        answer = self.script.popleft()
        if answer.hold_s:
            await asyncio.sleep(answer.hold_s)
        self.answered += 1
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


def serve_script(script: list[Answer], body: Callable[[Scripted, str, ProcessRecorder], Awaitable[dict[str, Any]]],
                 *, id_limit: int = 1000) -> tuple[dict[str, Any], Scripted]:
    recorder = ProcessRecorder("longpoll", id_limit=id_limit)
    holder: list[Scripted] = []

    async def main() -> dict[str, Any]:
        server = Scripted(deque(script))
        holder.append(server)
        app = web.Application()
        app.router.add_get("/lp", server.handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await body(server, f"http://127.0.0.1:{port}/lp", recorder)
        finally:
            server.release.set()
            await runner.cleanup()

    return uvloop.run(main()), holder[0]


def start_answer(last_id: int = -1) -> Answer:
    """What the built-in contract answers to the ``after`` style's start request."""
    return Answer(headers={"X-Last-Id": str(last_id)})


def validators(tag: int) -> dict[str, str]:
    return {"Last-Modified": LAST_MODIFIED, "Etag": f'"{tag}"'}


@pytest.mark.parametrize(("resume", "empty"), [
    ("after", Answer(hold_s=0.05, headers={"X-Last-Id": "-1"})),  # 200, no body
    ("after", Answer(status=204, hold_s=0.05)),
    ("etag", Answer(status=304, hold_s=0.05, headers=validators(0))),
])
def test_empty_answers_after_the_hold_are_counted_exactly(resume: str, empty: Answer) -> None:
    empties = 5
    script = ([start_answer()] if resume == "after" else []) + [empty] * empties

    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, LongPollOptions(url=url, resume=resume, open_timeout_s=2), 1)
        await until(lambda: len(server.requests) == len(script) + 1, 5, "every answer and the next request")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload, server = serve_script(script, body)
    counters = payload["counters"]
    assert counters["longpoll_requests"] == empties and counters["longpoll_empty"] == empties
    assert counters["longpoll_held_us"] >= empties * 45_000  # the loop's timers may fire a little early
    assert payload["recorder"].count("longpoll_request") == empties
    assert not payload["errors"] and payload["recorder"].count("delivery") == 0
    if resume == "after":  # the start request asks for the stream's position at once, then from there
        assert server.requests[0][0] == {"after": "-1", "limit": "1", "hold": "0"}
        assert all(query["after"] == "-1" for query, _ in server.requests[1:])
    else:  # asked from nowhere, then with the validators of every answer
        assert "If-None-Match" not in server.requests[0][1]
        assert all(headers["If-None-Match"] == '"0"' and headers["If-Modified-Since"] == LAST_MODIFIED
                   for _, headers in server.requests[1:])


@pytest.mark.parametrize("resume", ["after", "etag"])
def test_an_answer_with_several_events_records_each_and_resumes_after_the_last(resume: str) -> None:
    first = b"\n".join(event(i) for i in range(0, 3))
    second = b"\r\n".join(event(i) for i in range(3, 5)) + b"\r\n"  # CRLF and a trailing newline are fine
    script = [
        *([start_answer()] if resume == "after" else []),
        Answer(body=first, headers={"X-Last-Id": "2", **validators(2)}, hold_s=0.02),
        Answer(body=second, headers={"X-Last-Id": "4", **validators(4)}),
        Answer(body=event(2), headers={"X-Last-Id": "4", **validators(4)}),  # a repeat: a duplicate, not a delivery
    ]

    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, _ = start_pollers(recorder, LongPollOptions(url=url, resume=resume, limit=50, hold_s=7), 1)
        await until(lambda: len(server.requests) == len(script) + 1, 5, "every answer and the next request")
        return finish(recorder, pollers)

    payload, server = serve_script(script, body)
    (record,) = payload["subscribers"]
    assert record.received.unique == 5 and record.received.duplicates == 1
    assert payload["recorder"].count("delivery") == 5
    assert payload["counters"]["longpoll_requests"] == 3 and not payload["counters"]["longpoll_empty"]
    assert not payload["errors"]
    asked = server.requests[1:] if resume == "after" else server.requests
    if resume == "after":
        assert [q["after"] for q, _ in asked] == ["-1", "2", "4", "4"]
        assert all(q["limit"] == "50" and q["hold"] == "7.0" for q, _ in asked)
    else:
        assert [h.get("If-None-Match") for _, h in asked] == [None, '"2"', '"4"', '"4"']


def test_hostile_answers_are_bounded_and_counted_by_kind() -> None:
    huge = b"x" * 5000
    script = [
        start_answer(),
        Answer(status=503),  # asked again after the retry delay
        Answer(body=event(0), headers={"X-Last-Id": "99999999999999999999999"}),  # an id of no stream: not followed
        Answer(headers={"X-Last-Id": "abc"}),  # empty, and a bad X-Last-Id
        Answer(body=huge, headers={"X-Last-Id": "0"}),  # over max_body: the connection is dropped
        Answer(body=b"not an event\n" + event(1) + b"\n" + event(900)),  # 900 is past the stream's length
    ]

    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        options = LongPollOptions(url=url, max_body=4096, retry_delay_s=0.05, reconnect_delay_s=0.05)
        pollers, notes = start_pollers(recorder, options, 1)
        await until(lambda: len(server.requests) == len(script) + 1, 5, "every answer and the next request")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload, server = serve_script(script, body, id_limit=100)
    errors = payload["errors"]
    assert dict(errors) == {"longpoll_http_503": 1, "longpoll_bad_last_id": 1, "longpoll_oversized": 1,
                            "malformed_event": 1, "unexpected_id": 1}
    (record,) = payload["subscribers"]
    assert record.received.unique == 2 and payload["recorder"].count("delivery") == 2
    counters = payload["counters"]
    # the oversized answer was never finished: 503, the event, the empty one and the last are the four
    assert counters["longpoll_requests"] == 4 and counters["longpoll_empty"] == 1
    assert counters["longpoll_reconnects"] == 1
    # the position: 0 after event 0 (not the bad X-Last-Id), asked again from 0 after the dropped connection
    assert [q["after"] for q, _ in server.requests[1:]] == ["-1", "-1", "0", "0", "0", "1"]


def test_a_server_that_never_answers_the_start_is_bounded_by_the_open_timeout() -> None:
    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        options = LongPollOptions(url=url, open_timeout_s=0.2, reconnect_delay_s=0.05, max_reconnects=2)
        began = time.monotonic()
        pollers, notes = start_pollers(recorder, options, 1)
        await until(lambda: len(notes) == 1, 5, "the failure")
        assert notes[0][0] is False and "connect_timeout" in notes[0][1]
        await until(lambda: len(server.requests) == 3, 5, "every attempt")
        await asyncio.sleep(0.5)  # and then no more
        assert time.monotonic() - began < scaled(2)
        return finish(recorder, pollers)

    payload, server = serve_script([], body)
    assert dict(payload["errors"]) == {"connect_timeout": 3}
    assert len(server.requests) == 3 and payload["subscribers"] == []


def test_a_held_request_never_answered_times_out_and_is_asked_again() -> None:
    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        options = LongPollOptions(url=url, resume="etag", hold_s=0.1, open_timeout_s=0.1, reconnect_delay_s=0.05)
        began = time.monotonic()
        pollers, notes = start_pollers(recorder, options, 1)
        await until(lambda: len(server.requests) == 4, 5, "the requests")  # one answered, two timed out, one held
        assert time.monotonic() - began < scaled(1.5)  # each bounded by the hold plus the open timeout
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload, server = serve_script([Answer(body=event(0), headers=validators(0))], body)
    assert dict(payload["errors"]) == {"longpoll_timeout": 2}
    assert payload["counters"]["longpoll_requests"] == 1 and payload["recorder"].count("delivery") == 1
    assert [h.get("If-None-Match") for _, h in server.requests] == [None, '"0"', '"0"', '"0"']


def test_a_refused_connection_is_a_connect_error_by_kind() -> None:
    recorder = ProcessRecorder("longpoll", id_limit=10)

    async def main() -> list[Any]:
        options = LongPollOptions(url=f"http://127.0.0.1:{free_port()}/lp", reconnect_delay_s=0.01, max_reconnects=1)
        pollers, notes = start_pollers(recorder, options, 1)
        await until(lambda: bool(notes), 5, "the failure")
        await asyncio.sleep(0.2)
        finish(recorder, pollers)
        return notes

    notes = uvloop.run(main())
    assert notes[0][0] is False and "connect_refused" in notes[0][1]
    assert dict(recorder.connect_failures) == {"connect_refused": 2}


@pytest.mark.parametrize("url", ["ws://127.0.0.1/x", "127.0.0.1:80/x", "http:///x"])
def test_bad_urls_and_styles_are_refused_when_the_options_are_made(url: str) -> None:
    with pytest.raises(ValueError, match="long-poll URL"):
        LongPollOptions(url=url)
    with pytest.raises(ValueError, match="resume"):
        LongPollOptions(url="http://127.0.0.1/x", resume="cookie")


def test_caching_validators_that_cannot_be_sent_back_are_counted_and_the_old_ones_kept() -> None:
    script = [
        Answer(body=event(0), headers=validators(0)),
        Answer(body=event(1), headers={"Last-Modified": LAST_MODIFIED, "Etag": "x" * 300}),  # too long to echo
        Answer(body=event(2)),  # events with no validators at all
        Answer(status=408, headers={"Etag": "2"}),  # nchan's answer when its subscriber timeout passes: empty
        Answer(status=304, headers={"Last-Modified": "\u00e9t\u00e9", "Etag": '"3"'}),  # empty, and not ASCII
    ]

    async def body(server: Scripted, url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, _ = start_pollers(recorder, LongPollOptions(url=url, resume="etag"), 1)
        await until(lambda: len(server.requests) == len(script) + 1, 5, "every answer and the next request")
        return finish(recorder, pollers)

    payload, server = serve_script(script, body)
    assert dict(payload["errors"]) == {"longpoll_bad_validators": 3}
    assert payload["recorder"].count("delivery") == 3
    assert payload["counters"]["longpoll_requests"] == 5 and payload["counters"]["longpoll_empty"] == 2
    assert [h.get("If-None-Match") for _, h in server.requests] == [None] + ['"0"'] * 5


# -- nginx + nchan ----------------------------------------------------------------------------------

@pytest.mark.skipif(nchan_server.missing() is not None, reason=str(nchan_server.missing()))
def test_every_event_reaches_every_nchan_longpoll_subscriber_exactly_once(tmp_path: Path) -> None:
    subscribers, events = 10, 120
    recorder = ProcessRecorder("longpoll", id_limit=1000)

    async def main(publish_url: str, longpoll_url: str) -> dict[str, Any]:
        options = LongPollOptions(url=longpoll_url, resume="etag", open_timeout_s=5)
        pollers, notes = start_pollers(recorder, options, subscribers)
        await until(lambda: len(notes) == subscribers, 5, "subscribers")
        await asyncio.sleep(0.3)  # the first requests (no validators) reach nchan: it starts them at the newest
        async with aiohttp.ClientSession() as http:
            began = time.monotonic()
            for i in range(events):  # 200 events/s, one message each (nchan answers one per request)
                async with http.post(publish_url, data=event(i)) as answer:
                    assert answer.status in (201, 202)
                await asyncio.sleep(max(0.0, began + (i + 1) / 200 - time.monotonic()))
        records = recorder.subscribers
        await until(lambda: all(r.received.unique == events for r in records.values()), 10, "every event")
        await asyncio.sleep(1.2)  # past nchan's subscriber timeout: its 408s are empty answers, not errors
        return finish(recorder, pollers)

    with nchan_server.nchan_server(tmp_path / "nginx") as nchan:
        payload = uvloop.run(main(nchan.publish_url, nchan.longpoll_url))
    assert not payload["errors"]
    for record in payload["subscribers"]:
        assert record.received.unique == events and record.received.duplicates == 0
    assert payload["recorder"].count("delivery") == subscribers * events
    counters = payload["counters"]
    assert counters["longpoll_requests"] - counters["longpoll_empty"] == subscribers * events  # one message each
    assert counters["longpoll_empty"] >= subscribers
