"""Callback, burst and poll end to end: real Locust runs, real targets, loopback only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import assert_ok, locust_csv_row, run_bench, run_locust
from targets.builtin import CallbackTarget, SinkTarget


def _mode(doc: dict, name: str) -> dict:
    assert set(doc["modes"]) == {name}
    return doc["modes"][name]


def _callback_args(target: CallbackTarget) -> list[str]:
    return ["--publish-url", target.ingress_url, "--subscribe-url", target.egress_url("callback"),
            "--stats-url", target.stats_url, "--target-pids", ",".join(map(str, target.pids()))]


# -- callback -------------------------------------------------------------------------------


def test_callback_every_subscriber_gets_every_event(tmp_path: Path) -> None:
    users, rate, duration = 30, 10, 2
    _, doc = run_locust("webhook_callback.py", tmp_path, "--rate", str(rate), "--duration", str(duration),
                        "--drain", "2", users=users)
    cb = _mode(doc, "callback")
    n = users * rate * duration
    assert_ok(cb)
    assert cb["audit"]["delivered_unique"] == n and cb["audit"]["lost"] == 0 and cb["audit"]["balanced"]
    assert cb["summary"]["delivery"]["count"] == n
    assert cb["summary"]["first_attempt"]["count"] == n
    webhook = cb["extra"]["webhook"]
    assert webhook["attempts"] == n and webhook["delivered"] == n and webhook["retries"] == 0
    assert cb["extra"]["acked"] == n and cb["extra"]["receiver_requests"] == n
    assert int(locust_csv_row(tmp_path, "delivery", "callback")["Request Count"]) == n


def test_callback_failing_first_attempts_still_delivers_everything_once(tmp_path: Path) -> None:
    users, rate, duration = 20, 10, 2
    n = users * rate * duration
    _, doc = run_locust("webhook_callback.py", tmp_path, "--rate", str(rate), "--duration", str(duration),
                        "--drain", "3", "--fail-ratio", "0.2", users=users)
    cb = _mode(doc, "callback")
    extra, webhook = cb["extra"], cb["extra"]["webhook"]
    failures = extra["simulated_failures"]
    assert 0.1 * n < failures < 0.3 * n  # a stable 20 % of webhook-ids
    assert cb["audit"]["delivered_unique"] == n and cb["audit"]["lost"] == 0
    assert webhook["attempts"] == n + failures > n
    assert webhook["retries"] == failures and webhook["failures"] == {"http_500": failures}
    assert webhook["first_attempt_delivered"] == n - failures
    assert cb["summary"]["first_attempt"]["count"] == n - failures
    assert cb["summary"]["delivery"]["count"] == n
    assert extra["receiver_requests"] == webhook["attempts"]


def test_callback_duplicates_are_counted_not_recorded_twice(tmp_path: Path) -> None:
    # The receiver acks after 400 ms but the target gives up on an attempt after 150 ms, so
    # every message is retried and arrives again: duplicates, never a second delivery.
    users, events = 5, 6
    with CallbackTarget(timeout_s=0.15, retry_schedule="0.05,0.05") as target:
        _, doc = run_locust("webhook_callback.py", tmp_path, *_callback_args(target), "--rate", "6",
                            "--duration", "1", "--drain", "3", "--ack-delay", "400", users=users)
    cb = _mode(doc, "callback")
    n = users * events
    assert cb["audit"]["delivered_unique"] == n
    assert cb["summary"]["delivery"]["count"] == n
    duplicates = cb["audit"]["duplicates"]
    assert duplicates >= n  # at least one retry per message
    assert cb["extra"]["duplicates_webhook_id"] == duplicates
    assert cb["extra"]["receiver_requests"] == n + duplicates
    assert cb["extra"]["webhook"]["failures"].get("timeout", 0) > 0


def test_callback_tampered_signature_is_rejected_and_counted(tmp_path: Path) -> None:
    with CallbackTarget(retry_schedule="0.01") as target:
        proc, doc = run_locust("webhook_callback.py", tmp_path, *_callback_args(target), "--rate", "5",
                               "--duration", "1", "--drain", "1",
                               "--webhook-secret", "whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==", users=4)
    cb = _mode(doc, "callback")
    attempts = cb["extra"]["webhook"]["attempts"]
    assert attempts == 4 * 5 * 2  # first attempt + one retry, all refused
    assert cb["extra"]["rejected_signature"] == attempts
    assert cb["errors"]["rejected_signature"] == attempts
    assert cb["summary"].get("delivery", {"count": 0})["count"] == 0
    assert cb["audit"]["delivered_unique"] == 0 and cb["audit"]["lost"] == 4 * 5
    assert cb["status"] == "failed" and "nothing was delivered" in cb["failure"]
    assert proc.returncode == 3


# -- poll -----------------------------------------------------------------------------------


def test_poll_accounting(tmp_path: Path) -> None:
    users, rate, duration = 20, 10, 2
    _, doc = run_locust("poll.py", tmp_path, "--rate", str(rate), "--duration", str(duration), "--drain", "2",
                        "--poll-interval", "0.5", users=users)
    poll = _mode(doc, "poll")
    n = users * rate * duration
    assert poll["audit"]["delivered_unique"] == n and poll["audit"]["lost"] == 0 and poll["audit"]["balanced"]
    requests = poll["extra"]["poll_requests"]
    assert requests == poll["summary"]["poll_request"]["count"]
    assert poll["extra"]["requests_per_delivery"] == round(requests / n, 4)
    # Each poller polls every 0.5 s for the ~5 s it is subscribed: roughly 10 requests each.
    assert 5 * users <= requests <= 16 * users
    # Latency is bounded by the interval plus overhead.
    assert poll["summary"]["delivery"]["max"] < 500 + 150


# -- burst ----------------------------------------------------------------------------------


def test_burst_accounting_against_builtin_sink(tmp_path: Path) -> None:
    _, doc = run_locust("webhook_burst.py", tmp_path, "--schedule", "burst", "--burst-size", "300",
                        "--burst-interval", "1", "--duration", "2", "--drain", "1", "--burst-timeout", "5",
                        users=10)
    burst = _mode(doc, "burst")
    assert_ok(burst)
    assert burst["audit"]["published"] == 600
    assert burst["audit"]["delivered_unique"] == 600 and burst["audit"]["lost"] == 0
    assert burst["extra"]["attempted"] == 600 and burst["extra"]["status_classes"] == {"2xx": 600}
    assert burst["summary"]["ack"]["count"] == 600
    assert int(locust_csv_row(tmp_path, "ack", "burst")["Request Count"]) == 600


def test_burst_refusing_consumer_loses_everything_and_says_so(tmp_path: Path) -> None:
    with SinkTarget(status=503) as sink:
        proc, doc = run_locust("webhook_burst.py", tmp_path, "--subscribe-url", sink.egress_url("burst"),
                               "--rate", "50", "--duration", "1", "--drain", "1", "--burst-timeout", "2",
                               users=5)
    burst = _mode(doc, "burst")
    assert burst["extra"]["status_classes"] == {"5xx": 50}
    assert burst["errors"] == {"http_503": 50}
    assert burst["audit"]["delivered_unique"] == 0 and burst["audit"]["lost"] == 50
    assert burst["status"] == "failed" and proc.returncode == 3


def test_burst_bad_consumer_url_exit_code_and_partial_results(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--modes", "burst", "--consumer-url", "http://127.0.0.1:9/hook", "-u", "5",
                     "--duration", "1", "--no-report", timeout=120)
    assert proc.returncode == 3
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["modes"]["burst"]["status"] == "failed"
    assert "cannot reach consumer" in doc["modes"]["burst"]["failure"]
    bad = run_bench(tmp_path, "--modes", "burst", "--consumer-url", "not-a-url", timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--consumer-url" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("webhook") is None, reason="adnanh/webhook not installed (apt-get install webhook)")
def test_burst_against_adnanh_webhook_counts_match_the_servers_own_record(tmp_path: Path) -> None:
    log = tmp_path / "hook-calls.log"
    script = tmp_path / "record.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {log}\n")
    script.chmod(0o755)
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps([{
        "id": "deliver", "execute-command": str(script), "command-working-directory": str(tmp_path),
        "pass-arguments-to-command": [{"source": "payload", "name": "id"}],
        "include-command-output-in-response": False,
    }]))
    port = _free_port()
    server = subprocess.Popen(["webhook", "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        _, doc = run_locust("webhook_burst.py", tmp_path, "--subscribe-url", f"http://127.0.0.1:{port}/hooks/deliver",
                            "--schedule", "burst", "--burst-size", "100", "--burst-interval", "1", "--duration", "2",
                            "--drain", "2", "--burst-timeout", "5", users=8)
        time.sleep(0.5)  # the hook command runs asynchronously to the ack
    finally:
        server.terminate()
        server.wait(10)
    burst = _mode(doc, "burst")
    acked = burst["extra"]["status_classes"].get("2xx", 0)
    recorded = log.read_text().split()
    assert acked == 200
    assert len(recorded) == acked
    assert sorted(int(x) for x in recorded) == list(range(200))
    assert burst["summary"]["ack"]["count"] == acked and burst["summary"]["ack"]["p50"] > 0


# -- one run, several modes ----------------------------------------------------------------


def test_run_bench_three_modes_side_by_side(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--modes", "push,callback,poll", "-u", "20", "--rate", "5", "--duration", "2",
                     "--drain", "2", "--poll-interval", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(doc["modes"]) == ["push", "callback", "poll"]
    for name, mode in doc["modes"].items():
        assert_ok(mode)
        assert mode["audit"]["delivered_unique"] == 20 * 10 and mode["audit"]["lost"] == 0, name
        assert mode["audit"]["balanced"] and mode["audit"]["recorded_matches"]
    table = [line for line in proc.stdout.splitlines() if line.split()[:1] in (["push"], ["callback"], ["poll"])]
    assert len(table) == 3
    assert (tmp_path / "run" / "report.html").is_file()
    assert "report:" in proc.stdout
    assert os.path.getsize(tmp_path / "run" / "report.html") > 10_000


def test_callback_target_secret_goes_by_environment_not_argv(tmp_path: Path) -> None:
    secret = "whsec_" + "b3duLXNlY3JldC1mb3ItdGhpcy10ZXN0LW9ubHk="
    with CallbackTarget(secret=secret) as target:
        cmdline = Path(f"/proc/{target.pids()[0]}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        _, doc = run_locust("webhook_callback.py", tmp_path, *_callback_args(target), "--rate", "5",
                            "--duration", "1", "--drain", "1", "--webhook-secret", secret, users=3)
    cb = _mode(doc, "callback")
    assert cb["audit"]["delivered_unique"] == 15 and cb["extra"].get("rejected_signature", 0) == 0
    assert secret not in json.dumps(doc)  # never written into the results either
