"""Vectorised reads of HDR histograms.

The ``hdrhistogram`` package keeps counts in a C array but walks it in
Python for percentiles, means and iteration: ~70 ms per histogram for a mean
or a recorded-values walk. Reports read thousands of per-second slices, and
the harness folds a slice into Locust's stats every second on the same
greenlet hub that times the publisher, so those walks would become latency.
Here the counts array is viewed with numpy and the index -> value tables are
built once per histogram layout. Results match ``hdrh``'s own methods exactly
(tests compare them).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = ["counts_of", "percentiles", "mean", "recorded", "value_tables", "record_many"]


def _layout(h: HdrHistogram) -> tuple[int, int, int, int]:
    return (h.counts_len, h.sub_bucket_half_count_magnitude, h.unit_magnitude, h.sub_bucket_count)


@lru_cache(maxsize=8)
def _tables_for(layout: tuple[int, int, int, int], lowest: int, highest: int, digits: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probe = HdrHistogram(lowest, highest, digits)
    assert _layout(probe) == layout
    low = np.array([probe.get_value_from_index(i) for i in range(probe.counts_len)], dtype=np.int64)
    high = np.array([probe.get_highest_equivalent_value(int(v)) for v in low], dtype=np.int64)
    median = low + ((high - low + 1) >> 1)
    return low, high, median


def value_tables(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per counts index: lowest, highest and median equivalent value."""
    return _tables_for(_layout(h), h.lowest_trackable_value, h.highest_trackable_value,
                       h.significant_figures)


def counts_of(h: HdrHistogram) -> np.ndarray:
    """The counts array as an int64 numpy view (no copy)."""
    return np.frombuffer(h.counts, dtype=np.uint64 if h.word_size == 8 else f"u{h.word_size}").astype(
        np.int64, copy=False)


def percentiles(h: HdrHistogram, pcts: Sequence[float]) -> list[int]:
    """``h.get_value_at_percentile(p)`` for each p, in one pass."""
    total = h.get_total_count()
    if total == 0:
        return [0 for _ in pcts]
    counts = counts_of(h)
    cumulative = np.cumsum(counts)
    low, high, _ = value_tables(h)
    out: list[int] = []
    for p in pcts:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        index = int(np.searchsorted(cumulative, target, side="left"))
        index = min(index, len(counts) - 1)
        out.append(int(high[index]) if p else int(low[index]))
    return out


def mean(h: HdrHistogram) -> float:
    """``h.get_mean_value()`` (uses median-equivalent values, as hdrh does)."""
    total = h.get_total_count()
    if not total:
        return 0.0
    _, _, median = value_tables(h)
    counts = counts_of(h)
    nonzero = np.nonzero(counts)[0]
    # Python integers: exact however large the counts, like hdrh's own sum.
    weighted = sum(int(c) * int(v) for c, v in zip(counts[nonzero].tolist(), median[nonzero].tolist()))
    return float(weighted) / float(total)


def recorded(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(median equivalent values, counts) of the non-empty buckets."""
    counts = counts_of(h)
    nonzero = np.nonzero(counts)[0]
    _, _, median = value_tables(h)
    return median[nonzero], counts[nonzero]


def record_many(h: HdrHistogram, values: np.ndarray | Sequence[int]) -> None:
    """``h.record_value(v)`` for every v at once: the same buckets, ~40x cheaper per value.

    Values must already lie within the histogram's range (the caller clamps
    and counts what it clamped).
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return
    # Bucket arithmetic of HdrHistogram._counts_index_for, vectorised:
    # 64 - clz(v | sub_bucket_mask) is the bit length, which frexp gives exactly below 2**53.
    bits = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (sub_bucket - h.sub_bucket_half_count)
    view = np.frombuffer(h.counts, dtype=np.uint64 if h.word_size == 8 else f"u{h.word_size}")
    if v.size * 8 < h.counts_len:
        # a second's worth of samples touches a few hundred of the tens of thousands of buckets:
        # add to those alone (a pass over every bucket held the event loop for ~1 ms a second)
        touched, counts = np.unique(index, return_counts=True)
        view[touched] += counts.astype(view.dtype)
    else:
        view += np.bincount(index, minlength=h.counts_len)[: h.counts_len].astype(view.dtype)
    h.total_count += int(v.size)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))
