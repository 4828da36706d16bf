"""Shared helpers for end-to-end tests: run real Locust and run_bench subprocesses, within scaled time limits."""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def _time_scale() -> float:
    raw = os.environ.get("DELIVERYBENCH_TEST_TIME_SCALE", "1.0")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"DELIVERYBENCH_TEST_TIME_SCALE must be a number, got {raw!r}") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"DELIVERYBENCH_TEST_TIME_SCALE must be a positive number, got {raw!r}")
    return value


#: one factor for every test time limit (as websockets' tests do): a slow or shared machine sets
#: DELIVERYBENCH_TEST_TIME_SCALE=3 instead of each test growing its own margin; conftest.py applies it
#: to pytest-timeout's limits
TIME_SCALE = _time_scale()


def scaled(seconds: float) -> float:
    """``seconds`` of a test time limit, stretched by DELIVERYBENCH_TEST_TIME_SCALE."""
    return seconds * TIME_SCALE


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    out.pop("LOCUST_HOST", None)
    return out


def run_locust(scenario: str, tmp: Path, *args: str, users: int, timeout: float = 180,
               open_files: int | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``locust -f scenarios/<scenario> --headless`` and load the results it wrote.

    ``open_files`` sets Locust's (and its children's) open-files limit, soft and hard.
    """
    results = tmp / "results.json"
    cmd = [sys.executable, "-m", "locust", "-f", str(SCENARIOS / scenario), "--headless",
           "-u", str(users), "-r", str(max(users, 1)), "-t", f"{math.ceil(scaled(120))}s", "--only-summary",
           "--results", str(results), "--csv", str(tmp / "locust"),
           "--no-report", *args]  # the report is tested on its own; here it would only cost CPU
    if "--processes" in args:  # a private master port, so no other run's workers can join
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])
        cmd += ["--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                "--master-host", "127.0.0.1", "--master-port", port]
    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    proc = subprocess.run(cmd, cwd=tmp, env=env(), capture_output=True, text=True, timeout=scaled(timeout),
                          preexec_fn=limit_files)
    assert results.is_file(), f"no results written (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc, json.loads(results.read_text())


def run_bench(tmp: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp), "--run-id", "run", *args]
    return subprocess.run(cmd, cwd=tmp, env=env(), capture_output=True, text=True, timeout=scaled(timeout))


def locust_csv_row(tmp: Path, name: str, method: str) -> dict[str, str]:
    with open(tmp / "locust_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == name and row["Type"] == method:
                return row
    raise AssertionError(f"no {method} {name} row in Locust's CSV")


#: reasons that say the *machine* was the bottleneck during a test -- noise on a shared 2-core box,
#: not a finding about the target; everything else must keep a mode ok
LOAD_REASONS = ("harness saturated", "publisher behind its schedule", "machine busy")


def assert_ok(mode: dict[str, Any], *, known: tuple[str, ...] = ()) -> None:
    """The mode is ok, or degraded only because the shared test machine ran out of CPU.

    ``known``: further reasons (their text ends so) that the caller has checked the cause of.
    """
    reasons = list(mode.get("status_reasons") or [])
    other = [r for r in reasons if not r.startswith(LOAD_REASONS) and not r.endswith(known)]
    assert mode.get("status") in ("ok", "degraded") and not other and (mode["status"] == "ok") == (not reasons), (
        mode.get("status"), mode.get("failure"), reasons)
