"""deliverybench.core.gate_report: the markdown summary and JUnit XML CI systems show."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest

from deliverybench.core.gate import Comparison, GateOptions, compare
from deliverybench.core.gate_report import overall_title, to_junit_xml, to_markdown
from test_core_gate import MACHINE, lognormal, make_doc, make_run, runs

SLO_MET = {"mode": "push", "clause": "push.p99<=500ms", "metric": "p99", "observed": 31.5, "limit": 500.0,
           "ok": True, "reason": "p99 31.5 ms <= 500 ms in every run"}
SLO_BROKEN = {"mode": "push", "clause": "push.p99<=20ms", "metric": "p99", "observed": 48.25, "limit": 20.0,
              "ok": False, "reason": "p99 48.2 ms > 20 ms (run 2)"}


@pytest.fixture(scope="module")
def regression() -> Comparison:
    rng = np.random.default_rng(31)
    return compare(make_doc({"push": runs(rng, 5)}, run_id="base"),
                   make_doc({"push": runs(rng, 5, factor=1.5)}, run_id="new"))


@pytest.fixture(scope="module")
def inconclusive() -> Comparison:
    rng = np.random.default_rng(32)
    return compare(make_doc({"push": runs(rng, 3)}), make_doc({"push": runs(rng, 3)}))


def rows(markdown: str) -> list[list[str]]:
    out = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            out.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return out


def test_markdown_title_rows_and_reproduce(regression: Comparison) -> None:
    md = to_markdown(regression, slo_outcomes=[SLO_MET], reproduce="python run_bench.py --modes push --repeats 5")
    first = md.splitlines()[0]
    assert first == "## deliverybench regression gate: ❌ regression (push.p99)"
    table = rows(md)
    assert table[0] == ["mode", "metric", "baseline", "new", "Δ", "interval", "verdict"]
    metric_rows = [r for r in table if r[0] == "push" and not r[1].startswith("`")]
    assert len(metric_rows) == 10  # one per metric
    p99 = next(r for r in metric_rows if r[1] == "**p99** (gated)")
    p99_cmp = next(m for m in regression.metrics if m.metric == "p99")
    assert p99[2].endswith("ms (median of 5)") and p99[3].endswith("ms (median of 5)")
    assert p99[4].startswith(f"+{p99_cmp.delta_pct:.0f} %")
    assert p99[5].startswith("+") and " … " in p99[5]
    assert p99[6].startswith("❌ **regression**: p99 slower by")
    assert next(r for r in metric_rows if r[1] == "p50")[6].startswith("❌ **regression (not gated)**")
    assert any(r[1] == "**lost** (gated)" and "✅ **unchanged**" in r[6] for r in metric_rows)
    assert "### SLOs" in md and "| push | `push.p99<=500ms` | 31.50 ms | ✅ met |" in md
    assert "```sh\npython run_bench.py --modes push --repeats 5\n```" in md
    assert "### Workload differences" not in md and "### Machine differences" not in md


def test_markdown_renders_the_same_from_comparison_json(regression: Comparison) -> None:
    data = json.loads(json.dumps(regression.to_dict()))
    assert to_markdown(data, reproduce="x") == to_markdown(regression, reproduce="x")


def test_markdown_names_workload_and_machine_differences() -> None:
    rng = np.random.default_rng(33)
    base = make_doc({"push": runs(rng, 2), "poll": runs(rng, 2, mode="poll")})
    new = make_doc({"push": runs(rng, 2, subscribers=3), "poll": runs(rng, 2, mode="poll")},
                   machine={**MACHINE, "cpu_count": 8})
    md = to_markdown(compare(base, new))
    assert md.splitlines()[0] == "## deliverybench regression gate: ⛔ not comparable (push)"
    assert "| push | `subscribers` | 1 | 3 |" in md
    assert "### Machine differences" in md and "| `machine.cpu_count` | 2 | 8 |" in md
    assert "| push | all metrics | — | — | — | — | ⛔ **not comparable**: workload differs: subscribers 1 → 3 |" in md
    assert md.count("workload differs: subscribers 1 → 3") == 1 and "not comparable: not comparable" not in md
    assert "### Warnings" in md and "the machines differ (machine.cpu_count)" in md


def test_markdown_escapes_pipes_in_words() -> None:
    rng = np.random.default_rng(34)
    new_runs = runs(rng, 1)
    new_runs[0]["status"] = "failed"
    new_runs[0]["failure"] = "a | b"
    md = to_markdown(compare(make_doc({"push": runs(rng, 1)}), make_doc({"push": new_runs})))
    assert "a \\| b" in md
    assert all(len(r) == 7 for r in rows(md) if r[0] == "push")


def test_title_words() -> None:
    assert overall_title(None) == "✅ pass (nothing was checked)"
    assert overall_title(None, slo_outcomes=[SLO_MET]) == "✅ pass"
    assert overall_title(None, slo_outcomes=[SLO_MET, SLO_BROKEN]) == "❌ SLO broken (push.p99<=20ms)"


def test_pass_with_inconclusive_says_so(inconclusive: Comparison) -> None:
    title = overall_title(inconclusive)
    assert title.startswith("⚠️ pass, no regression shown (inconclusive: push.p99, push.deliveries/s")
    assert inconclusive.outcome == "pass"


def junit(xml: str) -> ET.Element:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(xml.split("\n", 1)[1])


def cases(root: ET.Element, suite: str) -> dict[str, ET.Element]:
    s = root.find(f"testsuite[@name='deliverybench.{suite}']")
    assert s is not None
    return {c.get("name", ""): c for c in s.findall("testcase")}


def test_junit_failure_for_regression_and_properties(regression: Comparison) -> None:
    root = junit(to_junit_xml(regression, slo_outcomes=[SLO_MET, SLO_BROKEN]))
    suite = root.find("testsuite[@name='deliverybench.push']")
    assert suite is not None
    by_name = cases(root, "push")
    assert set(by_name) >= {"p50", "p90", "p99", "p99.9", "max", "deliveries/s", "lost", "refused", "duplicates",
                            "target CPU/1k", "slo push.p99<=500ms", "slo push.p99<=20ms"}
    p99 = by_name["p99"]
    failure = p99.find("failure")
    assert failure is not None and failure.get("type") == "regression"
    assert "p99 slower by" in (failure.get("message") or "")
    props = {p.get("name"): p.get("value") for p in p99.iter("property")}
    p99_cmp = next(m for m in regression.metrics if m.metric == "p99")
    assert float(props["ratio"] or "nan") == pytest.approx(p99_cmp.ratio)
    assert float(props["p_adjusted"] or "nan") == pytest.approx(p99_cmp.p_adjusted)
    assert props["verdict"] == "regression" and props["gated"] == "True"
    assert float(props["interval_low"] or "nan") > 1.0
    # the ungated p50 regressed too, but cannot fail the job
    assert by_name["p50"].find("failure") is None
    assert "regression (not gated)" in (by_name["p50"].findtext("system-out") or "")
    # target CPU has no value in these runs: inconclusive, so skipped
    assert by_name["target CPU/1k"].find("skipped") is not None
    assert by_name["slo push.p99<=20ms"].find("failure") is not None
    assert by_name["slo push.p99<=500ms"].find("failure") is None
    failures = sum(1 for c in by_name.values() if c.find("failure") is not None)
    skipped = sum(1 for c in by_name.values() if c.find("skipped") is not None)
    assert suite.get("failures") == str(failures) and suite.get("skipped") == str(skipped)
    assert suite.get("tests") == str(len(by_name))
    assert root.get("failures") == str(failures)
    assert [m.label for m in regression.regressions] == ["push.p99"]
    assert failures == 2  # p99 and the broken SLO


def test_junit_skipped_for_inconclusive_and_not_comparable(inconclusive: Comparison) -> None:
    by_name = cases(junit(to_junit_xml(inconclusive)), "push")
    skipped = by_name["p99"].find("skipped")
    assert skipped is not None and "3 vs 3 runs cannot reach p < 0.05" in (skipped.get("message") or "")
    assert by_name["lost"].find("skipped") is None and by_name["lost"].find("failure") is None
    rng = np.random.default_rng(35)
    apart = compare(make_doc({"push": runs(rng, 2)}), make_doc({"push": runs(rng, 2, payload_bytes=4096)}))
    for case in cases(junit(to_junit_xml(apart)), "push").values():
        skip = case.find("skipped")
        assert skip is not None and "payload_bytes" in (skip.get("message") or "")


def test_junit_warning_only_regression_is_skipped() -> None:
    rng = np.random.default_rng(36)
    c = compare(make_doc({"push": runs(rng, 5)}),
                make_doc({"push": runs(rng, 5, factor=1.5)}, machine={**MACHINE, "python": "3.12.0"}))
    p99 = cases(junit(to_junit_xml(c)), "push")["p99"]
    assert p99.find("failure") is None
    skipped = p99.find("skipped")
    assert skipped is not None and (skipped.get("message") or "").startswith("warning only (machines differ)")


def test_junit_slo_only_and_other_modes() -> None:
    other: dict[str, Any] = {**SLO_BROKEN, "mode": "callback", "clause": "callback.lost==0", "metric": "lost",
                             "observed": None, "reason": "no audit"}
    root = junit(to_junit_xml(None, slo_outcomes=[SLO_MET, other]))
    assert [s.get("name") for s in root.findall("testsuite")] == ["deliverybench.push", "deliverybench.callback"]
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert cases(root, "callback")["slo callback.lost==0"].find("failure") is not None


def test_slo_outcomes_may_be_objects_with_to_dict() -> None:
    class Outcome:
        def to_dict(self) -> dict[str, Any]:
            return dict(SLO_BROKEN)

    assert "❌ SLO broken" in to_markdown(None, slo_outcomes=[Outcome()])
    with pytest.raises(TypeError):
        to_markdown(None, slo_outcomes=[42])


def test_single_run_regression_end_to_end_words() -> None:
    rng = np.random.default_rng(37)
    c = compare(make_doc({"push": [make_run(lognormal(rng, 20000))]}),
                make_doc({"push": [make_run(lognormal(rng, 20000, 1.4))]}), options=GateOptions())
    md = to_markdown(c)
    assert "rests on one run per side" in md
    assert cases(junit(to_junit_xml(c)), "push")["p99"].find("failure") is not None
