"""The search: which point to run next, and the capacity answer it reaches.

A sans-I/O state machine per (mode, rate) (:class:`CapacitySearch`) and one
for the whole sweep (:class:`SweepPlan`); the rules they follow are in the
package's docstring (:mod:`deliverybench.core.sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..slo import format_number
from .judge import PointVerdict, Status
from .spec import DEFAULT_CONFIRM, DEFAULT_PRECISION, SweepSpec, SweepSpecError, SweepStateError

__all__ = [
    "FOUND",
    "BELOW_RANGE",
    "ABOVE_RANGE",
    "HARNESS_LIMITED",
    "PENDING",
    "Point",
    "SearchRecord",
    "CapacityAnswer",
    "CapacitySearch",
    "SweepPlan",
]


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a workload (mode, subscribers, rate) and which repeat of it."""

    mode: str
    subscribers: int
    rate: float
    repeat: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``sweep.json``."""
        return {"mode": self.mode, "subscribers": self.subscribers, "rate": self.rate, "repeat": self.repeat}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["mode"]), int(data["subscribers"]), float(data["rate"]), int(data.get("repeat", 0)))


@dataclass(frozen=True)
class SearchRecord:
    """The evidence: one finished run of a search."""

    subscribers: int
    repeat: int
    status: Status
    headline: str = ""
    reasons: tuple[str, ...] = ()
    drift_judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain form."""
        return {"subscribers": self.subscribers, "repeat": self.repeat, "status": str(self.status),
                "headline": self.headline, "reasons": list(self.reasons), "drift_judged": self.drift_judged}


#: answer statuses
FOUND, BELOW_RANGE, ABOVE_RANGE, HARNESS_LIMITED, PENDING = (
    "found", "below-range", "above-range", "harness-limited", "pending")


@dataclass(frozen=True)
class CapacityAnswer:
    """A search's (or a grid's) answer for one mode at one rate.

    Attributes:
        mode: the mode.
        rate: events/s.
        capacity: the largest N that passed every one of its ``confirm`` runs,
            below any fail and any harness limit; ``None`` if there is none.
        bracket: (last pass, first fail) -- the capacity and the smallest N
            that failed; either may be ``None``.
        status: ``found`` (a pass and a fail bracket it), ``below-range``
            (even the lowest N fails), ``above-range`` (the highest N passes),
            ``harness-limited`` (an INVALID point came before any fail, and the bisection below it
            found none: "at least"),
            ``pending`` (not finished).
        harness_limit: the smallest N whose measurement was INVALID, if any.
        fail_reason: headline of the first fail's failing run.
        limit_reason: headline of the harness-limit point.
        points: every finished run, in the order run.
        notes: anything odd (e.g. a grid N that passed above a fail).
        largest_pass: the largest N whose runs all passed below any fail and
            harness limit, confirmed or not: what a sweep cut short found so far.
        drift_judged: False when a passing run at the capacity (or, cut
            short, at ``largest_pass``) was too short to judge drift.
    """

    mode: str
    rate: float
    capacity: int | None
    bracket: tuple[int | None, int | None]
    status: str
    harness_limit: int | None = None
    fail_reason: str = ""
    limit_reason: str = ""
    points: tuple[SearchRecord, ...] = ()
    notes: tuple[str, ...] = ()
    largest_pass: int | None = None
    drift_judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``sweep.json``."""
        return {"mode": self.mode, "rate": self.rate, "capacity": self.capacity, "bracket": list(self.bracket),
                "status": self.status, "harness_limit": self.harness_limit, "fail_reason": self.fail_reason,
                "limit_reason": self.limit_reason, "notes": list(self.notes), "largest_pass": self.largest_pass,
                "drift_judged": self.drift_judged, "points": [p.to_dict() for p in self.points]}


def _round_sig(value: float, digits: int) -> int:
    if value <= 0:
        return 0
    return int(round(value, digits - 1 - int(math.floor(math.log10(value)))))


def _midpoint(low: int, high: int) -> int:
    """The roundest integer strictly inside ``(low, high)`` within 1/8 of the gap from its middle."""
    middle = (low + high) / 2
    slack = (high - low) / 8
    for digits in range(1, 20):
        candidate = _round_sig(middle, digits)
        if low < candidate < high and abs(candidate - middle) <= slack:
            return candidate
    return (low + high) // 2


def _as_verdict(verdict: PointVerdict | Status | str) -> PointVerdict:
    if isinstance(verdict, PointVerdict):
        return verdict
    try:
        return PointVerdict(Status(str(verdict).upper()))
    except ValueError:
        raise SweepStateError(f"unknown verdict {verdict!r} (PASS, FAIL or INVALID)") from None


class CapacitySearch:
    """The state machine of one (mode, rate): which N to run next, and the answer.

    Build it with :meth:`search` (a range: double, then bisect) or
    :meth:`grid` (run each N once, then confirm). Then alternate
    :meth:`next_point` and :meth:`record` until :meth:`next_point` returns
    ``None``; :meth:`answer` is valid at any time. The state is a function of
    the recorded runs alone, so :meth:`replay` of a prefix of them reaches
    the same state as running them.

    Cost: a target with a clean cliff takes ``log2(hi/lo)`` doubling runs,
    a few bisection runs and ``confirm - 1`` repeats -- 6 to 13 runs for
    ``100:20000`` at the default 10 % and ``confirm=2``. Each failed
    confirmation reopens the bisection below it, so a target whose repeats
    keep failing walks down in precision-sized steps; every N is still run
    at most ``confirm`` times and each bisection splits a gap wider than
    ``precision``, which bounds the runs by about ``confirm × (d + 2(d +
    ln(hi/lo) / ln(1 + 3·precision/8)))`` with ``d = log2(hi/lo) + 1``.
    """

    def __init__(self, *, mode: str, rate: float, lo: int, hi: int, precision: float = DEFAULT_PRECISION,
                 confirm: int = DEFAULT_CONFIRM,
                 grid: Sequence[int] | None = None) -> None:
        """Prefer :meth:`search` and :meth:`grid`.

        Args:
            mode: the mode (carried into the answer).
            rate: events/s (carried into the answer).
            lo: smallest N.
            hi: largest N.
            precision: relative bracket width at which bisection stops (default 0.1).
            confirm: runs the capacity point must pass (default 2).
            grid: the Ns of a grid, or ``None`` to search ``lo..hi``.
        """
        if lo < 1 or hi < lo:
            raise SweepSpecError(f"--subscribers: range {lo}:{hi} must go up from at least 1")
        if not 0 < precision <= 1:
            raise SweepSpecError(f"--precision: {precision!r} must be above 0 and at most 1")
        if confirm < 1:
            raise SweepSpecError(f"--confirm: {confirm!r} must be at least 1")
        self.mode, self.rate, self.lo, self.hi = mode, rate, lo, hi
        self.precision, self.confirm = precision, confirm
        self.grid_values: tuple[int, ...] | None = tuple(sorted(set(grid))) if grid is not None else None
        self._runs: dict[int, list[Status]] = {}
        self._records: list[SearchRecord] = []

    @classmethod
    def search(cls, *, mode: str, rate: float, lo: int, hi: int, precision: float = DEFAULT_PRECISION,
               confirm: int = DEFAULT_CONFIRM) -> CapacitySearch:
        """A range search (double, then bisect) over ``lo..hi``."""
        return cls(mode=mode, rate=rate, lo=lo, hi=hi, precision=precision, confirm=confirm)

    @classmethod
    def grid(cls, values: Sequence[int], *, mode: str, rate: float, confirm: int = DEFAULT_CONFIRM) -> CapacitySearch:
        """A grid: each N in ``values`` once (ascending), then the boundary candidate confirmed."""
        if not values:
            raise SweepSpecError("--subscribers: the grid is empty")
        return cls(mode=mode, rate=rate, lo=min(values), hi=max(values), confirm=confirm, grid=values)

    def replay(self, finished: Iterable[tuple[tuple[int, int], PointVerdict | Status | str]]) -> CapacitySearch:
        """Record already-finished runs (in the order they ran); returns ``self``.

        Raises:
            SweepStateError: a run is not the one this search would have asked for.
        """
        for point, verdict in finished:
            self.record(point, verdict)
        return self

    @property
    def records(self) -> tuple[SearchRecord, ...]:
        """The finished runs, in order."""
        return tuple(self._records)

    # The decision is recomputed from ``_runs`` every time: no hidden phase
    # variable can diverge between a sweep and its resumption.
    def _bounds(self) -> tuple[int | None, int | None, int | None]:
        """(first fail, harness limit, the largest all-pass N below both)."""
        fail = min((n for n, runs in self._runs.items() if Status.FAIL in runs), default=None)
        limit = min((n for n, runs in self._runs.items() if Status.INVALID in runs), default=None)
        ceiling = min((v for v in (fail, limit) if v is not None), default=None)
        best = max((n for n, runs in self._runs.items()
                    if all(r == Status.PASS for r in runs) and (ceiling is None or n < ceiling)), default=None)
        return fail, limit, best

    def next_point(self) -> tuple[int, int] | None:
        """The next run as ``(subscribers, repeat_index)``, or ``None`` when the search is done."""
        if self.grid_values is not None:
            for n in self.grid_values:
                if n not in self._runs:
                    return (n, 0)
        elif not self._runs:
            return (self.lo, 0)
        fail, limit, best = self._bounds()
        if best is None:
            return None
        if self.grid_values is None:
            # An INVALID point says nothing of the target, so the points below it still can: the search
            # bisects toward whichever comes first, a fail or the harness limit. A fail found below the
            # limit is a real answer ("found"); otherwise "at least" rests on the largest pass below it.
            ceiling = min((v for v in (fail, limit) if v is not None), default=None)
            if ceiling is None:
                if best < self.hi:
                    return (min(2 * best, self.hi), 0)
            elif (ceiling - best) / best > self.precision and ceiling - best > 1:
                return (_midpoint(best, ceiling), 0)
        done = len(self._runs[best])
        return (best, done) if done < self.confirm else None

    @property
    def done(self) -> bool:
        """Whether nothing is left to run."""
        return self.next_point() is None

    def record(self, point: tuple[int, int], verdict: PointVerdict | Status | str) -> None:
        """Record the verdict of the run :meth:`next_point` asked for.

        Args:
            point: ``(subscribers, repeat_index)`` exactly as returned by :meth:`next_point`.
            verdict: a :class:`PointVerdict`, or just its status.

        Raises:
            SweepStateError: ``point`` is not the expected next run.
        """
        expected = self.next_point()
        if tuple(point) != expected:
            raise SweepStateError(f"{self.mode} at {format_number(self.rate)} events/s: got a result for "
                                  f"N={point[0]} repeat {point[1]}, but the search "
                                  + ("is done" if expected is None else
                                     f"expects N={expected[0]} repeat {expected[1]}"))
        said = _as_verdict(verdict)
        self._runs.setdefault(int(point[0]), []).append(said.status)
        self._records.append(SearchRecord(int(point[0]), int(point[1]), said.status, said.headline, said.reasons,
                                          said.drift_judged))

    def answer(self) -> CapacityAnswer:
        """The capacity, its bracket, a status and the evidence (valid at any time)."""
        fail, limit, best = self._bounds()
        capacity = best if best is not None and len(self._runs[best]) >= self.confirm else None
        if capacity is None:  # mid-search: the candidate is not confirmed yet; report what is
            confirmed = [n for n, runs in self._runs.items() if len(runs) >= self.confirm
                         and all(r == Status.PASS for r in runs)
                         and all(n < v for v in (fail, limit) if v is not None)]
            capacity = max(confirmed, default=None)
        notes: list[str] = []
        ceiling = min((v for v in (fail, limit) if v is not None), default=None)
        if ceiling is not None:
            above = sorted(n for n, runs in self._runs.items() if n > ceiling and all(r == Status.PASS for r in runs))
            if above:
                notes.append(f"{', '.join(format_number(n) for n in above)} passed above the first "
                             f"{'fail' if ceiling == fail else 'harness limit'} at {format_number(ceiling)}; "
                             "the capacity counts only what holds below it")
        if not self.done:
            status = PENDING
        elif limit is not None and (fail is None or limit < fail):
            status = HARNESS_LIMITED
        elif fail is None:
            status = ABOVE_RANGE
        elif capacity is None:
            status = BELOW_RANGE
        else:
            status = FOUND

        def headline_at(n: int | None, kind: Status) -> str:
            for rec in self._records:
                if rec.subscribers == n and rec.status == kind:
                    return rec.headline or (rec.reasons[0] if rec.reasons else "")
            return ""

        resting_on = capacity if capacity is not None else best
        drift_judged = all(rec.drift_judged for rec in self._records if rec.subscribers == resting_on)
        return CapacityAnswer(mode=self.mode, rate=self.rate, capacity=capacity, bracket=(capacity, fail),
                              status=status, harness_limit=limit, fail_reason=headline_at(fail, Status.FAIL),
                              limit_reason=headline_at(limit, Status.INVALID), points=tuple(self._records),
                              notes=tuple(notes), largest_pass=best, drift_judged=drift_judged)

    def estimated_runs(self) -> int:
        """A rough count of the runs still to come (for progress and ETA), 0 when done."""
        if self.done:
            return 0
        if self.grid_values is not None:
            return sum(1 for n in self.grid_values if n not in self._runs) + self.confirm - 1
        fail, _, best = self._bounds()
        if best is None:  # nothing run yet (a search that is not done has a candidate otherwise)
            doubling = math.ceil(math.log2(self.hi / self.lo)) + 1
            return doubling + math.ceil(math.log2(1 / self.precision)) + self.confirm - 1
        if fail is None:
            doubling = max(0, math.ceil(math.log2(self.hi / best)))
            bisect = math.ceil(math.log2(1 / self.precision))
        else:
            doubling = 0
            gap = (fail - best) / best
            bisect = max(0, math.ceil(math.log2(gap / self.precision))) if gap > self.precision else 0
        return doubling + bisect + max(1, self.confirm - len(self._runs.get(best, [])))


class SweepPlan:
    """The whole sweep: one :class:`CapacitySearch` per (mode, rate), run one after another.

    Order: modes as given, then rates as given; each search finishes before
    the next begins, so a grid's points run mode by mode, rate by rate, N
    ascending.
    """

    def __init__(self, spec: SweepSpec) -> None:
        """Args:
            spec: what to sweep.
        """
        self.spec = spec
        self.searches: dict[tuple[str, float], CapacitySearch] = {}
        for mode in spec.modes:
            for rate in spec.rates:
                if spec.grid is not None:
                    search = CapacitySearch.grid(spec.grid, mode=mode, rate=rate, confirm=spec.confirm)
                else:
                    assert spec.lo is not None and spec.hi is not None
                    search = CapacitySearch.search(mode=mode, rate=rate, lo=spec.lo, hi=spec.hi,
                                                   precision=spec.precision, confirm=spec.confirm)
                self.searches[(mode, rate)] = search
        self._finished: list[tuple[Point, Status]] = []

    @classmethod
    def resume(cls, spec: SweepSpec, finished: Iterable[tuple[Point, PointVerdict | Status | str]]) -> SweepPlan:
        """A plan with ``finished`` (in the order they ran) already recorded.

        Raises:
            SweepStateError: the finished points are not what this spec would have run.
        """
        plan = cls(spec)
        for point, verdict in finished:
            plan.record(point, verdict)
        return plan

    def next_point(self) -> Point | None:
        """The next run, or ``None`` when the sweep is done."""
        for (mode, rate), search in self.searches.items():
            step = search.next_point()
            if step is not None:
                return Point(mode, step[0], rate, step[1])
        return None

    @property
    def done(self) -> bool:
        """Whether nothing is left to run."""
        return self.next_point() is None

    def record(self, point: Point, verdict: PointVerdict | Status | str) -> None:
        """Record the verdict of the run :meth:`next_point` asked for.

        Raises:
            SweepStateError: ``point`` is not the expected next run.
        """
        expected = self.next_point()
        if point != expected:
            raise SweepStateError(f"got a result for {point}, but the sweep expects "
                                  + ("nothing more" if expected is None else str(expected)))
        self.searches[(point.mode, point.rate)].record((point.subscribers, point.repeat), verdict)
        self._finished.append((point, _as_verdict(verdict).status))

    @property
    def finished(self) -> tuple[tuple[Point, Status], ...]:
        """Every recorded run and its status, in order."""
        return tuple(self._finished)

    def answers(self) -> list[CapacityAnswer]:
        """One answer per (mode, rate), in plan order."""
        return [search.answer() for search in self.searches.values()]

    def estimated_remaining(self) -> int:
        """A rough number of runs still to come (for "point k of n" and the ETA)."""
        return sum(search.estimated_runs() for search in self.searches.values())
