"""What CI shows of a comparison: a markdown summary and a JUnit XML file.

A verdict nobody reads does not stop a regression. CI systems show two
things without plugins: GitHub's step summary (markdown, ``$GITHUB_STEP_SUMMARY``)
and JUnit XML test reports (GitLab, Jenkins, Azure, GitHub test-report
actions). This module renders a :class:`~deliverybench.core.gate.Comparison`
-- or its :meth:`~deliverybench.core.gate.Comparison.to_dict` form read back
from ``comparison.json`` -- plus any absolute SLO outcomes into both, as
strings; writing them is the caller's job.

SLO outcomes are plain mappings ``{"mode", "clause", "metric", "observed",
"limit", "ok", "reason"}`` (or objects with such a ``to_dict()``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from . import numbers
from .gate import Comparison
from .gate_words import label, signed_percent

__all__ = ["to_markdown", "to_junit_xml", "overall_title"]

_ICONS: Mapping[str, str] = {
    "regression": "❌",
    "improvement": "🟢",
    "unchanged": "✅",
    "inconclusive": "❔",
    "not_comparable": "⛔",
}


def _as_dict(comparison: Comparison | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if comparison is None:
        return None
    if isinstance(comparison, Comparison):
        return comparison.to_dict()
    return comparison


def _slo_rows(slo_outcomes: Iterable[Any]) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for outcome in slo_outcomes:
        if isinstance(outcome, Mapping):
            rows.append(outcome)
        elif callable(getattr(outcome, "to_dict", None)):
            rows.append(outcome.to_dict())
        else:
            raise TypeError(f"an SLO outcome must be a mapping, not {type(outcome).__name__}")
    return rows


def _metric_rows(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [metric for mode in data.get("modes", {}).values() for metric in mode.get("metrics", {}).values()]


def _not_comparable_row(mode: str, info: Mapping[str, Any]) -> str:
    """One row for a mode that cannot be compared: its reason once, not on each of its metrics."""
    why = "; ".join(str(r) for r in info.get("reasons", [])) or "no reason recorded"
    return "| " + " | ".join(_cell(c) for c in (
        mode, "all metrics", "—", "—", "—", "—", f"{_ICONS['not_comparable']} **not comparable**: {why}")) + " |"


def overall_title(comparison: Comparison | Mapping[str, Any] | None, *, slo_outcomes: Iterable[Any] = ()) -> str:
    """One line: the overall verdict, with what makes it so.

    Args:
        comparison: the comparison (or its dict form), or ``None`` when only
            SLOs were checked.
        slo_outcomes: outcomes of the absolute objectives.
    """
    data = _as_dict(comparison)
    slos = _slo_rows(slo_outcomes)
    broken = [s for s in slos if not s.get("ok")]
    parts: list[str] = []
    outcome = data.get("outcome") if data is not None else None
    if outcome == "regression":
        names = ", ".join(data.get("summary", {}).get("regressions", [])) if data is not None else ""
        parts.append(f"❌ regression ({names})" if names else "❌ regression")
    if broken:
        parts.append(f"❌ SLO broken ({', '.join(str(s.get('clause')) for s in broken)})")
    if parts:
        return "; ".join(parts)
    if outcome == "not_comparable":
        modes = ", ".join(data.get("summary", {}).get("not_comparable", [])) if data is not None else ""
        return f"⛔ not comparable ({modes})" if modes else "⛔ not comparable"
    notes: list[str] = []
    if data is not None:
        summary = data.get("summary", {})
        if summary.get("warnings_only"):
            notes.append(f"regression on a different machine, warning only: {', '.join(summary['warnings_only'])}")
        if summary.get("inconclusive"):
            notes.append(f"inconclusive: {', '.join(summary['inconclusive'])}")
        if summary.get("failed_runs"):
            notes.append(f"failed runs: {'; '.join(summary['failed_runs'])}")
    if data is None and not slos:
        return "✅ pass (nothing was checked)"
    head = "⚠️ pass, no regression shown" if notes else "✅ pass"
    return f"{head} ({'; '.join(notes)})" if notes else head


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.01:
        return f"{v:.3g}"
    return f"{v:.2g}"


#: units whose figures follow :mod:`.numbers`' rule (latencies, rates, counts), as the console and report print them
_BY_UNIT: Mapping[str, Any] = {"ms": numbers.ms, "/s": numbers.rate, "events": numbers.count}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _with_unit(value: Any, unit: str) -> str:
    text = _BY_UNIT[unit](value) if unit in _BY_UNIT and _finite(value) else _num(value)
    if value is None or not unit:
        return text
    return f"{text}/s" if unit == "/s" else f"{text} {unit}"


def _pct(value: float | None) -> str:
    return "—" if value is None else signed_percent(value)


def _interval(metric: Mapping[str, Any]) -> str:
    interval = metric.get("interval")
    if interval is None:
        return "—"
    lo, hi = interval
    if metric.get("scale") == "ratio":
        left = "unbounded" if lo is None or lo <= 0 else _pct((lo - 1.0) * 100.0)
        right = "unbounded" if hi is None else _pct((hi - 1.0) * 100.0)
    else:
        unit = str(metric.get("unit", ""))
        left = "unbounded" if lo is None else _signed(lo, unit)
        right = "unbounded" if hi is None else _signed(hi, unit)
    return f"{left} … {right}"


def _signed(value: float, unit: str) -> str:
    """A difference: a latency's by the latency rule, others to 3 significant digits."""
    return numbers.signed_ms(value) if unit == "ms" and math.isfinite(value) else f"{value:+.3g}"


def _delta(metric: Mapping[str, Any]) -> str:
    unit = metric.get("unit", "")
    delta = metric.get("delta")
    if metric.get("scale") == "ratio" and metric.get("delta_pct") is not None:
        extra = f" ({_signed(delta, unit)} {unit})" if unit == "ms" and delta is not None else ""
        return _pct(metric["delta_pct"]) + extra
    if delta is not None:
        return _signed(delta, unit)
    return "—"


def _side(metric: Mapping[str, Any], side: str) -> str:
    info = metric.get(side, {})
    runs = info.get("runs", 0)
    value = _with_unit(info.get("estimate"), metric.get("unit", ""))
    if runs > 1 and info.get("estimate") is not None:
        return f"{value} (median of {runs})"
    return value


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _verdict_cell(metric: Mapping[str, Any]) -> str:
    verdict = str(metric.get("verdict"))
    icon = "⚠️" if verdict == "regression" and metric.get("warning_only") else _ICONS.get(verdict, "")
    name = verdict.replace("_", " ")
    if verdict == "regression" and not metric.get("gated"):
        name += " (not gated)"
    elif metric.get("warning_only"):
        name += " (warning)"
    return f"{icon} **{name}**: {metric.get('words', '')}"


def _slo_observed(row: Mapping[str, Any]) -> str:
    metric = str(row.get("metric", ""))
    unit = "ms" if metric in ("p50", "p90", "p99", "p99_9", "max") else ""
    return _with_unit(row.get("observed"), unit)


def to_markdown(
    comparison: Comparison | Mapping[str, Any] | None,
    *,
    slo_outcomes: Iterable[Any] = (),
    reproduce: str = "",
) -> str:
    """A GitHub step summary of the comparison.

    Args:
        comparison: the comparison, its ``to_dict()`` form, or ``None`` when
            only SLOs were checked.
        slo_outcomes: absolute SLO outcomes, shown in their own table.
        reproduce: the command that reproduces the new run (shown verbatim;
            default: none).

    Returns:
        Markdown: a title line with the overall verdict, one row per
        mode x metric (baseline, new, delta, interval, verdict in words), then
        SLOs, workload and machine differences, warnings and the command.
    """
    data = _as_dict(comparison)
    slos = _slo_rows(slo_outcomes)
    lines = [f"## deliverybench regression gate: {overall_title(data, slo_outcomes=slos)}", ""]
    if data is not None:
        base, new = data.get("baseline", {}), data.get("new", {})
        options = data.get("options", {})

        def who(run: Mapping[str, Any]) -> str:
            commit = run.get("commit")
            return f"`{run.get('id')}`" + (f" (commit `{str(commit)[:12]}`)" if commit else "")

        alpha = options.get("alpha", 0.05)
        lines.append(f"Baseline {who(base)} vs new {who(new)}. Gated: {', '.join(options.get('gate', []))}; "
                     f"{(1 - alpha) * 100:g} % intervals, α = {alpha:g} with Holm correction "
                     f"({options.get('holm_scope', 'comparison')}); latency floor "
                     f"{options.get('latency_floor_ms', 0):g} ms.")
        lines.append("")
        rows = _metric_rows(data)
        if rows:
            lines.append("| mode | metric | baseline | new | Δ | interval | verdict |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for mode, info in data.get("modes", {}).items():
                if info.get("comparable") is False:
                    lines.append(_not_comparable_row(str(mode), info))
                    continue
                for m in info.get("metrics", {}).values():
                    name = label(str(m.get("metric")))
                    shown = f"**{name}** (gated)" if m.get("gated") else name
                    lines.append("| " + " | ".join(_cell(c) for c in (
                        str(m.get("mode")), shown, _side(m, "baseline"), _side(m, "new"), _delta(m), _interval(m),
                        _verdict_cell(m))) + " |")
            lines.append("")
    if slos:
        lines += ["### SLOs", "", "| mode | objective | observed | verdict |", "| --- | --- | --- | --- |"]
        for s in slos:
            verdict = "✅ met" if s.get("ok") else f"❌ **broken**: {s.get('reason', '')}"
            lines.append("| " + " | ".join(_cell(c) for c in (
                str(s.get("mode")), f"`{s.get('clause')}`", _slo_observed(s), verdict)) + " |")
        lines.append("")
    if data is not None:
        diffs = [(mode, d) for mode, info in data.get("modes", {}).items()
                 for d in info.get("fingerprint", {}).get("diff", [])]
        reasons = [(mode, r) for mode, info in data.get("modes", {}).items() for r in info.get("reasons", [])
                   if not r.startswith("workload differs")]
        if diffs or reasons:
            lines += ["### Workload differences", ""]
            if diffs:
                lines += ["| mode | field | baseline | new |", "| --- | --- | --- | --- |"]
                lines += ["| " + " | ".join(_cell(c) for c in (
                    mode, f"`{d['field']}`", _show(d.get("baseline")), _show(d.get("new")))) + " |"
                    for mode, d in diffs]
                lines.append("")
            lines += [f"- {mode}: {_cell(r)}" for mode, r in reasons]
            if reasons:
                lines.append("")
        if data.get("machine_diff"):
            lines += ["### Machine differences", "", "| field | baseline | new |", "| --- | --- | --- |"]
            lines += ["| " + " | ".join(_cell(c) for c in (
                f"`{d['field']}`", _show(d.get("baseline")), _show(d.get("new")))) + " |"
                for d in data["machine_diff"]]
            lines.append("")
        if data.get("warnings"):
            lines += ["### Warnings", ""] + [f"- {w}" for w in data["warnings"]] + [""]
    if reproduce:
        lines += ["### Reproduce", "", "```sh", reproduce, "```", ""]
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "none" if value is None else str(value)


def _prop(parent: ET.Element, name: str, value: Any) -> None:
    if value is None:
        return
    ET.SubElement(parent, "property", name=name, value=_show(value) if not isinstance(value, float) else repr(value))


def _metric_case(suite: ET.Element, metric: Mapping[str, Any]) -> str:
    """Adds one testcase; returns ``"failure"``, ``"skipped"`` or ``"passed"``."""
    name = label(str(metric.get("metric")))
    case = ET.SubElement(suite, "testcase", classname=f"deliverybench.{metric.get('mode')}", name=name, time="0")
    props = ET.SubElement(case, "properties")
    interval = metric.get("interval") or [None, None]
    for key, value in (
        ("gated", metric.get("gated")), ("verdict", metric.get("verdict")), ("method", metric.get("method")),
        ("unit", metric.get("unit")),
        ("baseline", metric.get("baseline", {}).get("estimate")), ("new", metric.get("new", {}).get("estimate")),
        ("baseline_values", metric.get("baseline", {}).get("values")),
        ("new_values", metric.get("new", {}).get("values")),
        ("ratio", metric.get("ratio")), ("delta", metric.get("delta")), ("delta_pct", metric.get("delta_pct")),
        ("scale", metric.get("scale")), ("interval_low", interval[0]), ("interval_high", interval[1]),
        ("confidence", metric.get("confidence")), ("p_value", metric.get("p_value")),
        ("p_adjusted", metric.get("p_adjusted")), ("tolerance", metric.get("tolerance", {}).get("value")),
        ("tolerance_kind", metric.get("tolerance", {}).get("kind")),
        ("repeats_needed", metric.get("repeats_needed")), ("warning_only", metric.get("warning_only")),
    ):
        _prop(props, key, value)
    verdict = str(metric.get("verdict"))
    words = str(metric.get("words", ""))
    if metric.get("fails"):
        failure = ET.SubElement(case, "failure", message=f"regression: {words}", type="regression")
        failure.text = words
        return "failure"
    if verdict == "regression" and metric.get("gated"):  # downgraded: machines differ
        ET.SubElement(case, "skipped", message=f"warning only (machines differ): {words}")
        return "skipped"
    if verdict == "not_comparable":  # its words already start "not comparable:"
        ET.SubElement(case, "skipped", message=words)
        return "skipped"
    if verdict == "inconclusive":
        ET.SubElement(case, "skipped", message=f"inconclusive: {words}")
        return "skipped"
    out = ET.SubElement(case, "system-out")
    out.text = f"{verdict}{'' if metric.get('gated') else ' (not gated)'}: {words}"
    return "passed"


def _slo_case(suite: ET.Element, slo: Mapping[str, Any]) -> str:
    case = ET.SubElement(suite, "testcase", classname=f"deliverybench.{slo.get('mode')}",
                         name=f"slo {slo.get('clause')}", time="0")
    props = ET.SubElement(case, "properties")
    for key in ("metric", "observed", "limit", "ok"):
        _prop(props, key, slo.get(key))
    if not slo.get("ok"):
        failure = ET.SubElement(case, "failure", message=f"SLO broken: {slo.get('reason', '')}", type="slo")
        failure.text = str(slo.get("reason", ""))
        return "failure"
    out = ET.SubElement(case, "system-out")
    out.text = f"met: {slo.get('reason', '')}"
    return "passed"


def to_junit_xml(comparison: Comparison | Mapping[str, Any] | None, *, slo_outcomes: Iterable[Any] = ()) -> str:
    """JUnit XML: one ``<testsuite>`` per mode, one ``<testcase>`` per metric and per SLO.

    A gated regression or a broken SLO is a ``<failure>``; an inconclusive or
    not comparable metric, or a regression downgraded to a warning because the
    machines differ, is ``<skipped>``; everything else passes. Each testcase
    carries its numbers as ``<properties>``.

    Args:
        comparison: the comparison, its ``to_dict()`` form, or ``None``.
        slo_outcomes: absolute SLO outcomes.

    Returns:
        The XML document as a string.
    """
    data = _as_dict(comparison)
    slos = _slo_rows(slo_outcomes)
    root = ET.Element("testsuites", name="deliverybench regression gate")
    suites: dict[str, tuple[ET.Element, dict[str, int]]] = {}

    def suite_for(mode: str) -> tuple[ET.Element, dict[str, int]]:
        if mode not in suites:
            suites[mode] = (ET.SubElement(root, "testsuite", name=f"deliverybench.{mode}"),
                            {"tests": 0, "failure": 0, "skipped": 0})
        return suites[mode]

    if data is not None:
        for mode, info in data.get("modes", {}).items():
            suite, counts = suite_for(str(mode))
            props = ET.SubElement(suite, "properties")
            fp = info.get("fingerprint", {})
            for key, value in (("comparable", info.get("comparable")),
                               ("runs.baseline", info.get("runs", {}).get("baseline")),
                               ("runs.new", info.get("runs", {}).get("new")),
                               ("fingerprint.baseline", fp.get("baseline_key")),
                               ("fingerprint.new", fp.get("new_key")),
                               ("reasons", "; ".join(info.get("reasons", [])) or None),
                               ("untrusted", "; ".join(info.get("untrusted", [])) or None),
                               ("outcome", data.get("outcome"))):
                _prop(props, key, value)
            for metric in info.get("metrics", {}).values():
                result = _metric_case(suite, metric)
                counts["tests"] += 1
                if result != "passed":
                    counts[result] += 1
    for slo in slos:
        suite, counts = suite_for(str(slo.get("mode")))
        result = _slo_case(suite, slo)
        counts["tests"] += 1
        if result != "passed":
            counts[result] += 1
    totals = {"tests": 0, "failure": 0, "skipped": 0}
    for suite, counts in suites.values():
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", "0")
        for key in totals:
            totals[key] += counts[key]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failure"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
