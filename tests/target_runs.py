"""What the end-to-end tests of the real-server targets check alike.

A started one-process push server listens on loopback only; one short
``run_bench.py --target NAME`` push run gets every event to every subscriber
exactly once, and the target's own processes were sampled (its CPU is what a
delivery cost the server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
from helpers import assert_ok, run_bench

from targets.base import Target

__all__ = ["listening_push_server", "push_run_counts_every_event", "run_counts_every_event", "target_cpu"]


def listening_push_server(target: Target, pid: int | None) -> set[tuple[str, int]]:
    """Check that started ``target`` is healthy, process ``pid`` alone and push only; its listening addresses."""
    assert target.health() and pid is not None and target.pids() == [pid]
    assert target.egress_url("sse") is None and target.modes() == ["push"]
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def target_cpu(mode: dict[str, Any]) -> dict[int, float]:
    """The target's pids as the sampler saw them, with the most CPU seconds each reached."""
    columns = mode["resources"]["columns"]
    seen: dict[int, float] = {}
    for row in mode["resources"]["rows"]:
        sample = dict(zip(columns, row))
        if sample["role"] == "target":
            seen[sample["pid"]] = max(seen.get(sample["pid"], 0.0), sample["cpu_s"])
    return seen


def run_counts_every_event(tmp_path: Path, name: str, *, modes: tuple[str, ...] = ("push",), users: int = 300,
                           rate: int = 100, duration: int = 2, extra: tuple[str, ...] = (),
                           known: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``modes`` against target ``name``; assert exact counts in each; return the modes' results.

    ``known``: status reasons besides machine load that may degrade a mode (see :func:`helpers.assert_ok`).
    """
    proc = run_bench(tmp_path, "--target", name, "--modes", ",".join(modes), "-u", str(users), "--rate", str(rate),
                     "--duration", str(duration), "--drain", "2", "--settle", "0.5", "--no-report", *extra,
                     timeout=60 + 60 * len(modes))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: dict[str, Any] = json.loads((tmp_path / "run" / "results.json").read_text())["modes"]
    assert tuple(results) == modes
    for mode_name, mode in results.items():
        assert_ok(mode, known=known)
        audit = mode["audit"]
        assert audit["published"] == audit["accepted"] == rate * duration, (mode_name, audit)
        assert audit["delivered_unique"] == audit["expected"] == users * rate * duration, (mode_name, audit)
        assert audit["lost"] == audit["duplicates"] == audit["unexpected"] == 0, (mode_name, audit)
        assert mode["target"]["name"] == name and mode["target"]["kind"] == "server", mode["target"]
    return results


def push_run_counts_every_event(tmp_path: Path, name: str, *, users: int = 300, rate: int = 100,
                                duration: int = 2) -> dict[str, Any]:
    """Run push mode against target ``name``; assert exact counts; return the mode's results."""
    return run_counts_every_event(tmp_path, name, users=users, rate=rate, duration=duration)["push"]
