"""The interval poller against real servers on 127.0.0.1: the built-in push target, and a small raw HTTP/1.1
server whose every answer a test chooses per connection and per request (kept alive, closed between polls,
closed instead of answering, hostile, never).

The raw server counts connections, so keep-alive reuse and reconnects can be compared with what the
poller counted, exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
import uvloop
from helpers import scaled
from servers.nchan import free_port
from test_longpoll import event, finish, until  # the same events, waits and hand-over

from deliverybench.adapters.poll_client import Poller, PollOptions
from deliverybench.core.process_recorder import ProcessRecorder
from targets._process import ServerProcess


def ok(body: bytes = b"", last_id: int = -1, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nX-Last-Id: {last_id}\r\n{extra}\r\n").encode() + body


#: what the raw server does instead of answering
CLOSE, HANG = "close", "hang"
Action = bytes | str | tuple[bytes, str]


@dataclass
class RawServer:
    """Answers ``answer(connection, nth request on it, query)``: bytes, ``CLOSE``, ``HANG``, or (bytes, ``CLOSE``)."""

    answer: Callable[[int, int, dict[str, str]], Action]
    requests: list[tuple[int, int, dict[str, str]]] = field(default_factory=list)
    connections: int = 0
    #: seconds after an answer before the server closes an idle connection (None: never)
    idle_close_s: float | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            for nth in range(10**6):
                try:
                    if self.idle_close_s is not None and nth:
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close_s)
                    else:
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                query = dict(parse_qsl(urlsplit(head.split(b" ")[1].decode()).query))
                self.requests.append((number, nth, query))
                action = self.answer(number, nth, query)
                then = ""
                if isinstance(action, tuple):
                    action, then = action
                if action == HANG:
                    await asyncio.sleep(3600)
                if action == CLOSE:
                    return
                assert isinstance(action, bytes)
                writer.write(action)
                try:
                    await writer.drain()
                except ConnectionError:  # the client gave up on a hostile answer
                    return
                if then == CLOSE:
                    return
        finally:
            writer.close()


def serve(server: RawServer, body: Callable[[str, ProcessRecorder], Awaitable[dict[str, Any]]],
          *, id_limit: int = 1000) -> dict[str, Any]:
    recorder = ProcessRecorder("poll", id_limit=id_limit)

    async def main() -> dict[str, Any]:
        listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            return await body(f"http://127.0.0.1:{port}/events", recorder)
        finally:
            listener.close()

    return uvloop.run(main())


def start_pollers(recorder: ProcessRecorder, options: PollOptions, n: int = 1) -> tuple[list[Poller], list[Any]]:
    notes: list[Any] = []
    pollers = [Poller(f"s{i}", lambda: recorder, options, notify=lambda ok, error: notes.append((ok, error)))
               for i in range(n)]
    for poller in pollers:
        poller.start()
    return pollers, notes


# -- the built-in target ----------------------------------------------------------------------------


def test_every_event_reaches_every_poller_exactly_once_with_full_pages_fetched_at_once() -> None:
    subscribers, events = 5, 60
    recorder = ProcessRecorder("poll", id_limit=1000)

    async def main(builtin: dict[str, str]) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            base = (await (await http.get(builtin["stats"])).json())["last_id"] + 1
            pollers, notes = start_pollers(recorder, PollOptions(url=builtin["poll"], interval_s=0.05, limit=7),
                                           subscribers)
            await until(lambda: len(notes) == subscribers, 10, "subscribers")
            assert notes == [(True, None)] * subscribers
            ids = iter(range(base, base + events))
            for size in (1, 5, 1, 20, 2, 30, 1):  # singles and NDJSON batches, some past a page
                async with http.post(builtin["ingress"], data=b"\n".join(event(next(ids)) for _ in range(size))):
                    pass
                await asyncio.sleep(0.02)
            records = recorder.subscribers
            await until(lambda: all(r.received.unique == events for r in records.values()), 10, "every event")
            assert all(p.after == base + events - 1 for p in pollers)
            return finish(recorder, pollers)

    target = ServerProcess("targets.push_server", ["--host", "127.0.0.1", "--port", "0", "--ws-port", "0"])
    target.start()
    try:
        payload = uvloop.run(main(target.urls))
    finally:
        target.stop()
    assert not payload["errors"]
    for record in payload["subscribers"]:
        assert record.received.unique == events and record.received.duplicates == 0
    assert payload["recorder"].count("delivery") == subscribers * events
    counters = payload["counters"]
    assert counters["poll_full_pages"] >= subscribers  # 30 events at 7 a page: several full pages each
    assert counters["poll_requests"] == payload["recorder"].count("poll_request") > counters["poll_full_pages"]


# -- keep-alive ------------------------------------------------------------------------------------


def test_polls_share_one_kept_connection_and_ask_from_the_newest_id() -> None:
    polls = 20

    def answer(conn: int, nth: int, query: dict[str, str]) -> Action:
        if nth == 0:
            return ok(last_id=41)  # the start: the stream is at 41
        if nth == 3:
            return ok(b"\n".join(event(i) for i in (42, 43)), last_id=43, extra="X-Gap: 1\r\n")
        return ok(last_id=43)

    server = RawServer(answer)

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.01, limit=50))
        await until(lambda: len(server.requests) > polls, 5, "the polls")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert server.connections == 1  # the start and every poll over one connection
    asked = [query for _, _, query in server.requests]
    assert asked[0] == {"after": "-1", "limit": "1"}
    assert asked[1:3] == [{"after": "41", "limit": "50"}] * 2 and asked[3] == {"after": "41", "limit": "50"}
    assert all(query == {"after": "43", "limit": "50"} for query in asked[4:])
    counters = payload["counters"]
    assert not payload["errors"] and payload["recorder"].count("delivery") == 2
    assert counters["poll_requests"] == payload["recorder"].count("poll_request") >= polls - 1
    assert counters["poll_empty"] == counters["poll_requests"] - 1 and counters["poll_gaps"] == 1


@pytest.mark.parametrize("how", ["idle timeout", "Connection: close"])
def test_a_server_closing_kept_connections_between_polls_is_reconnected_to_and_no_error(how: str) -> None:
    """Decided: a connection the server closes while no poll is outstanding costs nothing but a new one."""
    polls = 6
    if how == "idle timeout":
        server = RawServer(lambda conn, nth, query: ok(), idle_close_s=0.02)
    else:
        server = RawServer(lambda conn, nth, query: (ok(extra="Connection: close\r\n"), CLOSE))

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.08))
        await until(lambda: len(server.requests) > polls, 5, "the polls")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert not payload["errors"]
    # one request on each connection (but the first poll may come before the idle timeout)
    assert server.connections >= len(server.requests) - 1
    assert payload["counters"]["poll_requests"] == payload["counters"]["poll_empty"] >= polls


def test_a_kept_connection_closed_instead_of_answered_is_asked_once_more_on_a_new_one() -> None:
    """The keep-alive race: the server closes a kept connection as the poll is written. Asked again, uncounted."""
    polls = 5
    server = RawServer(lambda conn, nth, query: ok() if nth == 0 else CLOSE)  # each connection answers once

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.02))
        await until(lambda: recorder.counters["poll_requests"] >= polls, 5, "the polls")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert not payload["errors"]
    assert payload["counters"]["poll_requests"] >= polls


def test_a_new_connection_closed_instead_of_answered_is_an_error_and_the_next_poll_waits() -> None:
    server = RawServer(lambda conn, nth, query: ok() if conn == 0 and nth == 0 else CLOSE)

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.05))
        await until(lambda: recorder.errors["poll_closed"] >= 3, 5, "the failures")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    closed = payload["errors"]["poll_closed"]
    assert set(payload["errors"]) == {"poll_closed"} and not payload["counters"]["poll_requests"]
    # the first failing poll was asked again on a new connection (the kept one may have been stale), the rest not
    assert len(server.requests) == 1 + 1 + closed


# -- hostile and silent servers ----------------------------------------------------------------------


def test_hostile_answers_are_capped_and_counted_by_kind() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 200_000  # and it would go on
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"y" * 70_000 + b"\r\n"
    script: list[Action] = [huge, endless, b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
                            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", ok(event(0), last_id=0), ok(last_id=0)]

    def answer(conn: int, nth: int, query: dict[str, str]) -> Action:
        if conn == 0 and nth == 0:
            return ok()
        return script[min(len(server.requests) - 2, len(script) - 1)]

    server = RawServer(answer)

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.01, max_body=64 * 1024))
        await until(lambda: recorder.counters["poll_empty"] >= 1, 10, "a good answer after the bad ones")
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert dict(payload["errors"]) == {"poll_oversized": 2, "poll_malformed_response": 1, "poll_http_503": 1}
    assert payload["recorder"].count("delivery") == 1
    # the hostile answers were never finished: only the 503 and the good ones count as requests
    counters = payload["counters"]
    assert counters["poll_requests"] == counters["poll_empty"] + 2
    assert server.connections == 4  # every hostile answer's connection dropped; the 503 kept its own


def test_a_poll_never_answered_times_out_is_counted_and_polling_goes_on() -> None:
    server = RawServer(lambda conn, nth, query: HANG if conn == 0 and nth == 1 else ok())

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        began = time.monotonic()
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.02, timeout_s=0.2))
        await until(lambda: recorder.counters["poll_requests"] >= 3, 5, "polls after the timeout")
        assert time.monotonic() - began < scaled(1.5)
        assert notes == [(True, None)]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert dict(payload["errors"]) == {"poll_timeout": 1}
    assert server.connections == 2  # the silent connection dropped, the next poll on a new one


def test_a_server_that_never_answers_the_start_fails_it_within_the_timeout_and_nothing_hangs() -> None:
    server = RawServer(lambda conn, nth, query: HANG)

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        began = time.monotonic()
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.01, timeout_s=0.2), 3)
        await until(lambda: len(notes) == 3, 5, "the failures")
        assert time.monotonic() - began < scaled(1)
        assert all(not started and "TimeoutError" in str(why) for started, why in notes)
        await asyncio.sleep(0.2)  # and nothing more is asked
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert dict(payload["errors"]) == {"poll_start_failed": 3} and payload["subscribers"] == []
    assert len(server.requests) == 3


@pytest.mark.parametrize(("answer", "why"), [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "poll URL answered 404"),
    (ok().replace(b"X-Last-Id: -1", b"X-Last-Id: soon"), "ValueError"),
])
def test_a_start_answered_badly_fails_the_start(answer: bytes, why: str) -> None:
    server = RawServer(lambda conn, nth, query: answer)

    async def body(url: str, recorder: ProcessRecorder) -> dict[str, Any]:
        pollers, notes = start_pollers(recorder, PollOptions(url=url, interval_s=0.01))
        await until(lambda: bool(notes), 5, "the failure")
        await asyncio.sleep(0.1)
        assert notes[0][0] is False and why in notes[0][1]
        return finish(recorder, pollers)

    payload = serve(server, body)
    assert dict(payload["errors"]) == {"poll_start_failed": 1} and len(server.requests) == 1


def test_a_refused_start_and_a_stop_before_the_start_are_told() -> None:
    recorder = ProcessRecorder("poll", id_limit=10)

    async def main() -> list[Any]:
        refused, notes = start_pollers(recorder, PollOptions(url=f"http://127.0.0.1:{free_port()}/events"))
        await until(lambda: bool(notes), 5, "the failure")
        stopped, told = start_pollers(recorder, PollOptions(url=f"http://127.0.0.1:{free_port()}/events"))
        finish(recorder, refused + stopped)
        await asyncio.sleep(0.05)
        return notes + told

    notes = uvloop.run(main())
    assert notes[0][0] is False and "poll_refused" in notes[0][1]
    assert notes[1] == (False, "stopped")
    assert dict(recorder.connect_failures) == {"poll_start_failed": 1}
