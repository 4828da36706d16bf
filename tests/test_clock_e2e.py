"""Workers whose clocks are off, measured and corrected: a Locust master and two workers on this machine,
one of them with its wall clock moved by libfaketime (``DONT_FAKE_MONOTONIC``: only the wall clock moves,
as with a real offset), against the built-in push target holding each event a fixed time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import SCENARIOS, env, run_locust, scaled

pytestmark = pytest.mark.e2e

#: Debian's libfaketime, under the machine's multiarch folder (x86_64-linux-gnu, aarch64-linux-gnu, ...)
FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
                Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))
needs_faketime = pytest.mark.skipif(not FAKETIME.is_file(), reason="libfaketime not installed (Debian faketime)")
#: the target's delay: far above the harness's own 2-4 ms on a busy loopback, so 10 % of it is a fair band
DELAY_MS = 100.0


def _shifted(seconds: str) -> dict[str, str]:
    return {"LD_PRELOAD": str(FAKETIME), "FAKETIME": seconds, "DONT_FAKE_MONOTONIC": "1"}


def _run(tmp: Path, workers: list[dict[str, str]], *args: str, duration: int = 3, while_streaming: Any = None,
         master: str = "127.0.0.1", wrap: list[list[str]] | None = None) -> dict[str, Any]:
    """Start the workers (first, so each has registered its listeners when the master appears; each under
    its ``wrap`` command), then the master with the target, at ``master``; ``while_streaming()`` is called
    once the stream is on. The push mode result."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    scenario = str(SCENARIOS / "ws_push.py")
    wrap = wrap or [[] for _ in workers]
    procs = [subprocess.Popen([*wrap[i], sys.executable, "-m", "locust", "-f", scenario, "--worker",
                               "--master-host", master, "--master-port", port], cwd=tmp, env={**env(), **extra},
                              stdout=open(tmp / f"worker{i}.log", "w"), stderr=subprocess.STDOUT)
             for i, extra in enumerate(workers)]
    results, live = tmp / "results.json", tmp / "live.json"
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", scenario, "--master", "--expect-workers", str(len(workers)),
         "--headless", "-u", "20", "-r", "20", "-t", "60s", "--only-summary", "--no-report",
         "--master-bind-host", master, "--master-bind-port", port, "--results", str(results),
         "--live-file", str(live), "--rate", "20", "--duration", str(duration), "--drain", "1",
         "--target-delay-ms", str(DELAY_MS), *args],
        cwd=tmp, env=env(), stdout=open(tmp / "master.log", "w"), stderr=subprocess.STDOUT)
    try:
        if while_streaming is not None:
            deadline = time.monotonic() + scaled(40)
            while time.monotonic() < deadline and master.poll() is None:
                try:
                    if json.loads(live.read_text()).get("phase") == "streaming":
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            while_streaming()
        master.wait(timeout=scaled(60))
        for proc in procs:
            proc.wait(timeout=scaled(20))
    finally:
        for proc in [master, *procs]:
            if proc.poll() is None:
                proc.kill()
    assert results.is_file(), (tmp / "master.log").read_text()[-3000:]
    doc = json.loads(results.read_text())
    assert doc["machine"]["clock"] == doc["modes"]["push"]["clock"]["description"]
    return dict(doc["modes"]["push"])


def _workers(push: dict[str, Any]) -> list[dict[str, Any]]:
    """The workers' rows, in the order they were started (by pid)."""
    rows = push["clock"]["workers"]
    assert len(rows) == 2 and all(row["deliveries"] == 10 * 20 * 3 for row in rows), rows
    return sorted(rows, key=lambda row: int(row["process"].rsplit(":", 1)[1]))


def _near_delay(p50_ms: float) -> bool:
    return abs(p50_ms - DELAY_MS) <= max(1.0, 0.1 * DELAY_MS)


@needs_faketime
@pytest.mark.parametrize("shift_ms", [250, -40])
def test_shifted_worker_is_measured_and_corrected(tmp_path: Path, shift_ms: int) -> None:
    push = _run(tmp_path, [_shifted(f"{shift_ms / 1000:+g}"), {}])
    shifted, plain = _workers(push)
    assert abs(shifted["offset_ms"] - shift_ms) <= 1.0, shifted
    assert abs(plain["offset_ms"]) <= 1.0, plain
    assert shifted["corrected"] and push["clock"]["corrected"]
    for row in (shifted, plain):
        assert _near_delay(row["p50_ms"]), row
        assert abs(row["p50_raw_ms"] - row["p50_ms"] - row["offset_ms"]) <= 0.01
    assert push["clock"]["uncertainty_ms"] < 1.0
    assert push["audit"]["lost"] == 0
    assert not any("timing uncertainty" in r for r in push["status_reasons"]), push["status_reasons"]
    assert "worker(s): receive times mapped onto the master's wall clock" in push["clock"]["description"]


@needs_faketime
def test_without_correction_the_offset_lands_in_the_latency(tmp_path: Path) -> None:
    push = _run(tmp_path, [_shifted("+0.25"), {}], "--no-clock-correction")
    shifted, plain = _workers(push)
    assert abs(shifted["offset_ms"] - 250) <= 1.0
    assert abs(shifted["p50_ms"] - DELAY_MS - 250) <= max(1.0, 0.1 * DELAY_MS) + 1.0, shifted
    assert _near_delay(shifted["p50_corrected_ms"]) and _near_delay(plain["p50_ms"])
    assert not push["clock"]["corrected"] and push["clock"]["uncertainty_ms"] >= 250
    assert push["status"] == "degraded"
    assert any(r.startswith("timing uncertainty ±") for r in push["status_reasons"]), push["status_reasons"]


@needs_faketime
def test_wall_clock_stepped_mid_run_is_drift_not_latency(tmp_path: Path) -> None:
    rc = tmp_path / "faketime.rc"
    rc.write_text("+0\n")
    stepped = {"LD_PRELOAD": str(FAKETIME), "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_CACHE_DURATION": "1",
               "DONT_FAKE_MONOTONIC": "1"}

    def step() -> None:
        time.sleep(1.5)
        rc.write_text("+0.1\n")  # the worker's wall clock jumps 100 ms ahead within a second

    push = _run(tmp_path, [stepped, {}], duration=4, while_streaming=step)
    rows = sorted(push["clock"]["workers"], key=lambda row: int(row["process"].rsplit(":", 1)[1]))
    moved, still = rows
    assert abs(moved["drift_ms"] - 100) <= 1.0, moved
    assert abs(still["drift_ms"]) <= 1.0, still
    # stamped uncorrected, 60 % of its deliveries (those after the step) would be 100 ms later: its median too
    band = max(push["clock"]["uncertainty_ms"], 1.0)
    assert abs(moved["p50_ms"] - still["p50_ms"]) <= band, (moved, still)
    assert _near_delay(moved["p50_ms"]) and push["audit"]["lost"] == 0
    assert not any("timing uncertainty" in r for r in push["status_reasons"]), push["status_reasons"]


def test_single_process_says_one_clock(tmp_path: Path) -> None:
    _, doc = run_locust("ws_push.py", tmp_path, "--rate", "10", "--duration", "1", "--drain", "1", users=5)
    clock = doc["modes"]["push"]["clock"]
    assert clock["workers"] == [] and clock["uncertainty_ms"] == 0 and not clock["corrected"]
    assert doc["machine"]["clock"] == clock["description"] and clock["description"].startswith("one process")



def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture()
def namespaces() -> Any:
    """Two network namespaces, each joined to this one by a veth pair: (namespace, its address, ours)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = f"{os.getpid() % 10000}"
    made: list[tuple[str, str, str]] = []
    try:
        for i in (1, 2):
            ns, host_if, ns_if = f"dbclk{tag}n{i}", f"dbc{tag}h{i}", f"dbc{tag}w{i}"
            ours, theirs = f"10.231.{i}.1", f"10.231.{i}.2"
            _sh("ip", "netns", "add", ns)
            made.append((ns, theirs, ours))
            _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _sh("ip", "link", "set", ns_if, "netns", ns)
            _sh("ip", "addr", "add", f"{ours}/24", "dev", host_if)
            _sh("ip", "link", "set", host_if, "up")
            for cmd in (("ip", "addr", "add", f"{theirs}/24", "dev", ns_if), ("ip", "link", "set", ns_if, "up"),
                        ("ip", "link", "set", "lo", "up"), ("ip", "route", "add", "default", "via", ours)):
                _sh("ip", "netns", "exec", ns, *cmd)
    except (OSError, subprocess.SubprocessError) as exc:
        for ns, _, _ in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {exc}")
    yield made
    for ns, _, _ in made:  # deleting a namespace deletes its end of the veth pair, and so the pair
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_workers_in_their_own_network_namespaces_report_distinct_addresses(tmp_path: Path,
                                                                             namespaces: Any) -> None:
    from targets.builtin import PushTarget

    master_address = namespaces[0][2]  # the second namespace reaches it through its default route
    with PushTarget(host=master_address) as target:
        push = _run(tmp_path, [{}, {}], "--publish-url", target.ingress_url,
                    "--subscribe-url", target.egress_url("push"), master=master_address,
                    wrap=[["ip", "netns", "exec", ns] for ns, _, _ in namespaces])
    rows = push["clock"]["workers"]
    assert sorted(row["address"] for row in rows) == sorted(theirs for _, theirs, _ in namespaces), rows
    assert all(row["deliveries"] == 10 * 20 * 3 for row in rows) and push["audit"]["lost"] == 0
    assert all(abs(row["offset_ms"]) <= 1.0 for row in rows)
