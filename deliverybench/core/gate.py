"""The CI regression gate: did the new run get worse than the baseline, really?

A CI job that fails on noise is switched off within a week, and one that
never fails is decoration. This module decides, as a pure function of two
results documents, whether each metric of each mode regressed -- worse by
more than its tolerance *and* by more than the evidence allows to be chance
-- and says "inconclusive" when the evidence cannot tell, naming how many
repeats would. It never turns the decision into an exit code (that is
``run_bench.py``'s job) and never reads a file or a clock.

How it decides, per mode and metric (see :func:`compare`):

* **The run is the unit of replication.** Values are taken per run
  (:attr:`deliverybench.core.model.ModeResult.runs`); the seconds or deliveries of
  one run are not independent evidence of run-to-run variation.
* **K >= 2 runs on each side**: Mann-Whitney U (:func:`scipy.stats.mannwhitneyu`)
  and the Hodges-Lehmann shift with its distribution-free interval (the
  order statistics of the pairwise differences picked from the exact null
  distribution of U). Latencies, throughput and CPU cost are compared on log
  values, so the shift is a ratio; counts on their own scale. The smallest
  two-sided p the test can produce is ``2 / C(n1 + n2, n1)`` (0.1 for 3 vs 3):
  when that floor exceeds the (Holm-corrected) alpha the verdict is
  inconclusive and says how many repeats would be needed.
* **One run on each side**: percentiles get an order-statistic (binomial)
  interval read from each run's HDR histogram, capped by default at the
  number of published events because the deliveries of one event to many
  subscribers are not independent; throughput and counts get Poisson
  intervals (throughput also allows for its whole-second denominator);
  ``max`` and CPU cost get none. Their p-value is the alpha at which the
  interval first excludes "no change", so test and interval always agree.
  The words say the verdict rests on one run.
* **Verdicts**: ``regression`` / ``improvement`` need the estimate beyond the
  tolerance and the interval to exclude "no change" (and the Holm-adjusted p
  below alpha; the Holm family is the gated metrics that could reach p < alpha
  at all -- one whose values no split of the runs could make significant, like a
  deliveries/s that is the offered rate in every run, is left out, see
  :func:`smallest_possible_p`); ``unchanged`` needs the interval inside the tolerance band;
  anything else is ``inconclusive``. Latency tolerances never go below an
  absolute floor (1 ms by default: sub-millisecond noise never fails a job,
  while a 30 % slower p99 of 5 ms still can). A count (``lost``,
  ``refused``, ``duplicates``) going from zero in every baseline run to
  anything is a regression outright.
* **Comparability**: the workload fingerprints
  (:mod:`deliverybench.core.fingerprint`) must match, else ``not_comparable``
  naming the fields. Different machines turn regressions into warnings (or,
  with ``strict_machine``, make everything not comparable).
* **Identical sides**: a mode whose runs give the same values of every
  metric on both sides (a file compared with itself) is ``unchanged`` on
  every measured metric, whatever the number of runs: there is no
  difference to test, so no interval is needed to bound it.
* **Trust**: a run :func:`deliverybench.core.trust.trust` does not trust --
  failed, interrupted or stopped early, its harness the bottleneck (saturated,
  or its publisher behind schedule), its audit unbalanced -- is never a pass:
  ``inconclusive`` with the reason, worded from trust's reasons (the same
  decision status and sweeps use); which side failed is a value (:class:`Side`).
  A ``degraded`` run is judged: its losses are what the gate measures.

The statistics are :mod:`deliverybench.core.stats` (shared with sweeps) and
the words :mod:`deliverybench.core.gate_words`; this module holds the
decisions and the data types of a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from . import gate_words as words
from . import hdr_fast
from .fingerprint import fingerprint_diff, fingerprint_key, machine_diff, workload_fingerprint
from .metrics import COUNT_METRICS, HIGHER_IS_BETTER, LATENCY_METRICS, METRIC_NAMES, metric_value
from .model import ModeResult, Run, headline_metric
from .recording import Recorder
from .stats import (
    MAX_REPEATS,
    hodges_lehmann,
    holm_adjust,
    interval_p_value,
    mann_whitney_p,
    median,
    poisson_ratio_interval,
    pooled_sd,
    quantile_interval,
    rank_test_floor,
    rank_test_runs,
    repeats_for_alpha,
    smallest_possible_p,
)
from .trust import Distrust, trust

__all__ = [
    "COMPARISON_VERSION",
    "REGRESSION",
    "IMPROVEMENT",
    "UNCHANGED",
    "INCONCLUSIVE",
    "NOT_COMPARABLE",
    "VERDICTS",
    "DEFAULT_GATE",
    "DEFAULT_TOLERANCES",
    "GateOptions",
    "Side",
    "MetricComparison",
    "ModeComparison",
    "Comparison",
    "compare",
    "parse_gate_spec",
    "STEAL_WARNING",
    # the statistics moved to core.stats, still importable from here
    "holm_adjust",
    "rank_test_floor",
    "repeats_for_alpha",
    "smallest_possible_p",
    "hodges_lehmann",
    "quantile_interval",
]

COMPARISON_VERSION = 1

REGRESSION = "regression"
IMPROVEMENT = "improvement"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"
NOT_COMPARABLE = "not_comparable"
#: every verdict a metric can get
VERDICTS: tuple[str, ...] = (REGRESSION, IMPROVEMENT, UNCHANGED, INCONCLUSIVE, NOT_COMPARABLE)

#: metrics gated unless :attr:`GateOptions.gate` says otherwise
DEFAULT_GATE: tuple[str, ...] = ("*.p99", "*.lost", "*.deliveries_per_s")

#: Relative tolerances (fractions) for ratio metrics and absolute ones (events
#: per run) for counts.
DEFAULT_TOLERANCES: Mapping[str, float] = {
    "p50": 0.10,
    "p90": 0.10,
    "p99": 0.15,
    "p99_9": 0.20,
    "max": 0.20,
    "deliveries_per_s": 0.10,
    "target_cpu_per_1k": 0.20,
    "lost": 0.0,
    "refused": 0.0,
    "duplicates": 0.0,
}

_QUANTILES: Mapping[str, float] = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p99_9": 0.999}
_ALIASES: Mapping[str, str] = {"p99.9": "p99_9", "p999": "p99_9", "deliveries/s": "deliveries_per_s",
                               "throughput": "deliveries_per_s", "rate": "deliveries_per_s"}


def parse_gate_spec(spec: str) -> tuple[str, str]:
    """``"push.p99"`` -> ``("push", "p99")``; ``"lost"`` and ``"*.lost"`` -> ``("*", "lost")``.

    Metric spellings ``p99.9``, ``deliveries/s`` and ``rate`` are accepted.

    Raises:
        ValueError: the metric is not one of :data:`~deliverybench.core.metrics.METRIC_NAMES`.
    """
    text = spec.strip()
    whole = _ALIASES.get(text, text)
    if whole in METRIC_NAMES:
        return "*", whole
    mode, _, metric = text.partition(".")
    metric = _ALIASES.get(metric, metric)
    if not mode or metric not in METRIC_NAMES:
        raise ValueError(f"--gate {spec!r}: expected [MODE.]METRIC with METRIC one of "
                         f"{', '.join(words.label(m) for m in METRIC_NAMES)}")
    return mode, metric


@dataclass(frozen=True, kw_only=True)
class GateOptions:
    """How strict the gate is.

    Args:
        gate: ``[MODE.]METRIC`` specs of the metrics that can fail the job
            (``MODE`` may be ``*``); the others are shown, not gated. Default
            :data:`DEFAULT_GATE`: p99, lost and deliveries/s of every mode.
        alpha: family-wise false-alarm rate over the gated metrics, and
            1 - the confidence of every interval (default 0.05).
        tolerances: overrides of :data:`DEFAULT_TOLERANCES`, keyed by metric
            or ``mode.metric``: relative fractions for latencies, throughput
            and CPU cost, absolute events per run for counts.
        latency_floor_ms: latency differences up to this many milliseconds are
            always tolerated, whatever the relative tolerance (default 1.0).
        strict_machine: when the machines differ, refuse (``not_comparable``)
            instead of downgrading regressions to warnings (default False).
        holm_scope: ``"comparison"`` (default) corrects over every gated
            metric of every mode, so the job as a whole keeps ``alpha``;
            ``"mode"`` corrects within each mode.
        modes: compare only these modes (default: every mode of either side;
            a mode on one side only is not comparable).
        effective_samples: for single-run percentile intervals, ``"events"``
            (default) counts at most one independent sample per published
            event, since one event's deliveries share its fate;
            ``"deliveries"`` counts every delivery.
        memory_tolerance: relative memory difference still called the same
            machine (default 0.05).
        ignore_packages: packages whose versions do not make machines differ
            (default: ``deliverybench``, the code under test).
    """

    gate: tuple[str, ...] = DEFAULT_GATE
    alpha: float = 0.05
    tolerances: Mapping[str, float] = field(default_factory=dict)
    latency_floor_ms: float = 1.0
    strict_machine: bool = False
    holm_scope: str = "comparison"
    modes: tuple[str, ...] | None = None
    effective_samples: str = "events"
    memory_tolerance: float = 0.05
    ignore_packages: tuple[str, ...] = ("deliverybench",)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must lie strictly between 0 and 1")
        for spec in self.gate:
            parse_gate_spec(spec)
        for key, value in self.tolerances.items():
            parse_gate_spec(key)
            if not value >= 0.0:
                raise ValueError(f"tolerance {key}={value!r} must be >= 0")
        if self.latency_floor_ms < 0:
            raise ValueError("latency_floor_ms must be >= 0")
        if self.holm_scope not in ("comparison", "mode"):
            raise ValueError("holm_scope must be 'comparison' or 'mode'")
        if self.effective_samples not in ("events", "deliveries"):
            raise ValueError("effective_samples must be 'events' or 'deliveries'")

    def is_gated(self, mode: str, metric: str) -> bool:
        """Whether ``mode.metric`` can fail the job."""
        return any(m in ("*", mode) and name == metric for m, name in map(parse_gate_spec, self.gate))

    def tolerance(self, mode: str, metric: str) -> float:
        """The tolerance of ``mode.metric``: a ``mode.metric`` override, else a metric one, else the default."""
        general: float | None = None
        for key, value in self.tolerances.items():
            m, name = parse_gate_spec(key)
            if name != metric:
                continue
            if m == mode:
                return float(value)
            if m == "*":
                general = float(value)
        return general if general is not None else float(DEFAULT_TOLERANCES.get(metric, 0.10))


# ---------------------------------------------------------------- one run's percentiles


class _Quantiles:
    """Order statistics of one run's merged HDR histogram."""

    def __init__(self, result: ModeResult, mode: str, effective: str) -> None:
        metric = headline_metric(mode)
        self.n = 0
        self.n_eff = 0
        # the model checked the encoded slices' shape; decode only the headline metric's (the others are not read)
        slices: Mapping[str, Any] = result.histograms.get("slices", {})
        if metric not in slices:
            return
        total = Recorder.decode({"slices": {metric: slices[metric]}}).total(metric)
        self.n = int(total.get_total_count())
        if not self.n:
            return
        self.cumulative = np.cumsum(hdr_fast.counts_of(total))
        self.low, self.high, _ = hdr_fast.value_tables(total)
        throughput = result.throughput
        # events the target accepted are the ones subscribers could receive
        events = throughput.accepted if throughput.accepted is not None else throughput.published
        self.n_eff = self.n
        if effective == "events" and events:
            self.n_eff = min(self.n, events)

    def _at(self, rank: int, table: np.ndarray) -> float:
        index = int(np.searchsorted(self.cumulative, rank, side="left"))
        return float(table[min(index, len(table) - 1)]) / 1000.0

    def interval(self, q: float, alpha: float) -> tuple[float, float]:
        """Milliseconds covering the q-quantile with probability >= 1 - alpha (lower 0 / upper inf when unbounded)."""
        lo_rank, hi_rank = quantile_interval(self.n_eff, q, alpha)
        scale = self.n / self.n_eff
        low = 0.0 if lo_rank < 1 else self._at(max(1, math.ceil(lo_rank * scale)), self.low)
        high = math.inf if hi_rank > self.n_eff else self._at(min(self.n, math.ceil(hi_rank * scale)), self.high)
        return low, high


# ---------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class MetricComparison:
    """The verdict on one metric of one mode, with the numbers behind it.

    ``scale`` says how ``estimate``, ``interval`` and ``band`` are expressed:
    ``"ratio"`` (new / baseline; latencies, throughput, CPU cost) or
    ``"difference"`` (new - baseline in ``unit``; counts, or values that can
    be zero). Interval ends may be infinite (unbounded).
    """

    mode: str
    metric: str
    gated: bool
    unit: str
    method: str
    scale: str
    baseline_values: tuple[float | None, ...]
    new_values: tuple[float | None, ...]
    baseline_estimate: float | None
    new_estimate: float | None
    estimate: float | None
    ratio: float | None
    delta: float | None
    delta_pct: float | None
    interval: tuple[float, float] | None
    confidence: float
    coverage: float | None
    p_value: float | None
    p_adjusted: float | None
    tolerance: float
    tolerance_kind: str
    band: tuple[float, float] | None
    verdict: str
    words: str
    repeats_needed: int | None
    one_run: bool
    warning_only: bool

    @property
    def label(self) -> str:
        """``push.p99``-style name."""
        return f"{self.mode}.{words.label(self.metric)}"

    @property
    def fails(self) -> bool:
        """Whether this metric fails the job: a gated regression that is not downgraded to a warning."""
        return self.gated and self.verdict == REGRESSION and not self.warning_only

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (infinite interval ends become ``null``)."""
        return {
            "mode": self.mode, "metric": self.metric, "label": self.label, "gated": self.gated,
            "unit": self.unit, "method": self.method, "scale": self.scale,
            "baseline": {"values": list(self.baseline_values), "estimate": self.baseline_estimate,
                         "runs": len(self.baseline_values)},
            "new": {"values": list(self.new_values), "estimate": self.new_estimate, "runs": len(self.new_values)},
            "estimate": _finite(self.estimate), "ratio": _finite(self.ratio), "delta": _finite(self.delta),
            "delta_pct": _finite(self.delta_pct),
            "interval": None if self.interval is None else [_finite(v) for v in self.interval],
            "confidence": self.confidence, "coverage": self.coverage,
            "p_value": self.p_value, "p_adjusted": self.p_adjusted,
            "tolerance": {"value": self.tolerance, "kind": self.tolerance_kind,
                          "band": None if self.band is None else [_finite(v) for v in self.band]},
            "verdict": self.verdict, "words": self.words, "repeats_needed": self.repeats_needed,
            "one_run": self.one_run, "warning_only": self.warning_only, "fails": self.fails,
        }


class Side(StrEnum):
    """A side of a comparison (which one failed is read from here, never from the words)."""

    BASELINE = "baseline"
    NEW = "new"


@dataclass(frozen=True, kw_only=True)
class ModeComparison:
    """One mode: whether it can be compared, and each metric's verdict.

    Attributes:
        reasons: why the mode is not comparable (empty when it is).
        untrusted: why its verdicts are held at ``inconclusive`` (failed,
            interrupted or harness-saturated runs), in words.
        failed: the untrusted reasons that say a run failed, in words.
        failed_sides: the sides with a run that failed (measured nothing).
        identical: both sides hold the same runs (every metric equal), so
            every measured metric is ``unchanged``.
    """

    mode: str
    comparable: bool
    reasons: tuple[str, ...]
    untrusted: tuple[str, ...]
    failed: tuple[str, ...]
    failed_sides: tuple[Side, ...]
    fingerprint_baseline: Mapping[str, Any] | None
    fingerprint_new: Mapping[str, Any] | None
    fingerprint_diff: tuple[tuple[str, Any, Any], ...]
    baseline_runs: int
    new_runs: int
    metrics: tuple[MetricComparison, ...]
    identical: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        fp_b, fp_n = self.fingerprint_baseline, self.fingerprint_new
        return {
            "mode": self.mode, "comparable": self.comparable, "identical": self.identical,
            "reasons": list(self.reasons),
            "untrusted": list(self.untrusted), "failed": list(self.failed),
            "failed_sides": [str(side) for side in self.failed_sides],
            "runs": {"baseline": self.baseline_runs, "new": self.new_runs},
            "fingerprint": {
                "baseline": None if fp_b is None else dict(fp_b), "new": None if fp_n is None else dict(fp_n),
                "baseline_key": None if fp_b is None else fingerprint_key(fp_b),
                "new_key": None if fp_n is None else fingerprint_key(fp_n),
                "diff": [{"field": f, "baseline": a, "new": b} for f, a, b in self.fingerprint_diff],
            },
            "metrics": {m.metric: m.to_dict() for m in self.metrics},
        }


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The whole comparison of a new results document with a baseline."""

    modes: tuple[ModeComparison, ...]
    machine_diff: tuple[tuple[str, Any, Any], ...]
    warnings: tuple[str, ...]
    options: GateOptions
    baseline_run: Mapping[str, Any]
    new_run: Mapping[str, Any]

    @property
    def metrics(self) -> list[MetricComparison]:
        """Every metric of every mode, in order."""
        return [m for mode in self.modes for m in mode.metrics]

    @property
    def regressions(self) -> list[MetricComparison]:
        """The metrics that fail the job."""
        return [m for m in self.metrics if m.fails]

    @property
    def failed_runs(self) -> list[str]:
        """Runs with status ``failed``, in words."""
        return [reason for mode in self.modes for reason in mode.failed]

    @property
    def failed_sides(self) -> frozenset[Side]:
        """The sides with a failed run in any mode (the CLI maps a failed new side to "the run itself failed")."""
        return frozenset(side for mode in self.modes for side in mode.failed_sides)

    @property
    def inconclusive(self) -> list[MetricComparison]:
        """Gated metrics the evidence could not decide."""
        return [m for m in self.metrics if m.gated and m.verdict == INCONCLUSIVE]

    @property
    def outcome(self) -> str:
        """``"regression"`` if a gated metric regressed (on the same machine),
        else ``"not_comparable"`` if any mode could not be compared, else ``"pass"``.

        Inconclusive metrics do not fail the job (their words say what would
        decide them); check :attr:`inconclusive` and :attr:`failed_runs` for more.
        """
        if self.regressions:
            return "regression"
        if not self.modes or any(not mode.comparable for mode in self.modes):
            return "not_comparable"
        return "pass"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form carrying everything needed to re-render the comparison."""
        o = self.options
        return {
            "comparison_version": COMPARISON_VERSION,
            "outcome": self.outcome,
            "baseline": dict(self.baseline_run),
            "new": dict(self.new_run),
            "options": {
                "gate": list(o.gate), "alpha": o.alpha, "confidence": 1.0 - o.alpha,
                "tolerances": {m: o.tolerance("*", m) for m in METRIC_NAMES},
                "tolerance_overrides": dict(o.tolerances),
                "latency_floor_ms": o.latency_floor_ms, "strict_machine": o.strict_machine,
                "holm_scope": o.holm_scope, "effective_samples": o.effective_samples,
                "modes": None if o.modes is None else list(o.modes),
            },
            "machines_differ": bool(self.machine_diff),
            "machine_diff": [{"field": f, "baseline": a, "new": b} for f, a, b in self.machine_diff],
            "warnings": list(self.warnings),
            "summary": {
                "regressions": [m.label for m in self.regressions],
                "warnings_only": [m.label for m in self.metrics
                                  if m.gated and m.verdict == REGRESSION and m.warning_only],
                "improvements": [m.label for m in self.metrics if m.gated and m.verdict == IMPROVEMENT],
                "inconclusive": [m.label for m in self.inconclusive],
                "not_comparable": [mode.mode for mode in self.modes if not mode.comparable],
                "failed_runs": self.failed_runs,
            },
            "modes": {mode.mode: mode.to_dict() for mode in self.modes},
        }


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


# ---------------------------------------------------------------- the decision


@dataclass(kw_only=True)
class _Stat:
    """A metric's numbers before multiple-comparison correction."""

    mode: str
    metric: str
    gated: bool
    method: str = "none"
    scale: str = "ratio"
    base_values: tuple[float | None, ...] = ()
    new_values: tuple[float | None, ...] = ()
    base_est: float | None = None
    new_est: float | None = None
    estimate: float | None = None
    interval: tuple[float, float] | None = None
    coverage: float | None = None
    p: float | None = None
    tolerance: float = 0.0
    tolerance_kind: str = "relative"
    band: tuple[float, float] | None = None
    fixed: str | None = None  # a verdict decided without a test
    fixed_words: str = ""
    note: str = ""
    sigma: float | None = None
    n1: int = 0
    n2: int = 0
    floor: float | None = None
    p_min: float | None = None  # the smallest p any split of these very values could give
    family: int = 1

    @property
    def neutral(self) -> float:
        return 1.0 if self.scale == "ratio" else 0.0


def _untrusted(side: Side, result: ModeResult) -> tuple[list[str], list[str]]:
    """Why a side's runs cannot be trusted to judge the target, and which of them failed, in words.

    The decision is :func:`~deliverybench.core.trust.trust`'s (the one status and sweeps
    use): ``degraded`` is not a reason by itself -- loss and refusals are findings the gate
    measures -- while not measured, stopped early or measured by a harness that was the
    bottleneck are.
    """
    reasons = trust(result).reasons
    said = [words.untrusted_run(str(side), reason) for reason in reasons]
    return said, [text for text, reason in zip(said, reasons) if reason.kind is Distrust.FAILED]


#: CPU steal (share of all CPU time) above which a comparison warns: on the development VM runs
#: with 1.0-1.4 % steal had p99s of 7.6-12.5 ms against 5.3-6.3 ms for runs below 0.6 %
STEAL_WARNING = 0.005


def _steal_warning(mode: str, base_runs: Sequence[ModeResult], new_runs: Sequence[ModeResult]) -> str:
    """The warning of a comparison whose runs lost CPU to the hypervisor (empty when none did, or unknown)."""
    def shares(runs: Sequence[ModeResult]) -> list[float]:
        return [run.harness.steal_fraction for run in runs if run.harness.steal_fraction is not None]

    base, new = shares(base_runs), shares(new_runs)
    if max(base + new, default=0.0) <= STEAL_WARNING:
        return ""
    return words.steal_warning(mode, base, new)


def _rank_stat(s: _Stat, base: list[float], new: list[float], alpha: float) -> None:
    log = s.scale == "ratio"
    x = [math.log(v) for v in base] if log else list(base)
    y = [math.log(v) for v in new] if log else list(new)
    shift, (lo, hi), coverage = hodges_lehmann(x, y, alpha=alpha)
    s.method = "rank_test"
    s.p = mann_whitney_p(x, y)
    s.p_min = smallest_possible_p(x, y)
    s.coverage = coverage
    s.n1, s.n2 = len(x), len(y)
    s.floor = rank_test_floor(len(x), len(y))
    s.sigma = pooled_sd(x, y)
    if log:
        s.estimate = math.exp(shift)
        s.interval = (math.exp(lo) if lo > -math.inf else 0.0, math.exp(hi) if hi < math.inf else math.inf)
    else:
        s.estimate, s.interval = shift, (lo, hi)


def _single_stat(s: _Stat, base_run: ModeResult, new_run: ModeResult, options: GateOptions,
                 cache: dict[int, _Quantiles]) -> None:
    alpha = options.alpha
    metric, mode = s.metric, s.mode
    assert s.base_est is not None and s.new_est is not None
    s.n1 = s.n2 = 1
    interval_at: Callable[[float], tuple[float, float]] | None = None
    if metric in _QUANTILES and s.scale == "ratio":
        for run in (base_run, new_run):
            if id(run) not in cache:
                cache[id(run)] = _Quantiles(run, mode, options.effective_samples)
        qb, qn = cache[id(base_run)], cache[id(new_run)]
        if qb.n_eff and qn.n_eff:
            q = _QUANTILES[metric]

            def latency_at(a: float) -> tuple[float, float]:
                side = 1.0 - math.sqrt(1.0 - a)  # both sides together cover with >= 1 - a
                lb, ub = qb.interval(q, side)
                ln, un = qn.interval(q, side)
                low = 0.0 if ub == math.inf or ub <= 0 else ln / ub
                high = math.inf if lb <= 0 else un / lb
                return low, high

            interval_at = latency_at
            s.method = "order_statistic"
            counted = "events" if qb.n_eff < qb.n or qn.n_eff < qn.n else "deliveries"
            s.note = words.one_run_note(metric, s.method, base_samples=qb.n_eff, new_samples=qn.n_eff,
                                        counted=counted)
        else:
            s.note = words.one_run_note(metric, "no_histogram")
    elif metric == "deliveries_per_s" and s.scale == "ratio":
        d_b, d_n = base_run.throughput.deliveries, new_run.throughput.deliveries
        if d_b and d_n:
            t_b, t_n = d_b / s.base_est, d_n / s.new_est
            # a rate over the whole seconds that saw deliveries (older results, ack-timed modes) is up to 2 s off
            exact = all(run.throughput.span_from == "schedule" for run in (base_run, new_run))
            slack = 0.0 if exact else 2.0

            def rate_at(a: float) -> tuple[float, float]:
                low, high = poisson_ratio_interval(d_n, d_b, t_n, t_b, a)
                low *= max(t_b - slack, 0.0) / t_b
                high = high * t_n / (t_n - slack) if t_n > slack else math.inf
                return low, high

            interval_at = rate_at
            s.method = "poisson"
            s.note = words.one_run_note(metric, s.method, whole_seconds=bool(slack))
    elif metric in COUNT_METRICS:
        e_b = float(base_run.audit.expected or 1)
        e_n = float(new_run.audit.expected or 1)
        base_scaled = s.base_est * e_n / e_b
        s.estimate = s.new_est - base_scaled
        x_b, x_n = s.base_est, s.new_est

        def count_at(a: float) -> tuple[float, float]:
            low, high = poisson_ratio_interval(x_n, x_b, e_n, e_b, a)
            return base_scaled * (low - 1.0), (base_scaled * (high - 1.0) if high < math.inf else math.inf)

        interval_at = count_at
        s.method = "poisson"
        s.note = words.one_run_note(metric, "counts")
    else:
        s.note = words.one_run_note(metric, "none")
    if interval_at is not None:
        s.interval = interval_at(alpha)
        s.p = interval_p_value(interval_at, s.neutral)
        s.coverage = 1.0 - alpha


def _metric_stat(mode: str, metric: str, base_runs: Sequence[ModeResult], new_runs: Sequence[ModeResult],
                 options: GateOptions, cache: dict[int, _Quantiles]) -> _Stat:
    s = _Stat(mode=mode, metric=metric, gated=options.is_gated(mode, metric))
    s.base_values = tuple(metric_value(r, metric) for r in base_runs)
    s.new_values = tuple(metric_value(r, metric) for r in new_runs)
    base = [v for v in s.base_values if v is not None]
    new = [v for v in s.new_values if v is not None]
    s.base_est = median(base) if base else None
    s.new_est = median(new) if new else None
    tol = options.tolerance(mode, metric)
    s.tolerance = tol
    if not base or not new:
        missing = " and ".join(side for side, v in (("baseline", base), ("new", new)) if not v)
        s.fixed, s.fixed_words = INCONCLUSIVE, words.no_value(metric, missing)
        return s
    assert s.base_est is not None and s.new_est is not None
    if metric in COUNT_METRICS:
        s.scale, s.tolerance_kind, s.band = "difference", "absolute", (-tol, tol)
        if all(v == 0 for v in base):
            s.estimate = s.new_est
            if all(v == 0 for v in new):
                s.method, s.interval = "rule", (0.0, 0.0)
                s.fixed = UNCHANGED
                s.fixed_words = words.count_rule(metric, worst=None, runs=len(new), tolerance=tol, regression=False)
            else:
                s.method, s.interval = "rule", (min(new), max(new))
                worst = max(new)
                s.fixed = REGRESSION if worst > tol else UNCHANGED
                s.fixed_words = words.count_rule(metric, worst=worst, runs=len(new), tolerance=tol,
                                                 regression=s.fixed == REGRESSION)
            return s
    elif min(base + new) > 0:
        s.scale, s.tolerance_kind = "ratio", "relative"
        if metric in LATENCY_METRICS and s.base_est > 0:
            tol = max(tol, options.latency_floor_ms / s.base_est)
        s.band = (max(1.0 - tol, 0.0), 1.0 + tol)
    else:  # a value of zero has no logarithm: compare differences in the metric's own unit
        s.scale, s.tolerance_kind = "difference", "absolute"
        width = tol * s.base_est
        if metric in LATENCY_METRICS:
            width = max(width, options.latency_floor_ms)
        s.tolerance = width
        s.band = (-width, width)
    if len(base) == 1 and len(new) == 1:
        _single_stat(s, base_runs[s.base_values.index(base[0])], new_runs[s.new_values.index(new[0])], options,
                     cache)
        if s.estimate is None:
            s.estimate = s.new_est / s.base_est if s.scale == "ratio" else s.new_est - s.base_est
    else:
        _rank_stat(s, base, new, options.alpha)
    return s


def _sorted_values(runs: Sequence[ModeResult], metric: str) -> list[tuple[bool, float]]:
    return sorted((v is None, v or 0.0) for v in (metric_value(r, metric) for r in runs))


def _identical(base_runs: Sequence[ModeResult], new_runs: Sequence[ModeResult]) -> bool:
    """Whether both sides hold the same runs, as far as every metric can tell (the order of runs aside).

    Runs that measured nothing (every value missing) are not "the same": there is nothing equal. (A run that
    failed is never called identical either: :func:`compare` keeps its verdicts inconclusive.)
    """
    measured = any(v is not None for m in METRIC_NAMES for v in (metric_value(r, m) for r in base_runs))
    return measured and len(base_runs) == len(new_runs) and all(
        _sorted_values(base_runs, m) == _sorted_values(new_runs, m) for m in METRIC_NAMES)


def _identical_stat(s: _Stat) -> _Stat:
    """``s`` decided ``unchanged`` without a test: both sides gave the same values (see :func:`_identical`)."""
    if s.fixed is not None and s.fixed != UNCHANGED:  # a metric neither side measured stays without a value
        return s
    if s.fixed is None:
        s.method, s.note = "identical", ""
        s.estimate = s.neutral
        s.interval = (s.neutral, s.neutral)
        s.p = s.p_min = s.coverage = s.floor = None
        s.fixed = UNCHANGED
        values = [v for v in s.new_values if v is not None]
        s.fixed_words = words.identical(s.metric, values)
    return s


def _repeats(s: _Stat, alpha_eff: float) -> int | None:
    """Runs per side that would probably decide an inconclusive metric (None: more than is practical)."""
    k_floor = repeats_for_alpha(alpha_eff)
    if k_floor is None:
        return None
    needed = k_floor
    if s.sigma and s.estimate is not None and s.band is not None and s.interval is not None:
        if s.scale == "ratio":
            est = math.log(s.estimate)
            lo_b = math.log(s.band[0]) if s.band[0] > 0 else -math.inf
            hi_b = math.log(s.band[1])
        else:
            est, (lo_b, hi_b) = s.estimate, s.band
        if est > hi_b or est < lo_b:
            margin = abs(est)  # the interval has to clear "no change"
        else:
            margin = min(hi_b - est, est - lo_b)  # the interval has to fit inside the band
        if margin <= 0:
            return None
        needed = max(needed, rank_test_runs(s.sigma, margin, alpha_eff))
    needed = max(needed, min(s.n1, s.n2) + 1)
    return needed if needed <= MAX_REPEATS else None


def _decide(s: _Stat, p_adj: float | None, options: GateOptions, trusted: bool, untrusted_words: str
            ) -> tuple[str, str, int | None]:
    """``(verdict, words, repeats needed)`` of one metric, after Holm."""
    alpha = options.alpha
    one_run = s.n1 == 1 and s.n2 == 1
    suffix = words.suffix_words(one_run=one_run and s.method != "rule",
                                note=s.note if s.method not in ("rule", "rank_test") else "")
    if s.fixed is not None:
        if not trusted and s.fixed in (UNCHANGED, IMPROVEMENT, REGRESSION):
            return INCONCLUSIVE, words.held_back(s.fixed_words, untrusted_words), None
        return s.fixed, s.fixed_words, None
    if not trusted:
        return INCONCLUSIVE, words.never_a_pass(untrusted_words), None
    alpha_eff = alpha / s.family if s.gated else alpha
    if s.interval is None or s.estimate is None or s.band is None:
        k = repeats_for_alpha(alpha_eff)
        return INCONCLUSIVE, words.no_interval(s.note, k), k
    lo, hi = s.interval
    neutral = s.neutral
    worse_up = s.metric not in HIGHER_IS_BETTER
    p_eff = p_adj if s.gated else s.p
    significant = p_eff is not None and p_eff <= alpha and (lo > neutral or hi < neutral)
    floor_blocks = s.method == "rank_test" and s.floor is not None and s.floor > alpha_eff
    if floor_blocks:
        significant = False
    est = s.estimate
    band_lo, band_hi = s.band
    beyond_bad = est > band_hi if worse_up else est < band_lo
    beyond_good = est < band_lo if worse_up else est > band_hi
    bad_side = lo > neutral if worse_up else hi < neutral
    good_side = hi < neutral if worse_up else lo > neutral
    change = words.change_words(s.metric, scale=s.scale, estimate=est, neutral=neutral, interval=s.interval,
                                confidence=1.0 - alpha, p=s.p,
                                p_adjusted=p_adj if s.gated and s.family > 1 else None)
    tol_words = words.tolerance_words(s.metric, kind=s.tolerance_kind, tolerance=s.tolerance, band=s.band,
                                      latency_floor_ms=options.latency_floor_ms)
    if significant and beyond_bad and bad_side:
        return REGRESSION, words.beyond(change, tol_words, suffix), None
    if significant and beyond_good and good_side:
        return IMPROVEMENT, words.beyond(change, tol_words, suffix), None
    if band_lo <= lo and hi <= band_hi:
        return UNCHANGED, words.within(change, tol_words, suffix), None
    k = _repeats(s, alpha_eff)
    if floor_blocks:
        assert s.floor is not None
        needed = max(k or 0, repeats_for_alpha(alpha_eff) or 0) or None
        return INCONCLUSIVE, words.floor_blocked(change, n1=s.n1, n2=s.n2, alpha=alpha, alpha_eff=alpha_eff,
                                                 floor=s.floor, family=s.family, needed=needed), needed
    count_without_tolerance = s.metric in COUNT_METRICS and s.tolerance == 0
    if count_without_tolerance:
        k = None  # only a clear increase decides it, not more runs
    return INCONCLUSIVE, words.undecided(change, tol_words, suffix, metric=s.metric,
                                         count_without_tolerance=count_without_tolerance, one_run=one_run,
                                         repeats=k), k


def _run_info(document: Run) -> dict[str, Any]:
    run = document.run
    return {"id": run.id, "commit": run.commit, "status": run.status, "command": list(run.command)}


def compare(baseline: Run, new: Run, *, options: GateOptions = GateOptions()) -> Comparison:
    """Compare a new results document with a baseline, per mode and metric.

    Args:
        baseline: the baseline results document.
        new: the new results document.
        options: tolerances, gated metrics, alpha and machine policy.

    Returns:
        The :class:`Comparison`; its :attr:`~Comparison.outcome` is
        ``"regression"`` when a gated metric regressed on the same machine
        (even if another mode is not comparable), else ``"not_comparable"``
        when any mode could not be compared, else ``"pass"`` -- inconclusive
        metrics do not fail the job, their words say what would decide them.
    """
    machines = tuple(machine_diff(baseline, new, memory_tolerance=options.memory_tolerance,
                                  ignore_packages=options.ignore_packages))
    warnings: list[str] = []
    refuse_machine = bool(machines) and options.strict_machine
    if machines:
        warnings.append(words.machines_differ([f for f, _, _ in machines], refused=refuse_machine))
    names = list(options.modes) if options.modes is not None else list(dict.fromkeys([*baseline.modes, *new.modes]))

    # -- phase 1: numbers per mode and metric
    plans: list[tuple[ModeComparison, list[_Stat], bool, str]] = []
    for mode in names:
        base_result, new_result = baseline.modes.get(mode), new.modes.get(mode)
        reasons: list[str] = []
        fp_b = workload_fingerprint(baseline, mode) if base_result is not None else None
        fp_n = workload_fingerprint(new, mode) if new_result is not None else None
        diff: tuple[tuple[str, Any, Any], ...] = ()
        if base_result is None:
            reasons.append(words.missing_mode(mode, "the baseline"))
        if new_result is None:
            reasons.append(words.missing_mode(mode, "the new results"))
        base_runs = base_result.runs if base_result is not None else ()
        new_runs = new_result.runs if new_result is not None else ()
        untrusted: list[str] = []
        failed: list[str] = []
        failed_sides: list[Side] = []
        for side, result in ((Side.BASELINE, base_result), (Side.NEW, new_result)):
            if result is not None:
                u, f = _untrusted(side, result)
                untrusted += u
                failed += f
                failed_sides += [side] if f else []
        if fp_b is not None and fp_n is not None:
            diff = tuple(fingerprint_diff(fp_b, fp_n))
            # a failed run may lack its parameters: say it failed rather than "different workload"
            if diff and not failed:
                reasons.append(words.workload_differs(diff))
        if refuse_machine:
            reasons.append(words.machines_refused([f for f, _, _ in machines]))
        comparable = not reasons
        identical = comparable and not failed and _identical(base_runs, new_runs)
        stats_: list[_Stat] = []
        cache: dict[int, _Quantiles] = {}
        for metric in METRIC_NAMES:
            if comparable:
                s = _metric_stat(mode, metric, base_runs, new_runs, options, cache)
                s = _identical_stat(s) if identical else s
            else:
                s = _Stat(mode=mode, metric=metric, gated=options.is_gated(mode, metric),
                          base_values=tuple(metric_value(r, metric) for r in base_runs),
                          new_values=tuple(metric_value(r, metric) for r in new_runs),
                          tolerance=options.tolerance(mode, metric),
                          tolerance_kind="absolute" if metric in COUNT_METRICS else "relative")
                s.fixed, s.fixed_words = NOT_COMPARABLE, words.not_comparable(reasons)
            stats_.append(s)
        shell = ModeComparison(mode=mode, comparable=comparable, reasons=tuple(reasons),
                               untrusted=tuple(untrusted), failed=tuple(failed), failed_sides=tuple(failed_sides),
                               fingerprint_baseline=fp_b, fingerprint_new=fp_n, fingerprint_diff=diff,
                               baseline_runs=len(base_runs), new_runs=len(new_runs), metrics=(),
                               identical=identical)
        # identical sides are unchanged whatever their runs were worth; the warning still says what that was
        plans.append((shell, stats_, comparable and (identical or not untrusted), "; ".join(untrusted)))
        if identical and untrusted:
            warnings.append(words.identical_untrusted(mode, untrusted))
        elif comparable and untrusted:
            warnings.append(words.held_inconclusive(mode, untrusted))
        steal = _steal_warning(mode, base_runs, new_runs) if comparable and not identical else ""
        if steal:
            warnings.append(steal)
        if comparable and not identical and len(base_runs) == 1 and len(new_runs) == 1:
            warnings.append(words.one_run_per_side(mode))

    # -- phase 2: Holm over the gated metrics that have a test and could pass it
    families: dict[str, list[_Stat]] = {}
    cannot_pass: set[int] = set()
    for shell, stats_, trusted, _ in plans:
        for s in stats_:
            if s.gated and s.fixed is None and s.p is not None and trusted:
                if s.p_min is not None and s.p_min > options.alpha:
                    cannot_pass.add(id(s))  # see smallest_possible_p: no relabelling of runs could reject it
                    continue
                families.setdefault("*" if options.holm_scope == "comparison" else shell.mode, []).append(s)
    adjusted: dict[int, float] = {}
    for members in families.values():
        for s, holm_p in zip(members, holm_adjust([s.p for s in members if s.p is not None])):
            s.family = len(members)
            adjusted[id(s)] = holm_p

    # -- phase 3: verdicts
    modes_out: list[ModeComparison] = []
    for shell, stats_, trusted, untrusted_words in plans:
        metrics_out: list[MetricComparison] = []
        for s in stats_:
            if s.gated and s.family == 1:
                # a gated metric outside any family is corrected as if alone; report the family it would join
                s.family = max(1, len(families.get("*" if options.holm_scope == "comparison" else s.mode, [])))
            p_adj = adjusted.get(id(s))
            if s.fixed == NOT_COMPARABLE:
                verdict, said, k = NOT_COMPARABLE, s.fixed_words, None
            else:
                verdict, said, k = _decide(s, p_adj, options, trusted, untrusted_words)
                if id(s) in cannot_pass and s.floor is not None and s.floor <= options.alpha:
                    assert s.p_min is not None  # ties, not the number of runs, keep it from significance
                    said += words.left_out_of_holm(options.alpha, s.p_min)
            warning_only = bool(machines) and not refuse_machine and verdict in (REGRESSION, IMPROVEMENT)
            if warning_only and verdict == REGRESSION:
                said += words.WARNING_ONLY
            ratio, delta, delta_pct = _deltas(s)
            metrics_out.append(MetricComparison(
                mode=s.mode, metric=s.metric, gated=s.gated, unit=words.UNITS.get(s.metric, ""), method=s.method,
                scale=s.scale, baseline_values=s.base_values, new_values=s.new_values,
                baseline_estimate=s.base_est, new_estimate=s.new_est, estimate=s.estimate, ratio=ratio,
                delta=delta, delta_pct=delta_pct, interval=s.interval, confidence=1.0 - options.alpha,
                coverage=s.coverage, p_value=s.p, p_adjusted=p_adj, tolerance=s.tolerance,
                tolerance_kind=s.tolerance_kind, band=s.band, verdict=verdict, words=said, repeats_needed=k,
                one_run=s.n1 == 1 and s.n2 == 1, warning_only=warning_only))
        modes_out.append(ModeComparison(
            mode=shell.mode, comparable=shell.comparable, reasons=shell.reasons, untrusted=shell.untrusted,
            failed=shell.failed, failed_sides=shell.failed_sides, fingerprint_baseline=shell.fingerprint_baseline,
            fingerprint_new=shell.fingerprint_new, fingerprint_diff=shell.fingerprint_diff,
            baseline_runs=shell.baseline_runs, new_runs=shell.new_runs, metrics=tuple(metrics_out),
            identical=shell.identical))
    if not names:
        warnings.append(words.NO_MODES)
    return Comparison(modes=tuple(modes_out), machine_diff=machines, warnings=tuple(warnings), options=options,
                      baseline_run=_run_info(baseline), new_run=_run_info(new))


def _deltas(s: _Stat) -> tuple[float | None, float | None, float | None]:
    """(ratio, absolute difference, percent difference) of the estimates, where defined."""
    if s.estimate is None or s.base_est is None:
        if s.base_est is not None and s.new_est is not None:
            delta = s.new_est - s.base_est
            return (s.new_est / s.base_est if s.base_est else None), delta, (
                delta / s.base_est * 100.0 if s.base_est else None)
        return None, None, None
    if s.scale == "ratio":
        return s.estimate, s.base_est * (s.estimate - 1.0), (s.estimate - 1.0) * 100.0
    pct = s.estimate / s.base_est * 100.0 if s.base_est else None
    ratio = (s.base_est + s.estimate) / s.base_est if s.base_est else None
    return ratio, s.estimate, pct

