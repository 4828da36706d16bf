"""How far a worker's clocks are from the master's: NTP-style exchanges, filtered by round trip.

Latency is ``receive − due``: ``due`` is the master's wall clock, ``receive``
a worker's. The master stamps ``t1`` and sends a probe; the worker stamps
``t2`` on receipt and ``t3`` as it answers (from its *monotonic* clock, and
its wall clock beside it); the master stamps ``t4`` on the answer. Then

- ``offset = ((t2 − t1) + (t3 − t4)) / 2``: the worker's clock minus the master's,
- ``rtt = (t4 − t1) − (t3 − t2)``: the time the probe spent travelling,

and the true offset lies within ``rtt / 2`` of the estimate whatever the
split between the two directions. Exchanges that waited in a queue have a
long round trip and a worse offset, so of a recent window the one with the
*shortest* round trip is taken, and its half round trip is the uncertainty.

Workers stamp with their monotonic clock and map it onto the master's wall
clock (``master ≈ monotonic − offset``): a worker wall clock stepped or
slewed mid-run (NTP, an operator) moves only the wall offset, reported as
*drift*, never the latencies. Pure: every time is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Exchange", "Estimate", "ClockEstimator", "WorkerClock", "DEFAULT_WINDOW", "master_time_ns",
           "timing_uncertainty_ms", "uncertainty_limit_ms", "UNCERTAINTY_SHARE", "UNCERTAINTY_FLOOR_MS",
           "too_uncertain", "describe", "worker_entry",
           "clock_section", "best"]

#: exchanges an estimate is chosen from (a few a second: the last several seconds)
DEFAULT_WINDOW = 24
#: the most timing uncertainty a run may have: this share of its median latency, and never less than the floor
UNCERTAINTY_SHARE, UNCERTAINTY_FLOOR_MS = 0.1, 1.0
_MS = 1e6


@dataclass(frozen=True)
class Exchange:
    """One probe: master wall ``t1``/``t4``, worker monotonic ``t2``/``t3`` and worker wall ``w2``/``w3`` (ns)."""

    t1: int
    t2: int
    t3: int
    t4: int
    w2: int
    w3: int

    @property
    def rtt_ns(self) -> int:
        """The round trip less the worker's own time between receipt and answer (never below 0)."""
        return max(0, (self.t4 - self.t1) - (self.t3 - self.t2))

    @property
    def offset_ns(self) -> int:
        """Worker monotonic minus master wall, at the middle of the exchange."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) // 2

    @property
    def wall_offset_ns(self) -> int:
        """Worker wall minus master wall (what a worker stamping ``time.time_ns()`` adds to every latency)."""
        return ((self.w2 - self.t1) + (self.w3 - self.t4)) // 2

    @property
    def wall_minus_monotonic_ns(self) -> int:
        """The worker's wall clock minus its monotonic clock: constant unless its wall clock moves."""
        return self.w2 - self.t2


@dataclass(frozen=True)
class Estimate:
    """The best exchange of a window, as an estimate.

    Attributes:
        at_ns: when it was made (master wall, the latest exchange's ``t4``).
        offset_ns: worker monotonic minus master wall.
        wall_offset_ns: worker wall minus master wall.
        uncertainty_ns: half the best round trip: the offset is within this of the truth.
        rtt_ns: that best round trip.
        wall_minus_monotonic_ns: the worker's wall minus monotonic, read in the latest exchange.
        samples: exchanges in the window.
    """

    at_ns: int
    offset_ns: int
    wall_offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    wall_minus_monotonic_ns: int
    samples: int


def best(exchanges: Iterable[Exchange]) -> Exchange | None:
    """The exchange with the shortest round trip (the earliest of equals), or None."""
    return min(exchanges, key=lambda e: e.rtt_ns, default=None)


class ClockEstimator:
    """One worker's exchanges, turned into an estimate after each (kept as the run's history).

    Args:
        window: how many of the latest exchanges an estimate is chosen from.
    """

    def __init__(self, *, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window: deque[Exchange] = deque(maxlen=window)
        self.history: list[Estimate] = []

    def add(self, exchange: Exchange) -> Estimate | None:
        """Take one exchange; the estimate it gives (None for an exchange that ran backwards in time)."""
        if exchange.t4 < exchange.t1 or exchange.t3 < exchange.t2:
            return None  # a stamp out of order: a wall clock stepped back between t1 and t4
        self._window.append(exchange)
        chosen = best(self._window)
        assert chosen is not None
        estimate = Estimate(at_ns=exchange.t4, offset_ns=chosen.offset_ns, wall_offset_ns=chosen.wall_offset_ns,
                            uncertainty_ns=(chosen.rtt_ns + 1) // 2, rtt_ns=chosen.rtt_ns,
                            wall_minus_monotonic_ns=exchange.wall_minus_monotonic_ns, samples=len(self._window))
        self.history.append(estimate)
        return estimate

    @property
    def latest(self) -> Estimate | None:
        return self.history[-1] if self.history else None

    def forget_before(self, at_ns: int) -> None:
        """A new test: drop the history before ``at_ns`` but the last estimate (still the one in force)."""
        self.history = self.in_force(at_ns)

    def in_force(self, since_ns: int | None = None) -> list[Estimate]:
        """The estimates in force from ``since_ns`` on: the one made last before it, and every later one."""
        if since_ns is None:
            return list(self.history)
        before = [e for e in self.history if e.at_ns < since_ns]
        return before[-1:] + [e for e in self.history if e.at_ns >= since_ns]

    def summary(self, *, corrected: bool, since_ns: int | None = None) -> WorkerClock | None:
        """What the history from ``since_ns`` on (the stream) says of this worker's clock; None before any."""
        estimates = self.in_force(since_ns)
        if not estimates:
            return None
        first, last = estimates[0], estimates[-1]
        drift = last.wall_minus_monotonic_ns - first.wall_minus_monotonic_ns
        return WorkerClock(offset_ms=first.wall_offset_ns / _MS,
                           uncertainty_ms=max(e.uncertainty_ns for e in estimates) / _MS,
                           drift_ms=drift / _MS, rtt_ms=min(e.rtt_ns for e in estimates) / _MS,
                           exchanges=len(self.history), corrected=corrected)


@dataclass(frozen=True)
class WorkerClock:
    """One worker's clock over a run, in milliseconds.

    Attributes:
        offset_ms: its wall clock minus the master's, as the run began.
        uncertainty_ms: the worst uncertainty of an estimate in force during the run.
        drift_ms: how far its wall clock moved against its monotonic clock over the run (a step, a slew).
        rtt_ms: the best round trip seen.
        exchanges: how many estimates were made.
        corrected: whether its receive stamps were mapped onto the master's clock.
    """

    offset_ms: float
    uncertainty_ms: float
    drift_ms: float
    rtt_ms: float
    exchanges: int
    corrected: bool

    @property
    def timing_error_ms(self) -> float:
        """How far its receive stamps may be from the master's clock.

        Corrected, the estimate's uncertainty; not corrected, its wall clock's
        offset, and its drift, on top of that.
        """
        if self.corrected:
            return self.uncertainty_ms
        return abs(self.offset_ms) + abs(self.drift_ms) + self.uncertainty_ms


def master_time_ns(monotonic_ns: int, offset_ns: int) -> int:
    """A worker's monotonic reading on the master's wall clock, given the estimate's ``offset_ns``."""
    return monotonic_ns - offset_ns


def timing_uncertainty_ms(workers: Sequence[WorkerClock]) -> float:
    """The run's timing uncertainty: the worst worker's (0 when every stamp was taken on the master's clock)."""
    return max((w.timing_error_ms for w in workers), default=0.0)


def uncertainty_limit_ms(p50_ms: float | None) -> float:
    """The most timing uncertainty a run may have: :data:`UNCERTAINTY_SHARE` of its median latency, and never
    less than :data:`UNCERTAINTY_FLOOR_MS`."""
    return max(UNCERTAINTY_SHARE * (p50_ms or 0.0), UNCERTAINTY_FLOOR_MS)


def too_uncertain(uncertainty_ms: float, p50_ms: float | None) -> bool:
    """Whether the clocks, not the target, could account for a tenth of the median latency."""
    return uncertainty_ms > uncertainty_limit_ms(p50_ms)


def describe(workers: Sequence[WorkerClock], *, corrected: bool) -> str:
    """The results' ``clock`` line: what was done about the clocks of this run."""
    if not workers:
        return "one process: receive and due times read the same wall clock (time.time_ns)"
    uncertainty = timing_uncertainty_ms(workers)
    worst = max(abs(w.offset_ms) for w in workers)
    if corrected:
        return (f"{len(workers)} worker(s): receive times mapped onto the master's wall clock through each "
                f"worker's monotonic clock (NTP-style exchanges over Locust's messages); largest wall-clock "
                f"offset {worst:.3f} ms, timing uncertainty ±{uncertainty:.3f} ms")
    return (f"{len(workers)} worker(s): receive times read each worker's own wall clock, not corrected "
            f"(--no-clock-correction); largest measured offset {worst:.3f} ms, timing uncertainty "
            f"±{uncertainty:.3f} ms")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3) + 0.0  # + 0.0: never a "-0.0" in the file


def worker_entry(*, node: str, host: str, address: str, process: str, sessions: int, clock: WorkerClock | None,
                 deliveries: int, p50_ms: float | None, p99_ms: float | None) -> dict[str, Any]:
    """One worker's row of the results' ``clock.workers`` (JSON-ready).

    Its median is kept both ways for the record: as received on the master's
    clock (``p50_corrected_ms``) and as its own wall clock would have had it
    (``p50_raw_ms``); whichever was not recorded is the recorded one shifted
    by the worker's wall-clock offset.
    """
    entry: dict[str, Any] = {"node": node, "host": host, "address": address, "process": process,
                             "sessions": sessions, "deliveries": deliveries, "p50_ms": _ms(p50_ms),
                             "p99_ms": _ms(p99_ms)}
    if clock is None:
        return entry
    raw = corrected = p50_ms
    if p50_ms is not None:
        if clock.corrected:
            raw = p50_ms + clock.offset_ms
        else:
            corrected = p50_ms - clock.offset_ms
    entry.update(offset_ms=_ms(clock.offset_ms), uncertainty_ms=_ms(clock.uncertainty_ms),
                 drift_ms=_ms(clock.drift_ms), rtt_ms=_ms(clock.rtt_ms), exchanges=clock.exchanges,
                 corrected=clock.corrected, p50_raw_ms=_ms(raw), p50_corrected_ms=_ms(corrected))
    return entry


def clock_section(entries: Sequence[Mapping[str, Any]], clocks: Sequence[WorkerClock], *,
                  corrected: bool) -> dict[str, Any]:
    """The mode result's ``clock``: what was done, the run's timing uncertainty, and every worker."""
    uncertainty = timing_uncertainty_ms(clocks)
    return {"description": describe(clocks, corrected=corrected), "corrected": bool(clocks) and corrected,
            "uncertainty_ms": round(uncertainty, 3), "workers": [dict(e) for e in entries]}
