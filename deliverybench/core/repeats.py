"""One mode run K times: the repeats kept side by side, and a combined view of them.

The CI gate treats the *run* as the unit of replication (``--repeats K``):
it compares per-run values, so every repeat's own result is kept whole under
``"repeats"`` (see :func:`~deliverybench.core.metrics.runs_of`). The mode
result around them is what a reader and the report see: histograms of all
repeats added (HDR counts add exactly), percentiles read from that sum,
counts summed, the worst status with every repeat's reasons -- and, where a
single run is needed (the per-second series, fan-out), the first repeat's.
Pure: mode results in, a mode result out.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from .recording import Recorder, summarize
from .resources import Sample, costs_to_dict, role_costs

__all__ = ["merge_repeats"]

_SUMMED_AUDIT = ("scheduled", "published", "accepted", "refused", "subscribers", "subscribers_full",
                 "subscribers_never_connected", "expected", "delivered_unique", "lost", "duplicates",
                 "out_of_order", "unexpected", "arrivals", "subscribers_with_loss", "recorded")
_ORDER = {"ok": 0, "degraded": 1, "interrupted": 2, "failed": 3}


def _status(runs: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    reasons: list[str] = []
    for i, run in enumerate(runs, 1):
        why = [str(r) for r in run.get("status_reasons") or []]
        if run.get("failure"):
            why.insert(0, str(run["failure"]))
        reasons += [f"repeat {i}: {r}" for r in why]
    statuses = [str(run.get("status", "ok")) for run in runs]
    if all(s == "failed" for s in statuses):
        return "failed", reasons
    if "interrupted" in statuses:
        return "interrupted", reasons
    if "failed" in statuses:
        failed = sum(1 for s in statuses if s == "failed")
        return "degraded", [f"{failed} of {len(runs)} repeats failed", *reasons]
    return max(statuses, key=lambda s: _ORDER.get(s, 1)), reasons


def merge_repeats(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The combined mode result of ``runs`` (each an ordinary mode result), repeats kept inside."""
    if not runs:
        raise ValueError("no repeats to merge")
    if len(runs) == 1:
        return dict(runs[0])
    first = runs[0]
    merged: dict[str, Any] = copy.deepcopy({k: v for k, v in first.items() if k != "repeats"})
    recorder = Recorder.merged(Recorder.decode(run.get("histograms") or {}) for run in runs)
    merged["histograms"] = recorder.encode()
    merged["summary"] = {metric: summarize(recorder.total(metric)) for metric in recorder.metrics()}
    audits = [run.get("audit") or {} for run in runs]
    audit: dict[str, Any] = {key: sum(int(a.get(key, 0) or 0) for a in audits) for key in _SUMMED_AUDIT}
    audit["balanced"] = all(a.get("balanced", True) for a in audits)
    audit["recorded_matches"] = all(a.get("recorded_matches", True) for a in audits)
    merged["audit"] = audit
    throughputs = [run.get("throughput") or {} for run in runs]
    merged["throughput"] = {
        "deliveries": sum(int(t.get("deliveries", 0) or 0) for t in throughputs),
        "deliveries_per_s": round(sum(float(t.get("deliveries_per_s", 0) or 0) for t in throughputs)
                                  / len(throughputs), 3),
        "published": sum(int(t.get("published", 0) or 0) for t in throughputs),
        "accepted": sum(int(t.get("accepted", 0) or 0) for t in throughputs),
        "stream_seconds": round(sum(float(t.get("stream_seconds", 0) or 0) for t in throughputs), 3),
        "span_seconds": round(sum(float(t.get("span_seconds", 0) or 0) for t in throughputs), 3),
        "span_from": ("schedule" if all(t.get("span_from") == "schedule" for t in throughputs)
                      else "whole_seconds"),
    }
    errors: dict[str, int] = {}
    series_rows: list[Any] = []
    for run in runs:
        for kind, n in (run.get("errors") or {}).items():
            errors[kind] = errors.get(kind, 0) + int(n)
        series_rows += (run.get("errors_series") or {}).get("rows") or []
    merged["errors"] = dict(sorted(errors.items()))
    merged["errors_series"] = {"columns": ["second", "kind", "count"], "rows": series_rows}
    rows = [row for run in runs for row in (run.get("resources") or {}).get("rows") or []]
    merged["resources"] = {"columns": (first.get("resources") or {}).get("columns", []), "rows": rows,
                           "costs": costs_to_dict(role_costs([Sample.from_row(r) for r in rows]))}
    saturated = [run.get("harness") or {} for run in runs if (run.get("harness") or {}).get("saturated")]
    merged["harness"] = dict(saturated[0]) if saturated else dict(first.get("harness") or {})
    merged["started_ns"] = min(int(run.get("started_ns", 0)) for run in runs)
    merged["ended_ns"] = max(int(run.get("ended_ns", 0)) for run in runs)
    merged["params"] = {**dict(first.get("params") or {}), "repeats": len(runs)}
    merged["status"], merged["status_reasons"] = _status(runs)
    merged["failure"] = None if merged["status"] != "failed" else first.get("failure")
    merged["notes"] = ["series and fan-out are the first repeat's; histograms, percentiles and counts cover "
                       f"all {len(runs)}"]
    merged["repeats"] = [dict(run) for run in runs]
    return merged
