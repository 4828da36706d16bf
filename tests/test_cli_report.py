"""``run_bench.py report`` re-renders saved results and compares several."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO, env

FIXTURE = REPO / "tests" / "fixtures" / "small_results.json"


def _report(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "run_bench.py"), "report", *args], cwd=tmp, env=env(),
                          capture_output=True, text=True, timeout=120)


def test_report_subcommand_renders_and_compares(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    doc = json.loads(FIXTURE.read_text())
    doc["run"]["id"] = "second-run"
    other.write_text(json.dumps(doc))
    out = tmp_path / "out" / "compare.html"
    proc = _report(tmp_path, str(FIXTURE), str(other), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"report: {out}" in proc.stdout
    html = out.read_text()
    assert "second-run" in html and json.loads(FIXTURE.read_text())["run"]["id"] in html
    assert (out.parent / "percentiles.csv").is_file() and (out.parent / "series.parquet").is_file()


def test_report_of_a_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    wrong_version = tmp_path / "v99.json"
    doc = json.loads(FIXTURE.read_text())
    doc["schema_version"] = 99
    wrong_version.write_text(json.dumps(doc))
    for path in (str(wrong_version), str(tmp_path / "missing.json")):
        proc = _report(tmp_path, path)
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "schema_version 99" in _report(tmp_path, str(wrong_version)).stderr
