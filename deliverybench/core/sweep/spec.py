"""What a sweep covers: its options parsed into a :class:`SweepSpec`, and the errors of a sweep.

The option defaults come from the option table
(:mod:`deliverybench.core.options`, the ``sweep_*`` entries); the parsers
here give every bad value one line naming the option and its bad part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..options import by_dest
from ..slo import MODES, SloClause, SloError, parse_slo

__all__ = [
    "SweepSpecError",
    "SweepStateError",
    "SweepIndexError",
    "DEFAULT_PRECISION",
    "DEFAULT_CONFIRM",
    "Subscribers",
    "Requirement",
    "SweepSpec",
    "parse_subscribers",
    "parse_rates",
    "parse_modes",
    "parse_precision",
    "parse_confirm",
    "parse_require",
    "parse_sweep_spec",
]


class SweepSpecError(ValueError):
    """A bad sweep option; the message is one line naming the bad part."""


class SweepStateError(RuntimeError):
    """A point was recorded that the plan did not ask for (a ``sweep.json`` of another spec?)."""


class SweepIndexError(ValueError):
    """A ``sweep.json`` index that cannot be used (other version, other spec, malformed)."""


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


#: ``--precision`` and ``--confirm`` when not given, as the option table declares them
DEFAULT_PRECISION: float = parse_precision(by_dest("sweep_precision").default)
DEFAULT_CONFIRM: int = parse_confirm(by_dest("sweep_confirm").default)


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
    precision: float = DEFAULT_PRECISION
    confirm: int = DEFAULT_CONFIRM

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
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
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
    precision: str | float = DEFAULT_PRECISION,
    confirm: str | int = DEFAULT_CONFIRM,
) -> SweepSpec:
    """Parse the sweep options into a :class:`SweepSpec`.

    Args:
        modes: ``--modes``, e.g. ``"push,callback"``.
        subscribers: ``--subscribers``, a list (grid) or ``LOW:HIGH`` (search).
        rates: ``--rate``, e.g. ``"1,10"``.
        slo: ``--slo``, e.g. ``"p99<=50ms,lost==0"``.
        precision: ``--precision`` (default :data:`DEFAULT_PRECISION`, 0.1: bisect to within 10 %).
        confirm: ``--confirm`` (default :data:`DEFAULT_CONFIRM`, 2 runs).

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
