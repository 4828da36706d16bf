"""Feeding Locust's own statistics from our histograms, a second at a time.

Firing ``events.request`` once per delivery costs ~16 µs each, which at
thousands of deliveries per second is the harness measuring itself. Instead,
each finished one-second HDR slice is folded into a temporary
:class:`locust.stats.StatsEntry` and merged with ``StatsEntry.extend`` -- the
same call Locust uses to merge worker reports -- so the web UI, ``--csv``
output and master/worker aggregation show deliveries exactly as if every one
had been fired, at a cost per distinct bucket instead of per message.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram
from locust.stats import RequestStats, StatsEntry

from ..core import hdr_fast
from ..core.recording import Recorder

__all__ = ["feed_locust_stats", "LOCUST_ENTRY_NAMES"]

#: metric -> Locust request name; metrics not listed stay out of Locust's table.
LOCUST_ENTRY_NAMES = {
    "delivery": "delivery",
    "connect": "connect",
    "echo_rtt": "echo",
    "ack": "ack",
    "poll_request": "poll",
    "longpoll_request": "longpoll",
}


def _entry_from_slice(stats: RequestStats, name: str, method: str, second: int,
                      histogram: HdrHistogram) -> StatsEntry:
    entry = StatsEntry(stats, name, method)
    count = histogram.get_total_count()
    entry.num_requests = count
    entry.num_reqs_per_sec[second] = count
    entry.last_request_timestamp = second + 0.999
    entry.start_time = float(second)
    total_ms = 0.0
    values_us, counts = hdr_fast.recorded(histogram)
    for value_us, n in zip(values_us.tolist(), counts.tolist()):
        ms = value_us / 1000.0
        total_ms += ms * n
        key = _bucket(ms)
        entry.response_times[key] = entry.response_times.get(key, 0) + n
    entry.total_response_time = total_ms  # type: ignore[assignment]
    entry.min_response_time = histogram.get_min_value() / 1000.0
    entry.max_response_time = histogram.get_max_value() / 1000.0
    return entry


def _bucket(ms: float) -> int:
    # Same rounding as locust.stats.StatsEntry (2 significant digits above 100 ms).
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10000:
        return int(round(ms, -2))
    return int(round(ms, -3))


def feed_locust_stats(environment: Any, mode: str, recorder: Recorder) -> int:
    """Merge every slice in ``recorder`` into Locust's stats; return deliveries fed."""
    stats: RequestStats = environment.stats
    fed = 0
    for (metric, second), histogram in sorted(recorder.slices.items(), key=lambda kv: kv[0][1]):
        name = LOCUST_ENTRY_NAMES.get(metric)
        if name is None or histogram.get_total_count() == 0:
            continue
        temp = _entry_from_slice(stats, name, mode, second, histogram)
        stats.get(name, mode).extend(temp)
        stats.total.extend(temp)
        if metric == "delivery":
            fed += temp.num_requests
    return fed
