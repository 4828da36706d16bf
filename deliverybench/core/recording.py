"""Recording latencies into HDR histograms, sliced per second.

Every sample goes into the histogram for its (metric, second) pair, where the
second is the one in which the sample was *taken* (e.g. when the delivery was
received). Totals are the sum of the slices, so one structure gives both the
whole-run percentiles and the per-second series, and two recorders from two
processes merge exactly: HDR histograms are additive.

Values arrive in nanoseconds and are stored in microseconds, from 1 µs to one
hour with three significant digits. Anything below the range is stored as 0
and counted as ``negative`` (a clock step or skew); anything above is stored
as the maximum and counted as ``clamped``. Nothing is dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

from . import hdr_fast

__all__ = [
    "LOWEST_US",
    "HIGHEST_US",
    "SIGNIFICANT_FIGURES",
    "METRICS",
    "new_histogram",
    "encode_histogram",
    "decode_histogram",
    "summarize",
    "Recorder",
]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
NS_PER_S = 1_000_000_000

#: Metric names and what they time. Adapters may add their own.
METRICS: Mapping[str, str] = {
    "delivery": "receive - due: what a subscriber experiences",
    "service": "receive - sent: the target's part alone",
    "first_attempt": "receive - due, callback deliveries that succeeded on the first attempt",
    "connect": "time to open a subscription (WebSocket handshake, callback registration)",
    "echo_rtt": "client -> server -> client round trip on an open session",
    "ack": "acknowledgement - due, for webhook bursts",
    "fanout": "due -> last expected subscriber has the event",
    "poll_request": "duration of one poll request",
    "longpoll_request": "one long-poll request held: written -> first byte of its answer",
    "publish_lag": "publisher: request written - due (includes waiting for a free connection: back-pressure)",
    "schedule_lag": "publisher: event handed to the connection pool - due (the harness's own lateness)",
}


def new_histogram() -> HdrHistogram:
    """A histogram with the project-wide range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def encode_histogram(histogram: HdrHistogram) -> str:
    """Compressed, base64 HdrHistogram V2 encoding (readable by other HDR libraries)."""
    return str(histogram.encode().decode("ascii"))


def decode_histogram(encoded: str) -> HdrHistogram:
    """Inverse of :func:`encode_histogram`."""
    return HdrHistogram.decode(encoded.encode("ascii"))


_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}


def summarize(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """Count and percentiles in milliseconds; ``None`` where nothing was recorded."""
    count = histogram.get_total_count()
    out: dict[str, float | int | None] = {"count": count}
    if count == 0:
        out.update({k: None for k in [*_PERCENTILES, "min", "max", "mean"]})
        return out
    values = hdr_fast.percentiles(histogram, list(_PERCENTILES.values()))
    for name, value in zip(_PERCENTILES, values):
        out[name] = value / 1000.0
    out["min"] = histogram.get_min_value() / 1000.0
    out["max"] = histogram.get_max_value() / 1000.0
    out["mean"] = round(hdr_fast.mean(histogram) / 1000.0, 6)
    return out


class Recorder:
    """Histograms keyed by (metric, second), plus range-violation counters."""

    __slots__ = ("slices", "negative", "clamped")

    def __init__(self) -> None:
        self.slices: dict[tuple[str, int], HdrHistogram] = {}
        self.negative: Counter[str] = Counter()
        self.clamped: Counter[str] = Counter()

    def record(self, metric: str, value_ns: int, at_ns: int, count: int = 1) -> None:
        """Record one sample of ``value_ns`` taken at wall-clock ``at_ns``."""
        key = (metric, at_ns // NS_PER_S)
        histogram = self.slices.get(key)
        if histogram is None:
            histogram = self.slices[key] = new_histogram()
        value_us = value_ns // 1000
        if value_us < 0:
            self.negative[metric] += count
            value_us = 0
        elif value_us > HIGHEST_US:
            self.clamped[metric] += count
            value_us = HIGHEST_US
        histogram.record_value(value_us, count)

    def record_many_us(self, metric: str, second: int, values_us: Sequence[int]) -> None:
        """Record many microsecond samples taken in one ``second`` at once.

        The hot paths buffer plain integers and hand them over here once a
        second: one vectorised pass instead of a Python call per sample.
        """
        if len(values_us) == 0:
            return
        values = np.asarray(values_us, dtype=np.int64)
        negative = int(np.count_nonzero(values < 0))
        clamped = int(np.count_nonzero(values > HIGHEST_US))
        if negative or clamped:
            self.negative[metric] += negative
            self.clamped[metric] += clamped
            values = np.clip(values, 0, HIGHEST_US)
        key = (metric, second)
        histogram = self.slices.get(key)
        if histogram is None:
            histogram = self.slices[key] = new_histogram()
        hdr_fast.record_many(histogram, values)

    def __bool__(self) -> bool:
        return bool(self.slices) or bool(self.negative) or bool(self.clamped)

    def take(self, before_second: int | None = None) -> Recorder:
        """Move out the slices older than ``before_second`` (all if ``None``).

        The adapter calls this once a second so finished slices can travel to
        whoever aggregates, while the current second keeps filling.
        """
        taken = Recorder()
        for key in list(self.slices):
            if before_second is None or key[1] < before_second:
                taken.slices[key] = self.slices.pop(key)
        taken.negative, self.negative = self.negative, Counter()
        taken.clamped, self.clamped = self.clamped, Counter()
        return taken

    def merge(self, other: Recorder) -> None:
        """Add ``other`` into this recorder; exact because HDR counts add."""
        for key, histogram in other.slices.items():
            mine = self.slices.get(key)
            if mine is None:
                self.slices[key] = mine = new_histogram()
            mine.add(histogram)
        self.negative.update(other.negative)
        self.clamped.update(other.clamped)

    def metrics(self) -> list[str]:
        return sorted({metric for metric, _ in self.slices})

    def seconds(self, metric: str) -> list[int]:
        return sorted(sec for m, sec in self.slices if m == metric)

    def per_second(self, metric: str) -> Iterator[tuple[int, HdrHistogram]]:
        for sec in self.seconds(metric):
            yield sec, self.slices[(metric, sec)]

    def total(self, metric: str) -> HdrHistogram:
        """All slices of ``metric`` added together."""
        total = new_histogram()
        for _, histogram in self.per_second(metric):
            total.add(histogram)
        return total

    def count(self, metric: str) -> int:
        return sum(h.get_total_count() for _, h in self.per_second(metric))

    def encode(self) -> dict[str, object]:
        """JSON-ready form: ``{"slices": {metric: {second: hdr}}, ...}``."""
        slices: dict[str, dict[str, str]] = {}
        for (metric, sec), histogram in sorted(self.slices.items()):
            slices.setdefault(metric, {})[str(sec)] = encode_histogram(histogram)
        return {"slices": slices, "negative": dict(self.negative), "clamped": dict(self.clamped)}

    @classmethod
    def decode(cls, data: Mapping[str, object]) -> Recorder:
        recorder = cls()
        slices = data.get("slices", {})
        assert isinstance(slices, Mapping)
        for metric, by_second in slices.items():
            for sec, encoded in by_second.items():
                recorder.slices[(metric, int(sec))] = decode_histogram(encoded)
        recorder.negative.update(_counts(data.get("negative")))
        recorder.clamped.update(_counts(data.get("clamped")))
        return recorder

    @classmethod
    def merged(cls, recorders: Iterable[Recorder]) -> Recorder:
        out = cls()
        for recorder in recorders:
            out.merge(recorder)
        return out


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items()}
