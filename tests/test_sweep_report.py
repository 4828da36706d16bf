"""The sweep report: sweep.json index -> sweep.html + points.csv/.parquet, on synthetic indexes.

The indexes are built with :mod:`deliverybench.core.sweep` itself (the plan
asks for each point, an oracle decides its verdict), so they have the shape
a real sweep writes: a finished grid of 2 modes × 2 rates × 3 N with PASS,
FAIL and INVALID points, and a search cut short after two points.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from deliverybench.core.sweep import (
    Point,
    PointVerdict,
    Status,
    SweepPlan,
    add_point,
    new_index,
    parse_sweep_spec,
    point_key,
    resume_plan,
    with_answers,
)
from reports import render_sweep_report
from reports.sweep import POINT_COLUMNS

GRID = (100, 1000, 10_000)
RATES = (1.0, 10.0)

#: (mode, rate) -> N -> status; anything not listed passes
ORACLE: dict[tuple[str, float], dict[int, Status]] = {
    ("push", 1.0): {10_000: Status.FAIL},
    ("push", 10.0): {1000: Status.FAIL, 10_000: Status.INVALID},
    ("callback", 1.0): {1000: Status.INVALID, 10_000: Status.FAIL},
    ("callback", 10.0): {100: Status.FAIL, 1000: Status.FAIL, 10_000: Status.FAIL},
}
#: this INVALID point has no figures at all (the harness broke before measuring)
BLANK = ("callback", 1.0, 1000)


def figures_for(point: Point, status: Status) -> dict[str, float | None]:
    """Figures that agree with the verdict: p99 within 50 ms for a PASS, far above for a FAIL."""
    if (point.mode, point.rate, point.subscribers) == BLANK:
        return dict.fromkeys(("p50", "p99", "p99_9", "lost", "refused", "deliveries_per_s", "expected"))
    offered = point.subscribers * point.rate
    p99 = {Status.PASS: 5 + 0.003 * offered, Status.FAIL: 120 + 0.01 * offered, Status.INVALID: 80.0}[status]
    return {"p50": p99 / 4, "p99": p99, "p99_9": p99 * 1.5, "lost": 0.0 if status == Status.PASS else 10.0,
            "refused": 0.0, "deliveries_per_s": offered * (1.0 if status == Status.PASS else 0.8),
            "expected": offered * 30}


def verdict_for(status: Status, p99: float | None) -> PointVerdict:
    if status == Status.INVALID:
        return PointVerdict(status, ("harness saturated: CPU 100 %",), ("run with more --processes",),
                            "harness saturated")
    if status == Status.FAIL:
        return PointVerdict(status, (f"p99 {p99:.0f} ms > 50 ms",), (), f"p99 {p99:.0f} ms")
    return PointVerdict(status, (f"p99 {p99:.1f} ms <= 50 ms",), (), f"p99 {p99:.1f} ms")


def run_point(index: dict[str, Any], plan: SweepPlan, point: Point, status: Status) -> dict[str, Any]:
    figs = figures_for(point, status)
    verdict = verdict_for(status, figs["p99"])
    plan.record(point, verdict)
    workload = f"{point.mode}-{point.subscribers}-{point.rate:g}"
    return add_point(index, point_key(workload, point.repeat), point=point, verdict=verdict, figures=figs,
                     results_path=f"points/{workload}-r{point.repeat}/results.json")


def grid_index() -> dict[str, Any]:
    spec = parse_sweep_spec(modes="push,callback", subscribers=",".join(map(str, GRID)), rates="1,10",
                            slo="p99<=50ms,lost==0", confirm=2)
    index = new_index(spec, extra={"target": "<script>alert(1)</script>"})
    plan = SweepPlan(spec)
    while (point := plan.next_point()) is not None:
        status = ORACLE[(point.mode, point.rate)].get(point.subscribers, Status.PASS)
        index = run_point(index, plan, point, status)
    return with_answers(index, resume_plan(index).answers())


class Page(HTMLParser):
    """Start tags with attributes, and the text inside the element with id ``sentences``."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._depth = 0
        self.sentences: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.tags.append((tag, a))
        if a.get("id") == "sentences":
            self._depth = 1
        elif self._depth:
            self._depth += 1
            if tag == "p":
                self.sentences.append("")

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth > 1 and self.sentences:
            self.sentences[-1] += data

    def rows(self) -> list[dict[str, str]]:
        return [a for tag, a in self.tags if tag == "tr" and "data-key" in a]


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[dict[str, Any], Path, list[Path]]:
    index = grid_index()
    out = tmp_path_factory.mktemp("sweep")
    rendered = out / "points" / "push-100-1-r0"
    rendered.mkdir(parents=True)
    (rendered / "report.html").write_text("<html></html>", encoding="utf-8")  # only this point has its report
    return index, out, render_sweep_report(index, out)


def test_the_index_is_what_a_sweep_writes(grid):
    index, _, _ = grid
    statuses = [p["verdict"]["status"] for p in index["points"].values()]
    assert len(statuses) == 15  # 12 grid cells + confirmations: push 1000@1, push 100@10, callback 100@1
    assert statuses.count("INVALID") == 2 and statuses.count("FAIL") == 6
    assert [a["status"] for a in index["answers"]] == ["found", "found", "harness-limited", "below-range"]


def test_files_written_html_first(grid):
    _, out, paths = grid
    assert paths == [out / "sweep.html", out / "points.csv", out / "points.parquet"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_header_has_spec_and_capacity_sentences(grid):
    index, out, _ = grid
    html = (out / "sweep.html").read_text(encoding="utf-8")
    page = Page(html)
    assert page.sentences == index["sentences"]
    assert index["sentences"][0].startswith(
        "push, within p99 ≤ 50 ms and no loss, holds 1,000 subscribers at 1 event/s")
    assert "callback" in index["sentences"][1] and "harness limit at 1,000" in index["sentences"][1]
    for sentence in index["sentences"]:
        assert str(escape(sentence)) in html
    assert "100, 1,000, 10,000 (grid)" in html and "p99&lt;=50ms,lost==0" in html
    assert "sweep not finished" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # extra from the index, escaped


def test_one_svg_per_figure_and_a_heatmap_per_mode(grid):
    _, out, _ = grid
    html = (out / "sweep.html").read_text(encoding="utf-8")
    ids = {a["id"] for _, a in Page(html).tags if "id" in a}
    for mode in ("push", "callback"):
        assert f"mode-{mode}" in ids and f'data-mode="{mode}"' in html
        for kind in ("latency", "offered", "throughput", "heatmap"):
            assert f"fig-{mode}-{kind}" in ids
    assert html.count("<svg ") == 8
    assert "p99 / SLO bound" in html
    assert html.count('class="note analysis"') == 4  # one per (mode, rate)
    assert html.count("Information only; the capacity is the SLO bracket.") >= 4


def test_self_contained_and_no_script(grid):
    _, out, _ = grid
    html = (out / "sweep.html").read_text(encoding="utf-8")
    page = Page(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "img")
        for name in ("src", "href", "xlink:href", "action", "data"):
            assert not attrs.get(name, "").lower().startswith(("http:", "https:", "//", "javascript:")), (tag, attrs)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I) and "@import" not in html
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", html))  # only in-document ids
    assert '{% include' not in html and "--bad-bg" in html  # the shared stylesheet was inlined


def test_points_table_marks_verdicts_and_links_reports(grid):
    index, out, _ = grid
    rows = Page((out / "sweep.html").read_text(encoding="utf-8")).rows()
    assert [r["data-key"] for r in rows] == sorted(index["points"], key=lambda k: index["points"][k]["seq"])
    for row in rows:
        assert row["class"] == f"verdict-{row['data-status'].lower()}"
    assert sum(r["data-status"] == "INVALID" for r in rows) == 2
    hrefs = [a["href"] for tag, a in Page((out / "sweep.html").read_text(encoding="utf-8")).tags
             if tag == "a" and a.get("href", "").startswith("points/")]
    assert "points/push-100-1-r0/report.html" in hrefs
    assert "points/callback-100-10-r0/results.json" in hrefs
    assert len(hrefs) == 15


def test_exports_have_one_row_per_point(grid):
    index, out, _ = grid
    csv = pd.read_csv(out / "points.csv")
    parquet = pd.read_parquet(out / "points.parquet")
    assert len(csv) == len(parquet) == len(index["points"]) == 15
    assert list(csv.columns) == list(POINT_COLUMNS) and {"status", "p99"} <= set(csv.columns)
    assert csv["status"].value_counts().to_dict() == {"PASS": 7, "FAIL": 6, "INVALID": 2}
    row = csv.set_index("key").loc["push-10000-1"]
    assert row["status"] == "FAIL" and row["p99"] == pytest.approx(120 + 0.01 * 10_000)
    assert row["offered_per_s"] == pytest.approx(10_000) and row["results"] == "points/push-10000-1-r0/results.json"
    blank = csv.set_index("key").loc["callback-1000-1"]
    assert pd.isna(blank["p99"]) and blank["status"] == "INVALID"
    assert parquet["seq"].tolist() == sorted(parquet["seq"].tolist())
    assert str(parquet["subscribers"].dtype) == "Int64"


def test_partial_index_renders(tmp_path):
    """A search cut short after two push points: no answers, callback never started, one point without figures."""
    spec = parse_sweep_spec(modes="push,callback", subscribers="100:20000", rates="1", slo="p99<=50ms")
    index = new_index(spec)
    plan = SweepPlan(spec)
    index = run_point(index, plan, plan.next_point(), Status.PASS)
    second = plan.next_point()
    verdict = PointVerdict(Status.FAIL, ("stopped early",), (), "stopped early")
    plan.record(second, verdict)
    index = add_point(index, "push-200", point=second, verdict=verdict, figures={"p99": None},
                      results_path="points/push-200/results.json")
    index["points"]["odd"] = {"mode": "push", "subscribers": 300, "rate": 1.0, "seq": 2}  # no verdict, no figures
    assert "answers" not in index
    paths = render_sweep_report(index, tmp_path / "out")
    html = paths[0].read_text(encoding="utf-8")
    assert "sweep not finished" in html.lower()
    assert "No points for callback yet" in html
    # push's latency and throughput figures from its one measured point; no p99-vs-offered figure for one rate
    # (it would repeat the latency one) and no heat map for a search
    assert html.count("<svg ") == 2 and "fig-push-offered" not in html
    assert "fig-push-heatmap" not in html and "100:20,000 (searched)" in html
    assert len(pd.read_csv(paths[1])) == 3
    assert 'data-key="odd" data-status="UNKNOWN"' in html


def test_pending_answers_and_an_empty_index(tmp_path):
    spec = parse_sweep_spec(modes="push", subscribers="100,1000", rates="1,10", slo="p99<=50ms")
    empty = new_index(spec)
    paths = render_sweep_report(empty, tmp_path / "empty")
    assert "No points yet." in paths[0].read_text(encoding="utf-8")
    csv = pd.read_csv(paths[1])
    assert len(csv) == 0 and list(csv.columns) == list(POINT_COLUMNS)

    plan = SweepPlan(spec)
    index = run_point(empty, plan, plan.next_point(), Status.PASS)
    index = with_answers(index, resume_plan(index).answers())  # mid-sweep answers: pending
    html = render_sweep_report(index, tmp_path / "mid")[0].read_text(encoding="utf-8")
    assert Page(html).sentences == ["push, within p99 ≤ 50 ms, was interrupted before it finished: so far 100 "
                                    "subscribers passed at 1 event/s; no point finished at 10 events/s"]
    assert "interrupted before it finished: so far 100 passed" in html  # the answers table, in words
    assert "Sweep not finished: push at 1 event/s, push at 10 events/s still pending" in html


def test_knee_and_usl_note_is_information_only(tmp_path):
    """Six passing N, latency turning up: the note names the knee and the fit, and says they do not decide."""
    spec = parse_sweep_spec(modes="push", subscribers="100,200,400,800,1600,3200", rates="1", slo="p99<=50ms",
                            confirm=1)
    index, plan = new_index(spec), SweepPlan(spec)
    while (point := plan.next_point()) is not None:
        p99 = 5 + 40 * (point.subscribers / 3200) ** 4
        figs = {"p50": p99 / 3, "p99": p99, "p99_9": p99 * 1.4, "lost": 0.0, "refused": 0.0,
                "deliveries_per_s": point.subscribers / (1 + 0.0003 * (point.subscribers - 1)), "expected": 1.0}
        verdict = PointVerdict(Status.PASS, (), (), f"p99 {p99:.1f} ms")
        plan.record(point, verdict)
        index = add_point(index, f"push-{point.subscribers}", point=point, verdict=verdict, figures=figs,
                          results_path=f"points/push-{point.subscribers}/results.json")
    index = with_answers(index, plan.answers())
    html = render_sweep_report(index, tmp_path)[0].read_text(encoding="utf-8")
    note = re.search(r'<p class="note analysis">([^<]*)</p>', html).group(1)
    assert note.startswith("push at 1 event/s: knee at about N = 1,600 (p99 7.50 ms")
    assert "USL fit λ = 1 deliveries/s per subscriber, σ = 0.0003" in note
    assert "no throughput peak within 10× the largest N measured (3,200)" in note  # the fit's peak is far outside
    assert note.endswith("Information only; the capacity is the SLO bracket.")
    assert "holds 3,200 subscribers" in Page(html).sentences[0]  # the answer is still the bracket (above range)


# -- the guard rails of issue 24: a sweep that found nothing to warn about must not make something up --


def flat_single_rate_index(*, points: int | None = None, drift_judged: bool = False) -> dict[str, Any]:
    """The issue's sweep: push at 10 events/s, 25:200 searched, confirm 2, nothing fails, flat latency, 5-s points.

    ``points`` stops it after that many runs (an interrupted sweep).
    """
    spec = parse_sweep_spec(modes="push", subscribers="25:200", rates="10", slo="p99<=50ms,lost==0", confirm=2)
    index, plan = new_index(spec), SweepPlan(spec)
    jitter = iter([0.2, -0.3, 0.1, 0.4, -0.2, 0.3])
    ran = 0
    while (point := plan.next_point()) is not None and (points is None or ran < points):
        ran += 1
        p99 = 3.0 + 0.004 * point.subscribers + next(jitter)
        figs = {"p50": p99 / 2.5, "p99": p99, "p99_9": p99 * 1.6, "lost": 0.0, "refused": 0.0,
                "deliveries_per_s": point.subscribers * 10.0, "expected": point.subscribers * 50.0}
        reasons = (f"p99 {p99:.2f} ms <= 50 ms",) + (() if drift_judged else (
            "drift not judged: 3 full seconds at the end of the stream; 8 are needed to judge drift",))
        verdict = PointVerdict(Status.PASS, reasons, (), f"p99 {p99:.2f} ms", drift_judged=drift_judged)
        plan.record(point, verdict)
        index = add_point(index, point_key(f"push-{point.subscribers}", point.repeat), point=point,
                          verdict=verdict, figures=figs, results_path=f"push-{point.subscribers}/results.json")
    return with_answers(index, plan.answers())


def analysis_text(html: str) -> str:
    return re.search(r'<p class="note analysis">([^<]*)</p>', html).group(1)


def test_no_knee_and_plain_words_when_no_point_failed_and_latency_stays_flat(tmp_path):
    html = render_sweep_report(flat_single_rate_index(), tmp_path)[0].read_text(encoding="utf-8")
    note = analysis_text(html)
    assert "knee at" not in note and note.startswith("push at 10 events/s: no knee: latency does not turn upward")
    assert "σ =" not in note and "throughput grew in proportion to N up to 200" in note  # not "σ = 5e-13"
    cells = [m for m in re.findall(r'<td class="txt" data-col="answer">([^<]*)</td>', html)]
    assert cells == ["passed every point up to 200 (the top of the range)"]
    assert "above-range" not in html.split('id="points"')[0]  # the jargon stays in sweep.json


def test_one_rate_has_no_p99_against_offered_figure_and_the_caption_says_what_the_line_is(tmp_path):
    html = render_sweep_report(flat_single_rate_index(), tmp_path)[0].read_text(encoding="utf-8")
    assert "fig-push-latency" in html and "fig-push-throughput" in html and "fig-push-offered" not in html
    assert "One marker per run" in html and "The lines join the worst run of each N" in html
    assert "wide pale vertical line: the capacity" in html and "dashed vertical" not in html


def test_the_line_passes_through_the_worst_repeat_not_between_them():
    from reports.sweep_figures import trend_points

    x = np.array([100.0, 200.0, 200.0, 400.0])
    y = np.array([3.0, 4.3, 4.1, 9.0])
    status = np.array(["PASS", "PASS", "PASS", "INVALID"])
    xs, ys = trend_points(x, y, status, positive=True)
    assert xs.tolist() == [100.0, 200.0] and ys.tolist() == [3.0, 4.3]  # 4.3 was measured; 4.2 was not
    _, low = trend_points(x, y, status, positive=True, higher_is_better=True)
    assert low.tolist() == [3.0, 4.1]


def test_the_legend_draws_the_capacity_unlike_any_percentile():
    from reports.sweep_figures import legend_handles

    handles = legend_handles(rates=[10.0], colors={10.0: "#1f77b4"}, statuses={"PASS"},
                             styles=[("p50", ":"), ("p99", "-"), ("p99.9", "--")], slo=50.0, capacity=True)
    drawn = {h.get_label(): (h.get_linestyle(), h.get_marker()) for h in handles}
    capacity = drawn.pop("capacity (bracket shaded)")
    assert capacity not in drawn.values(), (capacity, drawn)
    assert drawn["p99.9"] != capacity and capacity[1] == "|"


def test_drift_not_judged_is_said_in_the_capacity_sentence(tmp_path):
    html = render_sweep_report(flat_single_rate_index(), tmp_path)[0].read_text(encoding="utf-8")
    (sentence,) = Page(html).sentences
    assert sentence.startswith("push holds 200 subscribers at 10 events/s within p99 ≤ 50 ms and no loss")
    assert sentence.endswith("; drift (p99 still climbing at the end) not judged: points need 15 s of stream for it")
    judged = render_sweep_report(flat_single_rate_index(drift_judged=True), tmp_path / "judged")[0]
    assert "not judged" not in Page(judged.read_text(encoding="utf-8")).sentences[0]


def test_an_interrupted_sweep_says_so_and_what_it_found(tmp_path):
    html = render_sweep_report(flat_single_rate_index(points=3, drift_judged=True), tmp_path)[0].read_text(
        encoding="utf-8")
    (sentence,) = Page(html).sentences
    assert sentence == ("push, within p99 ≤ 50 ms and no loss, was interrupted before it finished: so far 100 "
                        "subscribers passed at 10 events/s")
    assert "holds (not finished)" not in html
