"""deliverybench.core.hdr_fast must agree exactly with hdrh's own (slow) methods."""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from deliverybench.core import hdr_fast
from deliverybench.core.recording import HIGHEST_US, decode_histogram, encode_histogram, new_histogram

PERCENTILES = [0, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 99.999, 100, 150]


def fill(values: Callable[[random.Random], int], n: int, seed: int, with_counts: bool = False) -> HdrHistogram:
    rng = random.Random(seed)
    h = new_histogram()
    for _ in range(n):
        h.record_value(values(rng), rng.randint(1, 50) if with_counts else 1)
    return h


DISTRIBUTIONS: dict[str, Callable[[], HdrHistogram]] = {
    "uniform_small": lambda: fill(lambda r: r.randint(0, 2047), 5000, 1),
    "lognormal": lambda: fill(lambda r: min(int(r.lognormvariate(8, 2)), HIGHEST_US), 20000, 2),
    "bimodal": lambda: fill(lambda r: r.choice([r.randint(500, 900), r.randint(40_000, 90_000)]), 8000, 3),
    "exponential_weighted": lambda: fill(lambda r: int(r.expovariate(1 / 5000)) + 1, 3000, 4, with_counts=True),
    "full_range": lambda: fill(lambda r: r.choice([0, 1, HIGHEST_US, r.randint(1, HIGHEST_US)]), 2000, 5),
    "single_value": lambda: fill(lambda r: 123_456, 10, 6),
    "one_sample": lambda: fill(lambda r: 77, 1, 7),
}


def median_equivalent(h: HdrHistogram, value: int) -> int:
    low = h.get_lowest_equivalent_value(value)
    high = h.get_highest_equivalent_value(value)
    return low + ((high - low + 1) >> 1)


@pytest.fixture(scope="module", params=sorted(DISTRIBUTIONS))
def histogram(request: pytest.FixtureRequest) -> HdrHistogram:
    return DISTRIBUTIONS[request.param]()


def test_percentiles_match_hdrh(histogram: HdrHistogram) -> None:
    expected = [histogram.get_value_at_percentile(p) for p in PERCENTILES]
    assert hdr_fast.percentiles(histogram, PERCENTILES) == expected
    assert all(isinstance(v, int) for v in hdr_fast.percentiles(histogram, PERCENTILES))


def test_p0_and_p100_are_min_and_max(histogram: HdrHistogram) -> None:
    p0, p100 = hdr_fast.percentiles(histogram, [0, 100])
    assert p0 == histogram.get_min_value()
    assert p100 == histogram.get_max_value()


def test_mean_matches_hdrh(histogram: HdrHistogram) -> None:
    assert hdr_fast.mean(histogram) == histogram.get_mean_value()


def test_recorded_matches_hdrh_iterator(histogram: HdrHistogram) -> None:
    values, counts = hdr_fast.recorded(histogram)
    items = [(median_equivalent(histogram, it.value_iterated_to), it.count_at_value_iterated_to)
             for it in histogram.get_recorded_iterator()]
    assert list(zip(values.tolist(), counts.tolist())) == items
    assert int(counts.sum()) == histogram.get_total_count()


def test_counts_of_matches_counts_array(histogram: HdrHistogram) -> None:
    counts = hdr_fast.counts_of(histogram)
    assert counts.dtype == np.int64
    assert len(counts) == histogram.counts_len
    assert int(counts.sum()) == histogram.get_total_count()
    for index in np.nonzero(counts)[0][:50]:
        assert counts[index] == histogram.get_count_at_index(int(index))


def test_empty_histogram() -> None:
    h = new_histogram()
    assert hdr_fast.percentiles(h, PERCENTILES) == [h.get_value_at_percentile(p) for p in PERCENTILES]
    assert hdr_fast.percentiles(h, [50, 99]) == [0, 0]
    assert hdr_fast.mean(h) == h.get_mean_value() == 0.0
    values, counts = hdr_fast.recorded(h)
    assert len(values) == len(counts) == 0


def test_known_values() -> None:
    h = new_histogram()
    for v in (1, 2, 3, 4):
        h.record_value(v, 25)
    # hdrh rounds the target count: 25.4 % of 100 is the 25th sample, 25.5 % the 26th.
    pcts = [0, 25, 25.4, 25.5, 50, 51, 75, 76, 100]
    assert hdr_fast.percentiles(h, pcts) == [1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert hdr_fast.percentiles(h, pcts) == [h.get_value_at_percentile(p) for p in pcts]
    assert hdr_fast.mean(h) == 2.5
    values, counts = hdr_fast.recorded(h)
    assert values.tolist() == [1, 2, 3, 4] and counts.tolist() == [25] * 4


def test_decoded_and_merged_histograms() -> None:
    a = DISTRIBUTIONS["lognormal"]()
    b = DISTRIBUTIONS["bimodal"]()
    decoded = decode_histogram(encode_histogram(a))
    assert hdr_fast.percentiles(decoded, PERCENTILES) == [a.get_value_at_percentile(p) for p in PERCENTILES]
    merged = new_histogram()
    merged.add(decoded)
    merged.add(b)
    assert hdr_fast.percentiles(merged, PERCENTILES) == [merged.get_value_at_percentile(p) for p in PERCENTILES]
    assert hdr_fast.mean(merged) == merged.get_mean_value()


@pytest.mark.parametrize("word_size", [2, 4])
def test_other_word_sizes_and_layouts(word_size: int) -> None:
    h = HdrHistogram(1, 60_000_000, 2, word_size=word_size)
    rng = random.Random(word_size)
    for _ in range(3000):
        h.record_value(rng.randint(1, 60_000_000))
    assert hdr_fast.percentiles(h, PERCENTILES) == [h.get_value_at_percentile(p) for p in PERCENTILES]
    assert hdr_fast.mean(h) == h.get_mean_value()


def test_value_tables_match_hdrh_per_index() -> None:
    h = new_histogram()
    low, high, median = hdr_fast.value_tables(h)
    assert len(low) == len(high) == len(median) == h.counts_len
    for index in [0, 1, 2047, 2048, 5000, 12_345, h.counts_len - 1]:
        value = h.get_value_from_index(index)
        assert low[index] == value
        assert high[index] == h.get_highest_equivalent_value(value)
        assert median[index] == median_equivalent(h, value)
    assert hdr_fast.value_tables(new_histogram())[0] is low  # built once per layout


def test_realistic_heavy_counts_mean_is_exact() -> None:
    # 10 million deliveries spread over seconds to minutes: still exactly hdrh's mean.
    rng = random.Random(11)
    h = new_histogram()
    for _ in range(200):
        h.record_value(rng.randint(1000, 300_000_000), 50_000)
    assert h.get_total_count() == 10_000_000
    assert hdr_fast.mean(h) == h.get_mean_value()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_record_many_matches_record_value_bucket_for_bucket(seed: int) -> None:
    import random

    from deliverybench.core.recording import HIGHEST_US, Recorder

    rng = random.Random(seed)
    values = [int(rng.lognormvariate(2 + seed * 2, 2.5)) for _ in range(5000)]
    values += [0, 1, 2047, 2048, 4095, 4096, HIGHEST_US, HIGHEST_US + 1, -7]
    one_by_one, at_once = Recorder(), Recorder()
    for v in values:
        one_by_one.record("m", v * 1000, 9 * 10**9)
    at_once.record_many_us("m", 9, values)
    a, b = one_by_one.slices[("m", 9)], at_once.slices[("m", 9)]
    assert list(a.counts) == list(b.counts)
    assert (a.get_total_count(), a.min_value, a.max_value) == (b.get_total_count(), b.min_value, b.max_value)
    assert a.encode() == b.encode()
    assert one_by_one.negative == at_once.negative == {"m": 1}
    assert one_by_one.clamped == at_once.clamped == {"m": 1}
