"""Capacity sweeps end to end, against the built-in push target with a known capacity.

``--target-capacity 2500`` makes the target serve at most 2,500 deliveries
per second, one event at a time (targets/service_queue.py): at 100 events/s
its true capacity is N* = 2500 / 100 = 25 subscribers. Below N* latency is
the service time N / 2500 s (4 ms at 10, 8 ms at 20), above it a backlog
grows by (N / N* - 1) seconds per second and the p99 leaves any objective
behind within a second or two. So the sweep's bracket must contain 25, the
grid must fail above it, and the latency curve must rise with N.

Every point is a real run (fresh target, real Locust), kept short; the
sweep decisions on made-up points live in tests/core/test_core_sweep.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, env

CAPACITY, RATE = 2500, 100
N_STAR = CAPACITY // RATE
POINT = ["--modes", "push", "--rate", str(RATE), "--target-capacity", str(CAPACITY), "--slo", "p99<=50ms,lost==0",
         "--duration", "8", "--drain", "1", "--settle", "0.5", "--no-report"]


def sweep_cmd(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_bench.py"), "sweep", *args, "--out", str(tmp)]


def sweep(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sweep_cmd(tmp, *args), cwd=tmp, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def only_sweep(tmp: Path) -> Path:
    found = sorted(tmp.glob("sweep-*"))
    assert len(found) == 1, found
    return found[0]


def points(index: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(index["points"].values(), key=lambda e: e["seq"])


def test_the_search_brackets_the_known_capacity_and_latency_rises_toward_it(tmp_path: Path) -> None:
    proc = sweep(tmp_path, *POINT, "--subscribers", "10:80", "--precision", "0.25", "--confirm", "1",
                 "--require", f"push>={N_STAR - 10}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((only_sweep(tmp_path) / "sweep.json").read_text())
    (answer,) = index["answers"]
    low, high = answer["bracket"]
    assert answer["status"] == "found", answer
    assert low <= N_STAR <= high, answer
    assert (high - low) / low <= 0.25
    ran = points(index)
    statuses = {p["subscribers"]: p["verdict"]["status"] for p in ran}
    assert statuses[10] == statuses[20] == "PASS" and statuses[40] == "FAIL", statuses
    # the curve: service time N / capacity shows in the median of every passing point
    passing = sorted((p["subscribers"], p["figures"]["p50"]) for p in ran if p["verdict"]["status"] == "PASS")
    medians = [p50 for _, p50 in passing]
    assert medians == sorted(medians) and medians[-1] > medians[0] + 0.6 * (passing[-1][0] - passing[0][0]) \
        * 1000 / CAPACITY, passing
    # one sentence per mode, computed from the numbers; progress and per-point lines on stdout
    assert index["sentences"][0].startswith(f"push holds {low:,} subscribers at 100 events/s"), index["sentences"]
    assert index["sentences"][0] in proc.stdout
    assert "point 1 of" in proc.stdout and "[1] push N=10 at 100/s: PASS" in proc.stdout
    assert "require: push at 100 events/s" in proc.stdout and "met" in proc.stdout
    # every point is an ordinary run with its own results file
    for p in ran:
        assert (only_sweep(tmp_path) / p["results"]).is_file()


def test_a_grid_fails_above_capacity_and_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    args = (*POINT, "--subscribers", "10,20,50", "--confirm", "1")
    proc = subprocess.Popen(sweep_cmd(tmp_path, *args), cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        index_path = None
        while time.monotonic() < deadline:  # interrupt once the first point is in the index
            found = list(tmp_path.glob("sweep-*/sweep.json"))
            if found and json.loads(found[0].read_text())["points"]:
                index_path = found[0]
                break
            time.sleep(0.3)
        assert index_path is not None, "the first point never reached sweep.json"
        time.sleep(2)  # well into the second point
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "--resume" in out
    first = json.loads(index_path.read_text())
    assert [p["subscribers"] for p in points(first)] == [10]
    first_results = index_path.parent / points(first)[0]["results"]
    stamp = first_results.stat().st_mtime_ns

    resumed = sweep(tmp_path, "--resume", str(index_path.parent))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after 1 points" in resumed.stdout
    assert "N=10 " not in resumed.stdout  # finished points are not run again
    assert first_results.stat().st_mtime_ns == stamp
    final = json.loads(index_path.read_text())
    assert [(p["subscribers"], p["verdict"]["status"]) for p in points(final)] == \
        [(10, "PASS"), (20, "PASS"), (50, "FAIL")]
    assert final["answers"][0]["bracket"] == [20, 50]
    assert final["spec"] == first["spec"]
    for name in ("sweep.html", "points.csv", "points.parquet"):
        assert (index_path.parent / name).is_file(), name


def test_a_point_the_harness_cannot_publish_on_time_is_invalid_not_a_pass(tmp_path: Path) -> None:
    # 20,000 events due in the same instant: handing them to the connection pool takes the harness
    # far longer than the 5 ms it may lag its schedule, whatever the target does
    proc = sweep(tmp_path, "--modes", "push", "--subscribers", "1:4", "--slo", "p99<=50ms", "--confirm", "1",
                 "--schedule", "burst", "--burst-size", "20000", "--burst-interval", "5", "--duration", "6",
                 "--drain", "1", "--settle", "0.5", "--no-report", "--no-early-stop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((only_sweep(tmp_path) / "sweep.json").read_text())
    ran = points(index)
    assert [p["verdict"]["status"] for p in ran] == ["INVALID"], ran  # the search explores nothing above it
    assert "publisher lagged its schedule" in ran[0]["verdict"]["reasons"][0]
    assert ran[0]["verdict"]["advice"], "an INVALID point says what to change"
    (answer,) = index["answers"]
    assert answer["capacity"] is None and answer["status"] == "harness-limited", answer
    assert "harness limit" in index["sentences"][0]


@pytest.mark.parametrize(("args", "names"), [
    (["--slo", "p99<=fast"], "--slo"),
    (["--subscribers", "100:50"], "--subscribers"),
    (["--subscribers", "a,b"], "--subscribers"),
    (["--require", "push>=lots"], "--require"),
    (["--rate", "-1"], "--rate"),
    (["--repeats", "3"], "--repeats"),
])
def test_bad_sweep_options_exit_2_with_one_line_naming_them(tmp_path: Path, args: list[str], names: str) -> None:
    proc = sweep(tmp_path, *args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("sweep-*")), "nothing is run or created on bad usage"
