"""The figures a mode result is judged by, read from the typed results model.

The CI gate, the SLO checks and capacity sweeps all ask the same questions of
a mode result -- its p99, its delivered rate, how much it lost -- so the
answers are computed here, once. Percentiles come from the mode's merged HDR
histogram (never an average of per-second percentiles).

A mode run with ``--repeats K`` holds its K independent runs as
:attr:`~deliverybench.core.model.ModeResult.repeats`; :attr:`~deliverybench.core.model.ModeResult.runs`
returns them, or the mode result itself when it was run once. The run is the unit of
replication, so statistics are taken over those runs, never over the
autocorrelated seconds of one run.
"""

from __future__ import annotations

from .model import ModeResult, headline_metric

__all__ = [
    "METRIC_NAMES",
    "LATENCY_METRICS",
    "COUNT_METRICS",
    "HIGHER_IS_BETTER",
    "headline_metric",
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


def metric_value(result: ModeResult, name: str) -> float | None:
    """One figure of one run's mode result; ``None`` when the run cannot say.

    Args:
        result: a mode result (``run.modes[mode]`` or one of its runs).
        name: one of :data:`METRIC_NAMES`.
    """
    if name in LATENCY_METRICS:
        return result.headline.value(name)
    if name == "deliveries_per_s":
        return result.throughput.deliveries_per_s
    if name in COUNT_METRICS:
        # a count the run did not record is unknown, not zero
        count = getattr(result.audit, name)
        return None if count is None else float(count)
    if name == "target_cpu_per_1k":
        return result.cpu_per_1k("target")
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")


def mode_metrics(result: ModeResult) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_NAMES` for one run's mode result."""
    return {name: metric_value(result, name) for name in METRIC_NAMES}
