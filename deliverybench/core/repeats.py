"""One mode run K times: the repeats kept side by side, and a combined view of them.

The CI gate treats the *run* as the unit of replication (``--repeats K``):
it compares per-run values, so every repeat's own result is kept whole under
``"repeats"`` (read as :attr:`~deliverybench.core.model.ModeResult.runs`). The mode
result around them is what a reader and the report see: histograms of all
repeats added (HDR counts add exactly), percentiles read from that sum,
counts summed, the worst status with every repeat's reasons -- and, where a
single run is needed (the per-second series, fan-out), the first repeat's.
Pure: mode results in, a mode result out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .model import ModeResult
from .recording import Recorder, summarize
from .resources import Sample, costs_to_dict, role_costs
from .status import as_mode_result

__all__ = ["merge_repeats"]

_SUMMED_AUDIT = ("scheduled", "published", "accepted", "refused", "subscribers", "subscribers_full",
                 "subscribers_never_connected", "expected", "delivered_unique", "lost", "duplicates",
                 "out_of_order", "unexpected", "arrivals", "subscribers_with_loss", "recorded",
                 "subscribers_unmeasured")
_ORDER = {"ok": 0, "degraded": 1, "interrupted": 2, "failed": 3}


def _status(runs: Sequence[ModeResult]) -> tuple[str, list[str]]:
    reasons: list[str] = []
    for i, run in enumerate(runs, 1):
        why = list(run.status_reasons)
        if run.failure:
            why.insert(0, run.failure)
        reasons += [f"repeat {i}: {r}" for r in why]
    statuses = [run.status for run in runs]
    if all(s == "failed" for s in statuses):
        return "failed", reasons
    if "interrupted" in statuses:
        return "interrupted", reasons
    if "failed" in statuses:
        failed = sum(1 for s in statuses if s == "failed")
        return "degraded", [f"{failed} of {len(runs)} repeats failed", *reasons]
    return max(statuses, key=lambda s: _ORDER.get(s, 1)), reasons


def _rounded_sum(values: Sequence[float | None]) -> float:
    return round(sum(v or 0.0 for v in values), 3)


def merge_repeats(runs: Sequence[ModeResult | Mapping[str, Any]]) -> dict[str, Any]:
    """The combined mode result of ``runs`` (each an ordinary, decided mode result), repeats kept inside."""
    if not runs:
        raise ValueError("no repeats to merge")
    if len(runs) == 1:
        return dict(runs[0]) if isinstance(runs[0], Mapping) else runs[0].to_dict()
    models = [as_mode_result(run) for run in runs]
    first = models[0]
    merged: dict[str, Any] = copy.deepcopy({k: v for k, v in first.to_dict().items() if k != "repeats"})
    recorder = Recorder.merged(Recorder.decode(run.histograms) for run in models)
    merged["histograms"] = recorder.encode()
    merged["summary"] = {metric: summarize(recorder.total(metric)) for metric in recorder.metrics()}
    audit: dict[str, Any] = {key: sum(run.audit.count(key) for run in models) for key in _SUMMED_AUDIT}
    audit["balanced"] = all(run.audit.balanced for run in models)
    audit["recorded_matches"] = all(run.audit.recorded_matches for run in models)
    merged["audit"] = audit
    throughputs = [run.throughput for run in models]
    merged["throughput"] = {
        "deliveries": sum(t.deliveries for t in throughputs),
        "deliveries_per_s": round(sum(t.deliveries_per_s or 0.0 for t in throughputs) / len(throughputs), 3),
        "published": sum(t.published or 0 for t in throughputs),
        "accepted": sum(t.accepted or 0 for t in throughputs),
        "stream_seconds": _rounded_sum([t.stream_seconds for t in throughputs]),
        "span_seconds": _rounded_sum([t.span_seconds for t in throughputs]),
        "span_from": "schedule" if all(t.span_from == "schedule" for t in throughputs) else "whole_seconds",
    }
    errors: dict[str, int] = {}
    series_rows: list[Any] = []
    for run in models:
        for kind, n in run.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        series_rows += [list(row) for row in run.errors_series.rows]
    merged["errors"] = dict(sorted(errors.items()))
    merged["errors_series"] = {"columns": ["second", "kind", "count"], "rows": series_rows}
    rows = [list(row) for run in models for row in run.resources.samples.rows]
    merged["resources"] = {"columns": list(first.resources.samples.columns), "rows": rows,
                           "costs": costs_to_dict(role_costs([Sample.from_row(r) for r in rows]))}
    saturated = [run.harness for run in models if run.harness.saturated]
    merged["harness"] = (saturated[0] if saturated else first.harness).to_dict()
    merged["started_ns"] = min(run.started_ns for run in models)
    merged["ended_ns"] = max(run.ended_ns for run in models)
    merged["params"] = {**first.params.to_dict(), "repeats": len(models)}
    merged["status"], merged["status_reasons"] = _status(models)
    merged["failure"] = None if merged["status"] != "failed" else first.failure
    merged["notes"] = ["series and fan-out are the first repeat's; histograms, percentiles and counts cover "
                       f"all {len(models)}"]
    merged["repeats"] = [run.to_dict() for run in models]
    return merged
