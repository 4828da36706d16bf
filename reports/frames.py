"""Results documents -> pandas DataFrames, one function per frame.

Every function here reads the typed results model (:class:`~deliverybench.core.model.Run`,
validated once when it was loaded), never the raw JSON and never per-delivery
rows: latencies come from the precomputed ``summary``, the per-second
``series`` and, for the percentile spectrum, the decoded per-second
HdrHistograms added together. Because the model has already refused NaN,
infinities and text where numbers belong, nothing here cleans numbers.

A report may compare several documents. Each (document, mode) pair is one
:class:`ModeRef`; its ``label`` is the mode name when there is one document
and ``"<run.id>:<mode>"`` when there are several, and every frame carries
``run``, ``mode`` and ``label`` columns so figures and tables can group by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from hdrh.histogram import HdrHistogram

from deliverybench.core import hdr_fast
from deliverybench.core.model import RESOURCE_COLUMNS, LatencySummary, ModeResult, RoleCost, Run
from deliverybench.core.options import MODES
from deliverybench.core.recording import decode_histogram
from deliverybench.core.results import SERIES_COLUMNS

__all__ = [
    "ModeRef",
    "mode_refs",
    "primary_metric",
    "total_histogram",
    "spectrum_values",
    "headline_frame",
    "workers_frame",
    "WORKER_COLUMNS",
    "percentiles_frame",
    "spectrum_frame",
    "series_frame",
    "published_frame",
    "errors_frame",
    "errors_series_frame",
    "fanout_frame",
    "fanout_stats_frame",
    "downsample_fanout",
    "resources_frame",
    "resources_by_role_frame",
    "cost_frame",
    "audit_frame",
    "webhook_frame",
    "receiver_frame",
    "poll_frame",
    "other_extra_frame",
    "trust_frame",
    "flatten",
    "PERCENTILE_LABELS",
    "POLL_COLUMNS",
    "POLL_KEYS",
]

NS_PER_S = 1_000_000_000
MODE_ORDER = MODES

#: Percentiles exported per metric: label -> summary key.
PERCENTILE_LABELS: dict[str, str] = {
    "50": "p50",
    "90": "p90",
    "99": "p99",
    "99.9": "p99_9",
    "99.99": "p99_99",
    "max": "max",
}


# --------------------------------------------------------------------------- refs


@dataclass(frozen=True)
class ModeRef:
    """One mode of one results document, as the report names it."""

    doc_index: int
    run: str
    mode: str
    label: str
    result: ModeResult
    doc: Run

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def metric(self) -> str:
        return primary_metric(self.mode, self.result)

    @property
    def stream_start_ns(self) -> int:
        """The mode's first due time (unix ns): 0 on every time axis of the report."""
        return self.result.stream_start_ns or self.result.started_ns

    @property
    def stream_start_s(self) -> float:
        return self.stream_start_ns / NS_PER_S

    @property
    def stream_length_s(self) -> float | None:
        """How long the schedule published, in seconds after the first due time (None if unknown)."""
        return self.result.params.duration_s


def _mode_sort_key(name: str) -> tuple[int, str]:
    return (MODE_ORDER.index(name) if name in MODE_ORDER else len(MODE_ORDER), name)


def mode_refs(docs: Sequence[Run]) -> list[ModeRef]:
    """All (document, mode) pairs in report order, with unique labels."""
    many = len(docs) > 1
    refs: list[ModeRef] = []
    seen: dict[str, int] = {}
    for i, doc in enumerate(docs):
        run = doc.run.id or f"run{i + 1}"
        for name in sorted(doc.modes, key=_mode_sort_key):
            label = f"{run}:{name}" if many else name
            if label in seen:  # the same document twice, or two runs with one id
                seen[label] += 1
                label = f"{label}#{seen[label]}"
            else:
                seen[label] = 1
            refs.append(ModeRef(i, run, name, label, doc.modes[name], doc))
    return refs


def primary_metric(mode: str, result: ModeResult) -> str:
    """The latency metric that answers "how fast": ``ack`` for bursts, else ``delivery`` (or ``ack`` if only that)."""
    if mode == "burst" or result.mode == "burst":
        return "ack"
    slices = _slices(result)
    for metric in ("delivery", "ack"):
        if metric in result.summary or metric in slices:
            return metric
    return "delivery"


def _base(ref: ModeRef) -> dict[str, Any]:
    return {"run": ref.run, "mode": ref.mode, "label": ref.label}


def _slices(result: ModeResult) -> Mapping[str, Mapping[str, str]]:
    """metric -> unix second -> encoded histogram (the model checked the shape and the base64)."""
    return cast(Mapping[str, Mapping[str, str]], result.histograms.get("slices") or {})


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame(columns=list(columns))


# --------------------------------------------------------------------------- histograms


def total_histogram(result: ModeResult, metric: str) -> HdrHistogram | None:
    """The per-second slices of ``metric`` added together (None if there are none)."""
    slices = _slices(result).get(metric) or {}
    if not slices:
        return None
    total: HdrHistogram | None = None
    for encoded in slices.values():
        hist = decode_histogram(encoded)
        if total is None:
            total = hist  # a fresh object: safe to add into
        else:
            total.add(hist)
    return total


def spectrum_values(hist: HdrHistogram, percentiles: Sequence[float] | npt.NDArray[np.float64]
                    ) -> npt.NDArray[np.float64]:
    """``hist.get_value_at_percentile(p)`` for many p at once (histogram units, exact).

    Uses :mod:`deliverybench.core.hdr_fast`'s counts view and value tables,
    with one ``searchsorted`` for all percentiles.
    """
    pcts = np.asarray(percentiles, dtype=float)
    total = int(hist.get_total_count())
    if total == 0:
        return np.zeros(len(pcts))
    cumulative = np.cumsum(hdr_fast.counts_of(hist))
    low, high, _ = hdr_fast.value_tables(hist)
    target = np.maximum((np.minimum(pcts, 100.0) * total / 100 + 0.5).astype(np.int64), 1)
    index = np.minimum(np.searchsorted(cumulative, target, side="left"), len(cumulative) - 1)
    values: npt.NDArray[np.float64] = np.where(pcts > 0, high[index], low[index]).astype(np.float64)
    return values


# --------------------------------------------------------------------------- headline


def _subscribers(result: ModeResult) -> int | None:
    return result.params.subscribers or result.audit.subscribers


def headline_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """One row per mode: latency percentiles (ms), throughput, loss and target cost."""
    rows = []
    for ref in refs:
        r = ref.result
        metric = ref.metric
        summary = r.summary.get(metric)
        audit = r.audit
        # a run that never got as far as counting deliveries (no throughput section) falls back to its histogram
        deliveries = (r.throughput.deliveries if "throughput" in r.present
                      else summary.count if summary is not None else None)
        target_cpu = r.resources.cpu_s("target")
        s = summary or LatencySummary()
        rows.append({
            **_base(ref),
            "status": ref.status,
            "failure": r.failure,
            "reasons": "; ".join(r.status_reasons) or None,
            "metric": metric,
            "count": summary.count if summary is not None else None,
            "p50": s.p50,
            "p90": s.p90,
            "p99": s.p99,
            "p99_9": s.p99_9,
            "max": s.max,
            "deliveries": deliveries,
            "deliveries_per_s": r.throughput.deliveries_per_s,
            "published": r.throughput.published if r.throughput.published is not None else audit.published,
            "refused": audit.refused,
            "expected": audit.expected,
            "lost": audit.lost,
            "duplicates": audit.duplicates,
            "target_cpu_ms_per_1k": (target_cpu * 1000.0 / (deliveries / 1000.0)
                                     if target_cpu is not None and deliveries else None),
            "subscribers": _subscribers(r),
            "rate": r.params.rate,
            "saturated": r.harness.saturated,
            "saturation_reason": r.harness.reason or None,
            "publish_lag_p99": r.latency("publish_lag").p99,
            "timing_uncertainty": r.timing_uncertainty_ms,
        })
    return _frame(rows, ["run", "mode", "label", "status", "failure", "reasons", "metric", "count", "p50", "p90",
                         "p99", "p99_9", "max", "deliveries", "deliveries_per_s", "published", "refused", "expected",
                         "lost", "duplicates", "target_cpu_ms_per_1k", "subscribers", "rate", "saturated",
                         "saturation_reason", "publish_lag_p99", "timing_uncertainty"])


# --------------------------------------------------------------------------- percentiles


def percentiles_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Long frame: run, mode, metric, percentile ("50" … "99.99", "max"), value_ms, count.

    Values are the document's own summary (computed from the total histogram
    when the run was written); a metric with slices but no summary is
    summarised here from its histograms.
    """
    rows = []
    for ref in refs:
        summary = ref.result.summary
        for metric in sorted(set(summary) | set(_slices(ref.result))):
            stats = summary.get(metric) or _summarize_slices(ref.result, metric)
            for label, key in PERCENTILE_LABELS.items():
                rows.append({"run": ref.run, "mode": ref.mode, "label": ref.label, "metric": metric,
                             "percentile": label, "value_ms": stats.value(key), "count": stats.count})
    frame = _frame(rows, ["run", "mode", "label", "metric", "percentile", "value_ms", "count"])
    frame["value_ms"] = pd.to_numeric(frame["value_ms"], errors="coerce").astype("float64")
    frame["count"] = pd.to_numeric(frame["count"], errors="coerce").fillna(0).astype("int64")
    return frame


def _summarize_slices(result: ModeResult, metric: str) -> LatencySummary:
    """A summary of a metric the document has histograms of but no summary for."""
    hist = total_histogram(result, metric)
    if hist is None or hist.get_total_count() == 0:
        return LatencySummary()
    p50, p90, p99, p99_9, p99_99 = (spectrum_values(hist, [50.0, 90.0, 99.0, 99.9, 99.99]) / 1000.0).tolist()
    return LatencySummary(count=int(hist.get_total_count()), p50=p50, p90=p90, p99=p99, p99_9=p99_9,
                          p99_99=p99_99, max=hist.get_max_value() / 1000.0)


def spectrum_frame(refs: Sequence[ModeRef], points: int = 300) -> pd.DataFrame:
    """Latency by percentile per mode (HdrHistogram "percentile distribution").

    Columns: label, run, mode, metric, percentile (0–100), inverse_tail
    (``1 / (1 - p)``, the log x axis), value_ms. Points are spaced evenly in
    ``log(1/(1-p))`` from 0 % up to ``1 - 1/count``, plus the maximum.
    """
    frames = []
    for ref in refs:
        hist = total_histogram(ref.result, ref.metric)
        if hist is None or hist.get_total_count() == 0:
            continue
        total = int(hist.get_total_count())
        inv = np.unique(np.concatenate([np.logspace(0.0, np.log10(max(total, 2)), points), [1.0, 10.0, 100.0]]))
        inv = inv[inv <= max(total, 2)]
        pct = 100.0 * (1.0 - 1.0 / inv)
        vals = spectrum_values(hist, pct) / 1000.0
        max_ms = hist.get_max_value() / 1000.0
        inv = np.append(inv, inv[-1])
        pct = np.append(pct, 100.0)
        vals = np.append(vals, max_ms)
        frames.append(pd.DataFrame({
            "label": ref.label, "run": ref.run, "mode": ref.mode, "metric": ref.metric,
            "percentile": pct, "inverse_tail": inv, "value_ms": vals,
        }))
    if not frames:
        return pd.DataFrame(columns=["label", "run", "mode", "metric", "percentile", "inverse_tail", "value_ms"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- series


def _partial(start_s: pd.Series, length_s: float | None) -> pd.Series:
    """Whether each one-second bin ``[start, start + 1)`` holds only part of the stream: it straddles
    the first due time (0) or the schedule's end, so its count is not a full second's."""
    inside = (start_s < 0) & (start_s + 1 > 0)
    if length_s:
        inside |= (start_s < length_s) & (start_s + 1 > length_s)
    return inside


def series_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Per-second series of every mode: run, mode, label, t_s, partial, then the series columns.

    Rows are wall-clock seconds (as recorded); ``t_s`` is where a row's
    second begins, in seconds since the mode's first due time, so a stream
    that began at .4 of a second has its first row at ``t_s`` -0.4.
    ``partial`` marks the rows whose second straddles the stream's start or
    end.
    """
    frames = []
    for ref in refs:
        series = ref.result.series
        if not series.rows:
            continue
        df = pd.DataFrame(list(series.rows), columns=list(series.columns or SERIES_COLUMNS))
        df.insert(0, "t_s", df["second"].astype("float64") - ref.stream_start_s)
        df.insert(1, "partial", _partial(df["t_s"], ref.stream_length_s))
        df.insert(0, "label", ref.label)
        df.insert(0, "mode", ref.mode)
        df.insert(0, "run", ref.run)
        frames.append(df)
    base = ["run", "mode", "label", "t_s", "partial", *SERIES_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=base)
    out = pd.concat(frames, ignore_index=True)
    for column in out.columns:
        if column not in ("run", "mode", "label", "partial"):
            out[column] = pd.to_numeric(out[column], errors="coerce")
    for column in ("second", "deliveries", "published", "errors"):
        if column in out:
            out[column] = out[column].fillna(0).astype("int64")
    return out


def _published_due_ns(ref: ModeRef, published: int) -> list[int]:
    """Due times of the events the series counts as published: every fan-out row, or the rows someone was
    expected to get (a refused event has none); empty when neither adds up to ``published``."""
    fan = ref.result.fanout
    columns = list(fan.columns or ("id", "due_ns", "fanout_ms", "expected"))
    due_at = columns.index("due_ns")
    expected_at = columns.index("expected") if "expected" in columns else None
    every = [cast(int, row[due_at]) for row in fan.rows]
    if len(every) == published:
        return every
    if expected_at is not None:
        accepted = [due for due, row in zip(every, fan.rows) if row[expected_at]]
        if len(accepted) == published:
            return accepted
    return []


def published_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Events published per second of the schedule: run, mode, label, t_s, published, partial, binned.

    Bins start at the mode's first due time (``t_s`` 0, 1, 2 …), from each
    event's due time (the fan-out rows), so a constant 5/s stream shows 5
    in every full second however the stream fell on the wall clock; only a
    bin the schedule ends inside is ``partial``. ``binned`` says how:
    ``due`` normally; ``wall`` (the recorded wall-clock seconds, partial at
    both ends) when the fan-out rows do not add up to the published events.
    """
    frames = []
    for ref in refs:
        series = ref.result.series
        if not series.rows:
            continue
        columns = list(series.columns or SERIES_COLUMNS)
        at = columns.index("published")
        wall = pd.DataFrame({"second": [row[0] for row in series.rows], "published": [row[at] for row in series.rows]})
        due_ns = _published_due_ns(ref, int(wall["published"].fillna(0).sum()))
        if due_ns:
            # whole nanoseconds: an event due exactly on a second boundary must not slip into the bin before
            second = np.maximum(np.asarray(due_ns, dtype=np.int64) - ref.stream_start_ns, 0) // NS_PER_S
            counts = np.bincount(second)
            df = pd.DataFrame({"t_s": np.arange(len(counts), dtype="float64"), "published": counts, "binned": "due"})
        else:
            df = pd.DataFrame({"t_s": wall["second"].astype("float64") - ref.stream_start_s,
                               "published": wall["published"].fillna(0), "binned": "wall"})
            busy = np.flatnonzero(df["published"].to_numpy() > 0)
            df = df.iloc[busy[0]:busy[-1] + 1] if len(busy) else df.iloc[0:0]
        df.insert(1, "partial", _partial(df["t_s"], ref.stream_length_s))
        df.insert(0, "label", ref.label)
        df.insert(0, "mode", ref.mode)
        df.insert(0, "run", ref.run)
        frames.append(df)
    columns = ["run", "mode", "label", "t_s", "partial", "published", "binned"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    out["published"] = out["published"].astype("int64")
    return out


def errors_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Error totals: run, mode, label, kind, count (largest first)."""
    rows = [{**_base(ref), "kind": kind, "count": n} for ref in refs for kind, n in ref.result.errors.items()]
    frame = _frame(rows, ["run", "mode", "label", "kind", "count"])
    if len(frame):
        frame = frame.sort_values(["count", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return frame


def errors_series_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Errors per second and kind: run, mode, label, second, t_s, kind, count."""
    frames = []
    for ref in refs:
        es = ref.result.errors_series
        if not es.rows:
            continue
        df = pd.DataFrame(list(es.rows), columns=list(es.columns or ("second", "kind", "count")))
        df["t_s"] = df["second"].astype("float64") - ref.stream_start_s
        df["kind"] = df["kind"].astype(str)
        df["run"], df["mode"], df["label"] = ref.run, ref.mode, ref.label
        frames.append(df)
    columns = ["run", "mode", "label", "second", "t_s", "kind", "count"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


# --------------------------------------------------------------------------- workers and their clocks

WORKER_COLUMNS = ["run", "mode", "label", "worker", "host", "address", "process", "sessions", "offset_ms",
                  "uncertainty_ms", "drift_ms", "corrected", "deliveries", "p50", "p99", "p50_raw", "p50_corrected"]


def workers_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """One row per Locust worker per mode: who it was, its clock against the master's, its share of latency."""
    rows = []
    for ref in refs:
        clock = ref.result.clock
        for w in clock.workers if clock is not None else ():
            rows.append({**_base(ref), "worker": w.process or w.node, "host": w.host, "address": w.address or None,
                         "process": w.process, "sessions": w.sessions, "offset_ms": w.offset_ms,
                         "uncertainty_ms": w.uncertainty_ms, "drift_ms": w.drift_ms, "corrected": w.corrected,
                         "deliveries": w.deliveries, "p50": w.p50_ms, "p99": w.p99_ms, "p50_raw": w.p50_raw_ms,
                         "p50_corrected": w.p50_corrected_ms})
    return _frame(rows, WORKER_COLUMNS)


# --------------------------------------------------------------------------- fan-out


def fanout_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Per event: run, mode, label, id, due_ns, t_s (due, since stream start), fanout_ms, incomplete."""
    frames = []
    for ref in refs:
        fan = ref.result.fanout
        if not fan.rows:
            continue
        df = pd.DataFrame(list(fan.rows), columns=list(fan.columns or ("id", "due_ns", "fanout_ms")))
        df["fanout_ms"] = pd.to_numeric(df["fanout_ms"], errors="coerce").astype("float64")
        df["t_s"] = (df["due_ns"].astype("int64") - int(ref.stream_start_s * NS_PER_S)) / NS_PER_S
        if "expected" in df.columns:  # events nobody was expected to get are not incomplete
            expected = pd.to_numeric(df["expected"], errors="coerce").fillna(1)
            df["incomplete"] = df["fanout_ms"].isna() & (expected > 0)
        else:
            df["incomplete"] = df["fanout_ms"].isna()
        df["run"], df["mode"], df["label"] = ref.run, ref.mode, ref.label
        frames.append(df)
    columns = ["run", "mode", "label", "id", "due_ns", "t_s", "fanout_ms", "incomplete"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def fanout_stats_frame(fanout: pd.DataFrame) -> pd.DataFrame:
    """Per label: events, complete, incomplete, p50/p99/max of per-event fan-out (ms)."""
    rows = []
    for label, group in fanout.groupby("label", sort=False):
        done = group["fanout_ms"].dropna().to_numpy()
        rows.append({
            "run": group["run"].iloc[0], "mode": group["mode"].iloc[0], "label": label,
            "events": len(group), "complete": len(done), "incomplete": int(group["incomplete"].sum()),
            "p50": float(np.percentile(done, 50)) if len(done) else None,
            "p99": float(np.percentile(done, 99)) if len(done) else None,
            "max": float(done.max()) if len(done) else None,
        })
    return _frame(rows, ["run", "mode", "label", "events", "complete", "incomplete", "p50", "p99", "max"])


def downsample_fanout(fanout: pd.DataFrame, max_points: int = 20_000,
                      keep_slowest: int = 200) -> tuple[pd.DataFrame, bool]:
    """At most ~``max_points`` rows for plotting: an even stride per label, plus
    every incomplete event and the slowest ``keep_slowest`` of each label, so
    the tail survives. Returns (frame, whether anything was dropped)."""
    if len(fanout) <= max_points:
        return fanout, False
    labels = fanout["label"].unique()
    per_label = max(1000, max_points // max(1, len(labels)))
    parts = []
    for label in labels:
        group = fanout[fanout["label"] == label]
        if len(group) <= per_label:
            parts.append(group)
            continue
        stride = int(np.ceil(len(group) / per_label))
        keep = np.zeros(len(group), dtype=bool)
        keep[::stride] = True
        values = group["fanout_ms"].to_numpy()
        keep |= np.isnan(values)
        finite = np.where(np.isnan(values), -np.inf, values)
        if keep_slowest and len(group) > keep_slowest:
            keep[np.argpartition(finite, -keep_slowest)[-keep_slowest:]] = True
        parts.append(group[keep])
    return pd.concat(parts, ignore_index=True), True


# --------------------------------------------------------------------------- resources & cost


def resources_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Resource samples: run, mode, label, t_s (since stream start), role, pid, cpu_s, cpu_percent, rss_bytes,
    connections."""
    frames = []
    for ref in refs:
        samples = ref.result.resources.samples
        if not samples.rows:
            continue
        df = pd.DataFrame(list(samples.rows), columns=list(samples.columns or RESOURCE_COLUMNS))
        df["t_s"] = df["t_s"].astype("float64") - ref.stream_start_s
        df["run"], df["mode"], df["label"] = ref.run, ref.mode, ref.label
        frames.append(df)
    columns = ["run", "mode", "label", "t_s", "role", "pid", "cpu_s", "cpu_percent", "rss_bytes", "connections"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    return out[[c for c in columns if c in out.columns]]


def resources_by_role_frame(resources: pd.DataFrame) -> pd.DataFrame:
    """Summed over processes per (run, mode, label, role, whole second): cpu_percent, rss_bytes."""
    if resources.empty:
        return pd.DataFrame(columns=["run", "mode", "label", "role", "t_s", "cpu_percent", "rss_bytes"])
    df = resources.assign(t_s=resources["t_s"].round())
    return (df.groupby(["run", "mode", "label", "role", "t_s"], sort=False)[["cpu_percent", "rss_bytes"]]
            .sum().reset_index())


def cost_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Per mode: target and harness CPU-seconds and peak RSS, normalised per 1k subscribers and 1k deliveries."""
    rows = []
    for ref in refs:
        r = ref.result
        # a role that was not sampled (an external target) has no cost at all: "—", not 0
        target, harness = r.resources.costs.get("target"), r.resources.costs.get("harness")
        t = target or RoleCost()
        subs = _subscribers(r)
        deliveries = r.throughput.deliveries if "throughput" in r.present else None
        t_cpu, t_rss = t.cpu_s, t.peak_rss_bytes

        def per(value: float | None, n: float | None, scale: float = 1.0) -> float | None:
            return value * scale / (n / 1000.0) if value is not None and n else None

        rows.append({
            **_base(ref),
            "subscribers": subs,
            "deliveries": deliveries,
            "target_processes": target.processes if target is not None else None,
            "target_cpu_s": t_cpu,
            "target_peak_rss_mb": t_rss / 1e6 if t_rss is not None else None,
            "target_max_cpu_percent": t.max_cpu_percent,
            "target_mean_cpu_percent": t.mean_cpu_percent,
            "target_cpu_s_per_1k_subscribers": per(t_cpu, subs),
            "target_rss_mb_per_1k_subscribers": per(t_rss, subs, 1e-6),
            "target_cpu_ms_per_1k_deliveries": per(t_cpu, deliveries, 1000.0),
            "target_rss_kb_per_1k_deliveries": per(t_rss, deliveries, 1e-3),
            "harness_processes": harness.processes if harness is not None else None,
            "harness_cpu_s": harness.cpu_s if harness is not None else None,
            "harness_peak_rss_mb": (harness.peak_rss_bytes or 0) / 1e6 if harness is not None else None,
            "harness_max_cpu_percent": harness.max_cpu_percent if harness is not None else None,
            "harness_saturated": r.harness.saturated,
            "harness_busy_fraction": r.harness.busy_fraction,
            "harness_reason": r.harness.reason or None,
        })
    return _frame(rows, ["run", "mode", "label", "subscribers", "deliveries", "target_processes", "target_cpu_s",
                         "target_peak_rss_mb", "target_max_cpu_percent", "target_mean_cpu_percent",
                         "target_cpu_s_per_1k_subscribers", "target_rss_mb_per_1k_subscribers",
                         "target_cpu_ms_per_1k_deliveries", "target_rss_kb_per_1k_deliveries", "harness_processes",
                         "harness_cpu_s", "harness_peak_rss_mb", "harness_max_cpu_percent", "harness_saturated",
                         "harness_busy_fraction", "harness_reason"])


# --------------------------------------------------------------------------- audit & extra

AUDIT_COLUMNS = ("scheduled", "published", "accepted", "refused", "subscribers", "subscribers_full",
                 "subscribers_never_connected", "expected", "delivered_unique", "lost", "duplicates", "out_of_order",
                 "unexpected", "arrivals", "subscribers_with_loss")


def audit_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """The audit block of every mode, plus ``balanced`` (None when the mode has no audit)."""
    rows = []
    for ref in refs:
        a = ref.result.audit
        row: dict[str, Any] = {**_base(ref), **{k: getattr(a, k) for k in AUDIT_COLUMNS}}
        row["balanced"] = a.balanced if a.present else None
        rows.append(row)
    return _frame(rows, ["run", "mode", "label", *AUDIT_COLUMNS, "balanced"])


WEBHOOK_COLUMNS = ("attempts", "delivered", "first_attempt_delivered", "retries", "give_ups", "subscriptions_disabled")


def _counter(block: Mapping[str, Any], key: str) -> int | float | None:
    """One counter of a free-form ``extra`` block: the model checked it is finite JSON, not that it is a number."""
    value = block.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _extra_block(result: ModeResult, name: str) -> Mapping[str, Any] | None:
    block = result.extra.get(name)
    return block if isinstance(block, Mapping) else None


def webhook_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """``extra.webhook`` per mode that has it; ``failures`` as "kind: n" text and as a dict."""
    rows = []
    for ref in refs:
        wh = _extra_block(ref.result, "webhook")
        if wh is None:
            continue
        failures = wh.get("failures")
        row = {**_base(ref), **{k: _counter(wh, k) for k in WEBHOOK_COLUMNS},
               "failures": dict(failures) if isinstance(failures, Mapping) else {}}
        others = {k: v for k, v in wh.items() if k not in WEBHOOK_COLUMNS and k != "failures"}
        row["other"] = others
        rows.append(row)
    return _frame(rows, ["run", "mode", "label", *WEBHOOK_COLUMNS, "failures", "other"])


RECEIVER_COLUMNS = ("requests", "acked", "rejected_signature", "rejected_timestamp", "simulated_failures", "duplicates")


def receiver_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """``extra.receiver`` (the harness's callback receiver) per mode that has it."""
    rows = []
    for ref in refs:
        rc = _extra_block(ref.result, "receiver")
        if rc is not None:
            rows.append({**_base(ref), **{k: _counter(rc, k) for k in RECEIVER_COLUMNS}})
    return _frame(rows, ["run", "mode", "label", *RECEIVER_COLUMNS])


#: the columns of the Polling table: the fields of :class:`deliverybench.core.model.PollFigures`
POLL_COLUMNS = ("requests", "requests_per_delivery", "empty_polls", "gaps", "full_pages", "held_ms_mean")
#: the ``extra`` keys :attr:`ModeResult.poll <deliverybench.core.model.ModeResult.poll>` reads them from (the
#: poller's own counters), so the "other counters" table does not show them a second time
POLL_KEYS = ("requests", "poll_requests", "requests_per_delivery", "poll_empty", "poll_gaps", "poll_full_pages",
             "longpoll_requests", "longpoll_empty", "longpoll_gaps", "longpoll_held_us", "held_ms_mean")


def _polled(ref: ModeRef) -> bool:
    poll = ref.result.poll
    return poll.requests_per_delivery is not None or (ref.mode == "poll" and poll.requests is not None)


def poll_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """What polling cost, per mode that polled (or long-polled): requests, requests per delivery, empty polls,
    gaps, full pages, mean held time."""
    rows = []
    for ref in refs:
        if _polled(ref):
            poll = ref.result.poll
            rows.append({**_base(ref), **{k: getattr(poll, k) for k in POLL_COLUMNS}})
    return _frame(rows, ["run", "mode", "label", *POLL_COLUMNS])


def other_extra_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Everything else in ``extra`` as flattened key/value rows (label, key, value)."""
    known = {"webhook", "receiver"}
    rows = []
    for ref in refs:
        extra = ref.result.extra
        hidden = known | set(POLL_KEYS) if _polled(ref) else known
        for key, value in flatten({k: v for k, v in extra.items() if k not in hidden}).items():
            rows.append({**_base(ref), "key": key, "value": value})
    return _frame(rows, ["run", "mode", "label", "key", "value"])


# --------------------------------------------------------------------------- trust


def trust_frame(refs: Sequence[ModeRef]) -> pd.DataFrame:
    """Reasons not to trust (part of) a measurement: one row per finding.

    Columns: label, mode, kind (saturated, status, unbalanced, negative,
    clamped), severity ("danger" | "warn"), message. A degraded mode's
    reasons (loss, refusals, dropped sessions, warnings) are one ``status`` row.
    """
    rows = []

    def add(ref: ModeRef, kind: str, severity: str, message: str) -> None:
        rows.append({**_base(ref), "kind": kind, "severity": severity, "message": message})

    for ref in refs:
        r = ref.result
        if r.harness.saturated:
            add(ref, "saturated", "danger",
                "the harness was saturated, so these latencies measure the harness as much as the target "
                f"and are not trustworthy. Reason: {r.harness.reason or 'none given'}")
        if ref.status != "ok":
            why = "; ".join(x for x in [r.failure, *r.status_reasons] if x)
            add(ref, "status", "warn" if ref.status == "degraded" else "danger",
                f"status {ref.status}" + (f": {why}" if why else ""))
        a = r.audit
        if a.present and not a.balanced:
            add(ref, "unbalanced", "danger",
                f"audit does not balance: expected {a.expected} ≠ delivered {a.delivered_unique} + lost {a.lost}")
        for metric, n in _sample_counts(r, "negative"):
            add(ref, "negative", "warn", f"{n:,} {metric} samples were below zero (clock step or skew between "
                                         "processes) and were stored as 0")
        for metric, n in _sample_counts(r, "clamped"):
            add(ref, "clamped", "warn", f"{n:,} {metric} samples were above one hour and were stored as one hour")
    return _frame(rows, ["run", "mode", "label", "kind", "severity", "message"])


def _sample_counts(result: ModeResult, counter: str) -> list[tuple[str, int]]:
    """(metric, n) of a histogram counter (``negative``, ``clamped``) where n > 0; the model checked the counts."""
    counts = cast(Mapping[str, int], result.histograms.get(counter) or {})
    return [(metric, n) for metric, n in counts.items() if n]


# --------------------------------------------------------------------------- helpers


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings -> {"a.b.c": "text"}; lists and scalars rendered as compact JSON."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        if not value and prefix:
            out[prefix] = "{}"
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    elif prefix:
        out[prefix] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return out

