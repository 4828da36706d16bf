"""Faults, interruptions and hostile input: nothing lost, nothing leaked, nothing left running.

Each class of fault is met with real processes on 127.0.0.1: a relay that
sends frames no harness should trust, a consumer that never answers,
SIGTERM / SIGINT / SIGKILL to a real ``run_bench.py`` (its children checked
gone by pid), a secret given in every accepted spelling and searched for in
every file the run wrote, limits the run cannot fit in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import REPO, env, run_bench
from targets._process import ServerProcess


def _doc(tmp: Path, run_id: str = "run") -> dict[str, Any]:
    return json.loads((tmp / run_id / "results.json").read_text())


def _server(module: str, *flags: str) -> ServerProcess:
    proc = ServerProcess(module, list(flags))
    proc.start()
    return proc


# -- hostile input ------------------------------------------------------------------------------

def test_hostile_frames_are_counted_by_kind_and_never_stop_recording(tmp_path: Path) -> None:
    relay = _server("tests.servers.relay", "--hostile")
    try:
        proc = run_bench(tmp_path, "--target", "relay", "--publish-url", relay.urls["ingress"],
                         "--subscribe-url", relay.urls["push"], "-u", "10", "--rate", "20", "--duration", "2",
                         "--drain", "1", "--no-report", timeout=180)
    finally:
        relay.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a finding, not a failed run
    push = _doc(tmp_path)["modes"]["push"]
    events, users = 40, 10
    audit = push["audit"]
    # every real event reached every subscriber and was recorded, whatever came with it
    assert audit["delivered_unique"] == audit["expected"] == events * users and audit["lost"] == 0
    assert push["summary"]["delivery"]["count"] == events * users
    assert push["errors"]["unexpected_id"] == events * users          # id 2**40: never allocated for
    assert push["errors"]["malformed_due"] == events * users          # due time past 64 bits
    assert push["errors"]["malformed_event"] == 3 * events * users    # truncated, not JSON, binary
    assert push["status"] == "degraded"
    assert f"{3 * events * users + events * users:,} malformed messages" in push["status_reasons"]
    assert f"{events * users:,} events with ids outside the stream" in push["status_reasons"]
    assert "malformed" in proc.stdout  # the table says so too


def test_an_id_far_outside_the_stream_costs_no_memory(tmp_path: Path) -> None:
    from deliverybench.core.event import Event, encode_event
    from deliverybench.core.process_recorder import ProcessRecorder

    recorder = ProcessRecorder("push", id_limit=100)
    record = recorder.subscriber("s")
    before = psutil.Process().memory_info().rss
    for event_id in (8 * 10**8, 2**40, 2**62):
        recorder.on_event(record, encode_event(Event(event_id, 0), 0), 1)
    assert len(record.received.bits) == 0
    assert recorder.errors["unexpected_id"] == 3
    assert psutil.Process().memory_info().rss - before < 10 * 2**20


# -- a consumer that never answers -------------------------------------------------------------------

def test_every_burst_attempt_ends_in_exactly_one_class(tmp_path: Path) -> None:
    hole = _server("tests.servers.blackhole")
    try:
        proc = run_bench(tmp_path, "--modes", "burst", "--consumer-url", hole.urls["consumer"], "-u", "20",
                         "--rate", "20", "--duration", "3", "--burst-timeout", "1", "--drain", "0.5",
                         "--no-report", timeout=180)
    finally:
        hole.stop()
    burst = _doc(tmp_path)["modes"]["burst"]
    extra = burst["extra"]
    classes = (sum(extra["status_classes"].values()) + extra["timeouts"] + extra["connection_errors"]
               + extra["unanswered"] + extra["unsent"])
    assert extra["attempted"] == 60 == classes, extra
    assert extra["timeouts"] > 0 and extra["status_classes"].get("2xx", 0) == 0
    assert burst["audit"]["lost"] == burst["audit"]["expected"] == 60
    assert proc.returncode == 3  # nothing acknowledged: nothing was measured


# -- signals: results written, children gone ---------------------------------------------------------

def _start_long_run(tmp: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp), "--run-id", "run", "--modes", "push,poll",
           "-u", "20", "--rate", "10", "--duration", "120", "--no-report"]
    return subprocess.Popen(cmd, cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_streaming(proc: subprocess.Popen[str], tmp: Path, timeout: float = 60) -> list[psutil.Process]:
    """Wait until push is publishing; return every descendant of ``proc`` (Locust, target)."""
    log = tmp / "run" / "push.locust.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "publishing" in log.read_text(errors="replace"):
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    else:
        raise AssertionError("push never started streaming")
    time.sleep(2)  # a couple of seconds of stream, so there is something to keep
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2, children  # Locust and the built-in target at least
    return children


def _gone(processes: list[psutil.Process], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return [p.pid for p in alive]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_writes_what_was_measured_and_leaves_nothing(tmp_path: Path, sig: int,
                                                                              code: int) -> None:
    proc = _start_long_run(tmp_path)
    try:
        children = _wait_streaming(proc, tmp_path)
        stopped = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - stopped < 45
    assert proc.returncode == code, out + err
    assert _gone(children) == []
    doc = _doc(tmp_path)
    push, poll = doc["modes"]["push"], doc["modes"]["poll"]
    assert push["status"] == "interrupted" and poll["status"] == "interrupted"
    assert "not started" in poll["failure"]
    assert push["audit"]["delivered_unique"] > 0 and push["audit"]["balanced"]
    assert doc["run"]["status"] == "interrupted"
    assert "interrupted by" in err and "Traceback" not in err


def test_a_killed_run_bench_takes_its_children_with_it(tmp_path: Path) -> None:
    proc = _start_long_run(tmp_path)
    try:
        children = _wait_streaming(proc, tmp_path)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(children) == []


# -- folders, secrets, limits, options ---------------------------------------------------------------------

def test_two_runs_never_share_a_folder_and_results_are_never_overwritten_silently(tmp_path: Path) -> None:
    args = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp_path), "--modes", "push", "-u", "3",
            "--rate", "5", "--duration", "1", "--drain", "0.5", "--no-report"]
    first = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert first.wait(120) == 0 and second.wait(120) == 0
    folders = sorted(p.name for p in tmp_path.iterdir() if (p / "results.json").exists())
    assert len(folders) == 2
    again = run_bench(tmp_path, "--modes", "push", "-u", "3", "--duration", "1", "--no-report")
    assert again.returncode == 0
    refused = run_bench(tmp_path, "--modes", "push", "-u", "3", "--duration", "1", "--no-report")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"run_bench.py: error: {tmp_path / 'run'} already holds a results file; choose another --run-id or "
        "pass --overwrite"]
    assert run_bench(tmp_path, "--modes", "push", "-u", "3", "--duration", "1", "--no-report",
                     "--overwrite").returncode == 0


SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"


@pytest.mark.parametrize("spelling", ["flag", "flag=", "env", "toml-dash", "toml-underscore", "toml-table"])
def test_the_webhook_secret_is_written_nowhere(tmp_path: Path, spelling: str) -> None:
    extra: list[str] = []
    environment = env()
    if spelling == "flag":
        extra = ["--webhook-secret", SECRET]
    elif spelling == "flag=":
        extra = [f"--webhook-secret={SECRET}"]
    elif spelling == "env":
        environment["DELIVERYBENCH_WEBHOOK_SECRET"] = SECRET
    else:
        key = {"toml-dash": "webhook-secret", "toml-underscore": "webhook_secret", "toml-table": "webhook_secret"}[spelling]
        table = "[deliverybench]\n" if spelling == "toml-table" else ""
        (tmp_path / "bench.toml").write_text(f'{table}"{key}" = "{SECRET}"\n')
        extra = ["--config", str(tmp_path / "bench.toml")]
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp_path / "out"), "--run-id", "run",
           "--modes", "callback", "-u", "5", "--rate", "5", "--duration", "1", "--drain", "1", *extra]
    proc = subprocess.run(cmd, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "out" / "run" / "results.json").read_text())
    assert doc["modes"]["callback"]["audit"]["delivered_unique"] == 25  # the secret was used: signatures verified
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--duration", "inf"], "--duration must be a finite number (got 'inf')"),
    (["--drain", "nan"], "--drain must be a finite number (got 'nan')"),
    (["--rate", "nan"], "--rate must be a finite number (got 'nan')"),
    (["--rate", "inf"], "--rate must be a finite number (got 'inf')"),
    (["--webhook-sec", "S3CRET"], "unrecognized argument '--webhook-sec'; did you mean --webhook-secret? "
     "(see --help; pass Locust options after --)"),
])
def test_bad_numbers_and_abbreviations_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_bench(tmp_path, *args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"run_bench.py: error: {message}"]
    assert "S3CRET" not in proc.stderr


def test_a_run_that_cannot_fit_the_open_files_limit_is_refused_up_front(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp_path), "--modes", "push", "-u", "1000",
           "--no-report"]
    proc = subprocess.run(["bash", "-c", 'ulimit -n 512 && exec "$@"', "_", *cmd], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "1,000 push subscribers need about" in lines[0] and "the limit is 512" in lines[0]
    assert "--processes" in lines[0] and "ulimit -n" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_a_subscribe_url_that_can_never_connect_fails_fast_naming_the_error(tmp_path: Path) -> None:
    relay = _server("tests.servers.relay")  # its HTTP port answers, but not with a WebSocket handshake
    try:
        started = time.monotonic()
        proc = run_bench(tmp_path, "--target", "relay", "--publish-url", relay.urls["ingress"],
                         "--subscribe-url", relay.urls["ingress"].replace("http://", "ws://"), "-u", "20",
                         "--duration", "5", "--no-report", timeout=120)
        took = time.monotonic() - started
    finally:
        relay.stop()
    assert proc.returncode == 3
    push = _doc(tmp_path)["modes"]["push"]
    assert push["status"] == "failed"
    assert push["failure"].startswith("no subscriber of 20 connected within 5 s (connect_handshake ×")
    assert took < 40
    assert "connect_handshake" in proc.stdout
