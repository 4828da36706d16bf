"""Servers as they are, measured through ``run_bench.py`` with no code: envelopes, subscribe messages, GraphQL.

Each server (``tests/servers/envelope.py``) runs on 127.0.0.1 in its own
process; the harness is told only its URLs and how it speaks
(``--event-path``, ``--subscribe-message``, ``--protocol``), and every event
must be counted exactly: ``deliveries == subscribers x events``, nothing lost.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import LOAD_REASONS, run_bench

from targets._process import ServerProcess

pytestmark = pytest.mark.e2e

USERS, RATE, DURATION = 8, 20, 2
SUBSCRIBE = '{"type":"subscribe","channel":"{channel}"}'
#: reasons that say the shared test machine, not the server, was short of CPU
LOAD = (*LOAD_REASONS, "machine busy")


@contextmanager
def _server(*args: str) -> Iterator[ServerProcess]:
    server = ServerProcess("tests.servers.envelope", list(args))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _stats(server: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.urls["stats"], timeout=5) as answer:
        return dict(json.loads(answer.read()))


def _bench(tmp: Path, server: ServerProcess, *args: str) -> tuple[int, str, dict[str, Any]]:
    proc = run_bench(tmp, "--target", "relay", "--publish-url", server.urls["ingress"], "--subscribe-url",
                     server.urls["push"], "-u", str(USERS), "--rate", str(RATE), "--duration", str(DURATION),
                     "--drain", "1", "--settle", "0.5", "--settle-timeout", "10", "--open-timeout", "3",
                     "--no-report", *args, timeout=120)
    results = tmp / "run" / "results.json"
    modes = json.loads(results.read_text())["modes"] if results.is_file() else {}
    return proc.returncode, proc.stdout + proc.stderr, dict(modes)


def _every_event_once(result: dict[str, Any]) -> None:
    audit = result["audit"]
    assert audit["published"] == audit["accepted"] == RATE * DURATION, audit
    assert audit["delivered_unique"] == audit["expected"] == USERS * RATE * DURATION, audit
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0, audit
    assert not result["errors"], result["errors"]
    reasons = result.get("status_reasons") or []
    assert result["status"] in ("ok", "degraded") and all(r.startswith(LOAD) for r in reasons), reasons


def test_an_envelope_server_that_wants_a_subscribe_message_is_measured_exactly_over_ws_and_sse(
        tmp_path: Path) -> None:
    with _server("--subscribe", SUBSCRIBE.replace("{channel}", "orders")) as server:
        code, out, modes = _bench(tmp_path, server, "--modes", "push,sse", "--sse-url", server.urls["sse"],
                                  "--event-path", "/data", "--channel", "orders", "--subscribe-message", SUBSCRIBE)
        stats = _stats(server)
    assert code == 0, out
    for result in modes.values():
        _every_event_once(result)
    assert stats["refused"] == {}, stats  # every session sent exactly the subscribe message, nothing else


def test_without_its_subscribe_message_the_server_sends_nothing(tmp_path: Path) -> None:
    """The control for the test above: the subscribe message is what makes the events come."""
    with _server("--subscribe", SUBSCRIBE) as server:
        code, out, modes = _bench(tmp_path, server, "--modes", "push", "--event-path", "/data")
    assert code == 3, out
    assert modes["push"]["audit"].get("delivered_unique", 0) == 0


def test_a_graphql_transport_ws_server_is_measured_exactly(tmp_path: Path) -> None:
    query = 'subscription { onEvent(channel: "{channel}") { id due_ns sent_ns stream pad } }'
    with _server("--style", "graphql") as server:
        code, out, modes = _bench(tmp_path, server, "--modes", "push", "--protocol", "graphql-ws",
                                  "--event-path", "/payload/data/onEvent", "--subscribe-message", query)
        stats = _stats(server)
    assert code == 0, out
    _every_event_once(modes["push"])
    # each session offered the subprotocol, was acknowledged, answered the server's ping, then subscribed
    assert stats["refused"] == {} and stats["pongs"] == USERS and stats["sessions"] == USERS, stats


def test_a_server_whose_messages_do_not_decode_fails_the_run_with_exit_3(tmp_path: Path) -> None:
    with _server("--style", "undecodable") as server:
        code, out, modes = _bench(tmp_path, server, "--modes", "push", "--event-path", "/data")
    assert code == 3, out
    push = modes["push"]
    assert set(push["errors"]) == {"malformed_event"}, push["errors"]
    assert push["errors"]["malformed_event"] >= USERS * RATE * DURATION, push["errors"]
    assert push["audit"].get("delivered_unique", 0) == 0
    # the failure line, and the results, show what arrived beside what was expected
    shown = ("first message '<html><body>event published</body></html>' "
             "(expected a JSON message with the event at /data)")
    assert f"nothing was delivered: {shown}" in out, out
    assert push["extra"]["first_undecodable"] == {
        "sample": "'<html><body>event published</body></html>'",
        "expected": "a JSON message with the event at /data"}


@pytest.mark.parametrize("path", ["data", "/a~2"])
def test_a_bad_event_path_is_exit_2_with_one_line(tmp_path: Path, path: str) -> None:
    proc = run_bench(tmp_path, "--target", "relay", "--modes", "push", "--publish-url", "http://127.0.0.1:9/p",
                     "--subscribe-url", "ws://127.0.0.1:9/", "--event-path", path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "event path" in lines[0] and path in lines[0], proc.stderr


def test_a_webhook_sender_that_signs_nothing_is_measured_with_webhook_signing_none_and_named_without(
        tmp_path: Path) -> None:
    server = ServerProcess("tests.servers.unsigned_webhooks", [])
    server.start()
    try:
        def bench(tmp: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
            tmp.mkdir()
            proc = run_bench(tmp, "--target", "relay", "--modes", "callback", "--publish-url",
                             server.urls["ingress"], "--callback-url", server.urls["callback"], "-u", str(USERS),
                             "--rate", str(RATE), "--duration", str(DURATION), "--drain", "1", "--settle", "0.5",
                             "--no-report", *args, timeout=120)
            results = tmp / "run" / "results.json"
            modes = json.loads(results.read_text())["modes"] if results.is_file() else {}
            return proc.returncode, proc.stdout + proc.stderr, dict(modes)

        code, out, modes = bench(tmp_path / "none", "--webhook-signing", "none")
        assert code == 0, out
        _every_event_once(modes["callback"])
        assert modes["callback"]["target"]["dialect"] == {"callback": {"webhook_signing": "none"}}
        sent = _stats(server)
        assert sent["refused"] == 0 and sent["sent"] == USERS * RATE * DURATION, sent

        # told nothing, the harness expects Standard Webhooks signatures: every delivery refused, and it says why
        code, out, modes = bench(tmp_path / "signed")
        assert code == 3, out
        failure = modes["callback"]["failure"]
        assert failure == ("nothing was delivered: first message 'webhook-id: , webhook-timestamp: , "
                           "webhook-signature: ' (expected Standard Webhooks headers webhook-id, webhook-timestamp "
                           "and webhook-signature; a sender that signs nothing: --webhook-signing none)"), failure
        assert modes["callback"]["errors"] == {"rejected_signature": USERS * RATE * DURATION}, modes["callback"]
    finally:
        server.stop()
