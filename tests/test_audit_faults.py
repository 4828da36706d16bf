"""The audit when subscribers go away by no choice of the test: a target that drops them, a worker that dies.

A subscriber the *target* dropped still expects every event until the
stream ends -- what it missed is lost, and the SLOs and the gate see it.
Only the test ends what is expected of a subscriber (users stopped at the
end are not losses). A harness process that dies is the harness's failure:
its subscribers are counted as unmeasured, named as such, never a clean row
and never the target's loss.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import REPO, run_bench, run_locust, scaled
from locust.runners import STATE_MISSING, STATE_RUNNING

from deliverybench.adapters.process_tuning import PROCESS_OVERHEAD_FDS
from deliverybench.core.audit import DROPPED, PublishedLog
from deliverybench.core.process_recorder import ProcessRecorder
from deliverybench.core.status import assess
from deliverybench.harness.aggregator import WORKER_LOST, RunAggregator
from deliverybench.harness.wiring import WorkerBook
from targets._process import ServerProcess

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


# -- who ended a window: the target (a drop) or the test (a leave) ----------------------------------

def _intake_subscriber() -> tuple[ProcessRecorder, int]:
    recorder = ProcessRecorder("push", id_limit=100)
    index = recorder.intake.add("host:1:1")
    recorder.intake.open(index, T0)
    return recorder, index


def test_a_session_closed_without_leaving_was_dropped_and_a_reconnect_continues_it() -> None:
    recorder, index = _intake_subscriber()
    intake = recorder.intake
    intake.close(index, T0 + NS)  # the target ended it (ws_receiver's lost())
    assert intake.windows[index] == [[T0, T0 + NS, DROPPED]]
    intake.open(index, T0 + 2 * NS)  # the reconnect
    (record,) = recorder.take_payload(final=True, now_ns=T0 + 9 * NS)["subscribers"]
    assert record.windows == [[T0, T0 + NS, DROPPED], [T0 + 2 * NS, T0 + 9 * NS]]  # the test ended: it left


def test_a_subscriber_the_test_stops_leaves_when_stopped_even_while_reconnecting() -> None:
    recorder, index = _intake_subscriber()
    recorder.intake.close(index, T0 + NS)  # dropped ...
    recorder.intake.close(index, T0 + 5 * NS)  # ... then stopped by the test while reconnecting
    recorder.retire_index(index)
    (record,) = recorder.take_payload(final=False, now_ns=T0 + 6 * NS)["subscribers"]
    assert record.windows == [[T0, T0 + 5 * NS]]  # expected every event until it was stopped


def test_a_subscriber_stopped_while_connected_leaves_then() -> None:
    recorder, index = _intake_subscriber()
    recorder.intake.close(index, T0 + 3 * NS)  # ws_push's stop(): close, then retire
    recorder.retire_index(index)
    (record,) = recorder.take_payload(final=True, now_ns=T0 + 9 * NS)["subscribers"]
    assert record.windows == [[T0, T0 + 3 * NS]]


def test_a_subscriber_dropped_for_good_is_held_until_the_test_ends() -> None:
    recorder, index = _intake_subscriber()
    recorder.intake.close(index, T0 + NS)
    (record,) = recorder.take_payload(final=True, now_ns=T0 + 9 * NS)["subscribers"]
    assert record.windows == [[T0, T0 + 9 * NS]]


def test_a_process_counts_every_subscriber_it_ever_had() -> None:
    recorder = ProcessRecorder("push")
    assert recorder.subscriber_count == 0
    recorder.intake.add("h:1:1")
    recorder.intake.add("h:1:2")
    recorder.subscriber("h:1:3")
    recorder.subscriber("h:1:3")  # the same one
    recorder.retire("h:1:3")  # gone, still counted
    assert recorder.subscriber_count == 3


# -- a lost harness process --------------------------------------------------------------------------

def _build(aggregator: RunAggregator, subscribers: int) -> dict[str, Any]:
    log = PublishedLog()
    for i in range(10):
        log.add(i, T0 + i * NS // 10, T0 + i * NS // 10, True)
    return aggregator.build(log=log, target={}, params={"subscribers": subscribers}, started_ns=T0 - NS,
                            stream_start_ns=T0, ended_ns=T0 + 3 * NS, join_grace_ns=0, drain_ns=0, status="ok",
                            failure=None)


def test_a_lost_process_is_a_harness_error_with_its_unmeasured_subscribers() -> None:
    aggregator = RunAggregator("push")
    recorder = ProcessRecorder("push", id_limit=10)
    for name in ("live:1:1", "live:1:2", "dead:2:1"):  # one of the dead process's handed over before it died
        index = recorder.intake.add(name)
        recorder.intake.open(index, T0 - NS)
        for event_id in range(10):
            for column, value in zip(recorder.intake.appenders, (index, event_id, T0, -1, T0 + NS)):
                column(value)
    aggregator.add(recorder.take_payload(final=True, now_ns=T0 + 2 * NS))
    aggregator.process_lost("dead:2", 4, T0 + NS)
    aggregator.process_lost("dead:2", 4, T0 + 2 * NS)  # said once
    result = _build(aggregator, 6)
    assert result["errors"] == {WORKER_LOST: 1}
    assert result["audit"]["subscribers"] == 3 and result["audit"]["subscribers_unmeasured"] == 3
    assert result["audit"]["lost"] == 0 and result["audit"]["expected"] == 30
    assert result["extra"]["harness_workers_lost"] == [{"process": "dead:2", "subscribers": 4}]
    status, reasons = assess(result)
    assert (status, reasons) == ("degraded", ["harness worker died, 3 subscribers unmeasured"])


def test_no_lost_process_no_trace() -> None:
    result = _build(RunAggregator("push"), 0)
    assert "subscribers_unmeasured" not in result["audit"] and "harness_workers_lost" not in result["extra"]


def test_the_reason_counts_the_workers_and_the_subscribers_still_missing_are_said() -> None:
    base = {"mode": "push", "status": "ok", "params": {"subscribers": 150},
            "audit": {"scheduled": 10, "published": 10, "accepted": 10, "refused": 0, "subscribers": 50,
                      "subscribers_never_connected": 0, "expected": 500, "delivered_unique": 500, "lost": 0,
                      "subscribers_unmeasured": 80, "balanced": True},
            "errors": {WORKER_LOST: 2}}
    assert assess(base) == ("degraded", ["only 50 of 150 subscribers took part",
                                         "2 harness workers died, 80 subscribers unmeasured"])


class _Node:
    def __init__(self, state: str, users: int) -> None:
        self.state, self.user_count = state, users


class _Runner:
    def __init__(self) -> None:
        self.clients: dict[str, _Node] = {}


def test_the_book_finds_missing_and_vanished_workers_once_and_forgives_a_final_payload() -> None:
    book, runner = WorkerBook(), _Runner()
    runner.clients = {"a": _Node(STATE_RUNNING, 50), "b": _Node(STATE_RUNNING, 50), "c": _Node(STATE_RUNNING, 5)}
    book.status("a", {"process": "h:1", "subscribers": 40})  # Locust's user count says more: the most wins
    book.status("b", {"process": "h:2", "subscribers": 50})
    assert book.look(runner, 1) == []  # type: ignore[arg-type]
    runner.clients["a"].state = STATE_MISSING
    del runner.clients["b"]  # gone without a final payload
    del runner.clients["c"]
    book.final.add("c")  # stopped properly: it handed everything over
    assert sorted(book.look(runner, 2)) == ["a", "b"]  # type: ignore[arg-type]
    assert book.look(runner, 3) == []  # type: ignore[arg-type]
    assert book.settle(4) == {"a": 2, "b": 2}
    assert book.subscribers == {"a": 50, "b": 50, "c": 5} and "c" not in book.process
    book.reset()
    assert book.settle(5) == {}


def _closing_run(tmp: Path, close_at: float, users: int, rate: int, duration: int) -> tuple[Any, dict[str, Any],
                                                                                            dict[str, Any]]:
    """``run_bench.py`` against the closing relay with ``--slo push.lost==0``; (process, push result, relay stats)."""
    server = ServerProcess("tests.servers.closing_ws", ["--close-at", str(close_at)])
    server.start()
    try:
        proc = run_bench(tmp, "--target", "relay", "--publish-url", server.urls["ingress"], "--subscribe-url",
                         server.urls["push"], "--modes", "push", "-u", str(users), "--rate", str(rate),
                         "--duration", str(duration), "--drain", "1", "--no-report", "--slo", "push.lost==0")
        with urllib.request.urlopen(server.urls["stats"], timeout=scaled(5)) as response:
            stats = dict(json.loads(response.read()))
    finally:
        server.stop()
    push = json.loads((tmp / "run" / "results.json").read_text())["modes"]["push"]
    return proc, push, stats


@pytest.mark.e2e
@pytest.mark.slow
def test_a_target_that_drops_every_session_for_good_loses_the_rest_of_the_stream(tmp_path: Path) -> None:
    users, rate, duration = 10, 20, 6
    proc, push, stats = _closing_run(tmp_path, 2.5, users, rate, duration)
    audit = push["audit"]
    events = rate * duration
    assert stats["closed"] == users and stats["refused"] > 0  # dropped, and no way back in
    assert audit["published"] == audit["accepted"] == events
    # every subscriber is held to the whole stream: the drop did not end what it expected
    assert audit["subscribers"] == audit["subscribers_full"] == users
    assert audit["expected"] == events * users
    # what arrived is exactly what the relay wrote to an open session; the rest is lost
    assert audit["delivered_unique"] == stats["delivered"]
    assert audit["lost"] == events * users - stats["delivered"]
    assert 0.2 * events * users < audit["lost"] < 0.8 * events * users, audit
    assert audit["balanced"] and audit["subscribers_with_loss"] == users
    assert push["status"] == "degraded"
    reasons = push["status_reasons"]
    lost = audit["lost"]
    assert any(r.startswith("lost ") and f"({lost:,} of {events * users:,} expected" in r for r in reasons), reasons
    assert f"{users} sessions dropped" in reasons
    # the objective sees the loss: broken, exit 1
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "slo: push push.lost==0" in proc.stdout, proc.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_subscribers_stopped_at_the_end_are_not_losses(tmp_path: Path) -> None:
    users, rate, duration = 10, 20, 3
    proc, push, stats = _closing_run(tmp_path, 0, users, rate, duration)
    audit = push["audit"]
    assert stats["closed"] == 0
    assert audit["expected"] == audit["delivered_unique"] == stats["delivered"] == rate * duration * users
    assert audit["lost"] == 0 and audit["subscribers_full"] == users
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the objective holds
    assert "slo: push" not in proc.stdout


# -- a harness worker killed mid-stream -------------------------------------------------------------

def _locust_workers() -> tuple[psutil.Process, list[psutil.Process]] | None:
    """The Locust master under this test (a ``-m locust`` whose parent is not one) and its forked workers."""
    def is_locust(p: psutil.Process | None) -> bool:
        if p is None:
            return False
        try:
            cmd = p.cmdline()
        except psutil.Error:
            return False
        return "-m" in cmd and "locust" in cmd and "--processes" in cmd

    for proc in psutil.Process().children(recursive=True):
        if is_locust(proc) and not is_locust(proc.parent()):
            workers = [child for child in proc.children() if is_locust(child)]
            return proc, workers
    return None


def _live(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


class _Killer(threading.Thread):
    """Once all subscribers are connected and streaming, SIGKILL one worker; then watch the live file."""

    def __init__(self, live: Path, users: int) -> None:
        super().__init__(daemon=True)
        self.live, self.users = live, users
        self.killed: int | None = None
        self.after: list[int] = []  # connected, as the live file said after the kill
        self.problem = ""

    def run(self) -> None:
        deadline = time.monotonic() + scaled(90)
        while time.monotonic() < deadline:
            live = _live(self.live)
            if live.get("phase") == "streaming" and live.get("connected") == self.users:
                break
            time.sleep(0.1)
        else:
            self.problem = "never streaming with every subscriber connected"
            return
        found = _locust_workers()
        if found is None or len(found[1]) != 2:
            self.problem = f"no master with two workers: {found}"
            return
        victim = found[1][0]
        self.killed = victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        until = time.monotonic() + scaled(15)
        while time.monotonic() < until:
            live = _live(self.live)
            if live.get("phase") not in ("streaming", "draining"):
                break
            self.after.append(int(live.get("connected") or 0))
            time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_killed_worker_is_a_harness_failure_named_with_its_unmeasured_subscribers(tmp_path: Path) -> None:
    users, rate, duration = 100, 10, 10
    killer = _Killer(tmp_path / "run" / "push.live.json", users)
    killer.start()
    proc = run_bench(tmp_path, "--modes", "push", "--processes", "2", "-u", str(users), "--rate", str(rate),
                     "--duration", str(duration), "--drain", "1", "--no-report")
    killer.join(timeout=scaled(30))
    assert not killer.problem, killer.problem
    assert killer.killed is not None
    push = json.loads((tmp_path / "run" / "results.json").read_text())["modes"]["push"]
    audit, events = push["audit"], rate * duration
    # the dead worker's 50 are unmeasured -- not in the sums, not lost; the living 50 got everything
    assert audit["subscribers"] == 50 and audit["subscribers_unmeasured"] == 50
    assert audit["expected"] == audit["delivered_unique"] == events * 50 and audit["lost"] == 0
    assert push["errors"]["harness_worker_lost"] == 1
    assert push["extra"]["harness_workers_lost"] == [{"process": f"{socket.gethostname()}:{killer.killed}",
                                                      "subscribers": 50}]
    # a harness failure, named as one: never ok, never "only 50 of 100 took part" (the target's look)
    assert push["status"] == "degraded", (push["status"], push["status_reasons"])
    assert "harness worker died, 50 subscribers unmeasured" in push["status_reasons"]
    assert not any("took part" in r for r in push["status_reasons"])
    assert proc.returncode == 0, proc.stdout + proc.stderr  # degraded: exit 0, as for any finding
    assert "harness worker died, 50 subscribers unmeasured" in proc.stdout
    # the live file stopped counting the dead worker's sessions as connected
    assert 50 in killer.after, killer.after


@pytest.mark.e2e
def test_a_worker_slow_to_hand_over_is_waited_for_not_counted_dead(tmp_path: Path) -> None:
    """Each worker's final hand-over takes 4 s (tests/servers/slow_handover.py), past Locust's 3-s stats
    report that tells the master it stopped: both workers' subscribers must still be measured."""
    users, rate, duration = 40, 5, 5
    slow = REPO / "tests" / "servers" / "slow_handover.py"
    proc, doc = run_locust(f"ws_push.py,{slow}", tmp_path, "--processes", "2", "--rate", str(rate),
                           "--duration", str(duration), "--drain", "1", users=users)
    push = doc["modes"]["push"]
    audit = push["audit"]
    why = (audit, push["status_reasons"])
    assert audit["subscribers"] == users and audit.get("subscribers_unmeasured", 0) == 0, why
    assert audit["expected"] == audit["delivered_unique"] == users * rate * duration and audit["lost"] == 0
    assert "harness_worker_lost" not in push["errors"]
    assert push["status"] == "ok", push["status_reasons"]
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.e2e
def test_sessions_past_a_process_open_files_budget_are_refused_counted_and_explained(tmp_path: Path) -> None:
    """With 400 open files a process may hold 200 sessions (200 kept for itself): of 260 users, 60 are
    refused by the harness -- counted by kind, said once -- instead of failing with EMFILE mid-run."""
    users, rate, duration, limit = 260, 5, 5, 400
    proc, doc = run_locust("ws_push.py", tmp_path, "--rate", str(rate), "--duration", str(duration),
                           "--drain", "1", "--settle-timeout", "5", users=users, open_files=limit)
    push = doc["modes"]["push"]
    budget = limit - PROCESS_OVERHEAD_FDS
    assert push["errors"]["connect_fd_budget"] == users - budget, push["errors"]
    assert not any(kind.startswith("connect_emfile") for kind in push["errors"]), push["errors"]
    audit = push["audit"]
    assert audit["subscribers"] == budget and audit["lost"] == 0
    assert audit["delivered_unique"] == budget * rate * duration
    assert any("open-files limit allows" in r for r in push["status_reasons"]), push["status_reasons"]
    assert push["status"] != "ok"
    assert proc.stderr.count("further sessions are refused") == 1
