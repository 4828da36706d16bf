"""Capacity sweeps: which points to run, what each one says, and the answer.

The planner's question is "how many subscribers can one node hold at
p99 ≤ 50 ms?", per delivery mode. A run measures one point; this module is
everything between the points -- a sans-I/O state machine in the spirit of
``websockets.protocol``: the runner asks :meth:`SweepPlan.next_point` what to
run, runs it as an ordinary benchmark run, judges it with
:func:`judge_point` and hands the verdict back with :meth:`SweepPlan.record`.
Nothing here reads a clock, a file or a socket, so a sweep cut short is
resumed by replaying its finished points (:func:`finished_points` of the
``sweep.json`` index) into a fresh plan, which then reaches exactly the
state, the remaining points and the answer it would have reached unbroken.

The rules, and why:

* **Search.** Per (mode, rate): start at the low end, double N until a point
  fails (or the high end is reached), then bisect between the last pass and
  the first fail until ``(fail - pass) / pass <= precision``. Bisection
  points are rounded to the roundest number near the middle (2,400 rather
  than 2,437) so reports read well; each step still shrinks the gap to at
  most 5/8 of itself.
* **Confirmation.** A fail is final after one run (one miss is enough to
  deny a capacity). A pass is tentative until it has passed ``confirm``
  runs; only the boundary candidate -- the largest pass below the first fail
  -- is confirmed, so far-below-capacity points are run once. If a
  confirming repeat fails, that N becomes the first fail and the search goes
  on below it. The capacity is the largest N that passed every repeat.
* **INVALID** points (the harness, not the target, could not keep up) are
  never a pass or a fail: nothing at or above them is explored, the largest
  pass below is confirmed and the answer is "at least N (harness limit)".
* **Grids** run every requested N once (the heat map needs them all) and
  then confirm the boundary candidate the same way.
* **Drift** (:func:`detect_drift`), **publisher lag**, **early stop**
  (:func:`clearly_failed`), the **knee** (:func:`knee`) and the **USL fit**
  (:func:`usl_fit`) are documented where they are defined. Knee and fit are
  information only: the capacity answer is always the SLO bracket.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence, TypeGuard

import numpy as np
from scipy import optimize, stats

from .metrics import metric_value, runs_of
from .status import schedule_lag_p99
from .slo import (
    MODES,
    SloClause,
    SloError,
    check_mode,
    describe,
    format_number,
    latency_bound,
    limits_loss,
    parse_slo,
)

__all__ = [
    "SWEEP_VERSION",
    "SweepSpecError",
    "SweepStateError",
    "SweepIndexError",
    "Status",
    "SweepSpec",
    "Requirement",
    "Subscribers",
    "parse_subscribers",
    "parse_rates",
    "parse_modes",
    "parse_precision",
    "parse_confirm",
    "parse_require",
    "parse_sweep_spec",
    "Point",
    "SearchRecord",
    "CapacityAnswer",
    "CapacitySearch",
    "SweepPlan",
    "DriftOptions",
    "DriftResult",
    "detect_drift",
    "JudgeOptions",
    "PointVerdict",
    "judge_point",
    "point_figures",
    "clearly_failed",
    "rows_from_series",
    "Knee",
    "knee",
    "UslFit",
    "usl_fit",
    "analyse",
    "capacity_sentence",
    "capacity_sentences",
    "new_index",
    "point_key",
    "add_point",
    "finished_points",
    "spec_of",
    "resume_plan",
    "with_answers",
    "RequireResult",
    "require_met",
]

#: version of the ``sweep.json`` index written by :func:`new_index`
SWEEP_VERSION = 1


class SweepSpecError(ValueError):
    """A bad sweep option; the message is one line naming the bad part."""


class SweepStateError(RuntimeError):
    """A point was recorded that the plan did not ask for (a ``sweep.json`` of another spec?)."""


class SweepIndexError(ValueError):
    """A ``sweep.json`` index that cannot be used (other version, other spec, malformed)."""


class Status(StrEnum):
    """A point's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"
    INVALID = "INVALID"


# -- the spec ----------------------------------------------------------------------------


_WHOLE = re.compile(r"^\d[\d_]*(k)?$", re.IGNORECASE)


def _whole(option: str, part: str, text: str) -> int:
    """``"2000"``, ``"2_000"`` or ``"2k"`` -> 2000; anything else is a :class:`SweepSpecError`."""
    raw = part.strip()
    match = _WHOLE.match(raw)
    if match is None:
        raise SweepSpecError(f"{option}: {raw!r} in {text!r} is not a whole number")
    value = int(raw[:-1].replace("_", "")) * 1000 if match.group(1) else int(raw.replace("_", ""))
    if value < 1:
        raise SweepSpecError(f"{option}: {raw!r} in {text!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Subscribers:
    """A parsed ``--subscribers``: a grid (``grid``) or a range to search (``lo``, ``hi``)."""

    grid: tuple[int, ...] | None = None
    lo: int | None = None
    hi: int | None = None


def parse_subscribers(text: str) -> Subscribers:
    """``--subscribers``: a grid ``100,500,1000`` or a range ``100:20000`` (searched).

    Numbers may be written ``20000``, ``20_000`` or ``20k``. A grid is kept
    sorted and without duplicates.

    Raises:
        SweepSpecError: one line naming the bad part.
    """
    option = "--subscribers"
    raw = text.strip() if text else ""
    if not raw:
        raise SweepSpecError(f"{option}: give a list (100,500,1000) or a range (100:20000)")
    if ":" in raw:
        if "," in raw:
            raise SweepSpecError(f"{option}: {raw!r} mixes a list and a range; give one or the other")
        pieces = raw.split(":")
        if len(pieces) != 2:
            raise SweepSpecError(f"{option}: range {raw!r} must be LOW:HIGH, e.g. 100:20000")
        lo, hi = (_whole(option, p, raw) for p in pieces)
        if lo >= hi:
            raise SweepSpecError(f"{option}: range {raw!r} must go up (LOW:HIGH with LOW < HIGH)")
        return Subscribers(lo=lo, hi=hi)
    values = []
    for index, piece in enumerate(raw.split(",")):
        if not piece.strip():
            raise SweepSpecError(f"{option}: item {index + 1} of {raw!r} is empty")
        values.append(_whole(option, piece, raw))
    return Subscribers(grid=tuple(sorted(set(values))))


def parse_rates(text: str) -> tuple[float, ...]:
    """``--rate 1,10``: events per second per stream, each > 0, in the order given (duplicates dropped)."""
    option = "--rate"
    raw = text.strip() if text else ""
    if not raw:
        raise SweepSpecError(f"{option}: give one or more rates in events/s, e.g. 1,10")
    if ":" in raw:
        raise SweepSpecError(f"{option}: {raw!r}: ranges are searched for --subscribers only; list the rates")
    rates: list[float] = []
    for index, piece in enumerate(raw.split(",")):
        part = piece.strip()
        if not part:
            raise SweepSpecError(f"{option}: item {index + 1} of {raw!r} is empty")
        try:
            value = float(part)
        except ValueError:
            raise SweepSpecError(f"{option}: {part!r} in {raw!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SweepSpecError(f"{option}: {part!r} in {raw!r} must be a positive number of events/s")
        if value not in rates:
            rates.append(value)
    return tuple(rates)


def parse_modes(text: str) -> tuple[str, ...]:
    """``--modes push,callback``: known mode names, in the order given (duplicates dropped)."""
    option = "--modes"
    raw = text.strip() if text else ""
    if not raw:
        raise SweepSpecError(f"{option}: give one or more of {', '.join(MODES)}")
    modes: list[str] = []
    for index, piece in enumerate(raw.split(",")):
        name = piece.strip().lower()
        if not name:
            raise SweepSpecError(f"{option}: item {index + 1} of {raw!r} is empty")
        if name not in MODES:
            raise SweepSpecError(f"{option}: {piece.strip()!r} is not a mode (use {', '.join(MODES)})")
        if name not in modes:
            modes.append(name)
    return tuple(modes)


def parse_precision(value: str | float) -> float:
    """``--precision 0.1``: the relative width at which bisection stops, in (0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SweepSpecError(f"--precision: {value!r} is not a number (e.g. 0.1 for 10 %)") from None
    if not (0 < number <= 1):
        raise SweepSpecError(f"--precision: {value!r} must be above 0 and at most 1 (e.g. 0.1 for 10 %)")
    return number


def parse_confirm(value: str | int) -> int:
    """``--confirm 2``: how many runs the capacity point must pass, at least 1."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise SweepSpecError(f"--confirm: {value!r} must be a whole number of runs, at least 1")
    return int(text)


@dataclass(frozen=True)
class Requirement:
    """One ``--require`` clause: ``push>=2000`` (mode ``None`` for ``*``)."""

    text: str
    mode: str | None
    op: str
    subscribers: int

    def holds(self, capacity: int) -> bool:
        """Whether a capacity of ``capacity`` subscribers meets the requirement."""
        return capacity >= self.subscribers if self.op == ">=" else capacity > self.subscribers


_REQUIRE = re.compile(r"^\s*([A-Za-z*]+)\s*(>=|>)\s*(\S+)\s*$")


def parse_require(text: str) -> tuple[Requirement, ...]:
    """``--require 'push>=2000,callback>=500'``: minimum capacities per mode (``*`` = every mode).

    Raises:
        SweepSpecError: one line naming the bad clause.
    """
    option = "--require"
    raw = text.strip() if text else ""
    if not raw:
        raise SweepSpecError(f"{option}: give MODE>=N clauses, e.g. 'push>=2000,callback>=500'")
    out: list[Requirement] = []
    for index, piece in enumerate(raw.split(",")):
        part = piece.strip()
        if not part:
            raise SweepSpecError(f"{option}: clause {index + 1} of {raw!r} is empty")
        match = _REQUIRE.match(part)
        if match is None:
            raise SweepSpecError(f"{option}: clause {part!r} must be MODE>=SUBSCRIBERS, e.g. push>=2000")
        mode = match.group(1).lower()
        if mode != "*" and mode not in MODES:
            raise SweepSpecError(f"{option}: clause {part!r}: {mode!r} is not a mode (use {', '.join(MODES)} or *)")
        number = match.group(3)
        if _WHOLE.match(number) is None:
            raise SweepSpecError(f"{option}: clause {part!r}: {number!r} is not a whole number of subscribers")
        out.append(Requirement(part, None if mode == "*" else mode, match.group(2),
                               _whole(option, number, part)))
    return tuple(out)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep covers and how it decides; stored in ``sweep.json`` and compared on ``--resume``.

    Attributes:
        modes: the modes, in run order.
        rates: events/s, in run order.
        slo: the objectives' text, exactly as checked.
        grid: the subscriber counts of a grid sweep (sorted), or ``None`` for a search.
        lo: the low end of a searched range.
        hi: the high end of a searched range.
        precision: bisection stops when ``(fail - pass) / pass <= precision``.
        confirm: runs the capacity point must pass.
    """

    modes: tuple[str, ...]
    rates: tuple[float, ...]
    slo: str
    grid: tuple[int, ...] | None = None
    lo: int | None = None
    hi: int | None = None
    precision: float = 0.1
    confirm: int = 2

    def __post_init__(self) -> None:
        if (self.grid is None) == (self.lo is None or self.hi is None):
            raise SweepSpecError("--subscribers: give either a list of values or a LOW:HIGH range")

    @property
    def is_search(self) -> bool:
        """A range to search rather than a grid to run."""
        return self.grid is None

    @property
    def clauses(self) -> tuple[SloClause, ...]:
        """The parsed objectives."""
        return parse_slo(self.slo)

    @property
    def subscribers_text(self) -> str:
        """``--subscribers`` as it would be typed."""
        if self.grid is not None:
            return ",".join(str(n) for n in self.grid)
        return f"{self.lo}:{self.hi}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what ``sweep.json`` stores)."""
        return {
            "modes": list(self.modes),
            "rates": list(self.rates),
            "slo": self.slo,
            "subscribers": {"grid": list(self.grid)} if self.grid is not None else {"range": [self.lo, self.hi]},
            "precision": self.precision,
            "confirm": self.confirm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            SweepIndexError: the dict is not a sweep spec.
        """
        try:
            subs = data["subscribers"]
            grid = tuple(int(n) for n in subs["grid"]) if "grid" in subs else None
            lo, hi = (int(subs["range"][0]), int(subs["range"][1])) if "range" in subs else (None, None)
            return cls(modes=tuple(str(m) for m in data["modes"]), rates=tuple(float(r) for r in data["rates"]),
                       slo=str(data["slo"]), grid=grid, lo=lo, hi=hi, precision=float(data["precision"]),
                       confirm=int(data["confirm"]))
        except (KeyError, TypeError, ValueError, IndexError, SweepSpecError) as exc:
            raise SweepIndexError(f"sweep.json: the spec is malformed ({exc})") from None


def parse_sweep_spec(
    *,
    modes: str,
    subscribers: str,
    rates: str,
    slo: str,
    precision: str | float = 0.1,
    confirm: str | int = 2,
) -> SweepSpec:
    """Parse the sweep options into a :class:`SweepSpec`.

    Args:
        modes: ``--modes``, e.g. ``"push,callback"``.
        subscribers: ``--subscribers``, a list (grid) or ``LOW:HIGH`` (search).
        rates: ``--rate``, e.g. ``"1,10"``.
        slo: ``--slo``, e.g. ``"p99<=50ms,lost==0"``.
        precision: ``--precision`` (default 0.1: bisect to within 10 %).
        confirm: ``--confirm`` (default 2 runs).

    Raises:
        SweepSpecError: one line naming the option and its bad part (an SLO
            error keeps the :class:`~deliverybench.core.slo.SloError` wording).
    """
    try:
        clauses = parse_slo(slo)
    except SloError as exc:
        raise SweepSpecError(str(exc)) from None
    parsed = parse_subscribers(subscribers)
    mode_list, rate_list = parse_modes(modes), parse_rates(rates)
    prec, conf = parse_precision(precision), parse_confirm(confirm)
    slo_text = ",".join(c.text for c in clauses)
    return SweepSpec(modes=mode_list, rates=rate_list, slo=slo_text, grid=parsed.grid, lo=parsed.lo, hi=parsed.hi,
                     precision=prec, confirm=conf)


# -- points and the search --------------------------------------------------------------


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
    def from_dict(cls, data: Mapping[str, Any]) -> "Point":
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

    def to_dict(self) -> dict[str, Any]:
        """Plain form."""
        return {"subscribers": self.subscribers, "repeat": self.repeat, "status": str(self.status),
                "headline": self.headline, "reasons": list(self.reasons)}


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
            ``harness-limited`` (an INVALID point stopped it: "at least"),
            ``pending`` (not finished).
        harness_limit: the smallest N whose measurement was INVALID, if any.
        fail_reason: headline of the first fail's failing run.
        limit_reason: headline of the harness-limit point.
        points: every finished run, in the order run.
        notes: anything odd (e.g. a grid N that passed above a fail).
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

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``sweep.json``."""
        return {"mode": self.mode, "rate": self.rate, "capacity": self.capacity, "bracket": list(self.bracket),
                "status": self.status, "harness_limit": self.harness_limit, "fail_reason": self.fail_reason,
                "limit_reason": self.limit_reason, "notes": list(self.notes),
                "points": [p.to_dict() for p in self.points]}


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


def _as_status(verdict: "PointVerdict | Status | str") -> tuple[Status, str, tuple[str, ...]]:
    if isinstance(verdict, PointVerdict):
        return verdict.status, verdict.headline, verdict.reasons
    try:
        return Status(str(verdict).upper()), "", ()
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

    def __init__(self, *, mode: str, rate: float, lo: int, hi: int, precision: float = 0.1, confirm: int = 2,
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
    def search(cls, *, mode: str, rate: float, lo: int, hi: int, precision: float = 0.1,
               confirm: int = 2) -> "CapacitySearch":
        """A range search (double, then bisect) over ``lo..hi``."""
        return cls(mode=mode, rate=rate, lo=lo, hi=hi, precision=precision, confirm=confirm)

    @classmethod
    def grid(cls, values: Sequence[int], *, mode: str, rate: float, confirm: int = 2) -> "CapacitySearch":
        """A grid: each N in ``values`` once (ascending), then the boundary candidate confirmed."""
        if not values:
            raise SweepSpecError("--subscribers: the grid is empty")
        return cls(mode=mode, rate=rate, lo=min(values), hi=max(values), confirm=confirm, grid=values)

    def replay(self, finished: Iterable[tuple[tuple[int, int], "PointVerdict | Status | str"]]) -> "CapacitySearch":
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
        exploring = self.grid_values is None and (limit is None or (fail is not None and fail < limit))
        if exploring:
            if fail is None:
                if best < self.hi:
                    return (min(2 * best, self.hi), 0)
            elif (fail - best) / best > self.precision and fail - best > 1:
                return (_midpoint(best, fail), 0)
        done = len(self._runs[best])
        return (best, done) if done < self.confirm else None

    @property
    def done(self) -> bool:
        """Whether nothing is left to run."""
        return self.next_point() is None

    def record(self, point: tuple[int, int], verdict: "PointVerdict | Status | str") -> None:
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
        status, headline, reasons = _as_status(verdict)
        self._runs.setdefault(int(point[0]), []).append(status)
        self._records.append(SearchRecord(int(point[0]), int(point[1]), status, headline, reasons))

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

        return CapacityAnswer(mode=self.mode, rate=self.rate, capacity=capacity, bracket=(capacity, fail),
                              status=status, harness_limit=limit, fail_reason=headline_at(fail, Status.FAIL),
                              limit_reason=headline_at(limit, Status.INVALID), points=tuple(self._records),
                              notes=tuple(notes))

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
    def resume(cls, spec: SweepSpec, finished: Iterable[tuple[Point, "PointVerdict | Status | str"]]) -> "SweepPlan":
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

    def record(self, point: Point, verdict: "PointVerdict | Status | str") -> None:
        """Record the verdict of the run :meth:`next_point` asked for.

        Raises:
            SweepStateError: ``point`` is not the expected next run.
        """
        expected = self.next_point()
        if point != expected:
            raise SweepStateError(f"got a result for {point}, but the sweep expects "
                                  + ("nothing more" if expected is None else str(expected)))
        self.searches[(point.mode, point.rate)].record((point.subscribers, point.repeat), verdict)
        self._finished.append((point, _as_status(verdict)[0]))

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


# -- judging one point ------------------------------------------------------------------


@dataclass(frozen=True)
class DriftOptions:
    """Thresholds of :func:`detect_drift` (defaults in brackets).

    Attributes:
        window_fraction: the trailing share of the judged seconds examined [0.5].
        min_seconds: fewer seconds in the window is no evidence either way [8].
        confidence: confidence level of the Theil–Sen slope interval [0.95].
        rise_fraction_of_level: the rise must be at least this share of the
            run's median p99 (1.0: p99 roughly doubled) [1.0].
        rise_fraction_of_bound: and at least this share of the SLO latency
            bound (rises negligible against the SLO do not count) [0.1].
        min_rise_ms: and at least this many ms (timer noise) [1.0].
        edge_fraction: leading/trailing seconds with fewer deliveries than this
            share of the median second are partial seconds and dropped [0.5].
    """

    window_fraction: float = 0.5
    min_seconds: int = 8
    confidence: float = 0.95
    rise_fraction_of_level: float = 1.0
    rise_fraction_of_bound: float = 0.1
    min_rise_ms: float = 1.0
    edge_fraction: float = 0.5


@dataclass(frozen=True)
class DriftResult:
    """What :func:`detect_drift` found.

    Attributes:
        drifting: p99 is still climbing at the end of the stream.
        seconds: seconds in the examined window.
        slope_ms_per_s: Theil–Sen slope of p99 over the window (``nan`` when too short).
        slope_low: lower end of the slope's confidence interval.
        slope_high: upper end.
        rise_ms: slope × window span: how much p99 rose across the window.
        threshold_ms: the rise that would have counted.
        reason: one line with the numbers.
    """

    drifting: bool
    seconds: int
    slope_ms_per_s: float
    slope_low: float
    slope_high: float
    rise_ms: float
    threshold_ms: float
    reason: str


def _column_rows(series: Mapping[str, Any], *names: str) -> list[list[Any]]:
    columns = list(series.get("columns") or [])
    index = [columns.index(n) if n in columns else -1 for n in names]
    out = []
    for row in series.get("rows") or []:
        out.append([row[i] if 0 <= i < len(row) else None for i in index])
    return out


def _is_number(value: Any) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _sen_slope(x: np.ndarray, y: np.ndarray, *, confidence: float) -> tuple[float, float, float, float]:
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
    slope = float(np.median(slopes))
    residual = y - float(np.median(y - slope * x)) - slope * x
    centred = residual - float(np.mean(residual))
    energy = float(np.dot(centred, centred))
    rho = float(np.dot(centred[1:], centred[:-1])) / energy if energy > 0 else 0.0
    rho = min(max(rho, 0.0), 0.9)
    variance = n * (n - 1) * (2 * n + 5) / 18.0 * (1.0 + rho) / (1.0 - rho)
    spread = float(stats.norm.ppf(0.5 + confidence / 2.0)) * math.sqrt(variance)
    count = len(slopes)
    lo_rank, hi_rank = int(math.floor((count - spread) / 2.0)), int(math.ceil((count + spread) / 2.0))
    low = float(slopes[lo_rank]) if lo_rank >= 0 else -math.inf
    high = float(slopes[hi_rank]) if hi_rank < count else math.inf
    return slope, low, high, rho


def detect_drift(
    series: Mapping[str, Any],
    *,
    bound_ms: float | None = None,
    options: DriftOptions | None = None,
) -> DriftResult:
    """Whether p99 per second is still climbing at the end of the stream.

    A target past its capacity builds a backlog, and a backlog makes every
    second's p99 higher than the last, even while the whole-run p99 still
    looks fine. The rule, chosen to be robust to noisy seconds and outliers:

    1. take the seconds with a p99 (``series`` columns ``second``, ``p99_ms``,
       ``deliveries``), dropping leading and trailing partial seconds (fewer
       deliveries than ``edge_fraction`` of the median second);
    2. keep the last ``window_fraction`` of them (the end of the stream,
       including a backlog draining after it);
    3. fit the Theil–Sen slope (median of pairwise slopes: one wild second
       cannot move it) with its ``confidence`` interval, widened for the
       autocorrelation of consecutive seconds (see :func:`_sen_slope`);
    4. drifting iff the interval lies above 0, the rise it implies across the
       window is at least ``max(min_rise_ms, rise_fraction_of_level × median
       p99 of the run, rise_fraction_of_bound × bound_ms)`` -- with the
       defaults: p99 about doubled, by at least a tenth of the SLO bound and
       1 ms -- and the slope over the last half of the window is still
       positive (climbing *at the end*, not a step that has levelled off).

    The interval alone would still call about one flat, autocorrelated
    series in twenty a trend; the effect-size floor is what keeps such noise
    from being called a climb (in simulation: AR(1) seconds with φ = 0.7 and
    15 % noise, under 0.5 % of flat 40-s series flagged), while a real
    backlog clears it easily: an overload of ε grows the queueing delay by
    about 1000·ε ms every second, so 0.1 % over capacity adds 1 ms/s.

    Args:
        series: a mode result's ``series`` (``{"columns": [...], "rows": [...]}``).
        bound_ms: the SLO's latency bound, if any (see :func:`~deliverybench.core.slo.latency_bound`).
        options: thresholds (defaults: :class:`DriftOptions`).
    """
    opts = options or DriftOptions()
    nan = float("nan")
    rows = [(float(sec), float(p99), float(n) if _is_number(n) else 0.0)
            for sec, p99, n in _column_rows(series, "second", "p99_ms", "deliveries")
            if _is_number(sec) and _is_number(p99)]
    rows.sort()
    if rows and any(n > 0 for _, _, n in rows):
        typical = float(np.median([n for _, _, n in rows if n > 0]))
        start, stop = 0, len(rows)
        while start < stop and rows[start][2] < opts.edge_fraction * typical:
            start += 1
        while stop > start and rows[stop - 1][2] < opts.edge_fraction * typical:
            stop -= 1
        rows = rows[start:stop]
    window = rows[len(rows) - max(int(math.ceil(len(rows) * opts.window_fraction)), 0):] if rows else []
    if len(window) < opts.min_seconds:
        return DriftResult(False, len(window), nan, nan, nan, 0.0, nan,
                           f"{len(window)} full seconds at the end of the stream; "
                           f"{opts.min_seconds} are needed to judge drift")
    x = np.array([r[0] for r in window], dtype=float)
    y = np.array([r[1] for r in window], dtype=float)
    slope, low, high, _ = _sen_slope(x, y, confidence=opts.confidence)
    span = float(x[-1] - x[0])
    rise = slope * span
    level = float(np.median([r[1] for r in rows]))
    threshold = max(opts.min_rise_ms, opts.rise_fraction_of_level * level,
                    opts.rise_fraction_of_bound * bound_ms if bound_ms is not None else 0.0)
    half = len(window) // 2
    tail_slope = _sen_slope(x[half:], y[half:], confidence=opts.confidence)[0] if len(window) - half >= 3 else slope
    drifting = low > 0 and rise >= threshold and tail_slope > 0
    where = f"over the last {len(window)} s"
    if drifting:
        reason = (f"p99 still climbing at the end: +{format_number(rise)} ms {where} "
                  f"({format_number(slope)} ms/s, {opts.confidence:.0%} interval "
                  f"{format_number(low)}..{format_number(high)}): a backlog building up")
    elif low <= 0:
        reason = f"p99 not climbing {where} (slope {format_number(slope)} ms/s, interval includes 0)"
    elif rise < threshold:
        reason = (f"p99 rose only {format_number(rise)} ms {where} "
                  f"(less than the {format_number(threshold)} ms that would count)")
    else:
        reason = f"p99 rose {format_number(rise)} ms {where} but has levelled off"
    return DriftResult(drifting, len(window), slope, low, high, rise, threshold, reason)


@dataclass(frozen=True)
class JudgeOptions:
    """Thresholds of :func:`judge_point` (defaults in brackets).

    Attributes:
        lag_floor_ms: publisher lag p99 above ``max(lag_floor_ms, lag_fraction
            × SLO latency bound)`` makes a point INVALID [5.0 ms]. Latency
            counts from the due time, so a lagging publisher eats into the
            SLO itself; a lag a tenth of the bound could decide the verdict.
        lag_fraction: see ``lag_floor_ms`` [0.1].
        check_drift: whether a climbing p99 fails a point [True].
        drift: thresholds of :func:`detect_drift`.
    """

    lag_floor_ms: float = 5.0
    lag_fraction: float = 0.1
    check_drift: bool = True
    drift: DriftOptions = field(default_factory=DriftOptions)


@dataclass(frozen=True)
class PointVerdict:
    """A point's verdict.

    Attributes:
        status: PASS, FAIL or INVALID.
        reasons: one line per thing that decided it (all misses, or why the
            measurement cannot be trusted); for a PASS, the figures that held.
        advice: for INVALID, what to change before re-running.
        headline: the deciding reason in a few words ("p99 212 ms",
            "lost 3.1 %", "harness saturated"), for progress lines and sentences.
    """

    status: Status
    reasons: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    headline: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``sweep.json``."""
        return {"status": str(self.status), "reasons": list(self.reasons), "advice": list(self.advice),
                "headline": self.headline}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PointVerdict":
        """Inverse of :meth:`to_dict`."""
        return cls(Status(str(data["status"])), tuple(data.get("reasons") or ()), tuple(data.get("advice") or ()),
                   str(data.get("headline") or ""))


def _per_process_advice(run: Mapping[str, Any]) -> str:
    params = run.get("params") or {}
    subscribers, processes = params.get("subscribers"), params.get("processes")
    if _is_number(subscribers) and _is_number(processes) and processes >= 1:
        each = subscribers / processes
        return (f"run with more --processes (now {format_number(processes)}, {format_number(round(each))} "
                f"subscribers each; try {format_number(processes * 2)}) or fewer subscribers per process")
    return "run with more --processes / fewer subscribers per process"


def point_figures(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The key figures of a point for ``sweep.json`` and progress lines.

    Keys: ``p50``, ``p99``, ``p99_9`` (ms), ``lost``, ``refused``,
    ``deliveries_per_s`` and ``expected`` (the audit's expected deliveries).
    With repeats the worst run's figure is given (highest latency and loss,
    lowest rate).
    """
    runs = runs_of(result)
    out: dict[str, float | None] = {}
    for name in ("p50", "p99", "p99_9", "lost", "refused", "deliveries_per_s"):
        values = [v for v in (metric_value(r, name) for r in runs) if v is not None]
        out[name] = None if not values else (min(values) if name == "deliveries_per_s" else max(values))
    expected = [float(r.get("audit", {}).get("expected")) for r in runs if _is_number(r.get("audit", {}).get("expected"))]
    out["expected"] = min(expected) if expected else None
    return out


def _short(clause: SloClause, observed: float | None, result: Mapping[str, Any]) -> str:
    if observed is None:
        return f"{clause.label} unknown"
    text = f"{clause.label} {clause.show(observed)}"
    if clause.metric in ("lost", "refused", "duplicates") and not clause.percent:
        expected = point_figures(result).get("expected")
        if expected:
            text += f" = {format_number(100.0 * observed / expected)} %"
    return text


def judge_point(
    result: Mapping[str, Any],
    clauses: Sequence[SloClause],
    *,
    options: JudgeOptions | None = None,
    stopped_early: str | None = None,
) -> PointVerdict:
    """PASS, FAIL or INVALID for one mode result.

    INVALID (checked first: a measurement that cannot be trusted says nothing
    about the target, pass or fail) when, in any run: the mode failed to run;
    the harness was saturated (``result["harness"]["saturated"]``); the
    publisher lagged its schedule (``summary.schedule_lag.p99`` above the
    threshold of :class:`JudgeOptions`; absent = no evidence of lag); or the
    audit does not balance. Otherwise FAIL when any SLO clause misses (in
    any run), p99 drifts upward at the end (:func:`detect_drift`), or the
    runner stopped the point early; else PASS.

    Args:
        result: the mode result (``document["modes"][mode]``).
        clauses: the objectives (clauses for other modes are ignored).
        options: thresholds (defaults: :class:`JudgeOptions`).
        stopped_early: the runner's reason if it cut the point short
            (:func:`clearly_failed`); makes a valid point a FAIL.
    """
    opts = options or JudgeOptions()
    mode = str(result.get("mode", ""))
    runs = runs_of(result)
    bound = latency_bound(clauses, mode)
    lag_limit = max(opts.lag_floor_ms, opts.lag_fraction * bound) if bound is not None else opts.lag_floor_ms

    def tag(i: int) -> str:
        return f"run {i + 1}: " if len(runs) > 1 else ""

    invalid: list[str] = []
    advice: list[str] = []
    headline = ""
    for i, run in enumerate(runs):
        if run.get("status") == "failed":
            invalid.append(f"{tag(i)}the mode failed to run: {run.get('failure') or 'no reason recorded'}")
            advice.append("read the point's log and report: the target or the harness did not start or stream")
            headline = headline or "failed to run"
            continue
        harness = run.get("harness") or {}
        if harness.get("saturated"):
            invalid.append(f"{tag(i)}harness saturated: {harness.get('reason') or 'no reason recorded'}")
            advice.append(_per_process_advice(run))
            headline = headline or "harness saturated"
        lag_p99 = schedule_lag_p99(run)
        if _is_number(lag_p99) and lag_p99 > lag_limit:
            invalid.append(f"{tag(i)}publisher lagged its schedule: p99 lag {format_number(lag_p99)} ms "
                           f"> {format_number(lag_limit)} ms")
            advice.append("give the publisher room: " + _per_process_advice(run)
                          + ", or lower the rate × subscribers per harness machine")
            headline = headline or f"publisher lag p99 {format_number(lag_p99)} ms"
        audit = run.get("audit") or {}
        if audit.get("balanced") is False:
            invalid.append(f"{tag(i)}the audit does not balance (expected != delivered + lost)")
            advice.append("a harness bookkeeping bug: report it with the point's results file")
            headline = headline or "audit unbalanced"
    if invalid:
        return PointVerdict(Status.INVALID, tuple(invalid), tuple(dict.fromkeys(advice)), headline)

    applicable = [c for c in clauses if c.applies_to(mode)]
    outcomes = check_mode(applicable, mode, result)
    misses = [(c, o) for c, o in zip(applicable, outcomes) if not o.ok]
    reasons = [o.reason for _, o in misses]
    if misses:
        headline = _short(misses[0][0], misses[0][1].observed, result)
    unjudged: list[str] = []
    if opts.check_drift:
        for i, run in enumerate(runs):
            drift = detect_drift(run.get("series") or {}, bound_ms=bound, options=opts.drift)
            if drift.drifting:
                reasons.append(f"{tag(i)}{drift.reason}")
                headline = headline or f"p99 climbing +{format_number(drift.rise_ms)} ms over {drift.seconds} s"
            elif drift.seconds < opts.drift.min_seconds:
                unjudged.append(f"{tag(i)}drift not judged: {drift.reason}")
    if stopped_early:
        reasons.append(f"stopped early: {stopped_early}")
        headline = headline or "stopped early"
    if reasons:
        return PointVerdict(Status.FAIL, tuple(reasons), (), headline)
    held = tuple(o.reason for o in outcomes) + tuple(unjudged)
    figures = point_figures(result)
    summary = ", ".join(f"{label} {format_number(v)}{unit}" for label, v, unit in (
        ("p99", figures["p99"], " ms"), ("lost", figures["lost"], "")) if v is not None)
    return PointVerdict(Status.PASS, held, (), summary or "passed")


# -- early stop ------------------------------------------------------------------------


def rows_from_series(series: Mapping[str, Any]) -> list[dict[str, float | None]]:
    """Per-second rows for :func:`clearly_failed` from a results ``series``.

    ``expected`` is estimated as ``published × connected`` for seconds that
    have both (the deliveries the second's events called for).
    """
    out: list[dict[str, float | None]] = []
    for p99, deliveries, published, connected in _column_rows(series, "p99_ms", "deliveries", "published",
                                                             "connected"):
        expected = float(published) * float(connected) if _is_number(published) and _is_number(connected) else None
        out.append({"p99_ms": float(p99) if _is_number(p99) else None,
                    "deliveries": float(deliveries) if _is_number(deliveries) else None,
                    "expected": expected})
    return out


def clearly_failed(
    rows: Sequence[Mapping[str, Any]],
    slo: Sequence[SloClause],
    *,
    mode: str | None = None,
    seconds: int = 3,
    latency_factor: float = 5.0,
    loss_fraction: float = 0.01,
) -> bool:
    """Whether a point still running has clearly failed, so the runner may stop it.

    A second is *bad* when its p99 exceeds ``latency_factor`` × the SLO's
    latency bound, or -- only if the SLO bounds ``lost`` -- when it delivered
    less than ``1 - loss_fraction`` of what it should have. The point has
    clearly failed once ``seconds`` consecutive seconds are bad. Seconds are
    taken in the order given; once true it stays true as rows are appended.

    Args:
        rows: one mapping per second so far, oldest first, with
            ``p99_ms`` (float or None) and, for the loss rule, ``deliveries``
            and ``expected`` (deliveries the second's published events called
            for: events × subscribers connected). Missing keys are no
            evidence. :func:`rows_from_series` builds them from a series.
        slo: the objectives.
        mode: the mode running (clauses for other modes are ignored).
        seconds: consecutive bad seconds needed [3].
        latency_factor: multiple of the latency bound that is clearly failed [5.0].
        loss_fraction: per-second shortfall that is clearly failed [0.01].
    """
    bound = latency_bound(slo, mode)
    check_loss = limits_loss(slo, mode)
    if bound is None and not check_loss:
        return False
    streak = 0
    for row in rows:
        bad = False
        p99 = row.get("p99_ms")
        if bound is not None and _is_number(p99) and p99 > latency_factor * bound:
            bad = True
        if check_loss and not bad:
            delivered, expected = row.get("deliveries"), row.get("expected")
            if _is_number(expected) and expected > 0:
                got = float(delivered) if _is_number(delivered) else 0.0
                bad = 1.0 - got / expected > loss_fraction
        streak = streak + 1 if bad else 0
        if streak >= seconds:
            return True
    return False


# -- analysis (information only) ----------------------------------------------------------


@dataclass(frozen=True)
class Knee:
    """Where latency turns upward: the Kneedle point of latency vs subscribers.

    Attributes:
        subscribers: N at the knee (one of the measured points).
        latency_ms: latency there.
        score: the normalised distance below the diagonal (0..1; larger = sharper).
        y_ref_ms: the latency the y axis was normalised by.
        n_ref: the N the x axis was normalised by.
    """

    subscribers: float
    latency_ms: float
    score: float
    y_ref_ms: float
    n_ref: float


def _collapse(n: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct N with the median y of each (repeats), finite values only."""
    groups: dict[float, list[float]] = {}
    for a, b in zip(n, y):
        if _is_number(a) and _is_number(b) and a > 0:
            groups.setdefault(float(a), []).append(float(b))
    xs = sorted(groups)
    return np.array(xs, dtype=float), np.array([float(np.median(groups[x])) for x in xs], dtype=float)


def knee(
    subscribers: Sequence[float],
    latency_ms: Sequence[float],
    *,
    y_ref_ms: float | None = None,
    min_points: int = 4,
) -> Knee | None:
    """Kneedle (Satopää et al., 2011) on a fixed, normalised domain.

    Kneedle normalises both axes to [0, 1] and takes the point furthest below
    the diagonal. Normalising by the data's own min and max (as the ``kneed``
    package does) moves the knee whenever the range or the point count
    changes -- one more point far up the cliff rescales everything. Here the
    domain is fixed by the curve, not by the sampling:

    * y is ``latency / y_ref_ms``, clipped at 1; ``y_ref_ms`` is the SLO
      bound (default: 10 × the lowest latency measured);
    * x is ``N / n_ref`` from N = 0, where ``n_ref`` is the N at which the
      curve (linearly interpolated) first reaches ``y_ref_ms`` -- or the
      largest N if it never does; points beyond ``n_ref`` are dropped.

    Points added below the knee or above the crossing therefore do not move
    it. Returns ``None`` with fewer than ``min_points`` points or when no
    point lies below the diagonal (no knee).
    """
    x, y = _collapse(subscribers, latency_ms)
    if len(x) < min_points:
        return None
    ref = float(y_ref_ms) if y_ref_ms is not None and y_ref_ms > 0 else 10.0 * float(np.min(y))
    if ref <= 0:
        return None
    n_ref = float(x[-1])
    above = np.nonzero(y >= ref)[0]
    if len(above):
        j = int(above[0])
        if j == 0:
            return None  # already past the reference at the first point: no knee to find
        x0, x1, y0, y1 = float(x[j - 1]), float(x[j]), float(y[j - 1]), float(y[j])
        n_ref = x0 + (ref - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x1
        keep = x <= n_ref
        x, y = x[keep], y[keep]
    if len(x) < min_points - 1:
        return None
    xn = x / n_ref
    yn = np.minimum(y / ref, 1.0)
    diff = xn - yn
    best = int(np.argmax(diff))
    if diff[best] <= 0:
        return None
    return Knee(float(x[best]), float(y[best]), float(diff[best]), ref, n_ref)


@dataclass(frozen=True)
class UslFit:
    """Universal Scalability Law fit of throughput: X(N) = λN / (1 + σ(N−1) + κN(N−1)).

    Attributes:
        lam: λ, throughput of one subscriber (deliveries/s).
        sigma: σ, contention (serialisation) coefficient.
        kappa: κ, coherency (crosstalk) coefficient.
        r2: coefficient of determination of the fit on the throughput points.
        points: how many distinct N were fitted.
        peak_subscribers: N where X peaks, ``sqrt((1 − σ) / κ)``; ``None`` if κ = 0 or σ ≥ 1.
        peak_throughput: X at that N.
    """

    lam: float
    sigma: float
    kappa: float
    r2: float
    points: int
    peak_subscribers: float | None
    peak_throughput: float | None


def _usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    return np.asarray(lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)), dtype=float)


def usl_fit(subscribers: Sequence[float], throughput: Sequence[float], *, min_points: int = 4) -> UslFit | None:
    """Fit the Universal Scalability Law to delivered throughput vs subscribers.

    Uses :func:`scipy.optimize.curve_fit` with λ, σ, κ ≥ 0. N and X are
    rescaled before fitting (κ is often ~1e-8 at thousands of subscribers,
    which would otherwise stall the optimiser) and the parameters scaled
    back. Returns ``None`` with fewer than ``min_points`` distinct N (three
    parameters need at least one point of slack) or when the fit fails.
    """
    x, y = _collapse(subscribers, throughput)
    if len(x) < min_points or float(np.max(y)) <= 0:
        return None
    s, ys = float(x[-1]), float(np.max(y))
    u, v = x / s, y / ys

    def model(uu: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        # X/ys with a = λ s / ys, b = σ s, c = κ s²; n = s u, so (n - 1)/s = u - 1/s
        return np.asarray(a * uu / (1.0 + b * (uu - 1.0 / s) + c * uu * (uu - 1.0 / s)), dtype=float)

    a0 = float(v[0] / u[0])
    best: tuple[float, np.ndarray] | None = None
    for b0, c0 in ((0.1, 0.1), (1.0, 0.01), (0.01, 1.0), (0.0, 0.0)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # covariance warnings: the fit quality is R², reported below
                params, _ = optimize.curve_fit(model, u, v, p0=[a0, b0, c0], bounds=([0.0, 0.0, 0.0], np.inf),
                                               maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        residual = float(np.sum((model(u, *params) - v) ** 2))
        if best is None or residual < best[0]:
            best = (residual, np.asarray(params, dtype=float))
    if best is None:
        return None
    a, b, c = (float(p) for p in best[1])
    lam, sigma, kappa = a * ys / s, b / s, c / (s * s)
    fitted = _usl(x, lam, sigma, kappa)
    total = float(np.sum((y - np.mean(y)) ** 2))
    r2 = 1.0 - float(np.sum((y - fitted) ** 2)) / total if total > 0 else 0.0
    peak_n: float | None = None
    peak_x: float | None = None
    if kappa > 0 and sigma < 1:
        peak_n = math.sqrt((1.0 - sigma) / kappa)
        peak_x = float(_usl(np.array([peak_n]), lam, sigma, kappa)[0])
    return UslFit(lam, sigma, kappa, r2, len(x), peak_n, peak_x)


def analyse(
    index: Mapping[str, Any],
    *,
    mode: str,
    rate: float,
    latency: str = "p99",
) -> dict[str, Any]:
    """Knee and USL fit for one (mode, rate) of a ``sweep.json`` index (information only).

    INVALID points are left out (their figures describe the harness).

    Returns:
        ``{"knee": {...} | None, "usl": {...} | None}`` with the fields of
        :class:`Knee` and :class:`UslFit`.
    """
    spec = spec_of(index)
    bound = latency_bound(spec.clauses, mode)
    ns: list[float] = []
    lat: list[float] = []
    rate_pts: list[float] = []
    rate_ns: list[float] = []
    for entry in (index.get("points") or {}).values():
        if entry.get("mode") != mode or float(entry.get("rate", -1)) != rate:
            continue
        if entry.get("verdict", {}).get("status") == Status.INVALID:
            continue
        figures = entry.get("figures") or {}
        if _is_number(figures.get(latency)):
            ns.append(float(entry["subscribers"]))
            lat.append(float(figures[latency]))
        if _is_number(figures.get("deliveries_per_s")):
            rate_ns.append(float(entry["subscribers"]))
            rate_pts.append(float(figures["deliveries_per_s"]))
    found_knee = knee(ns, lat, y_ref_ms=bound)
    fit = usl_fit(rate_ns, rate_pts)
    return {
        "knee": None if found_knee is None else {
            "subscribers": found_knee.subscribers, "latency_ms": found_knee.latency_ms, "score": found_knee.score,
            "y_ref_ms": found_knee.y_ref_ms, "n_ref": found_knee.n_ref},
        "usl": None if fit is None else {
            "lambda": fit.lam, "sigma": fit.sigma, "kappa": fit.kappa, "r2": fit.r2, "points": fit.points,
            "peak_subscribers": fit.peak_subscribers, "peak_throughput": fit.peak_throughput},
    }


# -- sentences ----------------------------------------------------------------------


def _rate_text(rate: float) -> str:
    return f"{format_number(rate)} event/s" if rate == 1 else f"{format_number(rate)} events/s"


def _answer_clause(answer: CapacityAnswer, *, first: bool) -> str:
    """``4,000 subscribers at 10 events/s (8,000 fails: p99 212 ms)`` and its variants."""
    noun = " subscribers" if first else ""
    at = f" at {_rate_text(answer.rate)}"
    fail_n = answer.bracket[1]
    why = f": {answer.fail_reason}" if answer.fail_reason else ""
    if answer.status == HARNESS_LIMITED:
        limit = f"harness limit at {format_number(answer.harness_limit or 0)}"
        limit += f": {answer.limit_reason}" if answer.limit_reason else ""
        if answer.capacity is None:
            return f"no capacity measured{at} ({limit})"
        return f"at least {format_number(answer.capacity)}{noun}{at} ({limit})"
    if answer.status == BELOW_RANGE:
        return f"fewer than {format_number(fail_n or 0)}{noun}{at} ({format_number(fail_n or 0)}, the lowest tried, fails{why})"
    if answer.status == ABOVE_RANGE:
        return f"{format_number(answer.capacity or 0)}{noun}{at} (the most tried; nothing failed)"
    if answer.status == PENDING:
        return f"(not finished){at}"
    return f"{format_number(answer.capacity or 0)}{noun}{at} ({format_number(fail_n or 0)} fails{why})"


def capacity_sentence(mode: str, answers: Sequence[CapacityAnswer], clauses: Sequence[SloClause]) -> str:
    """One sentence for a mode, from the numbers.

    E.g. ``push holds 4,000 subscribers at 10 events/s within p99 ≤ 50 ms and
    no loss (8,000 fails: p99 212 ms)``; several rates are joined with
    "and"; a harness-limited answer says "at least N (harness limit at M: why)".
    """
    mine = [a for a in answers if a.mode == mode]
    if not mine:
        return f"{mode} was not swept"
    objectives = describe(clauses, mode)
    parts = [_answer_clause(a, first=i == 0) for i, a in enumerate(mine)]
    if len(parts) == 1 and mine[0].status == HARNESS_LIMITED and mine[0].capacity is None:
        return f"{mode}: {parts[0]} within {objectives}"
    if len(parts) == 1:
        head, _, tail = parts[0].partition(" (")
        return f"{mode} holds {head} within {objectives}" + (f" ({tail}" if tail else "")
    return f"{mode}, within {objectives}, holds {'; '.join(parts[:-1])} and {parts[-1]}"


def capacity_sentences(answers: Sequence[CapacityAnswer], clauses: Sequence[SloClause]) -> list[str]:
    """One :func:`capacity_sentence` per mode, in the order the modes first appear."""
    modes = list(dict.fromkeys(a.mode for a in answers))
    return [capacity_sentence(m, answers, clauses) for m in modes]


# -- the sweep.json index ------------------------------------------------------------------


def new_index(spec: SweepSpec, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An empty ``sweep.json`` index for ``spec``.

    Args:
        spec: the sweep.
        extra: anything the caller wants kept alongside (command line, target), copied in as ``"extra"``.
    """
    return {"sweep_version": SWEEP_VERSION, "spec": spec.to_dict(), "points": {},
            "extra": copy.deepcopy(dict(extra or {}))}


def _check_index(index: Mapping[str, Any]) -> None:
    if not isinstance(index, Mapping):
        raise SweepIndexError("sweep.json: not a sweep index")
    version = index.get("sweep_version")
    if version != SWEEP_VERSION:
        raise SweepIndexError(f"sweep.json: sweep_version {version!r} is not supported (this deliverybench reads "
                              f"version {SWEEP_VERSION}); start a new sweep")
    if not isinstance(index.get("spec"), Mapping) or not isinstance(index.get("points"), Mapping):
        raise SweepIndexError("sweep.json: lacks 'spec' or 'points'")


def point_key(workload_key: str, repeat: int) -> str:
    """A key unique per run: the workload key (fingerprint) for repeat 0, ``KEY#r<k>`` after."""
    return workload_key if repeat == 0 else f"{workload_key}#r{repeat}"


def add_point(
    index: Mapping[str, Any],
    key: str,
    *,
    point: Point,
    verdict: PointVerdict,
    figures: Mapping[str, float | None],
    results_path: str,
) -> dict[str, Any]:
    """A copy of ``index`` with one finished run added (the input is not changed).

    Args:
        index: the index so far.
        key: the run's key, unique per run (see :func:`point_key`).
        point: what ran.
        verdict: its verdict.
        figures: its key figures (:func:`point_figures`).
        results_path: its results file, relative to the sweep folder.

    Raises:
        SweepIndexError: the key is taken by another run, or the path is absolute.
    """
    _check_index(index)
    if results_path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", results_path):
        raise SweepIndexError(f"sweep.json: results path {results_path!r} must be relative to the sweep folder")
    out = copy.deepcopy(dict(index))
    points: dict[str, Any] = out["points"]
    entry = {**point.to_dict(), "seq": len(points), "verdict": verdict.to_dict(),
             "figures": {k: figures.get(k) for k in sorted(figures)}, "results": results_path}
    if key in points:
        old = points[key]
        if Point.from_dict(old) != point:
            raise SweepIndexError(f"sweep.json: key {key!r} already holds {Point.from_dict(old)}, not {point}")
        entry["seq"] = old["seq"]
    points[key] = entry
    return out


def finished_points(index: Mapping[str, Any]) -> list[tuple[Point, PointVerdict]]:
    """The finished runs of an index, in the order they ran (for :meth:`SweepPlan.resume`)."""
    _check_index(index)
    entries = sorted(index["points"].values(), key=lambda e: int(e["seq"]))
    return [(Point.from_dict(e), PointVerdict.from_dict(e["verdict"])) for e in entries]


def spec_of(index: Mapping[str, Any]) -> SweepSpec:
    """The spec an index was written for."""
    _check_index(index)
    return SweepSpec.from_dict(index["spec"])


def resume_plan(index: Mapping[str, Any], spec: SweepSpec | None = None) -> SweepPlan:
    """The plan of an index with its finished runs replayed.

    Args:
        index: a ``sweep.json`` index.
        spec: the spec the user asked for now; if given it must equal the index's.

    Raises:
        SweepIndexError: the index is unusable, or was written for another spec
            (the message names the differing options).
    """
    stored = spec_of(index)
    if spec is not None and spec != stored:
        names = {"modes": "--modes", "rates": "--rate", "slo": "--slo", "grid": "--subscribers",
                 "lo": "--subscribers", "hi": "--subscribers", "precision": "--precision", "confirm": "--confirm"}
        differing = list(dict.fromkeys(names[f] for f in names if getattr(spec, f) != getattr(stored, f)))
        raise SweepIndexError(f"sweep.json was written for other options ({', '.join(differing)}); "
                              f"resume with the same options or start a new sweep")
    try:
        return SweepPlan.resume(stored, finished_points(index))
    except SweepStateError as exc:
        raise SweepIndexError(f"sweep.json: its points do not follow from its spec ({exc})") from None


def with_answers(index: Mapping[str, Any], answers: Sequence[CapacityAnswer]) -> dict[str, Any]:
    """A copy of ``index`` with the answers and the capacity sentences (computed from the points)."""
    _check_index(index)
    out = copy.deepcopy(dict(index))
    clauses = spec_of(index).clauses
    out["answers"] = [{k: v for k, v in a.to_dict().items() if k != "points"} for a in answers]
    out["sentences"] = capacity_sentences(answers, clauses)
    return out


@dataclass(frozen=True)
class RequireResult:
    """The outcome of ``--require``.

    Attributes:
        ok: every requirement met (exit 0), else exit 1.
        lines: one line per requirement and rate, met or not, with the numbers.
    """

    ok: bool
    lines: tuple[str, ...]


def require_met(answers: Sequence[CapacityAnswer], require: str | Sequence[Requirement]) -> RequireResult:
    """Whether the capacities meet ``--require``.

    A requirement on a mode must hold at every rate swept for it; a
    harness-limited answer meets it when its "at least" figure does (the
    target held that much); a mode required but not swept fails.
    """
    requirements = parse_require(require) if isinstance(require, str) else tuple(require)
    lines: list[str] = []
    ok = True
    for req in requirements:
        mine = [a for a in answers if req.mode is None or a.mode == req.mode]
        if not mine:
            ok = False
            lines.append(f"{req.text}: not met ({req.mode} was not swept)")
            continue
        for a in mine:
            need = f"{req.op} {format_number(req.subscribers)}"
            where = f"{a.mode} at {_rate_text(a.rate)}"
            if a.capacity is None:
                ok = False
                lines.append(f"{where}: no capacity ({a.status}), {need} required: not met")
                continue
            good = req.holds(a.capacity)
            ok = ok and good
            shown = ("at least " if a.status == HARNESS_LIMITED else "") + format_number(a.capacity)
            lines.append(f"{where}: {shown} subscribers, {need} required: {'met' if good else 'not met'}")
    return RequireResult(ok, tuple(lines))
