"""The report's view of many load machines: a per-worker table, latency per worker, and the run's timing
uncertainty beside the percentiles -- shown only when the run had workers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from deliverybench.core.clock import WorkerClock, clock_section, worker_entry
from reports import frames, load_results, render_report
from tests.fixtures.make_fixture import FIXTURE_PATH


def _doc(with_workers: bool) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(json.loads(FIXTURE_PATH.read_text()))
    if with_workers:
        clocks = [WorkerClock(250.0, 0.4, 0.0, 0.8, 40, True), WorkerClock(-40.0, 0.3, 100.0, 0.6, 40, True)]
        rows = [worker_entry(node=f"n{i}", host=f"load-{i}", address=f"10.231.{i}.2", process=f"load-{i}:7",
                             sessions=50, clock=clock, deliveries=1000, p50_ms=12.0 + 30 * i, p99_ms=20.0 + 40 * i)
                for i, clock in enumerate(clocks)]
        doc["modes"]["push"]["clock"] = clock_section(rows, clocks, corrected=True)
    return doc


def _render(doc: dict[str, Any], tmp: Path) -> str:
    path = tmp / "results.json"
    path.write_text(json.dumps(doc))
    return render_report(load_results([str(path)]), tmp / "report.html").read_text()


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}"')
    return html[start:html.index("</section>", start)]


def test_workers_and_their_clocks_are_shown(tmp_path: Path) -> None:
    html = _render(_doc(True), tmp_path)
    section = _section(html, "workers")
    assert "<h2>Load machines and their clocks</h2>" in section and 'id="fig-workers"' in section
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section.split('id="workers-table"')[1]))
    assert "load-0:7 10.231.0.2 50 250.000 0.400 0.000 ✓ 1,000" in text, text[:400]
    assert "load-1:7 10.231.1.2 50 -40.000 0.300 100.000" in text
    headline = _section(html, "headline")
    assert 'data-col="timing_uncertainty"' in headline and ">0.40<" in headline.replace(" ", "")


def test_one_machine_shows_no_workers_and_no_uncertainty_column(tmp_path: Path) -> None:
    html = _render(_doc(False), tmp_path)
    assert '<section id="workers" hidden>' in html
    assert 'data-col="timing_uncertainty"' not in html


def test_the_workers_frame_reads_the_model() -> None:
    from deliverybench.core.model import Run

    refs = frames.mode_refs([Run.from_dict(_doc(True))])
    workers = frames.workers_frame(refs)
    assert list(workers.columns) == frames.WORKER_COLUMNS
    assert workers["worker"].tolist() == ["load-0:7", "load-1:7"] and set(workers["mode"]) == {"push"}
    assert workers["p50_raw"].tolist() == [262.0, 2.0]
