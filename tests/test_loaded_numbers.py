"""Numbers loaded from a results file are untrusted: bad ones are one line and exit 2; what is written is strict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, env, scaled

FIXTURE = REPO / "tests" / "fixtures" / "small_results.json"


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def run_bench(tmp: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "run_bench.py"), *args], cwd=tmp, env=env(),
                          capture_output=True, text=True, timeout=scaled(timeout))


def _edited(tmp: Path, text: str) -> Path:
    path = tmp / "edited.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old, new, field", [
    ('"p99":', '"p99": NaN, "x":', "modes.push.summary.connect.p99: must be a finite number"),
    ('"p99":', '"p99": 1e400, "x":', "modes.push.summary.connect.p99: must be a finite number"),
    ('"lost":0', '"lost":' + "9" * 400, "audit.lost: must be a whole number >= 0 and < 2**63"),
    ('"lost":0', '"lost":-4', "audit.lost: must be a whole number >= 0"),
    ('"expected":10000', '"expected":"NaN"', "audit.expected: must be a whole number"),
    ('"deliveries_per_s":500.0', '"deliveries_per_s":Infinity', "throughput.deliveries_per_s: must be a finite"),
    ('"HISTFAAAAFB4nJ', '"HISTFAAAAFB4n', "histogram is not valid base64"),
])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_bad_numbers_are_one_line_and_exit_2(tmp_path: Path, command: str, old: str, new: str, field: str) -> None:
    text = FIXTURE.read_text()
    assert old in text
    bad = _edited(tmp_path, text.replace(old, new, 1))
    args = [command, str(FIXTURE), str(bad)] if command == "compare" else [command, str(bad)]
    proc = run_bench(tmp_path, *args, "--output" if command == "compare" else "-o",
                     str(tmp_path / ("out" if command == "compare" else "r.html")), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in proc.stderr


def test_every_json_written_by_compare_is_strict(tmp_path: Path) -> None:
    # one run a side: the gate's intervals are unbounded, which once came out as a bare Infinity
    proc = run_bench(tmp_path, "compare", str(FIXTURE), str(FIXTURE), "--output", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _strict((tmp_path / "out" / "comparison.json").read_text())
    assert data["outcome"] == "pass"
    assert all(m["failed_sides"] == [] for m in data["modes"].values())
