"""deliverybench.core.stats: the tests and intervals the gate and sweeps decide with, against first principles."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from deliverybench.core.stats import (
    hodges_lehmann,
    holm_adjust,
    median,
    pooled_sd,
    quantile_interval,
    rank_test_floor,
    repeats_for_alpha,
    u_null_cdf,
)


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (1, 4), (2, 3), (3, 3), (4, 5), (5, 5)])
def test_u_null_distribution_is_exact(n1: int, n2: int) -> None:
    """Against brute force: U = pairs (x, y) with y above x, over every split of the ranks."""
    counts: dict[int, int] = {}
    for positions in itertools.combinations(range(n1 + n2), n1):
        xs = set(positions)
        u = sum(1 for i in xs for j in range(n1 + n2) if j not in xs and j > i)
        counts[u] = counts.get(u, 0) + 1
    total = math.comb(n1 + n2, n1)
    running, expected = 0, []
    for u in range(n1 * n2 + 1):
        running += counts.get(u, 0)
        expected.append(running / total)
    assert u_null_cdf(n1, n2) == pytest.approx(expected, abs=1e-12)


def test_rank_test_floor_and_repeats() -> None:
    assert rank_test_floor(3, 3) == pytest.approx(0.1)
    assert rank_test_floor(2, 2) == pytest.approx(1 / 3)
    assert rank_test_floor(4, 4) == pytest.approx(2 / 70)
    assert rank_test_floor(5, 5) == pytest.approx(2 / 252)
    assert rank_test_floor(1, 1) == 1.0
    assert repeats_for_alpha(0.05) == 4
    assert repeats_for_alpha(0.025) == 5  # Holm over two gated metrics
    assert repeats_for_alpha(0.05 / 9) == 6
    assert repeats_for_alpha(1e-30) is None


def test_hodges_lehmann_interval_ranks() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [v + 10.0 for v in x]
    shift, (lo, hi), coverage = hodges_lehmann(x, y, alpha=0.05)
    diffs = sorted(b - a for a in x for b in y)
    assert shift == 10.0
    # 5 vs 5: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252, so k = 3
    assert (lo, hi) == (diffs[2], diffs[22]) == (7.0, 13.0)
    assert coverage == pytest.approx(1 - 2 * 4 / 252)
    # 3 vs 3 cannot reach 95 %: no interval at all
    assert hodges_lehmann([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])[1] == (-math.inf, math.inf)


def test_holm_adjust() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5]) == [0.5]
    assert holm_adjust([0.2, 0.9, 0.01, 0.02]) == pytest.approx([0.4, 0.9, 0.04, 0.06])
    assert holm_adjust([]) == []


def test_quantile_interval_covers_as_promised() -> None:
    n, q, alpha = 2000, 0.99, 0.05
    lo, hi = quantile_interval(n, q, alpha)
    binom = stats.binom(n, q)
    coverage = binom.cdf(hi - 1) - binom.cdf(lo - 1)  # P(l <= B < u)
    assert coverage >= 1 - alpha
    assert lo < n * q < hi
    # each tail holds at most alpha/2, and one rank tighter on either side would hold more
    assert binom.cdf(lo - 1) <= alpha / 2 < binom.cdf(lo)
    assert binom.sf(hi - 1) <= alpha / 2 < binom.sf(hi - 2)
    assert quantile_interval(50, 0.999, 0.05)[1] == 51  # no upper order statistic qualifies


@pytest.mark.parametrize("values", [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0], [0.1, 0.2, 0.7]])
def test_median_is_the_textbook_median(values: list[float]) -> None:
    assert median(values) == statistics.median(values)
    assert median(np.array(values)) == statistics.median(values)


def test_pooled_sd_is_the_root_mean_variance_of_the_samples_that_have_one() -> None:
    assert pooled_sd([1.0, 3.0], [2.0, 2.0]) == pytest.approx(math.sqrt((2.0 + 0.0) / 2))
    assert pooled_sd([1.0, 3.0], [5.0]) == pytest.approx(math.sqrt(2.0))
    assert pooled_sd([1.0], [2.0]) is None
