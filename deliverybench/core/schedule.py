"""Open-model schedules: when each event is *due*, decided before the run.

The schedule is fixed up front and never re-based. A publisher that falls
behind publishes late, and because latency is counted from the due time the
lag shows up in every delivery instead of silently slowing the stream down
(the coordinated-omission trap that wrk2 describes).

Offsets are integer nanoseconds from the start of the stream; the adapter
adds its own ``start_ns``. Every schedule is bounded by ``duration_s`` and
optionally by ``max_events``.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Schedule", "ScheduleKind", "SCHEDULE_KINDS", "offsets_ns", "due_times_ns", "quiet_moment_ns"]

ScheduleKind = Literal["constant", "burst", "poisson", "ramp"]
SCHEDULE_KINDS: tuple[str, ...] = ("constant", "burst", "poisson", "ramp")
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Schedule:
    """How events are spread over time.

    Args:
        kind: ``constant`` (evenly spaced at ``rate``), ``burst`` (``burst_size``
            events all due at once every ``burst_interval_s``), ``poisson``
            (exponential gaps with mean ``1/rate``, seeded) or ``ramp``
            (rate rising linearly from ``rate`` to ``rate_end``).
        rate: Events per second (the start rate for ``ramp``).
        duration_s: No event is due at or after this offset.
        max_events: Optional cap on the number of events.
    """

    kind: ScheduleKind = "constant"
    rate: float = 5.0
    duration_s: float = 20.0
    burst_size: int = 1
    burst_interval_s: float = 1.0
    rate_end: float | None = None
    seed: int = 0
    max_events: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; use one of {', '.join(SCHEDULE_KINDS)}")
        if self.duration_s <= 0:
            raise ValueError("schedule duration must be positive")
        if self.kind == "burst":
            if self.burst_size < 1 or self.burst_interval_s <= 0:
                raise ValueError("bursts need burst_size >= 1 and burst_interval_s > 0")
        elif self.rate <= 0:
            raise ValueError("schedule rate must be positive")
        if self.kind == "ramp" and (self.rate_end is None or self.rate_end <= 0):
            raise ValueError("a ramp needs a positive rate_end")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError("max_events cannot be negative")

    @property
    def expected_count(self) -> int:
        """How many events the schedule will produce (exact, not an estimate)."""
        return sum(1 for _ in offsets_ns(self))


def _constant(rate: float, end: int) -> Iterator[int]:
    k = 0
    while True:
        offset = round(k * _NS / rate)
        if offset >= end:
            return
        yield offset
        k += 1


def _burst(size: int, interval_s: float, end: int) -> Iterator[int]:
    k = 0
    while True:
        offset = round(k * interval_s * _NS)
        if offset >= end:
            return
        for _ in range(size):
            yield offset
        k += 1


def _poisson(rate: float, seed: int, end: int) -> Iterator[int]:
    rng = random.Random(seed)
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        offset = round(t * _NS)
        if offset >= end:
            return
        yield offset


def _ramp(r0: float, r1: float, duration_s: float, end: int) -> Iterator[int]:
    # N(t) = r0*t + (r1-r0)*t^2/(2D); event k is due where N(t) = k.
    slope = (r1 - r0) / duration_s
    k = 0
    while True:
        if abs(slope) < 1e-12:
            t = k / r0
        else:
            t = (-r0 + math.sqrt(max(r0 * r0 + 2 * slope * k, 0.0))) / slope
        offset = round(t * _NS)
        if offset >= end or (slope < 0 and r0 * r0 + 2 * slope * k < 0):
            return
        yield offset
        k += 1


def offsets_ns(schedule: Schedule) -> Iterator[int]:
    """Yield each event's due offset from the start, non-decreasing."""
    end = round(schedule.duration_s * _NS)
    if schedule.kind == "constant":
        source = _constant(schedule.rate, end)
    elif schedule.kind == "burst":
        source = _burst(schedule.burst_size, schedule.burst_interval_s, end)
    elif schedule.kind == "poisson":
        source = _poisson(schedule.rate, schedule.seed, end)
    else:
        assert schedule.rate_end is not None
        source = _ramp(schedule.rate, schedule.rate_end, schedule.duration_s, end)
    for count, offset in enumerate(source):
        if schedule.max_events is not None and count >= schedule.max_events:
            return
        yield offset


def due_times_ns(schedule: Schedule, start_ns: int) -> list[int]:
    """Absolute due times for a stream starting at ``start_ns``."""
    return [start_ns + offset for offset in offsets_ns(schedule)]


def quiet_moment_ns(due: Sequence[int], after_ns: int, *, min_gap_ns: int, look_ahead: int = 64) -> int | None:
    """The middle of the first gap of at least ``min_gap_ns`` between due times, at or after ``after_ns``.

    Why: a harness process does its once-a-second book-keeping (handing
    over what was measured, sampling resources) in a few milliseconds that
    hold up the event loop. Done while an event is due or its deliveries
    are arriving, that pause lands in the publisher's lag and in the
    measured latency of every delivery of that event -- at low rates one
    event is several per cent of a run and moves its p99. Done in the
    middle of a gap it touches nothing.

    ``due`` is sorted. Returns ``after_ns`` itself when it already lies in
    the middle half of a wide gap, ``None`` when the next ``look_ahead``
    gaps are all narrower (a dense stream: the pause then delays a few
    events of many and the caller should not wait) or the stream is over.
    """
    if not due or after_ns >= due[-1]:
        return None
    k = bisect.bisect_right(due, after_ns)  # due[k-1] <= after_ns < due[k]
    if k == 0:
        return None  # before the stream: nothing to avoid yet
    for i in range(k, min(len(due), k + look_ahead)):
        lo, hi = due[i - 1], due[i]
        gap = hi - lo
        if gap < min_gap_ns:
            continue
        if i == k and lo + gap // 4 <= after_ns <= hi - gap // 4:
            return after_ns
        middle = lo + gap // 2
        if middle >= after_ns:
            return middle
    return None
