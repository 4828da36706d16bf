"""The open-model publisher against real servers: nginx + nchan, and relays that stall, refuse and drop.

Every case runs ``run_bench.py`` end to end (real Locust, real sockets on
127.0.0.1) and checks counts that add up exactly: ``published = accepted +
refused`` and ``expected = delivered + lost``, with nothing hidden behind
``ok``.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import assert_ok, run_bench
from servers import nchan as nchan_server
from targets._process import ServerProcess


def _push(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "run" / "results.json").read_text())["modes"]["push"]


def against_relay(tmp: Path, relay_flags: list[str], *args: str, users: int = 10, timeout: float = 180,
                  server: str = "tests.servers.relay") -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Start the test relay with ``relay_flags``, run ``run_bench.py`` against it; (process, push result, relay stats)."""
    relay = ServerProcess(server, relay_flags)
    relay.start()
    try:
        proc = run_bench(tmp, "--target", "relay", "--publish-url", relay.urls["ingress"], "--subscribe-url",
                         relay.urls["push"], "-u", str(users), "--no-report", *args, timeout=timeout)
        with urllib.request.urlopen(relay.urls["stats"], timeout=5) as response:
            stats = dict(json.loads(response.read()))
    finally:
        relay.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr  # loss and refusals are findings, not failures
    return proc, _push(tmp), stats


@pytest.mark.skipif(nchan_server.missing() is not None, reason=str(nchan_server.missing()))
def test_nchan_gets_every_event_to_every_subscriber_once_one_event_per_post(tmp_path: Path) -> None:
    users, rate, duration = 20, 1000, 3
    with nchan_server.nchan(tmp_path / "nginx") as (publish_url, subscribe_url):
        proc = run_bench(tmp_path, "--target", "relay", "--publish-url", publish_url, "--subscribe-url",
                         subscribe_url, "-u", str(users), "--rate", str(rate), "--duration", str(duration),
                         "--drain", "2", "--no-report", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    push = _push(tmp_path)
    audit, publisher = push["audit"], push["extra"]["publisher"]
    events = rate * duration
    assert push["params"]["schedule"]["rate"] == rate
    assert (audit["published"], audit["accepted"], audit["refused"]) == (events, events, 0)
    assert publisher["batch"] == 1 and publisher["requests"] == events  # one event per POST
    assert audit["expected"] == audit["delivered_unique"] == events * users
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0
    assert_ok(push)


def test_a_batch_forwarded_as_one_message_counts_every_event(tmp_path: Path) -> None:
    # 4 bursts of 50 events due at once, sent as NDJSON batches of 10: 20 POSTs, 20 messages of 10 events
    proc, push, stats = against_relay(tmp_path, [], "--schedule", "burst", "--burst-size", "50",
                                      "--burst-interval", "0.5", "--duration", "2", "--publish-batch", "10",
                                      "--drain", "1")
    audit = push["audit"]
    assert push["extra"]["publisher"]["requests"] == 20 == stats["forwarded"]
    assert audit["published"] == audit["accepted"] == 200
    assert audit["delivered_unique"] == audit["expected"] == 200 * 10
    assert audit["lost"] == 0 and push["errors"] == {}
    assert_ok(push)


def test_a_stalling_ingress_shows_as_latency_not_as_a_smaller_stream(tmp_path: Path) -> None:
    # one JSON event per POST only, and no answer for 1 s of every 3 s
    proc, push, stats = against_relay(tmp_path, ["--single", "--stall-every", "3", "--stall-for", "1"],
                                      "--rate", "50", "--duration", "6", "--drain", "2")
    audit, summary = push["audit"], push["summary"]
    assert stats["stalled"] > 0 and stats["rejected_batches"] == 0
    assert (audit["published"], audit["accepted"], audit["refused"]) == (300, 300, 0)
    assert audit["delivered_unique"] == audit["expected"] == 300 * 10 and audit["lost"] == 0
    assert summary["delivery"]["p99"] >= 800  # the stall is in the figures, counted from the due time
    assert summary["service"]["p99"] >= 800
    # the publisher itself kept to its schedule: stalled requests never held back the next event
    assert summary["schedule_lag"]["p99"] < 50 and summary["publish_lag"]["p99"] < 50
    assert_ok(push)


def test_refused_events_are_counted_exactly_and_the_run_is_not_ok(tmp_path: Path) -> None:
    proc, push, stats = against_relay(tmp_path, ["--refuse-every", "10"], "--rate", "50", "--duration", "4",
                                      "--drain", "1")
    audit = push["audit"]
    assert stats["refused"] == 20
    assert (audit["published"], audit["accepted"], audit["refused"]) == (200, 180, 20)
    assert audit["expected"] == audit["delivered_unique"] == 180 * 10 and audit["lost"] == 0
    assert push["errors"] == {"publish_http_503": 20}
    assert push["status"] == "degraded"
    assert push["status_reasons"] == ["refused 10 % (20 of 200 published events)"]
    table = proc.stdout
    header = next(line for line in table.splitlines() if line.startswith("mode"))
    row = next(line for line in table.splitlines() if line.startswith("push "))
    columns, cells = re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", row.strip())
    assert dict(zip(columns, cells))["status"] == "degraded"
    assert dict(zip(columns, cells))["refused"] == "20"
    assert "! push degraded: refused 10 % (20 of 200 published events)" in table


def test_dropped_sessions_never_leave_the_run_ok(tmp_path: Path) -> None:
    proc, push, stats = against_relay(tmp_path, ["--drop-sessions-at", "1"], "--rate", "20", "--duration", "4",
                                      "--drain", "1")
    assert stats["dropped"] == 10
    assert push["status"] == "degraded"
    assert any(reason == "10 sessions dropped" for reason in push["status_reasons"]), push["status_reasons"]
    assert push["audit"]["balanced"]


def test_a_websocket_fan_out_takes_events_as_frames_and_delivers_every_one(tmp_path: Path) -> None:
    # publishers and subscribers are all WebSocket clients of one small server (a Node ws fan-out)
    users, rate, duration = 10, 500, 3
    proc, push, stats = against_relay(tmp_path, [], "--rate", str(rate), "--duration", str(duration), "--drain", "1",
                                      users=users, server="tests.servers.ws_fanout")
    audit, publisher = push["audit"], push["extra"]["publisher"]
    events = rate * duration
    assert (audit["published"], audit["accepted"], audit["refused"]) == (events, events, 0)
    assert publisher["requests"] == events and publisher["concurrency"] == 4  # a frame each, a few sockets
    assert stats["frames"] >= events and 1 <= stats["publishers"] <= 4
    assert audit["expected"] == audit["delivered_unique"] == events * users
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and push["errors"] == {}
    assert_ok(push)
