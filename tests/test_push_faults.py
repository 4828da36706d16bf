"""Push sessions against a server that fails them at the protocol's edges (``tests/servers/hostile_ws.py``).

A refused first handshake must be tried again, with backoff, and its
reason counted by status; a frame over ``max_size`` fails the session, and
nothing that arrives after it -- however valid it looks -- is read.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import uvloop
from helpers import locust_csv_row, run_locust, scaled
from servers.hostile_ws import HostileWs

from deliverybench.adapters.ws_receiver import PushSession, PushSessionOptions, reconnect_delay
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder
from targets._process import ServerProcess


def _event(i: int) -> bytes:
    now = time.time_ns()
    return encode_event(Event(i, now - 1_000_000), now - 500_000, 256)


def _serve(server: HostileWs, script: Any, *, id_limit: int = 1000,
           **options: Any) -> tuple[ProcessRecorder, list[tuple[bool, str | None]]]:
    """One PushSession against ``server`` in this thread's loop; ``script(server, session)`` drives it."""
    recorder = ProcessRecorder("push", id_limit=id_limit)
    notes: list[tuple[bool, str | None]] = []

    async def main() -> None:
        urls = await server.start()
        session = PushSession("s", recorder, PushSessionOptions(url=urls["push"], **options),
                              notify=lambda ok, error: notes.append((ok, error)))
        session.start()
        try:
            await asyncio.wait_for(script(server, session), scaled(10))
        finally:
            session.stop(time.time_ns())
            await asyncio.sleep(0.1)
            await server.stop()

    uvloop.run(main())
    return recorder, notes


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- a refused handshake ---------------------------------------------------------------------------

def test_the_reconnect_delay_doubles_up_to_its_cap_and_is_jittered() -> None:
    assert [reconnect_delay(n, 0.5, 4.0, 1.0) for n in range(7)] == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [reconnect_delay(n, 0.5, 4.0, 0.0) for n in (1, 3, 9)] == [0.25, 1.0, 2.0]  # never below half
    assert reconnect_delay(10**6, 1.0, 5.0, 1.0) == 5.0  # any attempt count, bounded


@pytest.mark.parametrize("body", ["refused on purpose\n", ""], ids=["with-body", "empty"])
def test_refused_handshakes_are_retried_and_counted_by_status(body: str) -> None:
    async def script(server: HostileWs, session: PushSession) -> None:
        await _until(lambda: session.recorder.connected == 1)

    server = HostileWs(refuse_upgrades=3, refusal_body=body)
    recorder, notes = _serve(server, script, reconnect_delay_s=0.05, reconnect_max_delay_s=0.2)
    assert server.upgrades == 4 and server.refused == 3
    assert recorder.connect_failures == {"connect_http_503": 3}
    assert recorder.errors == {"connect_http_503": 3}
    assert len(notes) == 1 and notes[0][0] is False and (notes[0][1] or "").startswith("http_503: ")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_target_refusing_the_first_upgrades_gets_every_session_and_every_delivery(tmp_path: Path) -> None:
    users, rate, duration, refused = 50, 10, 2, 10
    server = ServerProcess("tests.servers.hostile_ws", ["--refuse-upgrades", str(refused)])
    server.start()
    try:
        started = time.monotonic()
        proc, doc = run_locust("ws_push.py", tmp_path, "--publish-url", server.urls["ingress"],
                               "--subscribe-url", server.urls["push"], "--rate", str(rate),
                               "--duration", str(duration), "--drain", "1", "--settle-timeout", "60", users=users)
        took = time.monotonic() - started
    finally:
        server.stop()
    push = doc["modes"]["push"]
    audit = push["audit"]
    assert audit["subscribers"] == audit["subscribers_full"] == users
    assert push["summary"]["connect"]["count"] == users
    assert audit["expected"] == audit["delivered_unique"] == users * rate * duration
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0
    assert push["summary"]["delivery"]["count"] == users * rate * duration
    assert push["errors"] == {"connect_http_503": refused}
    # Locust's own statistics name each refusal once, with its reason
    assert int(locust_csv_row(tmp_path, "connect", "push")["Failure Count"]) == refused
    assert "Traceback" not in proc.stderr and "Fatal error" not in proc.stderr, proc.stderr[-3000:]
    assert "subscribers connected after" not in proc.stderr  # the settle wait never ran out
    assert took < 40, took  # the settle timeout alone is 60 s


# -- an oversized frame ------------------------------------------------------------------------------

def test_nothing_after_an_oversized_frame_is_read() -> None:
    before, max_size = 5, 4096

    async def script(server: HostileWs, session: PushSession) -> None:
        await _until(lambda: session.recorder.connected == 1)
        for i in range(before):
            await server.forward(_event(i))  # the last one is followed by the oversized frame
        await _until(lambda: session.recorder.connected == 0)
        await asyncio.sleep(0.1)

    server = HostileWs(oversize_after=before, oversize_bytes=8 * max_size)
    recorder, _ = _serve(server, script, id_limit=2 * before, max_size=max_size, max_reconnects=0)
    assert server.oversized == 1
    payload = recorder.take_payload(final=True, now_ns=time.time_ns())
    (record,) = payload["subscribers"]
    assert payload["recorder"].count("delivery") == before
    assert record.received.unique == before and record.received.duplicates == 0
    # the frame once by its own kind, and the session the client failed by the code it failed it with
    assert payload["errors"] == {"malformed_oversized": 1, "closed_1009": 1}


@pytest.mark.e2e
@pytest.mark.slow
def test_an_oversized_frame_of_smuggled_events_costs_one_count_per_session_in_a_real_run(tmp_path: Path) -> None:
    users, before = 10, 5
    server = ServerProcess("tests.servers.hostile_ws", ["--oversize-after", str(before), "--then-refuse"])
    server.start()
    try:
        proc, doc = run_locust("ws_push.py", tmp_path, "--publish-url", server.urls["ingress"],
                               "--subscribe-url", server.urls["push"], "--rate", "10", "--duration", "2",
                               "--drain", "1", users=users)
    finally:
        server.stop()
    push = doc["modes"]["push"]
    audit, errors = push["audit"], push["errors"]
    # what came before the frame, exactly; nothing of what was inside it
    assert audit["delivered_unique"] == push["summary"]["delivery"]["count"] == users * before
    assert audit["duplicates"] == 0 and audit["unexpected"] == 0
    assert errors["malformed_oversized"] == users and errors["closed_1009"] == users
    assert set(errors) <= {"malformed_oversized", "closed_1009", "connect_http_503"}
    assert "Traceback" not in proc.stderr and "Fatal error" not in proc.stderr, proc.stderr[-3000:]
