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
  (:func:`deliverybench.core.metrics.runs_of`); the seconds or deliveries of
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
  with ``strict_machine``, make everything not comparable). A failed or
  interrupted run, or one whose harness was the bottleneck (saturated, or its
  publisher behind schedule), is never a pass: ``inconclusive`` with the
  reason. A ``degraded`` run is judged: its losses are what the gate measures.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from . import hdr_fast
from .fingerprint import fingerprint_diff, fingerprint_key, machine_diff, workload_fingerprint
from .metrics import (COUNT_METRICS, HIGHER_IS_BETTER, LATENCY_METRICS, METRIC_NAMES, headline_metric, metric_value,
                      runs_of)
from .recording import Recorder
from .resources import run_steal_fraction
from .status import PUBLISHER_LAG_LIMIT_MS, schedule_lag_p99

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
    "MetricComparison",
    "ModeComparison",
    "Comparison",
    "compare",
    "parse_gate_spec",
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
_UNITS: Mapping[str, str] = {**{m: "ms" for m in LATENCY_METRICS}, "deliveries_per_s": "/s",
                             "target_cpu_per_1k": "cpu s/1k", **{m: "events" for m in COUNT_METRICS}}
_LABELS: Mapping[str, str] = {"p99_9": "p99.9", "deliveries_per_s": "deliveries/s",
                              "target_cpu_per_1k": "target CPU/1k"}
_ALIASES: Mapping[str, str] = {"p99.9": "p99_9", "p999": "p99_9", "deliveries/s": "deliveries_per_s",
                               "throughput": "deliveries_per_s", "rate": "deliveries_per_s"}
_COUNT_NOUNS: Mapping[str, str] = {"lost": "lost events", "refused": "refused publishes",
                                   "duplicates": "duplicate deliveries"}
# statuses of a run that stopped before its stream and drain were measured
_STOPPED = frozenset({"interrupted", "incomplete"})
# Beyond this many runs per side no practical advice is given.
_MAX_REPEATS = 50
# Exact null distribution of U up to this much work, normal approximation beyond.
_EXACT_U_WORK = 200_000
# Exact permutation p-values (with ties) up to this many splits.
_EXACT_PERMUTATIONS = 20_000


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


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
                         f"{', '.join(_label(m) for m in METRIC_NAMES)}")
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


# ---------------------------------------------------------------- statistics


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given).

    A hypothesis is rejected at family-wise level alpha iff its adjusted p is
    at most alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def rank_test_floor(n1: int, n2: int) -> float:
    """The smallest two-sided p Mann-Whitney U can give for ``n1`` vs ``n2`` runs: ``2 / C(n1+n2, n1)``."""
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def repeats_for_alpha(alpha: float, *, limit: int = _MAX_REPEATS) -> int | None:
    """The fewest runs per side (K vs K) whose rank-test floor is at most ``alpha``; None beyond ``limit``."""
    for k in range(2, limit + 1):
        if rank_test_floor(k, k) <= alpha:
            return k
    return None


def _u_null_cdf(n1: int, n2: int) -> list[float]:
    """P(U <= u) for u = 0..n1*n2 under H0 without ties (Gaussian binomial coefficients)."""
    m, n = min(n1, n2), max(n1, n2)
    poly = [1]
    for i in range(1, m + 1):
        a = n + i
        prod = poly + [0] * a
        for j, c in enumerate(poly):
            prod[j + a] -= c
        res = [0] * len(prod)
        for j, c in enumerate(prod):
            res[j] = c + (res[j - i] if j >= i else 0)
        poly = res[: i * n + 1]
    total = math.comb(m + n, m)
    cdf: list[float] = []
    running = 0
    for c in poly:
        running += c
        cdf.append(running / total)
    return cdf


def _hl_rank(n1: int, n2: int, alpha: float) -> tuple[int, float]:
    """``(k, coverage)``: the interval is the k-th smallest to k-th largest pairwise difference; k = 0: none."""
    if min(n1, n2) * n1 * n2 <= _EXACT_U_WORK:
        cdf = _u_null_cdf(n1, n2)
        k = sum(1 for c in cdf if c <= alpha / 2 + 1e-12)
        coverage = 1.0 - 2.0 * cdf[k - 1] if k >= 1 else 1.0
        return k, coverage
    mean = n1 * n2 / 2.0
    sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    k = max(int(math.floor(mean - float(stats.norm.ppf(1 - alpha / 2)) * sd)), 0)
    return k, 1.0 - alpha


def hodges_lehmann(x: Sequence[float], y: Sequence[float], *, alpha: float = 0.05
                   ) -> tuple[float, tuple[float, float], float]:
    """Hodges-Lehmann shift of ``y`` against ``x`` with its distribution-free interval.

    Args:
        x: baseline values.
        y: new values.
        alpha: 1 - confidence of the interval.

    Returns:
        ``(shift, (low, high), coverage)``: the median of all ``y_j - x_i``,
        the order statistics of those differences that cover the shift with
        probability at least ``1 - alpha`` (exact null distribution of U, no
        ties), and that coverage. When no interval reaches the confidence
        (e.g. 3 vs 3 at 95 %) it is ``(-inf, inf)``.
    """
    diffs = sorted(b - a for a in x for b in y)
    shift = float(statistics.median(diffs))
    k, coverage = _hl_rank(len(x), len(y), alpha)
    if k < 1:
        return shift, (-math.inf, math.inf), 1.0
    return shift, (float(diffs[k - 1]), float(diffs[len(diffs) - k])), coverage


def _mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
    if len(set(x) | set(y)) <= 1:
        return 1.0
    ties = len(set(x) | set(y)) < len(x) + len(y)
    method: Any
    if not ties and min(len(x), len(y)) * len(x) * len(y) <= _EXACT_U_WORK:
        method = "exact"
    elif math.comb(len(x) + len(y), len(x)) <= _EXACT_PERMUTATIONS:
        # every split is enumerated (exact, ties handled); no randomness involved
        method = stats.PermutationMethod(n_resamples=_EXACT_PERMUTATIONS)
    else:
        method = "asymptotic"
    p = float(stats.mannwhitneyu(y, x, alternative="two-sided", method=method).pvalue)
    return 1.0 if math.isnan(p) else min(p, 1.0)


def smallest_possible_p(x: Sequence[float], y: Sequence[float]) -> float:
    """The smallest two-sided Mann-Whitney p that any split of the pooled values into ``len(x)`` and ``len(y)``
    could give: the lowest values on one side (or the other).

    Why: the pooled values -- ties included -- are the same under every relabelling of the runs, so a metric whose
    smallest possible p is above alpha can never be significant, whatever the truth. Leaving it out of the Holm
    family (Tarone's argument) costs no error control and gives the others their power back: a deliveries/s that is
    exactly the offered rate in every run must not halve the alpha p99 is tested at. Without ties this is
    :func:`rank_test_floor`.
    """
    pooled = sorted([*x, *y])
    n1 = len(x)
    if n1 < 1 or len(y) < 1:
        return 1.0
    low_first = _mann_whitney_p(pooled[:n1], pooled[n1:])
    high_first = _mann_whitney_p(pooled[len(pooled) - n1:], pooled[:len(pooled) - n1])
    return min(low_first, high_first)


class _Quantiles:
    """Order statistics of one run's merged HDR histogram."""

    def __init__(self, result: Mapping[str, Any], mode: str, effective: str) -> None:
        histograms = result.get("histograms")
        metric = headline_metric(mode)
        self.n = 0
        self.n_eff = 0
        if not isinstance(histograms, Mapping):
            return
        slices = histograms.get("slices")
        if not isinstance(slices, Mapping) or not isinstance(slices.get(metric), Mapping):
            return
        # decode only the headline metric's slices: the others are not read here
        total = Recorder.decode({"slices": {metric: slices[metric]}}).total(metric)
        self.n = int(total.get_total_count())
        if not self.n:
            return
        self.cumulative = np.cumsum(hdr_fast.counts_of(total))
        self.low, self.high, _ = hdr_fast.value_tables(total)
        throughput = result.get("throughput", {})
        # events the target accepted are the ones subscribers could receive
        events = throughput.get("accepted", throughput.get("published"))
        self.n_eff = self.n
        if effective == "events" and isinstance(events, int) and not isinstance(events, bool) and events > 0:
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


def quantile_interval(n: int, q: float, alpha: float) -> tuple[int, int]:
    """Ranks ``(l, u)`` (1-based) with ``P(X_(l) <= xi_q <= X_(u)) >= 1 - alpha`` for ``n`` independent samples.

    ``l == 0`` means no lower order statistic qualifies (the bound is the
    bottom of the range); ``u == n + 1`` means no upper one does.
    """
    if n < 1:
        return 0, 1
    lo = int(stats.binom.ppf(alpha / 2, n, q))
    hi = int(stats.binom.ppf(1 - alpha / 2, n, q)) + 1
    return max(lo, 0), min(hi, n + 1)


def _invert(interval_at: Callable[[float], tuple[float, float]], neutral: float) -> float:
    """The smallest alpha whose interval excludes ``neutral``: the p-value dual to the interval."""
    def excludes(a: float) -> bool:
        lo, hi = interval_at(a)
        return lo > neutral or hi < neutral

    top, bottom = 0.9999, 1e-15
    if not excludes(top):
        return 1.0
    if excludes(bottom):
        return bottom
    for _ in range(60):
        mid = math.sqrt(top * bottom)
        if excludes(mid):
            top = mid
        else:
            bottom = mid
    return top


def _poisson_ratio(x_new: float, x_base: float, t_new: float, t_base: float, alpha: float) -> tuple[float, float]:
    """Interval for the rate ratio (new / base) of two Poisson counts over exposures ``t``.

    Conditional on the total, the new count is binomial; its exact
    (Clopper-Pearson) interval maps onto the rate ratio.
    """
    k, n = int(round(x_new)), int(round(x_new + x_base))
    if n <= 0:
        return 0.0, math.inf
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1.0 - alpha, method="exact")
    factor = t_base / t_new

    def ratio(pi: float) -> float:
        return math.inf if pi >= 1.0 else pi / (1.0 - pi) * factor

    return ratio(float(ci.low)), ratio(float(ci.high))


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
        return f"{self.mode}.{_label(self.metric)}"

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


@dataclass(frozen=True, kw_only=True)
class ModeComparison:
    """One mode: whether it can be compared, and each metric's verdict.

    Attributes:
        reasons: why the mode is not comparable (empty when it is).
        untrusted: why its verdicts are held at ``inconclusive`` (failed,
            incomplete or harness-saturated runs).
    """

    mode: str
    comparable: bool
    reasons: tuple[str, ...]
    untrusted: tuple[str, ...]
    failed: tuple[str, ...]
    fingerprint_baseline: Mapping[str, Any] | None
    fingerprint_new: Mapping[str, Any] | None
    fingerprint_diff: tuple[tuple[str, Any, Any], ...]
    baseline_runs: int
    new_runs: int
    metrics: tuple[MetricComparison, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        fp_b, fp_n = self.fingerprint_baseline, self.fingerprint_new
        return {
            "mode": self.mode, "comparable": self.comparable, "reasons": list(self.reasons),
            "untrusted": list(self.untrusted), "failed": list(self.failed),
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
        """Runs with status ``failed`` (the CLI may map these to "the run itself failed")."""
        return [reason for mode in self.modes for reason in mode.failed]

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


def _untrusted(side: str, runs: Sequence[Mapping[str, Any]], result: Mapping[str, Any]
               ) -> tuple[list[str], list[str]]:
    """Why a side's runs cannot be trusted to judge the target, and which of them failed.

    ``degraded`` is not a reason by itself: loss and refusals are findings the
    gate measures. Not measured (``failed``), stopped early (``interrupted``,
    ``incomplete``) or measured by a harness that was the bottleneck
    (saturated, or its publisher behind schedule) are.
    """
    reasons: list[str] = []
    failed: list[str] = []
    many = len(runs) > 1
    for i, run in enumerate(runs):
        which = f"{side} run {i + 1}" if many else f"{side} run"
        status = run.get("status", result.get("status", "ok"))
        failure = f": {run.get('failure')}" if run.get("failure") else ""
        if status == "failed":
            reasons.append(f"{which} failed{failure}")
            failed.append(reasons[-1])
        elif status in _STOPPED:
            reasons.append(f"{which} is {status}{failure}")
        harness = run.get("harness")
        if isinstance(harness, Mapping) and harness.get("saturated"):
            reasons.append(f"{which}'s harness was saturated ({harness.get('reason', 'no reason given')})")
        lag = schedule_lag_p99(run)
        if lag is not None and lag > PUBLISHER_LAG_LIMIT_MS:
            reasons.append(f"{which}'s publisher was behind schedule (lag p99 {lag:.1f} ms > "
                           f"{PUBLISHER_LAG_LIMIT_MS:g} ms), so its latencies include the harness's own delay")
    if result.get("status") == "failed" and not failed:
        why = f"{side} run failed" + (f": {result.get('failure')}" if result.get("failure") else "")
        failed.append(why)
        reasons.append(why)
    return reasons, failed


#: CPU steal (share of all CPU time) above which a comparison warns: on the development VM runs
#: with 1.0-1.4 % steal had p99s of 7.6-12.5 ms against 5.3-6.3 ms for runs below 0.6 %
STEAL_WARNING = 0.005


def _steal_warning(mode: str, base_runs: Sequence[Mapping[str, Any]], new_runs: Sequence[Mapping[str, Any]]) -> str:
    """Words for a comparison whose runs lost CPU to the hypervisor (empty when none did, or unknown)."""
    def shares(runs: Sequence[Mapping[str, Any]]) -> list[float]:
        return [share for share in map(run_steal_fraction, runs) if share is not None]

    base, new = shares(base_runs), shares(new_runs)
    if max(base + new, default=0.0) <= STEAL_WARNING:
        return ""

    def span(values: list[float]) -> str:
        if not values:
            return "not sampled"
        lo, hi = min(values) * 100, max(values) * 100
        return f"{lo:.1f} %" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f} %"

    return (f"{mode}: the hypervisor took CPU from this machine while it measured (steal {span(base)} of CPU time "
            f"in the baseline runs, {span(new)} in the new ones); latencies move with it on a shared VM, so "
            f"expect inconclusive verdicts -- a dedicated runner or more repeats decide them")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _rank_stat(s: _Stat, base: list[float], new: list[float], alpha: float) -> None:
    log = s.scale == "ratio"
    x = [math.log(v) for v in base] if log else list(base)
    y = [math.log(v) for v in new] if log else list(new)
    shift, (lo, hi), coverage = hodges_lehmann(x, y, alpha=alpha)
    s.method = "rank_test"
    s.p = _mann_whitney_p(x, y)
    s.p_min = smallest_possible_p(x, y)
    s.coverage = coverage
    s.n1, s.n2 = len(x), len(y)
    s.floor = rank_test_floor(len(x), len(y))
    spreads = [statistics.stdev(v) for v in (x, y) if len(v) >= 2]
    s.sigma = math.sqrt(sum(sd * sd for sd in spreads) / len(spreads)) if spreads else None
    if log:
        s.estimate = math.exp(shift)
        s.interval = (math.exp(lo) if lo > -math.inf else 0.0, math.exp(hi) if hi < math.inf else math.inf)
    else:
        s.estimate, s.interval = shift, (lo, hi)


def _single_stat(s: _Stat, base_run: Mapping[str, Any], new_run: Mapping[str, Any], options: GateOptions,
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
            s.note = f"order-statistic interval from {qb.n_eff} vs {qn.n_eff} {counted}"
        else:
            s.note = "no histogram to read an interval from"
    elif metric == "deliveries_per_s" and s.scale == "ratio":
        d_b = _number(base_run.get("throughput", {}).get("deliveries"))
        d_n = _number(new_run.get("throughput", {}).get("deliveries"))
        if d_b and d_n:
            t_b, t_n = d_b / s.base_est, d_n / s.new_est
            # a rate over the whole seconds that saw deliveries (older results, ack-timed modes) is up to 2 s off
            exact = all(run.get("throughput", {}).get("span_from") == "schedule" for run in (base_run, new_run))
            slack = 0.0 if exact else 2.0

            def rate_at(a: float) -> tuple[float, float]:
                low, high = _poisson_ratio(d_n, d_b, t_n, t_b, a)
                low *= max(t_b - slack, 0.0) / t_b
                high = high * t_n / (t_n - slack) if t_n > slack else math.inf
                return low, high

            interval_at = rate_at
            s.method = "poisson"
            s.note = ("Poisson interval of the delivery counts" if not slack
                      else "Poisson interval of the delivery counts, widened for whole-second windows")
    elif metric in COUNT_METRICS:
        e_b = _number(base_run.get("audit", {}).get("expected")) or 1.0
        e_n = _number(new_run.get("audit", {}).get("expected")) or 1.0
        base_scaled = s.base_est * e_n / e_b
        s.estimate = s.new_est - base_scaled
        x_b, x_n = s.base_est, s.new_est

        def count_at(a: float) -> tuple[float, float]:
            low, high = _poisson_ratio(x_n, x_b, e_n, e_b, a)
            return base_scaled * (low - 1.0), (base_scaled * (high - 1.0) if high < math.inf else math.inf)

        interval_at = count_at
        s.method = "poisson"
        s.note = "Poisson interval of the counts"
    else:
        s.note = f"one run per side gives no interval for {_label(metric)}"
    if interval_at is not None:
        s.interval = interval_at(alpha)
        s.p = _invert(interval_at, s.neutral)
        s.coverage = 1.0 - alpha


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _metric_stat(mode: str, metric: str, base_runs: Sequence[Mapping[str, Any]],
                 new_runs: Sequence[Mapping[str, Any]], options: GateOptions, cache: dict[int, _Quantiles]
                 ) -> _Stat:
    s = _Stat(mode=mode, metric=metric, gated=options.is_gated(mode, metric))
    s.base_values = tuple(metric_value(r, metric) for r in base_runs)
    s.new_values = tuple(metric_value(r, metric) for r in new_runs)
    base = [v for v in s.base_values if v is not None]
    new = [v for v in s.new_values if v is not None]
    s.base_est = _median(base) if base else None
    s.new_est = _median(new) if new else None
    tol = options.tolerance(mode, metric)
    s.tolerance = tol
    if not base or not new:
        missing = " and ".join(side for side, v in (("baseline", base), ("new", new)) if not v)
        s.fixed, s.fixed_words = INCONCLUSIVE, f"no {_label(metric)} value in the {missing} run(s)"
        return s
    assert s.base_est is not None and s.new_est is not None
    if metric in COUNT_METRICS:
        s.scale, s.tolerance_kind, s.band = "difference", "absolute", (-tol, tol)
        if all(v == 0 for v in base):
            s.estimate = s.new_est
            noun = _COUNT_NOUNS.get(metric, metric)
            if all(v == 0 for v in new):
                s.method, s.interval = "rule", (0.0, 0.0)
                s.fixed, s.fixed_words = UNCHANGED, f"no {noun} on either side"
            else:
                s.method, s.interval = "rule", (min(new), max(new))
                worst = max(new)
                where = "the new run" if len(new) == 1 else "the worst new run"
                s.fixed = REGRESSION if worst > tol else UNCHANGED
                s.fixed_words = (f"{noun}: 0 in every baseline run, {_count(worst)} in {where} "
                                 f"(any where the baseline had none is a regression)"
                                 if s.fixed == REGRESSION else
                                 f"{noun}: 0 in every baseline run, {_count(worst)} in {where}, "
                                 f"within the tolerance of {_count(tol)}")
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


def _p_words(name: str, p: float) -> str:
    return f"{name} < 1e-15" if p <= 1e-15 else f"{name} = {p:.2g}"


def _pct(ratio: float) -> str:
    if math.isinf(ratio):
        return "+inf %"
    value = (ratio - 1.0) * 100.0
    return f"{value:+.1f} %" if abs(value) < 10 else f"{value:+.0f} %"


def _count(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _interval_words(s: _Stat, confidence: float) -> str:
    if s.interval is None:
        return "no interval"
    lo, hi = s.interval
    level = f"{confidence * 100:g} %"
    if s.scale == "ratio":
        left = "unbounded" if lo <= 0 else _pct(lo)
        right = "unbounded" if math.isinf(hi) else _pct(hi)
    else:
        left = "unbounded" if math.isinf(lo) else f"{lo:+.3g}"
        right = "unbounded" if math.isinf(hi) else f"{hi:+.3g}"
    return f"{level} interval {left} … {right}"


def _tolerance_words(s: _Stat, options: GateOptions) -> str:
    if s.tolerance_kind == "absolute":
        unit = _UNITS.get(s.metric, "")
        return f"±{_count(s.tolerance)} {unit}".rstrip()
    base = f"{s.tolerance * 100:g} %"
    if s.metric in LATENCY_METRICS and s.band is not None and s.band[1] - 1.0 > s.tolerance + 1e-12:
        return f"{base} (raised to {(s.band[1] - 1.0) * 100:.3g} % by the {options.latency_floor_ms:g} ms floor)"
    return base


def _direction(s: _Stat) -> str:
    assert s.estimate is not None
    up = s.estimate > s.neutral
    if s.metric in LATENCY_METRICS:
        return "slower" if up else "faster"
    if s.metric in HIGHER_IS_BETTER:
        return "higher" if up else "lower"
    if s.metric in COUNT_METRICS:
        return "more" if up else "fewer"
    return "higher" if up else "lower"


def _size(s: _Stat) -> str:
    assert s.estimate is not None
    if s.scale == "ratio":
        return f"{abs((s.estimate - 1.0) * 100):.1f} %"
    return f"{_count(abs(s.estimate))} {_UNITS.get(s.metric, '')}".rstrip()


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
        z = float(stats.norm.ppf(1.0 - alpha_eff / 2.0))
        # n per side for a two-sample interval of half-width `margin`, at the
        # rank test's asymptotic efficiency of 3/pi relative to the t interval
        needed = max(needed, math.ceil(2.0 * (z * s.sigma / margin) ** 2 * math.pi / 3.0))
    needed = max(needed, min(s.n1, s.n2) + 1)
    return needed if needed <= _MAX_REPEATS else None


def _decide(s: _Stat, p_adj: float | None, options: GateOptions, trusted: bool, untrusted_words: str
            ) -> tuple[str, str, int | None]:
    alpha = options.alpha
    confidence = 1.0 - alpha
    suffix = "; rests on one run per side" if s.n1 == 1 and s.n2 == 1 and s.method != "rule" else ""
    if s.note and s.method not in ("rule", "rank_test"):
        suffix = f" ({s.note}){suffix}"
    if s.fixed is not None:
        verdict, words = s.fixed, s.fixed_words
        if not trusted and verdict in (UNCHANGED, IMPROVEMENT, REGRESSION):
            return INCONCLUSIVE, f"{words}; but {untrusted_words}", None
        return verdict, words, None
    if not trusted:
        return INCONCLUSIVE, f"{untrusted_words}; such a run is never a pass", None
    alpha_eff = alpha / s.family if s.gated else alpha
    if s.interval is None or s.estimate is None or s.band is None:
        k = repeats_for_alpha(alpha_eff)
        return INCONCLUSIVE, (f"{s.note or 'no interval'}; run with --repeats {k} or more to compare runs"
                              if k else s.note or "no interval"), k
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
    p_words = ""
    if s.p is not None:
        p_words = f", {_p_words('p', s.p)}"
        if s.gated and p_adj is not None and s.family > 1:
            p_words += f", {_p_words('Holm-adjusted', p_adj)}"
    if abs(est - neutral) < 1e-12:
        change = f"{_label(s.metric)} the same on both sides ({_interval_words(s, confidence)}{p_words})"
    else:
        change = f"{_label(s.metric)} {_direction(s)} by {_size(s)} ({_interval_words(s, confidence)}{p_words})"
    tol_words = _tolerance_words(s, options)
    if significant and beyond_bad and bad_side:
        return REGRESSION, f"{change}: beyond the {tol_words} tolerance{suffix}", None
    if significant and beyond_good and good_side:
        return IMPROVEMENT, f"{change}: beyond the {tol_words} tolerance{suffix}", None
    if band_lo <= lo and hi <= band_hi:
        return UNCHANGED, f"{change}: the interval lies within the {tol_words} tolerance{suffix}", None
    k = _repeats(s, alpha_eff)
    if floor_blocks:
        assert s.floor is not None
        floor_k = repeats_for_alpha(alpha_eff)
        if s.floor > alpha:
            why = f"{s.n1} vs {s.n2} runs cannot reach p < {alpha:g} (the smallest possible p is {s.floor:.2g})"
        else:
            why = (f"with Holm over {s.family} gated metrics, {s.n1} vs {s.n2} runs cannot reach "
                   f"p < {alpha_eff:.2g} (the smallest possible p is {s.floor:.2g})")
        if alpha_eff < alpha and s.floor > alpha:
            why += f"; with Holm over {s.family} gated metrics the first needs p < {alpha_eff:.2g}"
        needed = max(k or 0, floor_k or 0) or None
        advice = f"use --repeats {needed} or more" if needed else "use many more repeats"
        return INCONCLUSIVE, f"{why}; {advice} ({change})", needed
    if s.metric in COUNT_METRICS and s.tolerance == 0:
        noun = _COUNT_NOUNS.get(s.metric, s.metric)
        advice = (f"the baseline already has {noun}, so only a clear increase is called a regression "
                  f"(a tolerance for {s.metric} would allow 'unchanged')")
        k = None
    elif s.n1 == 1 and s.n2 == 1:
        advice = f"--repeats {k} would measure run-to-run variation" if k else "use --repeats"
    elif k is not None:
        advice = f"about {k} runs per side would decide"
    else:
        advice = f"more than {_MAX_REPEATS} runs per side would be needed; the change is too close to the tolerance"
    return INCONCLUSIVE, f"{change} is neither clearly beyond nor clearly within the " \
                         f"{tol_words} tolerance; {advice}{suffix}", k


def _mode_result(doc: Mapping[str, Any], mode: str) -> Mapping[str, Any] | None:
    modes = doc.get("modes")
    if isinstance(modes, Mapping):
        result = modes.get(mode)
        if isinstance(result, Mapping):
            return result
    return None


def _run_info(doc: Mapping[str, Any]) -> dict[str, Any]:
    run = doc.get("run") if isinstance(doc.get("run"), Mapping) else {}
    assert isinstance(run, Mapping)
    return {"id": run.get("id"), "commit": run.get("commit"), "status": run.get("status"),
            "command": list(run.get("command") or [])}


def compare(baseline_doc: Mapping[str, Any], new_doc: Mapping[str, Any], *,
            options: GateOptions = GateOptions()) -> Comparison:
    """Compare a new results document with a baseline, per mode and metric.

    Args:
        baseline_doc: the baseline results document (validated by the caller).
        new_doc: the new results document.
        options: tolerances, gated metrics, alpha and machine policy.

    Returns:
        The :class:`Comparison`; its :attr:`~Comparison.outcome` is
        ``"regression"`` when a gated metric regressed on the same machine
        (even if another mode is not comparable), else ``"not_comparable"``
        when any mode could not be compared, else ``"pass"`` -- inconclusive
        metrics do not fail the job, their words say what would decide them.
    """
    machines = tuple(machine_diff(baseline_doc, new_doc, memory_tolerance=options.memory_tolerance,
                                  ignore_packages=options.ignore_packages))
    warnings: list[str] = []
    refuse_machine = bool(machines) and options.strict_machine
    if machines:
        fields_named = ", ".join(f for f, _, _ in machines)
        warnings.append(
            f"the machines differ ({fields_named}): " + (
                "refused because strict_machine is set" if refuse_machine else
                "regressions are reported as warnings, not failures; re-record the baseline on this machine"))
    if options.modes is not None:
        names = list(options.modes)
    else:
        names = []
        for doc in (baseline_doc, new_doc):
            modes = doc.get("modes")
            if isinstance(modes, Mapping):
                names += [m for m in modes if m not in names]

    # -- phase 1: numbers per mode and metric
    plans: list[tuple[ModeComparison, list[_Stat], bool, str]] = []
    for mode in names:
        base_result, new_result = _mode_result(baseline_doc, mode), _mode_result(new_doc, mode)
        reasons: list[str] = []
        fp_b = workload_fingerprint(baseline_doc, mode) if base_result is not None else None
        fp_n = workload_fingerprint(new_doc, mode) if new_result is not None else None
        diff: tuple[tuple[str, Any, Any], ...] = ()
        if base_result is None:
            reasons.append(f"mode {mode} is missing from the baseline")
        if new_result is None:
            reasons.append(f"mode {mode} is missing from the new results")
        base_runs = runs_of(base_result) if base_result is not None else []
        new_runs = runs_of(new_result) if new_result is not None else []
        untrusted: list[str] = []
        failed: list[str] = []
        if base_result is not None:
            u, f = _untrusted("baseline", base_runs, base_result)
            untrusted += u
            failed += f
        if new_result is not None:
            u, f = _untrusted("new", new_runs, new_result)
            untrusted += u
            failed += f
        if fp_b is not None and fp_n is not None:
            diff = tuple(fingerprint_diff(fp_b, fp_n))
            # a failed run may lack its parameters: say it failed rather than "different workload"
            if diff and not failed:
                reasons.append("workload differs: " + "; ".join(
                    f"{name} {_show(a)} → {_show(b)}" for name, a, b in diff))
        if refuse_machine:
            reasons.append("machines differ: " + ", ".join(f for f, _, _ in machines))
        comparable = not reasons
        stats_: list[_Stat] = []
        cache: dict[int, _Quantiles] = {}
        for metric in METRIC_NAMES:
            if comparable:
                s = _metric_stat(mode, metric, base_runs, new_runs, options, cache)
            else:
                s = _Stat(mode=mode, metric=metric, gated=options.is_gated(mode, metric),
                          base_values=tuple(metric_value(r, metric) for r in base_runs),
                          new_values=tuple(metric_value(r, metric) for r in new_runs),
                          tolerance=options.tolerance(mode, metric),
                          tolerance_kind="absolute" if metric in COUNT_METRICS else "relative")
                s.fixed, s.fixed_words = NOT_COMPARABLE, "not comparable: " + "; ".join(reasons)
            stats_.append(s)
        shell = ModeComparison(mode=mode, comparable=comparable, reasons=tuple(reasons),
                               untrusted=tuple(untrusted), failed=tuple(failed), fingerprint_baseline=fp_b,
                               fingerprint_new=fp_n, fingerprint_diff=diff, baseline_runs=len(base_runs),
                               new_runs=len(new_runs), metrics=())
        plans.append((shell, stats_, comparable and not untrusted, "; ".join(untrusted)))
        if comparable and untrusted:
            warnings.append(f"{mode}: verdicts held at inconclusive because " + "; ".join(untrusted))
        steal = _steal_warning(mode, base_runs, new_runs) if comparable else ""
        if steal:
            warnings.append(steal)
        if comparable and len(base_runs) == 1 and len(new_runs) == 1:
            warnings.append(f"{mode}: one run per side; verdicts rest on one run (use --repeats 5 for a "
                            f"comparison of runs)")

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
                verdict, words, k = NOT_COMPARABLE, s.fixed_words, None
            else:
                verdict, words, k = _decide(s, p_adj, options, trusted, untrusted_words)
                if id(s) in cannot_pass and s.floor is not None and s.floor <= options.alpha:
                    assert s.p_min is not None  # ties, not the number of runs, keep it from significance
                    words += (f"; no split of these runs could reach p < {options.alpha:g} (smallest possible "
                              f"{s.p_min:.2g}), so it is left out of the Holm correction")
            warning_only = bool(machines) and not refuse_machine and verdict in (REGRESSION, IMPROVEMENT)
            if warning_only and verdict == REGRESSION:
                words += "; the machines differ, so this is a warning only"
            ratio, delta, delta_pct = _deltas(s)
            metrics_out.append(MetricComparison(
                mode=s.mode, metric=s.metric, gated=s.gated, unit=_UNITS.get(s.metric, ""), method=s.method,
                scale=s.scale, baseline_values=s.base_values, new_values=s.new_values,
                baseline_estimate=s.base_est, new_estimate=s.new_est, estimate=s.estimate, ratio=ratio,
                delta=delta, delta_pct=delta_pct, interval=s.interval, confidence=1.0 - options.alpha,
                coverage=s.coverage, p_value=s.p, p_adjusted=p_adj, tolerance=s.tolerance,
                tolerance_kind=s.tolerance_kind, band=s.band, verdict=verdict, words=words, repeats_needed=k,
                one_run=s.n1 == 1 and s.n2 == 1, warning_only=warning_only))
        modes_out.append(ModeComparison(
            mode=shell.mode, comparable=shell.comparable, reasons=shell.reasons, untrusted=shell.untrusted,
            failed=shell.failed, fingerprint_baseline=shell.fingerprint_baseline,
            fingerprint_new=shell.fingerprint_new, fingerprint_diff=shell.fingerprint_diff,
            baseline_runs=shell.baseline_runs, new_runs=shell.new_runs, metrics=tuple(metrics_out)))
    if not names:
        warnings.append("neither document has a mode to compare")
    return Comparison(modes=tuple(modes_out), machine_diff=machines, warnings=tuple(warnings), options=options,
                      baseline_run=_run_info(baseline_doc), new_run=_run_info(new_doc))


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


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)
