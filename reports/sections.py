"""Report sections: one function per section, each returning a dict for the template.

A section function takes the :class:`ReportData` (the documents as typed
:class:`~deliverybench.core.model.Run` values, mode refs and lazily built
frames shared by all sections) and returns a plain dict with at
least ``id`` (the HTML ``id``, stable for tests and links), ``title`` and
``visible``. Tables are ``{"columns": [...], "rows": [...]}`` of
preformatted cells (see :func:`table`) rendered by one template macro.

Adding a section = one function here, appended to :data:`SECTIONS`, plus one
block in ``templates/report.html``.

All text that came from a document stays plain ``str``: the template
autoescapes it. Only SVG produced by :mod:`reports.figures` is marked safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import pandas as pd

from deliverybench.core import numbers
from deliverybench.core.model import Run

from . import figures, frames
from . import metadata as meta
from .frames import ModeRef

__all__ = ["ReportData", "SECTIONS", "build_sections", "table", "verdict_sentences", "fmt"]


# --------------------------------------------------------------------------- data shared by sections


class ReportData:
    """The documents of one report and every frame built from them (each built once, on first use)."""

    def __init__(self, docs: Sequence[Run], *, baseline: Run | None = None,
                 comparison: Mapping[str, Any] | None = None):
        self.docs = list(docs)
        self.refs: list[ModeRef] = frames.mode_refs(self.docs)
        self.multi = len(self.docs) > 1
        #: the baseline document and the gate's comparison.json (its own format, not a results document),
        #: when the report compares with one
        self.baseline = baseline
        self.comparison = comparison

    @cached_property
    def headline(self) -> pd.DataFrame:
        return frames.headline_frame(self.refs)

    @cached_property
    def workers(self) -> pd.DataFrame:
        return frames.workers_frame(self.refs)

    @cached_property
    def percentiles(self) -> pd.DataFrame:
        return frames.percentiles_frame(self.refs)

    @cached_property
    def spectrum(self) -> pd.DataFrame:
        return frames.spectrum_frame(self.refs)

    @cached_property
    def series(self) -> pd.DataFrame:
        return frames.series_frame(self.refs)

    @cached_property
    def published(self) -> pd.DataFrame:
        return frames.published_frame(self.refs)

    @cached_property
    def stream_s(self) -> float | None:
        """The schedule's length when every mode shares one (the over-time charts shade what lies outside it)."""
        lengths = {ref.stream_length_s for ref in self.refs}
        return lengths.pop() if len(lengths) == 1 else None

    @cached_property
    def errors(self) -> pd.DataFrame:
        return frames.errors_frame(self.refs)

    @cached_property
    def errors_series(self) -> pd.DataFrame:
        return frames.errors_series_frame(self.refs)

    @cached_property
    def fanout(self) -> pd.DataFrame:
        return frames.fanout_frame(self.refs)

    @cached_property
    def resources(self) -> pd.DataFrame:
        return frames.resources_frame(self.refs)

    @cached_property
    def cost(self) -> pd.DataFrame:
        return frames.cost_frame(self.refs)

    @cached_property
    def audit(self) -> pd.DataFrame:
        return frames.audit_frame(self.refs)

    @cached_property
    def trust(self) -> pd.DataFrame:
        return frames.trust_frame(self.refs)


# --------------------------------------------------------------------------- formatting


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


#: cell kind -> the rule of :mod:`deliverybench.core.numbers` that prints it
_FORMATS: dict[str, Callable[[Any], str]] = {
    "ms": numbers.ms, "int": numbers.count, "rate": numbers.rate, "cpu_s": numbers.cpu_seconds,
    "pct": numbers.percent, "f1": lambda v: numbers.fixed(v, 1), "f2": lambda v: numbers.fixed(v, 2),
    "f3": lambda v: numbers.fixed(v, 3),
}


def fmt(value: Any, kind: str = "text") -> str:
    """Format one value for a cell by :mod:`deliverybench.core.numbers`' rule, "—" for missing.

    Kinds: ``ms`` (latency), ``int`` (count), ``rate`` (per second),
    ``cpu_s`` (CPU seconds), ``f1``/``f2``/``f3`` (fixed decimals), ``pct``
    (a fraction shown as %), ``bool`` (✓/✗), ``text``.
    """
    if _missing(value):
        return numbers.MISSING
    if kind in _FORMATS:
        return _FORMATS[kind](value)
    if kind == "bool":
        return "✓" if bool(value) else "✗"
    return str(value)


def _ratio_words(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.1f}×"


def _join(parts: Sequence[str]) -> str:
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass
class Column:
    key: str
    header: str
    kind: str = "text"
    better: str | None = None  # "low" | "high": mark the best value in this column
    title: str | None = None

    @property
    def numeric(self) -> bool:
        return self.kind not in ("text", "bool")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a frame as ``{column: value}`` (every frame here has text column names)."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def _sub_text(value: Any) -> str | None:
    """A cell's second line, or None: pandas turns the None of a row without one into NaN beside rows with one."""
    return value if isinstance(value, str) and value else None


def table(frame: pd.DataFrame, columns: Sequence[Column], *,
          row_class: Callable[[Mapping[str, Any]], str] | None = None,
          eligible: Callable[[Mapping[str, Any]], bool] | None = None, caption: str | None = None,
          table_id: str | None = None) -> dict[str, Any]:
    """Preformatted table for the template.

    For columns with ``better`` set, the best value among eligible rows is
    marked (``best``; all tied rows) unless every eligible row has the same
    value, in which case nothing wins.
    """
    records = _records(frame)
    best: dict[str, set[int]] = {}
    for col in columns:
        if not col.better:
            continue
        values = [(i, float(r[col.key])) for i, r in enumerate(records)
                  if not _missing(r.get(col.key)) and (eligible is None or eligible(r))]
        if len(values) < 2 or len({v for _, v in values}) < 2:
            continue
        target = min(v for _, v in values) if col.better == "low" else max(v for _, v in values)
        best[col.key] = {i for i, v in values if math.isclose(v, target, rel_tol=0, abs_tol=1e-12)}
    rows = []
    for i, r in enumerate(records):
        cells = []
        for col in columns:
            value = r.get(col.key)
            cells.append({
                "text": fmt(value, col.kind),
                "num": col.numeric,
                "best": i in best.get(col.key, ()),
                "key": col.key,
                "sub": _sub_text(r.get(f"{col.key}__sub")),
                "badges": r.get(f"{col.key}__badges") or [],
            })
        rows.append({"cells": cells, "cls": row_class(r) if row_class else "", "label": r.get("label", "")})
    return {
        "id": table_id,
        "caption": caption,
        "columns": [{"key": c.key, "header": c.header, "num": c.numeric, "title": c.title, "better": c.better}
                    for c in columns],
        "rows": rows,
    }


def kv_table(items: Mapping[str, Any], caption: str | None = None) -> dict[str, Any]:
    """Two-column key/value table (values flattened to text)."""
    rows = [{"cells": [{"text": str(k), "num": False, "best": False, "key": "key", "sub": None, "badges": []},
                       {"text": fmt(v), "num": False, "best": False, "key": "value", "sub": None, "badges": []}],
             "cls": "", "label": ""}
            for k, v in items.items()]
    return {"id": None, "caption": caption, "kv": True,
            "columns": [{"key": "key", "header": "key", "num": False, "title": None, "better": None},
                        {"key": "value", "header": "value", "num": False, "title": None, "better": None}],
            "rows": rows}


def _section(sid: str, title: str, visible: bool = True, **payload: Any) -> dict[str, Any]:
    return {"id": sid, "title": title, "visible": visible, "figures": [], "tables": [], "notes": [], **payload}


def _figure(svg: str | None, caption: str, fid: str) -> dict[str, Any] | None:
    return None if svg is None else {"svg": svg, "caption": caption, "id": fid}


def _label_columns(data: ReportData) -> list[Column]:
    if data.multi:
        return [Column("run", "run"), Column("mode", "mode")]
    return [Column("label", "mode")]


# --------------------------------------------------------------------------- sentences


def verdict_sentences(headline: pd.DataFrame) -> list[str]:
    """Plain sentences computed from the headline frame: winner by p99, loss, cost, trust.

    With several runs: the same sentences per run (naming modes only), then
    one line per mode comparing its p99 across runs.
    """
    if headline.empty:
        return ["This document holds no modes."]
    runs = list(dict.fromkeys(headline["run"]))
    if len(runs) == 1:
        return _run_sentences(headline)
    out: list[str] = []
    for run in runs:
        group = headline[headline["run"] == run].assign(label=lambda f: f["mode"])
        out += [f"{run}: {sentence}" for sentence in _run_sentences(group)]
    for mode in dict.fromkeys(headline["mode"]):
        rows = headline[(headline["mode"] == mode) & headline["p99"].notna()]
        if len(rows) < 2:
            continue
        first = rows.iloc[0]
        parts = [f"{numbers.ms_words(first['p99'])} ({first['run']})"]
        for _, r in rows.iloc[1:].iterrows():
            change = f", {(r['p99'] / first['p99'] - 1):+.0%}" if first["p99"] > 0 else ""
            parts.append(f"{numbers.ms_words(r['p99'])} ({r['run']}{change})")
        out.append(f"{mode} p99 across runs: " + " → ".join(parts) + ".")
    return out


def _run_sentences(headline: pd.DataFrame) -> list[str]:
    out: list[str] = []
    usable = headline[(headline["status"] != "failed") & headline["p99"].notna()]
    if usable.empty:
        return ["No mode recorded a latency, so there is no winner."]
    ranked = usable.sort_values("p99", kind="stable")
    best = ranked.iloc[0]
    verb = "acknowledged" if best["metric"] == "ack" else "delivered"
    parts = []
    for _, other in ranked.iloc[1:].iterrows():
        if best["p99"] > 0 and other["p99"] / best["p99"] >= 1.05:
            parts.append(f"{_ratio_words(other['p99'] / best['p99'])} lower than {other['label']} "
                         f"({numbers.ms_words(other['p99'])})")
        else:
            parts.append(f"about the same as {other['label']} ({numbers.ms_words(other['p99'])})")
    sentence = f"{best['label']} {verb} with p99 {numbers.ms_words(best['p99'])}"
    if parts:
        sentence += ", " + _join(parts)
    if len(ranked) > 1 and not _missing(best["p50"]):
        sentence += f"; its median was {numbers.ms_words(best['p50'])}"
    out.append(sentence + ".")

    audited = headline[headline["expected"].notna()]
    if not audited.empty:
        lossy = audited[audited["lost"].fillna(0) > 0]
        clean = audited[audited["lost"].fillna(0) == 0]
        if lossy.empty:
            total = int(audited["expected"].sum())
            who = "No mode" if len(audited) > 1 else str(audited.iloc[0]["label"])
            out.append(f"{who} lost a delivery: 0 of {total:,} expected." if len(audited) > 1
                       else f"{who} lost 0 of {total:,} expected deliveries.")
        else:
            bits = []
            for _, r in lossy.iterrows():
                share = r["lost"] / r["expected"] if r["expected"] else 0.0
                bits.append(f"{r['label']} lost {int(r['lost']):,} of {int(r['expected']):,} expected deliveries "
                            f"({share:.2%})")
            sentence = "; ".join(bits)
            if not clean.empty:
                sentence += f"; {_join([str(x) for x in clean['label']])} lost none"
            out.append(sentence + ".")
        dups = audited[audited["duplicates"].fillna(0) > 0]
        if not dups.empty:
            out.append(_join([f"{r['label']} saw {int(r['duplicates']):,} "
                              f"duplicate{'s' if r['duplicates'] != 1 else ''}"
                              for _, r in dups.iterrows()]) + ".")

    costed = headline[headline["target_cpu_ms_per_1k"].notna()].sort_values("target_cpu_ms_per_1k", kind="stable")
    if len(costed) > 1:
        cheapest = costed.iloc[0]
        rest = [f"{r['label']} {r['target_cpu_ms_per_1k']:,.0f}" for _, r in costed.iloc[1:].iterrows()]
        out.append(f"Cheapest for the target: {cheapest['label']} at {cheapest['target_cpu_ms_per_1k']:,.0f} CPU-ms "
                   f"per 1k deliveries ({_join(rest)}).")
    elif len(costed) == 1:
        r = costed.iloc[0]
        out.append(f"The target used {r['target_cpu_ms_per_1k']:,.0f} CPU-ms per 1k deliveries.")

    saturated = headline[headline["saturated"]]
    if not saturated.empty:
        out.append(f"Latencies of {_join([str(x) for x in saturated['label']])} are not trustworthy: "
                   "the harness was saturated.")
    not_ok = headline[headline["status"] != "ok"]
    for _, r in not_ok.iterrows():
        why = "; ".join(str(x) for x in (r["failure"], r["reasons"]) if isinstance(x, str) and x)
        out.append(f"{r['label']} is {r['status']}" + (f": {why}." if why else "."))
    return out


# --------------------------------------------------------------------------- sections


def warnings(data: ReportData) -> dict[str, Any]:
    """Banner near the top: everything that makes (part of) the measurement untrustworthy."""
    trust = data.trust
    items = [{"label": r["label"], "mode": r["mode"], "kind": r["kind"], "severity": r["severity"],
              "message": r["message"]} for r in _records(trust)]
    items.sort(key=lambda w: (w["severity"] != "danger", w["kind"] != "saturated"))
    return _section("warnings", "Can this measurement be trusted?", visible=bool(items), items=items)


def headline(data: ReportData) -> dict[str, Any]:
    h = data.headline.copy()
    badges = []
    for r in _records(h):
        b = []
        if r["status"] != "ok":
            b.append({"text": r["status"], "cls": "bad"})
        if r["saturated"]:
            b.append({"text": "harness saturated", "cls": "bad"})
        if r["metric"] != "delivery":
            b.append({"text": r["metric"], "cls": "info"})
        badges.append(b)
    h["label__badges"] = pd.Series(badges, index=h.index, dtype=object)
    h["mode__badges"] = pd.Series(badges, index=h.index, dtype=object)
    h["status__sub"] = ["; ".join(x for x in (f, why) if isinstance(x, str) and x) or None
                        for f, why in zip(h["failure"], h["reasons"])]
    columns = [*_label_columns(data),
               Column("status", "status"),
               Column("p50", "p50 ms", "ms", "low"),
               Column("p99", "p99 ms", "ms", "low"),
               Column("p99_9", "p99.9 ms", "ms", "low"),
               Column("max", "max ms", "ms", "low"),
               Column("deliveries_per_s", "deliveries/s", "rate", "high"),
               Column("refused", "refused", "int", "low"),
               Column("lost", "lost", "int", "low"),
               Column("duplicates", "duplicates", "int", "low"),
               Column("target_cpu_ms_per_1k", "target CPU-ms / 1k deliveries", "f1", "low"),
               Column("publish_lag_p99", "publisher lag p99 ms", "ms", "low")]
    if h["timing_uncertainty"].notna().any():  # beside the percentiles: how far a receive stamp may be off
        columns.insert(next(i for i, c in enumerate(columns) if c.key == "max") + 1, Column(
            "timing_uncertainty", "timing ± ms", "ms",
            title="timing uncertainty: how far a receive stamp may be from the master's clock"))
    t = table(h, columns, table_id="headline-table",
              row_class=lambda r: " ".join(c for c in (f"status-{r['status']}",
                                                       "saturated" if r["saturated"] else "") if c),
              eligible=lambda r: r["status"] != "failed")
    subs = sorted({int(x) for x in h["subscribers"].dropna()})
    rates = sorted({float(x) for x in h["rate"].dropna()})
    load = []
    if subs:
        load.append(f"{_join([f'{s:,}' for s in subs])} subscriber{'s' if subs != [1] else ''}")
    if rates:
        load.append(f"{_join([f'{r:,.4g}' for r in rates])} events/s")
    return _section("headline", "Verdict", sentences=verdict_sentences(data.headline), tables=[t],
                    load=", ".join(load),
                    notes=["Latency = receive − due (ack − due for bursts), from the whole-run HDR histogram. "
                           "★ marks the best value per column among modes that did not fail; "
                           "no star when all are equal."])


def spectrum(data: ReportData) -> dict[str, Any]:
    fig = figures.spectrum_svg(data.spectrum)
    p = data.percentiles
    primary = {(ref.label, ref.metric) for ref in data.refs}
    rows = []
    for label, group in p.groupby("label", sort=False):
        for metric, g in group.groupby("metric", sort=False):
            if (label, metric) not in primary:
                continue
            vals = dict(zip(g["percentile"], g["value_ms"]))
            rows.append({"label": label, "run": g["run"].iloc[0], "mode": g["mode"].iloc[0], "metric": metric,
                         "count": int(g["count"].iloc[0]), **{f"p{k}": v for k, v in vals.items()}})
    frame = pd.DataFrame(rows)
    cols = [*_label_columns(data), Column("metric", "metric"), Column("count", "count", "int"),
            *[Column(f"p{k}", f"{k if k == 'max' else 'p' + k} ms", "ms") for k in frames.PERCENTILE_LABELS]]
    sec = _section("spectrum", "Latency percentile spectrum", visible=True,
                   figures=[f for f in [_figure(fig, "Latency by percentile, all modes; x: 1/(1−p) on a log scale. "
                                                     "A flat line that jumps at the end is a tail; a line that "
                                                     "climbs early is a slow body.", "fig-spectrum")] if f],
                   tables=[table(frame, cols, table_id="percentile-table")] if len(frame) else [])
    if fig is None:
        sec["notes"].append("No latency histograms in this document.")
    return sec


def over_time(data: ReportData) -> dict[str, Any]:
    s = data.series
    figs = [_figure(figures.latency_over_time_svg(s, data.stream_s),
                    "Latency per second: p50 (solid), p99 (dashed), band between.", "fig-latency-time"),
            _figure(figures.throughput_over_time_svg(s, data.published, data.stream_s),
                    "Deliveries per second (top) and events published per second (bottom).", "fig-throughput-time")]
    sec = _section("over-time", "Latency and throughput over time", figures=[f for f in figs if f])
    sec["notes"].append("x: seconds since each mode's first due time. Published events are counted per second of "
                        "the schedule, from the first due time, so a steady stream draws a flat line; deliveries "
                        "and latencies per wall-clock second, so a mode's first bin starts up to a second before "
                        "0. Hollow dots are partial seconds (the stream starts or ends inside them: their counts "
                        "are not a full second's); shaded: before the stream and the drain after it.")
    if s.empty:
        sec["notes"].append("No per-second series in this document.")
    return sec


def connections(data: ReportData) -> dict[str, Any]:
    figs = [_figure(figures.connections_svg(data.series), "Subscriber sessions / registrations open.",
                    "fig-connections"),
            _figure(figures.errors_over_time_svg(data.errors_series), "Errors per second by mode and kind.",
                    "fig-errors-time")]
    tables = []
    errors = data.errors
    if len(errors):
        cols = [*_label_columns(data), Column("kind", "error kind"), Column("count", "count", "int")]
        tables.append(table(errors, cols, table_id="errors-table"))
    sec = _section("connections", "Connections and errors", figures=[f for f in figs if f], tables=tables)
    if errors.empty:
        sec["notes"].append("No errors were recorded.")
    return sec


def fanout(data: ReportData) -> dict[str, Any]:
    fan = data.fanout
    sec = _section("fanout", "Fan-out time per event", visible=True)
    if fan.empty:
        sec["notes"].append("No fan-out rows in this document.")
        return sec
    # fan-out only means something where there are subscribers to fan out to
    stats = frames.fanout_stats_frame(fan)
    sample, dropped = frames.downsample_fanout(fan)
    sec["figures"] = [f for f in [_figure(figures.fanout_svg(sample),
                                          "Due time → last expected subscriber has it, per event. "
                                          "✕ in the strip above: incomplete events (an expected subscriber "
                                          "never got them).",
                                          "fig-fanout")] if f]
    cols = [*_label_columns(data), Column("events", "events", "int"), Column("complete", "complete", "int"),
            Column("incomplete", "incomplete", "int", "low"), Column("p50", "p50 ms", "ms", "low"),
            Column("p99", "p99 ms", "ms", "low"), Column("max", "max ms", "ms", "low")]
    sec["tables"] = [table(stats, cols, table_id="fanout-table")]
    incomplete = int(stats["incomplete"].sum())
    sec["incomplete"] = incomplete
    sec["notes"].append(f"{incomplete:,} event{'s' if incomplete != 1 else ''} never reached every expected "
                        "subscriber (no fan-out time). Events nobody was expected to get, such as refused "
                        "publishes, are not counted here." if incomplete
                        else "Every event reached every expected subscriber.")
    if dropped:
        sec["notes"].append(f"Plot shows {len(sample):,} of {len(fan):,} events (an even sample per mode plus the "
                            "slowest and all incomplete ones); the table uses all of them.")
    sec["notes"].append("Percentiles here are over events (numpy, linear interpolation), not over deliveries.")
    return sec


def workers(data: ReportData) -> dict[str, Any]:
    """Each Locust worker: its machine, its clock against the master's, and its share of the latency."""
    w = data.workers
    sec = _section("workers", "Load machines and their clocks", visible=not w.empty)
    if w.empty:
        return sec
    cols = [*_label_columns(data), Column("worker", "worker (host:pid)"), Column("address", "address"),
            Column("sessions", "sessions", "int"), Column("offset_ms", "clock offset ms", "f3"),
            Column("uncertainty_ms", "± ms", "f3"), Column("drift_ms", "drift ms", "f3"),
            Column("corrected", "corrected", "bool"), Column("deliveries", "deliveries", "int"),
            Column("p50", "p50 ms", "ms"), Column("p99", "p99 ms", "ms"),
            Column("p50_raw", "p50 on its own clock ms", "ms")]
    sec["tables"] = [table(w, cols, table_id="workers-table")]
    sec["figures"] = [f for f in [_figure(figures.workers_svg(w), "Latency per worker: which machine saw the "
                                          "slow deliveries.", "fig-workers")] if f]
    sec["notes"] += ["Clock offset: the worker's wall clock minus the master's, measured NTP-style over Locust's "
                     "messages (± half the best round trip of the window in force). Drift: how far its wall clock "
                     "moved against its monotonic clock during the stream. Corrected workers stamp receive times "
                     "on the master's clock, so neither reaches the latencies; p50 on its own clock is what an "
                     "uncorrected worker would have reported."]
    return sec


def cost(data: ReportData) -> dict[str, Any]:
    c = data.cost.copy()
    target_cols = [*_label_columns(data),
                   Column("subscribers", "subscribers", "int"),
                   Column("deliveries", "deliveries", "int"),
                   Column("target_cpu_s", "CPU-s", "cpu_s", "low"),
                   Column("target_peak_rss_mb", "peak RSS MB", "f1", "low"),
                   Column("target_cpu_s_per_1k_subscribers", "CPU-s / 1k subs", "f2", "low"),
                   Column("target_rss_mb_per_1k_subscribers", "RSS MB / 1k subs", "f1", "low"),
                   Column("target_cpu_ms_per_1k_deliveries", "CPU-ms / 1k deliveries", "f1", "low"),
                   Column("target_rss_kb_per_1k_deliveries", "RSS kB / 1k deliveries", "f1", "low")]
    harness_cols = [*_label_columns(data),
                    Column("harness_processes", "processes", "int"),
                    Column("harness_cpu_s", "CPU-s", "cpu_s"),
                    Column("harness_peak_rss_mb", "peak RSS MB", "f1"),
                    Column("harness_max_cpu_percent", "max CPU %", "f1"),
                    Column("harness_busy_fraction", "busy samples", "pct"),
                    Column("harness_saturated", "saturated", "bool")]
    tables = [table(c, target_cols, table_id="cost-table", caption="Target (system under test)",
                    row_class=lambda r: "saturated" if r["harness_saturated"] else ""),
              table(c, harness_cols, table_id="harness-table", caption="Harness (load generator)",
                    row_class=lambda r: "saturated" if r["harness_saturated"] else "")]
    saturated = [{"label": r["label"], "reason": r["harness_reason"] or "no reason given"}
                 for r in _records(c) if r["harness_saturated"]]
    by_role = frames.resources_by_role_frame(data.resources)
    figs = [_figure(figures.resources_svg(by_role), "CPU (100 % = one core) and RSS, one row of panels per role, "
                    "summed over its processes; one colour per mode.", "fig-resources")]
    sec = _section("cost", "Cost", tables=tables, figures=[f for f in figs if f], saturated=saturated)
    sec["notes"].append("CPU-seconds: last minus first reading of each process over the mode; RSS: peak of the "
                        "per-second sum over processes. Per-1k figures divide by the mode's subscribers or "
                        "recorded deliveries.")
    if data.resources.empty:
        sec["notes"].append("No resource samples in this document.")
    return sec


def audit(data: ReportData) -> dict[str, Any]:
    a = data.audit
    cols = [*_label_columns(data),
            Column("published", "published", "int"), Column("accepted", "accepted", "int"),
            Column("refused", "refused", "int", "low"),
            Column("subscribers", "subscribers", "int"), Column("expected", "expected", "int"),
            Column("delivered_unique", "delivered (unique)", "int"), Column("lost", "lost", "int", "low"),
            Column("duplicates", "duplicates", "int", "low"), Column("out_of_order", "out of order", "int", "low"),
            Column("unexpected", "unexpected", "int", "low"), Column("balanced", "balanced", "bool")]
    tables = [table(a, cols, table_id="audit-table",
                    caption="Audit: published = accepted + refused; expected (of accepted events) = "
                            "delivered (unique) + lost",
                    row_class=lambda r: "unbalanced" if r["balanced"] is False else "")]
    wh = frames.webhook_frame(data.refs)
    if len(wh):
        wh = wh.copy()
        texts = [", ".join(f"{k}: {int(v):,}" for k, v in sorted(f.items(), key=lambda kv: -kv[1])) or "none"
                 for f in wh["failures"]]
        wh["failures_text"] = pd.Series(texts, index=wh.index, dtype=object)
        cols = [*_label_columns(data), *[Column(k, k.replace("_", " "), "int") for k in frames.WEBHOOK_COLUMNS],
                Column("failures_text", "failures by kind")]
        tables.append(table(wh, cols, table_id="webhook-table", caption="Webhook delivery (reported by the target)"))
    rc = frames.receiver_frame(data.refs)
    if len(rc):
        cols = [*_label_columns(data), *[Column(k, k.replace("_", " "), "int") for k in frames.RECEIVER_COLUMNS]]
        tables.append(table(rc, cols, table_id="receiver-table", caption="Callback receiver (harness side)"))
    pf = frames.poll_frame(data.refs)
    if len(pf):
        cols = [*_label_columns(data), Column("requests", "requests", "int"),
                Column("requests_per_delivery", "requests / delivery", "f3"),
                Column("empty_polls", "empty polls", "int"), Column("gaps", "gaps", "int"),
                Column("full_pages", "full pages", "int")]
        if pf["held_ms_mean"].notna().any():  # long-polling: how long requests were held, on average
            cols.append(Column("held_ms_mean", "held ms (mean)", "f3"))
        tables.append(table(pf, cols, table_id="poll-table", caption="Polling"))
    other = frames.other_extra_frame(data.refs)
    if len(other):
        cols = [*_label_columns(data), Column("key", "key"), Column("value", "value")]
        tables.append(table(other, cols, table_id="extra-table", caption="Other mode-specific counters"))
    return _section("audit", "Audit", tables=tables)


def _modes_table(doc: Run, table_id: str) -> dict[str, Any]:
    """Each mode's status, times, target and workload side by side: one row per fact, one column per mode."""
    facts = {name: meta.mode_facts(result) for name, result in doc.modes.items()}
    keys = list(dict.fromkeys(key for mode in facts.values() for key in mode))
    frame = pd.DataFrame([{"key": key, **{name: facts[name].get(key) for name in facts}} for key in keys],
                         columns=["key", *facts])
    return table(frame, [Column("key", "key"), *[Column(name, name) for name in facts]], caption="Modes",
                 table_id=table_id)


def metadata(data: ReportData) -> dict[str, Any]:
    """Per run, behind one ``<details>``: the run, machine, packages, changed options and each mode's target
    and workload; nothing empty (see :mod:`reports.metadata`)."""
    runs = []
    for i, doc in enumerate(data.docs):
        changed = meta.changed_options(doc.config)
        options = pd.DataFrame(changed, columns=["option", "value", "default"])
        suffix = "" if i == 0 else f"-{i + 1}"
        runs.append({
            "id": doc.run.id,
            "summary": meta.summary_line(doc, changed),
            "facts": kv_table(meta.run_facts(doc), "Run"),
            "machine": kv_table(meta.flat_facts(doc.machine), "Machine"),
            "packages": kv_table(meta.flat_facts(doc.packages), "Packages"),
            "options": table(options, [Column("option", "option"), Column("value", "value"),
                                       Column("default", "default")],
                             caption="Options changed from their defaults", table_id=f"options-table{suffix}"),
            "modes": _modes_table(doc, f"modes-meta-table{suffix}"),
        })
    sec = _section("metadata", "Run metadata", runs=runs)
    sec["notes"].append("Options at their defaults, empty values and Locust's own options are left out here; "
                        "results.json has every one (config, config.locust).")
    return sec


_VERDICT_CLASS = {"regression": "bad", "improvement": "good", "unchanged": "", "inconclusive": "warn",
                  "not_comparable": "warn"}


def baseline(data: ReportData) -> dict[str, Any]:
    """The CI gate's verdict against a baseline: deltas, intervals, verdicts; both spectra on one chart."""
    comparison = data.comparison
    if data.baseline is None or not comparison:
        return _section("baseline", "Against the baseline", visible=False)
    rows = []
    for mode, mc in (comparison.get("modes") or {}).items():
        for metric in (mc.get("metrics") or {}).values():
            interval = metric.get("interval")
            shown = "-" if not interval else (
                f"{fmt(interval[0], 'f2')} … {fmt(interval[1], 'f2')}" if metric.get("method") == "difference"
                else f"×{fmt(interval[0], 'f2')} … ×{fmt(interval[1], 'f2')}")
            rows.append({"mode": mode, "metric": metric.get("label"), "gated": "yes" if metric.get("gated") else "",
                         "baseline": (metric.get("baseline") or {}).get("estimate"),
                         "new": (metric.get("new") or {}).get("estimate"), "delta_pct": metric.get("delta_pct"),
                         "interval": shown, "verdict": str(metric.get("verdict", "")).replace("_", " "),
                         "words": metric.get("words") or ""})
        if not mc.get("comparable", True):
            rows.append({"mode": mode, "metric": "—", "gated": "", "baseline": None, "new": None, "delta_pct": None,
                         "interval": "-", "verdict": "not comparable",
                         "words": "; ".join(str(r) for r in mc.get("reasons") or [])})
    frame = pd.DataFrame(rows)
    cols = [Column("mode", "mode"), Column("metric", "metric"), Column("gated", "gated"),
            Column("baseline", "baseline", "f2"), Column("new", "new", "f2"), Column("delta_pct", "Δ %", "f1"),
            Column("interval", "interval"), Column("verdict", "verdict"), Column("words", "why")]
    both = ReportData([data.baseline, *data.docs])
    fig = figures.spectrum_svg(both.spectrum)
    outcome = str(comparison.get("outcome", "")).replace("_", " ")
    sentences = [f"Against baseline run {(comparison.get('baseline') or {}).get('id')}: {outcome}."]
    summary = comparison.get("summary") or {}
    for key, words in (("regressions", "regressed"), ("improvements", "improved"), ("inconclusive", "undecided")):
        if summary.get(key):
            sentences.append(f"{words.capitalize()}: {', '.join(summary[key])}.")
    sec = _section("baseline", "Against the baseline", sentences=sentences,
                   tables=[table(frame, cols, table_id="baseline-table",
                                 row_class=lambda r: _VERDICT_CLASS.get(str(r["verdict"]).replace(" ", "_"), ""))]
                   if len(frame) else [],
                   figures=[f for f in [_figure(fig, "Latency by percentile, the baseline and this run on one chart.",
                                                "fig-baseline-spectrum")] if f])
    sec["notes"] += [str(w) for w in comparison.get("warnings") or []]
    sec["notes"].append("A metric regresses only when it is worse by more than its tolerance and the interval "
                        "excludes no change; the run is the unit of replication (see comparison.md).")
    return sec


def sweep(data: ReportData) -> dict[str, Any]:
    """Placeholder: latency vs subscribers / rate, the knee, largest N within the SLO (issue to come)."""
    return _section("sweep", "Sweep", visible=False)


#: Report order. The template renders each by id.
SECTIONS: list[Callable[[ReportData], dict[str, Any]]] = [
    warnings, headline, spectrum, over_time, connections, fanout, workers, cost, audit, baseline, sweep, metadata,
]


def build_sections(data: ReportData) -> dict[str, dict[str, Any]]:
    """All sections by id, in report order."""
    out: dict[str, dict[str, Any]] = {}
    for fn in SECTIONS:
        sec = fn(data)
        out[sec["id"]] = sec
    return out
