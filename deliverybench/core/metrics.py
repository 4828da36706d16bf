"""The figures a mode result is judged by, read from a results document.

The CI gate, the SLO checks and capacity sweeps all ask the same questions of
a mode result -- its p99, its delivered rate, how much it lost -- so the
answers are computed here, once. Percentiles come from the mode's merged HDR
histogram (never an average of per-second percentiles).

A mode run with ``--repeats K`` holds its K independent runs under
``"repeats"`` (each an ordinary mode result); :func:`runs_of` returns them,
or the mode result itself when it was run once. The run is the unit of
replication, so statistics are taken over :func:`runs_of`, never over the
autocorrelated seconds of one run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = [
    "METRIC_NAMES",
    "LATENCY_METRICS",
    "COUNT_METRICS",
    "HIGHER_IS_BETTER",
    "headline_metric",
    "runs_of",
    "metric_value",
    "mode_metrics",
]

#: latency percentiles, in milliseconds, of the mode's headline metric
LATENCY_METRICS: tuple[str, ...] = ("p50", "p90", "p99", "p99_9", "max")
#: audit counts
COUNT_METRICS: tuple[str, ...] = ("lost", "refused", "duplicates")
#: every metric name :func:`metric_value` understands
METRIC_NAMES: tuple[str, ...] = (*LATENCY_METRICS, "deliveries_per_s", *COUNT_METRICS, "target_cpu_per_1k")
#: metrics where a larger value is an improvement (all others: smaller is better)
HIGHER_IS_BETTER: frozenset[str] = frozenset({"deliveries_per_s"})


def headline_metric(mode: str) -> str:
    """Burst runs time acknowledgements (``ack``); every other mode times deliveries."""
    return "ack" if mode == "burst" else "delivery"


def runs_of(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The independent runs behind a mode result: its repeats, or itself."""
    repeats = result.get("repeats")
    if isinstance(repeats, Sequence) and repeats:
        return [r for r in repeats if isinstance(r, Mapping)]
    return [result]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metric_value(result: Mapping[str, Any], name: str) -> float | None:
    """One figure of one run's mode result; ``None`` when the run cannot say.

    Args:
        result: a mode result (``document["modes"][mode]`` or one of its repeats).
        name: one of :data:`METRIC_NAMES`.
    """
    mode = str(result.get("mode", ""))
    if name in LATENCY_METRICS:
        summary = result.get("summary", {}).get(headline_metric(mode)) or {}
        return _number(summary.get(name))
    if name == "deliveries_per_s":
        return _number(result.get("throughput", {}).get("deliveries_per_s"))
    if name in COUNT_METRICS:
        # a count the run did not record is unknown, not zero
        return _number((result.get("audit") or {}).get(name))
    if name == "target_cpu_per_1k":
        cpu = _number(result.get("resources", {}).get("costs", {}).get("target", {}).get("cpu_s"))
        deliveries = _number(result.get("throughput", {}).get("deliveries"))
        if cpu is None or not deliveries:
            return None
        return cpu / deliveries * 1000.0
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")


def mode_metrics(result: Mapping[str, Any]) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_NAMES` for one run's mode result."""
    return {name: metric_value(result, name) for name in METRIC_NAMES}
