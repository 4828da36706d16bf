"""WebSocket push end to end: real Locust runs against real targets on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deliverybench.adapters.results_file import read_mode_result
from helpers import assert_ok, REPO, env, locust_csv_row, run_bench, run_locust
from targets.builtin import PushTarget


def _push(doc: dict) -> dict:
    assert set(doc["modes"]) == {"push"}
    return doc["modes"]["push"]


def test_every_subscriber_gets_every_event_exactly_once(tmp_path: Path) -> None:
    users, rate, duration = 40, 10, 2  # 20 events
    proc, doc = run_locust("ws_push.py", tmp_path, "--rate", str(rate), "--duration", str(duration),
                           "--drain", "1", users=users)
    push = _push(doc)
    events = rate * duration
    audit = push["audit"]
    assert_ok(push)
    assert audit["published"] == events
    assert audit["subscribers"] == users
    assert audit["subscribers_full"] == users
    assert audit["expected"] == events * users
    assert audit["delivered_unique"] == events * users
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0
    assert audit["balanced"] is True and audit["recorded_matches"] is True
    assert push["summary"]["delivery"]["count"] == events * users
    assert push["summary"]["connect"]["count"] == users
    # Every event's fan-out completed.
    assert all(row[2] is not None for row in push["fanout"]["rows"])
    # Locust's own statistics show the deliveries (aggregated, not one event per message).
    row = locust_csv_row(tmp_path, "delivery", "push")
    assert int(row["Request Count"]) == events * users
    assert int(row["Failure Count"]) == 0
    # The harness sampled itself and the target: once per process and second, never 300 % of a core.
    assert {"harness", "target"} <= set(push["resources"]["costs"])
    rows = push["resources"]["rows"]
    keys = [(row[1], row[2], int(row[0])) for row in rows]
    assert len(keys) == len(set(keys))
    assert len({row[2] for row in rows if row[1] == "harness"}) == 1
    assert all(0 <= row[4] <= 100 * (os.cpu_count() or 1) for row in rows)
    assert proc.returncode == 0


def test_known_target_delay_shows_in_percentiles(tmp_path: Path) -> None:
    delay_ms = 100.0
    _, doc = run_locust("ws_push.py", tmp_path, "--rate", "20", "--duration", "2", "--drain", "1",
                        "--target-delay-ms", str(delay_ms), users=20)
    summary = _push(doc)["summary"]
    # The delay is a floor; the band above it is the harness + loopback overhead.
    assert delay_ms <= summary["delivery"]["p50"] <= delay_ms + 40, summary["delivery"]
    assert delay_ms <= summary["service"]["p50"] <= delay_ms + 40, summary["service"]
    assert summary["delivery"]["min"] >= delay_ms


def test_processes_merge_exactly(tmp_path: Path) -> None:
    users, rate, duration = 60, 10, 2
    _, doc = run_locust("ws_push.py", tmp_path, "--processes", "2", "--rate", str(rate),
                        "--duration", str(duration), "--drain", "1", users=users)
    push = _push(doc)
    audit = push["audit"]
    assert push["params"]["processes"] == 2
    assert audit["subscribers"] == users
    assert audit["delivered_unique"] == users * rate * duration
    assert audit["lost"] == 0 and audit["balanced"]
    assert push["summary"]["delivery"]["count"] == users * rate * duration
    rows = push["resources"]["rows"]
    harness_pids = {row[2] for row in rows if row[1] == "harness"}
    assert len(harness_pids) == 3  # master + two workers all sampled
    # one reading per process per second, and no impossible CPU figure (100 = one core)
    keys = [(row[1], row[2], int(row[0])) for row in rows]
    assert len(keys) == len(set(keys))
    cores = os.cpu_count() or 1
    assert all(0 <= row[4] <= 100 * cores for row in rows if row[1] != "machine")
    assert all(0 <= row[4] <= 100 for row in rows if row[1] == "machine")
    # Locust's master aggregated the workers' delivery stats too.
    assert int(locust_csv_row(tmp_path, "delivery", "push")["Request Count"]) == users * rate * duration


def test_echo_round_trip_is_recorded(tmp_path: Path) -> None:
    # Sessions spread over two loopback source addresses, as past ~28k sessions per address.
    _, doc = run_locust("ws_push.py", tmp_path, "--rate", "5", "--duration", "3", "--drain", "1",
                        "--echo-interval", "0.5", "--source-addresses", "127.0.0.2,127.0.0.3", users=10)
    push = _push(doc)
    assert push["summary"]["echo_rtt"]["count"] >= 10 * 3
    assert push["extra"]["echo_sent"] >= push["summary"]["echo_rtt"]["count"]
    assert push["audit"]["delivered_unique"] == 10 * 15  # echoes are never deliveries


def test_external_relay_target(tmp_path: Path) -> None:
    with PushTarget() as relay:  # started like any external server; the harness only gets URLs
        proc = run_bench(tmp_path, "--target", "relay", "--publish-url", relay.ingress_url,
                         "--subscribe-url", relay.egress_url("push"), "--modes", "push",
                         "-u", "25", "--rate", "10", "--duration", "2", "--drain", "1", "--no-report")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    push = _push(doc)
    assert push["target"]["kind"] == "external"
    assert push["audit"]["delivered_unique"] == 25 * 20 and push["audit"]["lost"] == 0


def test_run_bench_end_to_end(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--modes", "push", "-u", "30", "--rate", "5", "--duration", "2", "--drain", "1",
                     "--no-report")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "p99 ms" in out and "results:" in out
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["schema_version"] == 2
    push = _push(doc)
    assert push["audit"]["delivered_unique"] == 30 * 10
    assert doc["config"]["subscribers"] == 30
    assert doc["run"]["status"] in ("ok", "degraded")
    assert_ok(push)
    assert doc["packages"]["locust"] != "not installed"
    # Locust wrote only its mode result; this run built the document around it
    found = read_mode_result(tmp_path / "run" / "push.results.json")
    assert found.mode == "push" and found.result["audit"] == push["audit"]
    assert doc["config"]["locust"] == dict(found.locust_options) and found.locust_options["num_users"] == 30


def test_run_bench_with_a_relative_out_folder(tmp_path: Path) -> None:
    """The README's plain `python run_bench.py` writes under the relative bench-out/."""
    proc = subprocess.run([sys.executable, str(REPO / "run_bench.py"), "--modes", "push", "-u", "5", "--rate", "5",
                           "--duration", "1", "--drain", "1", "--no-report", "--run-id", "rel"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "bench-out" / "rel" / "results.json").read_text())
    assert doc["modes"]["push"]["audit"]["delivered_unique"] == 5 * 5


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "--rate must be positive"),
    (["--modes", "smoke"], "unknown mode"),
    (["--frobnicate"], "unrecognized argument"),
    (["--target", "relay"], "--target relay needs --publish-url"),
    (["--target", "relay", "--publish-url", "ftp://x", "--subscribe-url", "ws://127.0.0.1:1/"], "must be a http:// or https:// or ws:// or wss:// or tcp:// URL"),
    (["--target", "nonesuch"], "unknown target"),
    (["--config", "/nonexistent.toml"], "does not exist"),
    (["--schedule", "ramp"], "rate_end"),
])
def test_bad_usage_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_bench(tmp_path, *args, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_target_exits_3_and_writes_results(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--target", "relay", "--publish-url", "http://127.0.0.1:9/publish",
                     "--subscribe-url", "ws://127.0.0.1:9/", "--modes", "push", "-u", "5", "--duration", "1",
                     "--no-report", timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["modes"]["push"]["status"] == "failed"
    assert "cannot reach" in doc["modes"]["push"]["failure"]


def test_target_vanishing_mid_run_is_reported_not_hung_on(tmp_path: Path) -> None:
    target = PushTarget()
    target.start()
    killer = threading.Timer(6.0, target.stop)  # after connect + settle, mid-stream
    killer.start()
    started = time.monotonic()
    try:
        proc = run_bench(tmp_path, "--target", "relay", "--publish-url", target.ingress_url,
                         "--subscribe-url", target.egress_url("push"), "--modes", "push", "-u", "10",
                         "--rate", "10", "--duration", "30", "--drain", "1", "--no-report", timeout=150)
    finally:
        killer.cancel()
        target.stop()
    assert time.monotonic() - started < 90
    assert proc.returncode == 3, proc.stdout + proc.stderr
    push = json.loads((tmp_path / "run" / "results.json").read_text())["modes"]["push"]
    assert push["status"] == "failed"
    assert "failed" in push["failure"]
    # What was measured before the target died is still there, and still adds up.
    assert push["audit"]["delivered_unique"] > 0
    assert push["audit"]["balanced"]
    assert any(kind.startswith("publish_") or kind.startswith("closed_") for kind in push["errors"])
