"""The statistics the CI gate and capacity sweeps decide with, one implementation each.

Both ask "is this change (or this trend) real?" of a handful of noisy
numbers, so both need tests and intervals that assume no distribution and
stay honest with few samples: rank tests and Hodges–Lehmann shifts over runs
(:mod:`deliverybench.core.gate`), order-statistic intervals of percentiles,
Poisson intervals of counts, Holm's correction over the gated metrics, and
the Theil–Sen slope of p99 per second (:mod:`deliverybench.core.sweep`).
Everything here is pure: numbers in, numbers out; no results documents.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "MAX_REPEATS",
    "is_number",
    "median",
    "pooled_sd",
    "holm_adjust",
    "rank_test_floor",
    "repeats_for_alpha",
    "rank_test_runs",
    "u_null_cdf",
    "hodges_lehmann",
    "mann_whitney_p",
    "smallest_possible_p",
    "quantile_interval",
    "interval_p_value",
    "poisson_ratio_interval",
    "sen_slope",
]

#: runs per side beyond which no practical advice is given
MAX_REPEATS = 50
# Exact null distribution of U up to this much work, normal approximation beyond.
_EXACT_U_WORK = 200_000
# Exact permutation p-values (with ties) up to this many splits.
_EXACT_PERMUTATIONS = 20_000


def is_number(value: Any) -> TypeGuard[float]:
    """A finite int or float (not a bool): a value a statistic can use."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def median(values: Sequence[float] | np.ndarray) -> float:
    """The median (the mean of the middle two for an even count)."""
    return float(np.median(np.asarray(values, dtype=float)))


def pooled_sd(*samples: Sequence[float]) -> float | None:
    """The root mean of the samples' variances (those with two values or more); ``None`` if none has."""
    spreads = [statistics.stdev(v) for v in samples if len(v) >= 2]
    return math.sqrt(sum(sd * sd for sd in spreads) / len(spreads)) if spreads else None


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


def repeats_for_alpha(alpha: float, *, limit: int = MAX_REPEATS) -> int | None:
    """The fewest runs per side (K vs K) whose rank-test floor is at most ``alpha``; None beyond ``limit``."""
    for k in range(2, limit + 1):
        if rank_test_floor(k, k) <= alpha:
            return k
    return None


def rank_test_runs(sigma: float, margin: float, alpha: float) -> int:
    """Runs per side for a two-sample interval of half-width ``margin`` at confidence ``1 - alpha``.

    The normal-theory size ``2 (z σ / margin)²``, divided by the rank test's
    asymptotic efficiency of 3/π relative to the t interval.
    """
    z = float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))
    return math.ceil(2.0 * (z * sigma / margin) ** 2 * math.pi / 3.0)


def u_null_cdf(n1: int, n2: int) -> list[float]:
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
        cdf = u_null_cdf(n1, n2)
        k = sum(1 for c in cdf if c <= alpha / 2 + 1e-12)
        coverage = 1.0 - 2.0 * cdf[k - 1] if k >= 1 else 1.0
        return k, coverage
    mean = n1 * n2 / 2.0
    sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    k = max(int(math.floor(mean - float(scipy_stats.norm.ppf(1 - alpha / 2)) * sd)), 0)
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
    shift = median(diffs)
    k, coverage = _hl_rank(len(x), len(y), alpha)
    if k < 1:
        return shift, (-math.inf, math.inf), 1.0
    return shift, (float(diffs[k - 1]), float(diffs[len(diffs) - k])), coverage


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Mann-Whitney p of ``y`` against ``x``: exact without ties, by permutation with them, else normal."""
    if len(set(x) | set(y)) <= 1:
        return 1.0
    ties = len(set(x) | set(y)) < len(x) + len(y)
    method: Any
    if not ties and min(len(x), len(y)) * len(x) * len(y) <= _EXACT_U_WORK:
        method = "exact"
    elif math.comb(len(x) + len(y), len(x)) <= _EXACT_PERMUTATIONS:
        # every split is enumerated (exact, ties handled); no randomness involved
        method = scipy_stats.PermutationMethod(n_resamples=_EXACT_PERMUTATIONS)
    else:
        method = "asymptotic"
    p = float(scipy_stats.mannwhitneyu(y, x, alternative="two-sided", method=method).pvalue)
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
    low_first = mann_whitney_p(pooled[:n1], pooled[n1:])
    high_first = mann_whitney_p(pooled[len(pooled) - n1:], pooled[:len(pooled) - n1])
    return min(low_first, high_first)


def quantile_interval(n: int, q: float, alpha: float) -> tuple[int, int]:
    """Ranks ``(l, u)`` (1-based) with ``P(X_(l) <= xi_q <= X_(u)) >= 1 - alpha`` for ``n`` independent samples.

    ``l == 0`` means no lower order statistic qualifies (the bound is the
    bottom of the range); ``u == n + 1`` means no upper one does.
    """
    if n < 1:
        return 0, 1
    lo = int(scipy_stats.binom.ppf(alpha / 2, n, q))
    hi = int(scipy_stats.binom.ppf(1 - alpha / 2, n, q)) + 1
    return max(lo, 0), min(hi, n + 1)


def interval_p_value(interval_at: Callable[[float], tuple[float, float]], neutral: float) -> float:
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


def poisson_ratio_interval(x_new: float, x_base: float, t_new: float, t_base: float, alpha: float
                           ) -> tuple[float, float]:
    """Interval for the rate ratio (new / base) of two Poisson counts over exposures ``t``.

    Conditional on the total, the new count is binomial; its exact
    (Clopper-Pearson) interval maps onto the rate ratio.
    """
    k, n = int(round(x_new)), int(round(x_new + x_base))
    if n <= 0:
        return 0.0, math.inf
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=1.0 - alpha, method="exact")
    factor = t_base / t_new

    def ratio(pi: float) -> float:
        return math.inf if pi >= 1.0 else pi / (1.0 - pi) * factor

    return ratio(float(ci.low)), ratio(float(ci.high))


def sen_slope(x: np.ndarray, y: np.ndarray, *, confidence: float) -> tuple[float, float, float, float]:
    """Theil–Sen slope with Sen's rank interval, widened for lag-1 autocorrelation.

    Sen's interval counts the ``n(n-1)/2`` pairwise slopes as if the seconds
    were independent; consecutive seconds of one run are not (a slow second
    makes the next one slow), which makes the plain interval too narrow and
    flags flat series as trends. The variance of Kendall's S is therefore
    multiplied by ``(1 + ρ) / (1 - ρ)``, ρ the lag-1 autocorrelation of the
    residuals (clipped to 0..0.9) -- the effective-sample-size correction of
    the modified Mann–Kendall test.

    Returns:
        (slope, low, high, ρ).
    """
    n = len(x)
    i, j = np.triu_indices(n, 1)
    dx = x[j] - x[i]
    keep = dx != 0
    slopes = np.sort((y[j] - y[i])[keep] / dx[keep])
    if len(slopes) == 0:
        nan = float("nan")
        return nan, nan, nan, 0.0
    slope = median(slopes)
    residual = y - median(y - slope * x) - slope * x
    centred = residual - float(np.mean(residual))
    energy = float(np.dot(centred, centred))
    rho = float(np.dot(centred[1:], centred[:-1])) / energy if energy > 0 else 0.0
    rho = min(max(rho, 0.0), 0.9)
    variance = n * (n - 1) * (2 * n + 5) / 18.0 * (1.0 + rho) / (1.0 - rho)
    spread = float(scipy_stats.norm.ppf(0.5 + confidence / 2.0)) * math.sqrt(variance)
    count = len(slopes)
    lo_rank, hi_rank = int(math.floor((count - spread) / 2.0)), int(math.ceil((count + spread) / 2.0))
    low = float(slopes[lo_rank]) if lo_rank >= 0 else -math.inf
    high = float(slopes[hi_rank]) if hi_rank < count else math.inf
    return slope, low, high, rho
