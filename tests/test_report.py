"""The HTML report: sections, numbers, escaping, self-containment, exports, browser.

Renders from ``tests/fixtures/small_results.json`` (built by
``tests/fixtures/make_fixture.py`` through the measurement core) into
``tmp_path`` and reads the HTML back with ``html.parser``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deliverybench.core.model import ResultsFormatError, Run
from deliverybench.core.results import dumps, loads
from reports import frames as F
from reports import load_results, render_report

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "small_results.json"
SECTION_IDS = ("headline", "spectrum", "over-time", "connections", "fanout", "cost", "audit", "metadata",
               "baseline", "sweep")


def _load_make_fixture():
    spec = importlib.util.spec_from_file_location("deliverybench_test_make_fixture", FIXTURES / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


make_fixture = _load_make_fixture()


# --------------------------------------------------------------------------- HTML reading


class Page(HTMLParser):
    """Tags with attributes, elements by id, and tables (by id) as rows of cells.

    Cell text excludes badges, the ★ marker and the small sub-line, so a
    numeric cell reads as just its number.
    """

    _SKIP = ("badge", "star", "sub")

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ids: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self._table: list | None = None
        self._row: dict | None = None
        self._cell: dict | None = None
        self._inline: list[bool] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.tags.append((tag, a))
        if "id" in a:
            self.ids[a["id"]] = {"tag": tag, **a}
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id") or f"anon{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": a, "cells": []}
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"tag": tag, "attrs": a, "text": ""}
            self._row["cells"].append(self._cell)
        elif tag in ("span", "div") and self._cell is not None:
            classes = a.get("class", "").split()
            self._inline.append(any(c in self._SKIP for c in classes))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr":
            self._row = None
        elif tag in ("td", "th"):
            self._cell = None
            self._inline = []
        elif tag in ("span", "div") and self._cell is not None and self._inline:
            self._inline.pop()

    def handle_data(self, data):
        if self._cell is not None and not any(self._inline):
            self._cell["text"] += data

    def rows(self, table_id: str) -> list[dict[str, str]]:
        """Data rows as {data-col: text}, plus "_label" and "_class" from the row."""
        out = []
        for row in self.tables[table_id]:
            cells = [c for c in row["cells"] if c["tag"] == "td"]
            if not cells:
                continue
            record = {c["attrs"].get("data-col", str(i)): " ".join(c["text"].split()) for i, c in enumerate(cells)}
            record["_label"] = row["attrs"].get("data-label", "")
            record["_class"] = row["attrs"].get("class", "")
            record["_best"] = ",".join(c["attrs"].get("data-col", "") for c in cells
                                       if "best" in c["attrs"].get("class", "").split())
            out.append(record)
        return out

    def headers(self, table_id: str) -> list[str]:
        for row in self.tables[table_id]:
            th = [" ".join(c["text"].split()) for c in row["cells"] if c["tag"] == "th"]
            if th:
                return th
        return []


def number(text: str) -> float:
    return float(text.replace(",", "").replace("★", "").strip())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def doc() -> dict:
    return loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report(doc, tmp_path_factory) -> Path:
    return render_report([doc], tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def html(report) -> str:
    return report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html) -> Page:
    return Page(html)


def _second_run(doc: dict, run_id: str = "20261119-101500-second") -> dict:
    other = copy.deepcopy(doc)
    other["run"]["id"] = run_id
    other["modes"]["push"]["summary"]["delivery"]["p99"] = 7.5
    return other


# --------------------------------------------------------------------------- the fixture itself


def test_fixture_is_what_make_fixture_builds(doc):
    """The checked-in file is reproducible from the generator and small."""
    assert FIXTURE.stat().st_size < 300_000
    assert dumps(make_fixture.make_document()) + "\n" == FIXTURE.read_text(encoding="utf-8"), (
        "small_results.json is stale: run `PYTHONPATH=. python tests/fixtures/make_fixture.py`")
    assert set(doc["modes"]) == {"push", "callback", "poll"}
    assert doc["modes"]["poll"]["harness"]["saturated"] is True
    assert doc["modes"]["callback"]["extra"]["webhook"]["retries"] > 0
    assert make_fixture.SCRIPT_ERROR_KIND in doc["modes"]["push"]["errors"]
    p99 = {m: r["summary"]["delivery"]["p99"] for m, r in doc["modes"].items()}
    assert p99["push"] < p99["callback"] < p99["poll"]
    for result in doc["modes"].values():
        a = result["audit"]
        assert a["expected"] == a["delivered_unique"] + a["lost"] and a["balanced"]


# --------------------------------------------------------------------------- structure


def test_render_takes_the_model_and_validates_dicts_once_at_the_edge(doc, tmp_path):
    run = Run.from_dict(doc)
    page = Page(render_report([run], tmp_path / "model", baseline=run).read_text(encoding="utf-8"))
    assert {r["_label"] for r in page.rows("headline-table")} == {"push", "callback", "poll"}
    bad = copy.deepcopy(doc)
    bad["modes"]["poll"]["summary"]["delivery"]["p99"] = float("nan")
    with pytest.raises(ResultsFormatError, match=r"modes\.poll\.summary\.delivery\.p99"):
        render_report([bad], tmp_path / "bad")


def test_render_returns_html_path_and_accepts_file_path(doc, tmp_path):
    out = render_report(doc, tmp_path / "sub" / "custom.html")
    assert out == tmp_path / "sub" / "custom.html" and out.exists()
    assert (tmp_path / "sub" / "percentiles.csv").exists()


def test_every_section_present(page):
    for sid in SECTION_IDS:
        assert sid in page.ids, sid
        assert page.ids[sid]["tag"] == "section"
    for placeholder in ("baseline", "sweep"):
        assert "hidden" in page.ids[placeholder]
    for sid in ("headline", "spectrum", "over-time", "connections", "fanout", "cost", "audit", "metadata"):
        assert "hidden" not in page.ids[sid]
    hrefs = {a.get("href") for tag, a in page.tags if tag == "a"}
    for sid in ("headline", "spectrum", "over-time", "connections", "fanout", "cost", "audit", "metadata"):
        assert f"#{sid}" in hrefs  # table of contents
    assert "#baseline" not in hrefs


def test_figures_are_inline_svg(html, page):
    for fid in ("fig-spectrum", "fig-latency-time", "fig-throughput-time", "fig-connections", "fig-errors-time",
                "fig-fanout", "fig-resources"):
        assert fid in page.ids, fid
    assert html.count("<svg") >= 7
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html and "<metadata" not in html


# --------------------------------------------------------------------------- headline


def test_headline_numbers_equal_summary(doc, page):
    rows = {r["_label"]: r for r in page.rows("headline-table")}
    assert set(rows) == {"push", "callback", "poll"}
    assert page.headers("headline-table")[:2] == ["mode", "status"]
    for mode, result in doc["modes"].items():
        row, summary = rows[mode], result["summary"]["delivery"]
        for key in ("p50", "p99", "p99_9", "max"):  # to the last digit shown: 2 decimals, whole ms from 1 s
            assert number(row[key]) == pytest.approx(summary[key], abs=0.005 if summary[key] < 1000 else 0.5), (
                mode, key)
        assert number(row["deliveries_per_s"]) == pytest.approx(result["throughput"]["deliveries_per_s"], abs=0.05)
        assert number(row["lost"]) == result["audit"]["lost"]
        assert number(row["duplicates"]) == result["audit"]["duplicates"]
        cpu_ms_per_1k = result["resources"]["costs"]["target"]["cpu_s"] * 1e6 / result["throughput"]["deliveries"]
        assert number(row["target_cpu_ms_per_1k"]) == pytest.approx(cpu_ms_per_1k, abs=0.05)


def test_headline_marks_best_per_column(page, html):
    rows = {r["_label"]: r for r in page.rows("headline-table")}
    for key in ("p50", "p99", "p99_9", "max", "target_cpu_ms_per_1k"):
        assert key in rows["push"]["_best"].split(","), key
        assert key not in rows["callback"]["_best"].split(",")
    # lost: push and poll tie at 0, callback lost some -> both zeros marked
    assert "lost" in rows["push"]["_best"] and "lost" in rows["poll"]["_best"]
    assert "lost" not in rows["callback"]["_best"]
    assert "★" in html


def test_headline_sentence_is_computed_from_numbers(doc, page, html):
    p99 = {m: r["summary"]["delivery"]["p99"] for m, r in doc["modes"].items()}
    ratio = p99["callback"] / p99["push"]
    headline = html[html.index('id="headline"'):html.index('id="spectrum"')]
    assert "push delivered with p99 5.09 ms" in headline
    assert f"{ratio:.1f}× lower than callback (32.8 ms)" in headline
    assert "callback lost 10 of 9,980 expected deliveries" in headline


def test_saturation_warning_visible_near_top_and_in_cost(html, page):
    top = html[:html.index('id="headline"')]
    assert 'class="warning danger saturated"' in top and 'data-label="poll"' in top
    assert "not trustworthy" in top
    cost = html[html.index('<section id="cost"'):html.index('<section id="audit"')]
    assert 'class="warning danger saturated" data-label="poll"' in cost
    assert "harness process 4120" in cost
    rows = {r["_label"]: r for r in page.rows("headline-table")}
    assert "saturated" in rows["poll"]["_class"] and "saturated" not in rows["push"]["_class"]


def test_failed_mode_is_marked_with_its_failure(doc, tmp_path):
    broken = copy.deepcopy(doc)
    broken["modes"]["callback"]["status"] = "failed"
    broken["modes"]["callback"]["failure"] = "target <down>: connection refused"
    broken["modes"]["callback"]["summary"]["delivery"]["p99"] = 0.001  # would win if failed modes could
    page = Page(render_report([broken], tmp_path).read_text(encoding="utf-8"))
    rows = {r["_label"]: r for r in page.rows("headline-table")}
    assert "status-failed" in rows["callback"]["_class"]
    assert "p99" not in rows["callback"]["_best"] and "p99" in rows["push"]["_best"]
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "target &lt;down&gt;: connection refused" in text
    assert 'class="warning danger status"' in text


# --------------------------------------------------------------------------- safety and self-containment


def test_untrusted_text_is_escaped(html, page):
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r"<\s*script", html, re.I) is None
    assert "<b>not bold</b>" not in html and "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert not any(tag == "script" for tag, _ in page.tags)
    errors = {r["kind"] for r in page.rows("errors-table")}
    assert make_fixture.SCRIPT_ERROR_KIND in errors


def test_self_contained(html, page):
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = attrs.get(name, "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, name, value[:80])
        assert tag not in ("link", "script", "iframe", "object", "embed")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I)
    assert "@import" not in html


# --------------------------------------------------------------------------- sections' content


def test_fanout_counts_incomplete(doc, page, html):
    rows = {r["_label"]: r for r in page.rows("fanout-table")}
    for mode, result in doc["modes"].items():
        # incomplete: no fan-out time although someone was expected to get the event
        nulls = sum(1 for row in result["fanout"]["rows"] if row[2] is None and row[3])
        assert number(rows[mode]["incomplete"]) == nulls
        assert number(rows[mode]["events"]) == len(result["fanout"]["rows"])
    assert "9 events never reached every expected subscriber" in html


def test_audit_and_extra_tables(doc, page):
    rows = {r["_label"]: r for r in page.rows("audit-table")}
    for mode, result in doc["modes"].items():
        a = result["audit"]
        for key in ("published", "subscribers", "expected", "delivered_unique", "lost", "duplicates",
                    "out_of_order", "unexpected"):
            assert number(rows[mode][key]) == a[key], (mode, key)
        assert rows[mode]["balanced"] == "✓"
    webhook = page.rows("webhook-table")[0]
    wh = doc["modes"]["callback"]["extra"]["webhook"]
    assert webhook["_label"] == "callback"
    assert number(webhook["retries"]) == wh["retries"] and number(webhook["give_ups"]) == wh["give_ups"]
    assert "http_503: 56" in webhook["failures_text"]
    poll = page.rows("poll-table")[0]
    assert number(poll["requests_per_delivery"]) == pytest.approx(
        doc["modes"]["poll"]["extra"]["requests_per_delivery"], abs=5e-4)


def test_polling_table_shows_the_pollers_own_counters(doc, page):
    """The Polling table reads ``poll_empty`` (what the poller writes): it once showed "—" beside the real count."""
    extra = doc["modes"]["poll"]["extra"]
    assert extra["poll_empty"] == 80 and "poll_gaps" not in extra  # a counter that never moved is absent: 0
    assert page.headers("poll-table") == ["mode", "requests", "requests / delivery", "empty polls", "gaps",
                                          "full pages"]
    rows = {r["_label"]: r for r in page.rows("poll-table")}
    assert set(rows) == {"poll"}
    assert number(rows["poll"]["empty_polls"]) == extra["poll_empty"]
    assert number(rows["poll"]["requests"]) == extra["requests"]
    assert number(rows["poll"]["gaps"]) == 0 and number(rows["poll"]["full_pages"]) == 0
    # shown once: the poller's counters are not repeated among the other counters
    other = [r for r in page.rows("extra-table") if r["_label"] == "poll"]
    assert not {r["key"] for r in other} & {"poll_empty", "poll_requests", "requests", "requests_per_delivery"}


def test_polling_table_gaps_and_full_pages(doc, tmp_path):
    moved = copy.deepcopy(doc)
    moved["modes"]["poll"]["extra"].update(poll_gaps=3, poll_full_pages=7, poll_empty=1895)
    rows = {r["_label"]: r for r in Page(render_report([moved], tmp_path).read_text(encoding="utf-8"))
            .rows("poll-table")}
    assert (number(rows["poll"]["empty_polls"]), number(rows["poll"]["gaps"]),
            number(rows["poll"]["full_pages"])) == (1895, 3, 7)


def test_cost_table(doc, page):
    rows = {r["_label"]: r for r in page.rows("cost-table")}
    for mode, result in doc["modes"].items():
        target = result["resources"]["costs"]["target"]
        subs = result["params"]["subscribers"]
        assert number(rows[mode]["target_cpu_s"]) == pytest.approx(target["cpu_s"], abs=0.005 + 1e-9)  # 2 decimals
        assert number(rows[mode]["target_cpu_s_per_1k_subscribers"]) == pytest.approx(
            target["cpu_s"] / (subs / 1000), abs=0.005)
    harness = {r["_label"]: r for r in page.rows("harness-table")}
    assert harness["poll"]["harness_saturated"] == "✓" and harness["push"]["harness_saturated"] == "✗"


def test_metadata(doc, html):
    meta = html[html.index('<section id="metadata"'):]
    assert doc["run"]["commit"] in meta
    assert doc["machine"]["cpu_model"] in meta
    assert "locust" in meta and "2.47.0" in meta
    assert "slo.p99_ms" in meta


# --------------------------------------------------------------------------- exports


def test_exports_exist_and_match_summary(doc, report):
    out = report.parent
    for name in ("percentiles.csv", "percentiles.parquet", "series.csv", "series.parquet"):
        assert (out / name).stat().st_size > 0, name
    csv = pd.read_csv(out / "percentiles.csv", dtype={"percentile": str})
    parquet = pd.read_parquet(out / "percentiles.parquet")
    assert list(csv.columns) == ["run", "mode", "metric", "percentile", "value_ms", "count"]
    for frame in (csv, parquet):
        for mode, result in doc["modes"].items():
            summary = result["summary"]["delivery"]
            sel = frame[(frame["mode"] == mode) & (frame["metric"] == "delivery")]
            values = dict(zip(sel["percentile"].astype(str), sel["value_ms"]))
            assert values["99"] == summary["p99"]
            assert values["max"] == summary["max"] and values["99.9"] == summary["p99_9"]
            assert int(sel["count"].iloc[0]) == summary["count"]
        assert set(frame["percentile"].astype(str)) == {"50", "90", "99", "99.9", "99.99", "max"}
    series_csv = pd.read_csv(out / "series.csv")
    series_pq = pd.read_parquet(out / "series.parquet")
    total_rows = sum(len(r["series"]["rows"]) for r in doc["modes"].values())
    assert len(series_csv) == len(series_pq) == total_rows
    assert {"run", "mode", "second", "deliveries", "p99_ms", "published", "connected"} <= set(series_pq.columns)
    assert int(series_pq["deliveries"].sum()) == sum(r["throughput"]["deliveries"] for r in doc["modes"].values())


# --------------------------------------------------------------------------- several documents


def test_two_documents_give_two_runs(doc, tmp_path):
    other = _second_run(doc)
    out = render_report([doc, other], tmp_path)
    page = Page(out.read_text(encoding="utf-8"))
    assert page.headers("headline-table")[:3] == ["run", "mode", "status"]
    rows = page.rows("headline-table")
    assert len(rows) == 6
    assert {r["run"] for r in rows} == {doc["run"]["id"], other["run"]["id"]}
    labels = {r["_label"] for r in rows}
    assert f"{doc['run']['id']}:push" in labels and f"{other['run']['id']}:push" in labels
    p99 = {r["_label"]: number(r["p99"]) for r in rows}
    assert p99[f"{other['run']['id']}:push"] == 7.5
    pct = pd.read_csv(tmp_path / "percentiles.csv", dtype={"percentile": str})
    assert set(pct["run"]) == {doc["run"]["id"], other["run"]["id"]}


def test_same_document_twice_gets_distinct_labels(doc, tmp_path):
    out = render_report([doc, doc], tmp_path)
    rows = Page(out.read_text(encoding="utf-8")).rows("headline-table")
    assert len({r["_label"] for r in rows}) == 6


def test_load_results_reads_files_and_directories(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    shutil.copy(FIXTURE, run / "results.json")
    docs = load_results([run, FIXTURE])
    assert len(docs) == 2 and docs[0].run.id == docs[1].run.id
    assert all(isinstance(d, Run) for d in docs)
    assert len(load_results(str(FIXTURE))) == 1


def test_burst_and_push_document_renders(tmp_path):
    small = make_fixture.make_document(deliveries=3_000, seconds=4, modes=("push", "burst"), subscribers=5,
                                       saturated_mode=None, run_id="burst-check")
    out = render_report([small], tmp_path)
    page = Page(out.read_text(encoding="utf-8"))
    rows = {r["_label"]: r for r in page.rows("headline-table")}
    assert number(rows["burst"]["p99"]) == pytest.approx(small["modes"]["burst"]["summary"]["ack"]["p99"], abs=0.005)
    # the fixture's push mode carries two (hostile) error kinds, so it is degraded; burst has nothing to say
    assert small["modes"]["push"]["status"] == "degraded" and small["modes"]["burst"]["status"] == "ok"
    html = out.read_text(encoding="utf-8")
    assert "status degraded: 2 errors" in html and "&lt;script&gt;" in html and "<script>" not in html


# --------------------------------------------------------------------------- frames


def test_spectrum_matches_hdr_percentiles(doc):
    refs = F.mode_refs([Run.from_dict(doc)])
    spectrum = F.spectrum_frame(refs)
    for ref in refs:
        hist = F.total_histogram(ref.result, "delivery")
        pcts = np.array([0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0])
        ours = F.spectrum_values(hist, pcts)
        assert ours.tolist() == [float(hist.get_value_at_percentile(p)) for p in pcts]
        assert ours[3] / 1000 == ref.result.summary["delivery"].p99
        sel = spectrum[spectrum["label"] == ref.label]
        assert sel["value_ms"].is_monotonic_increasing
        assert sel["value_ms"].iloc[-1] == ref.result.summary["delivery"].max


def test_fanout_downsampling_keeps_tail_and_incomplete():
    n = 60_000
    rng = np.random.default_rng(1)
    fan = pd.DataFrame({"run": "r", "mode": "push", "label": "push", "id": np.arange(n), "due_ns": np.arange(n),
                        "t_s": np.arange(n) / 100.0, "fanout_ms": rng.lognormal(1.0, 0.5, n)})
    fan.loc[[5, 17, 40_001], "fanout_ms"] = np.nan
    fan["incomplete"] = fan["fanout_ms"].isna()
    sample, dropped = F.downsample_fanout(fan, max_points=20_000)
    assert dropped and len(sample) <= 20_000 + 200 + 3
    assert int(sample["incomplete"].sum()) == 3
    assert sample["fanout_ms"].max() == fan["fanout_ms"].max()
    same, dropped = F.downsample_fanout(fan.head(100))
    assert not dropped and len(same) == 100


# --------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the chromium we started (its own process group, started with start_new_session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@needs_chromium
def test_browser_screenshot(report, tmp_path):
    png = tmp_path / "report.png"
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=1280,4000", report.resolve().as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=120)
    finally:
        _stop(proc)
    assert png.exists() and png.stat().st_size > 50_000
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1280, 4000)
        pixels = np.asarray(image.convert("L"))
    ink = (pixels < 200).mean()
    assert ink > 0.01, "screenshot is (nearly) blank"
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copy(png, os.environ["REPORT_SCREENSHOT"])


@needs_chromium
def test_browser_loads_offline_without_errors(report, tmp_path):
    """Drive chromium over the DevTools protocol: the only request is the file itself, no console errors."""
    from websockets.sync.client import connect

    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1280,2000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            assert proc.poll() is None, "chromium exited early"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        url = report.resolve().as_uri()
        requests: list[str] = []
        problems: list[str] = []
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as ws:
            counter = iter(range(1, 1_000_000))

            def send(method: str, params: dict | None = None, session: str | None = None) -> int:
                msg_id = next(counter)
                msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
                if session:
                    msg["sessionId"] = session
                ws.send(json.dumps(msg))
                return msg_id

            def until(predicate, timeout: float = 30.0) -> dict:
                end = time.monotonic() + timeout
                while True:
                    msg = json.loads(ws.recv(timeout=max(0.05, end - time.monotonic())))
                    method = msg.get("method", "")
                    params = msg.get("params", {})
                    if method == "Network.requestWillBeSent":
                        requests.append(params["request"]["url"])
                    elif method == "Runtime.exceptionThrown":
                        problems.append(f"exception: {params['exceptionDetails'].get('text')}")
                    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                        problems.append(f"console.{params['type']}: {params.get('args')}")
                    elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                        problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
                    elif method == "Network.loadingFailed":
                        problems.append(f"loading failed: {params.get('errorText')}")
                    if predicate(msg):
                        return msg

            target_req = send("Target.createTarget", {"url": "about:blank"})
            target_id = until(lambda m: m.get("id") == target_req)["result"]["targetId"]
            attach_req = send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
            session = until(lambda m: m.get("id") == attach_req)["result"]["sessionId"]
            for method in ("Network.enable", "Runtime.enable", "Log.enable", "Page.enable"):
                req = send(method, session=session)
                until(lambda m, req=req: m.get("id") == req)
            send("Page.navigate", {"url": url}, session=session)
            until(lambda m: m.get("method") == "Page.loadEventFired")
            check = send("Runtime.evaluate", {"expression": (
                "JSON.stringify({sections: [...document.querySelectorAll('section')].map(s => s.id),"
                " headline: document.getElementById('headline').getBoundingClientRect().height,"
                " svgs: [...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width),"
                " resources: performance.getEntriesByType('resource').map(e => e.name)})"),
                "returnByValue": True}, session=session)
            result = json.loads(until(lambda m: m.get("id") == check)["result"]["result"]["value"])
            try:  # let late events (if any) arrive
                until(lambda m: False, timeout=1.0)
            except TimeoutError:
                pass
    finally:
        _stop(proc)
    assert not problems, problems
    assert url in requests, requests
    outside = [u for u in requests if u != url and not u.startswith(("data:", "about:"))]
    assert not outside, outside
    assert result["resources"] == [u for u in result["resources"] if u.startswith("data:")]
    assert {"headline", "spectrum", "over-time", "connections", "fanout", "cost", "audit", "metadata"} <= set(
        result["sections"])
    assert result["headline"] > 100
    assert len(result["svgs"]) >= 7 and min(result["svgs"]) > 300
