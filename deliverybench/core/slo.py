"""Absolute service-level objectives: ``--slo 'push.p99<=50ms,*.lost==0'``.

The CI gate checks them with or without a baseline and a capacity sweep
judges every point by them, so both must read the same text the same way and
explain a miss in the same words. This module parses the text once into
:class:`SloClause` objects and checks them against mode results, reading the
figures only through :func:`deliverybench.core.metrics.metric_value` (the
figures every other judgement uses too).

Syntax: comma-separated clauses ``[MODE.]METRIC OP VALUE[UNIT]``:

* ``MODE``: ``push``, ``sse``, ``longpoll``, ``callback``, ``poll``, ``burst``, ``*`` or omitted
  (both mean every mode);
* ``METRIC``: ``p50``, ``p90``, ``p99``, ``p99.9`` (or ``p99_9``), ``max``,
  ``lost``, ``refused``, ``duplicates``, ``deliveries_per_s`` (alias ``rate``);
* ``OP``: ``<=``, ``<``, ``>=``, ``>``, ``==``;
* ``UNIT``: latencies take ``ms`` (the default), ``s`` or ``us``; counts are
  absolute or ``%`` of the deliveries the audit expected; the rate may end in
  ``/s``.

A figure the run cannot provide is a miss, never a silent pass, and a result
holding several repeats meets a clause only if every repeat meets it: the run
is the unit of replication, and an objective that holds "on average" does
not hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .metrics import metric_value
from .model import ModeResult, Run
from .options import MODES as OPTION_MODES

__all__ = [
    "MODES",
    "SLO_METRICS",
    "SloError",
    "SloClause",
    "SloOutcome",
    "parse_slo",
    "check",
    "check_mode",
    "latency_bound",
    "limits_loss",
    "describe",
    "format_number",
]

#: the modes a clause may name (every mode: declared once, in the option table)
MODES: tuple[str, ...] = OPTION_MODES

#: accepted metric spellings -> the canonical names of :data:`deliverybench.core.metrics.METRIC_NAMES`
_METRIC_ALIASES: dict[str, str] = {
    "p50": "p50",
    "p90": "p90",
    "p99": "p99",
    "p99.9": "p99_9",
    "p99_9": "p99_9",
    "max": "max",
    "lost": "lost",
    "refused": "refused",
    "duplicates": "duplicates",
    "deliveries_per_s": "deliveries_per_s",
    "rate": "deliveries_per_s",
}
#: the canonical metric names a clause may constrain
SLO_METRICS: tuple[str, ...] = tuple(dict.fromkeys(_METRIC_ALIASES.values()))

_LATENCY = frozenset({"p50", "p90", "p99", "p99_9", "max"})
_COUNTS = frozenset({"lost", "refused", "duplicates"})
_LABELS = {"p99_9": "p99.9", "deliveries_per_s": "deliveries/s"}
#: latency units -> milliseconds per unit
_LATENCY_UNITS = {"ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001}
_OPS = ("<=", ">=", "==", "<", ">")
_OP_SYMBOLS = {"<=": "≤", ">=": "≥", "==": "=", "<": "<", ">": ">"}
#: comparison-looking tokens, longest first, so ``=>`` is named as a mistake rather than read as ``>``
_OP = re.compile(r"<=|>=|==|=>|=<|!=|<|>|=")
_NUMBER = re.compile(r"^([+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*)$")


class SloError(ValueError):
    """An SLO text that cannot be parsed; the message is one line naming the clause."""


def format_number(value: float) -> str:
    """A figure for people: ``4,000``, ``212``, ``41.2``, ``4.12``, ``0.412``.

    Whole numbers keep every digit (with thousands separators); others keep
    three significant digits, which is all a latency or a rate can honestly
    claim.
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class SloClause:
    """One parsed objective.

    Attributes:
        text: the clause as written (surrounding blanks removed).
        mode: the mode it is about, or ``None`` for every mode.
        metric: canonical metric name (``p99``, ``p99_9``, ``lost``, ``deliveries_per_s``, ...).
        op: one of ``<=``, ``<``, ``>=``, ``>``, ``==``.
        limit: the bound in canonical units: milliseconds for latencies,
            deliveries/s for the rate, a count -- or a percentage of the
            expected deliveries when :attr:`percent` is set -- for counts.
        unit: the unit as written (``ms``, ``s``, ``us``, ``%``, ``/s`` or ``""``),
            used to show figures the way the user wrote them.
        percent: the limit is a percentage of the audit's expected deliveries.
    """

    text: str
    mode: str | None
    metric: str
    op: str
    limit: float
    unit: str = ""
    percent: bool = False

    @property
    def label(self) -> str:
        """The metric as people write it: ``p99.9``, ``deliveries/s``, ``lost``."""
        return _LABELS.get(self.metric, self.metric)

    @property
    def is_latency(self) -> bool:
        """Whether the clause bounds a latency percentile (milliseconds)."""
        return self.metric in _LATENCY

    @property
    def is_upper_bound(self) -> bool:
        """Whether smaller figures are the safe side (``<`` or ``<=``)."""
        return self.op in ("<", "<=")

    def applies_to(self, mode: str) -> bool:
        """Whether the clause constrains ``mode``."""
        return self.mode is None or self.mode == mode

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` (canonical units, like :attr:`limit`) meets the clause."""
        if self.op == "<=":
            return observed <= self.limit
        if self.op == "<":
            return observed < self.limit
        if self.op == ">=":
            return observed >= self.limit
        if self.op == ">":
            return observed > self.limit
        return observed == self.limit

    def show(self, value: float) -> str:
        """``value`` (canonical units) in the clause's own unit: ``212 ms``, ``0.21 s``, ``3.1 %``."""
        if self.is_latency:
            unit = self.unit or "ms"
            return f"{format_number(value / _LATENCY_UNITS[unit])} {unit}"
        if self.percent:
            return f"{format_number(value)} %"
        if self.metric == "deliveries_per_s":
            return f"{format_number(value)}/s"
        return format_number(value)

    @property
    def bound_text(self) -> str:
        """The objective in words: ``p99 ≤ 50 ms``."""
        return f"{self.label} {_OP_SYMBOLS[self.op]} {self.show(self.limit)}"

    def describe(self) -> str:
        """The objective as a plan would say it: ``no loss``, ``p99 ≤ 50 ms``, ``loss ≤ 0.1 %``."""
        nothing = ((self.limit == 0 and self.op in ("<=", "=="))
                   or (self.limit == 1 and self.op == "<" and not self.percent))
        if self.metric in _COUNTS and nothing:
            return {"lost": "no loss", "refused": "nothing refused", "duplicates": "no duplicates"}[self.metric]
        if self.metric == "lost" and self.is_upper_bound:
            return f"loss {_OP_SYMBOLS[self.op]} {self.show(self.limit)}"
        if self.metric == "deliveries_per_s":
            return f"{_OP_SYMBOLS[self.op]} {format_number(self.limit)} deliveries/s"
        return self.bound_text


@dataclass(frozen=True)
class SloOutcome:
    """The verdict of one clause on one mode.

    Attributes:
        mode: the mode checked.
        clause: the clause as written.
        metric: canonical metric name.
        observed: the deciding figure in canonical units (the worst run's when
            there are repeats); ``None`` when the run cannot provide it.
        limit: the clause's bound in the same units.
        ok: whether the clause holds (in every run).
        reason: one line saying why, with the numbers.
    """

    mode: str
    clause: str
    metric: str
    observed: float | None
    limit: float
    ok: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the gate report consumes (exactly these seven keys)."""
        return {
            "mode": self.mode,
            "clause": self.clause,
            "metric": self.metric,
            "observed": self.observed,
            "limit": self.limit,
            "ok": self.ok,
            "reason": self.reason,
        }


def _fail(option: str, clause: str, why: str) -> SloError:
    return SloError(f"{option}: clause {clause!r}: {why}")


def _parse_clause(text: str, option: str) -> SloClause:
    raw = text.strip()
    match_op = _OP.search(raw)
    if match_op is None:
        raise _fail(option, raw, "no comparison (expected METRIC OP VALUE, e.g. p99<=50ms)")
    op = match_op.group(0)
    if op not in _OPS:
        raise _fail(option, raw, f"unknown comparison {op!r} (use <=, <, >=, > or ==)")
    left, right = raw[:match_op.start()].strip(), raw[match_op.end():].strip()
    if right[:1] in ("<", ">", "=", "!"):
        raise _fail(option, raw, f"unknown comparison {op + right[:1]!r} (use <=, <, >=, > or ==)")

    name = left.lower()
    mode: str | None = None
    if name not in _METRIC_ALIASES and "." in name:
        mode_text, name = name.split(".", 1)
        if mode_text != "*" and mode_text not in MODES:
            raise _fail(option, raw, f"unknown mode {mode_text!r} (use {', '.join(MODES)} or *)")
        mode = None if mode_text == "*" else mode_text
    if name not in _METRIC_ALIASES:
        shown = name or "(nothing)"
        raise _fail(option, raw, f"unknown metric {shown!r} (use {', '.join(_METRIC_ALIASES)})")
    metric = _METRIC_ALIASES[name]

    if not right:
        raise _fail(option, raw, "no value after the comparison")
    match = _NUMBER.match(right)
    if match is None:
        raise _fail(option, raw, f"value {right!r} is not a number")
    number_text, unit = match.group(1), match.group(2).strip()
    value = float(number_text.replace("_", ""))
    if not math.isfinite(value):
        raise _fail(option, raw, f"value {right!r} is not a finite number")
    if value < 0:
        raise _fail(option, raw, f"value {right!r} is negative")

    percent = False
    unit_key = unit.lower() if unit != "µs" else unit
    if metric in _LATENCY:
        if unit_key and unit_key not in _LATENCY_UNITS:
            raise _fail(option, raw, f"unit {unit!r} is not a latency unit (use ms, s or us)")
        unit_key = unit_key or "ms"
        limit = value * _LATENCY_UNITS[unit_key]
    elif metric in _COUNTS:
        if unit_key not in ("", "%"):
            raise _fail(option, raw, f"unit {unit!r} does not apply to {name} (use a count or a percentage, e.g. 0.1%)")
        percent = unit_key == "%"
        limit = value
    else:
        if unit_key not in ("", "/s"):
            raise _fail(option, raw, f"unit {unit!r} does not apply to a rate (use deliveries per second, e.g. 1000)")
        limit = value
    return SloClause(text=raw, mode=mode, metric=metric, op=op, limit=limit, unit=unit_key, percent=percent)


def parse_slo(text: str, *, option: str = "--slo") -> tuple[SloClause, ...]:
    """Parse an SLO text into clauses.

    Args:
        text: comma-separated clauses, e.g. ``"p99<=50ms,lost==0"``.
        option: the name shown at the start of error messages.

    Returns:
        The clauses in the order written.

    Raises:
        SloError: one line naming the first bad clause and what is wrong with it.
    """
    if not text or not text.strip():
        raise SloError(f"{option}: no objectives given (e.g. 'p99<=50ms,lost==0')")
    parts = text.split(",")
    clauses: list[SloClause] = []
    for index, part in enumerate(parts):
        if not part.strip():
            where = "a trailing comma" if index == len(parts) - 1 else f"clause {index + 1} is empty"
            raise SloError(f"{option}: {where} in {text.strip()!r}")
        clauses.append(_parse_clause(part, option))
    return tuple(clauses)


def _observe(clause: SloClause, run: ModeResult) -> tuple[float | None, str]:
    """The run's figure for ``clause`` in canonical units, or ``None`` and why not."""
    if run.status == "failed":
        return None, f"the mode failed to run ({run.failure or 'no reason recorded'})"
    value = metric_value(run, clause.metric)
    if value is None:
        if clause.metric in _COUNTS:
            return None, "the run has no audit"
        if clause.metric == "deliveries_per_s":
            return None, "the run has no throughput figures"
        return None, "the run recorded no latencies"
    if clause.percent:
        expected = run.audit.expected
        if not expected:
            return None, f"{clause.label} as a percentage needs the audit's expected deliveries, and it has none"
        return 100.0 * value / float(expected), ""
    return value, ""


def _worse(clause: SloClause, a: float, b: float) -> float:
    """Of two figures, the one nearer to (or further past) the clause's bound."""
    if clause.is_upper_bound:
        return max(a, b)
    if clause.op in (">", ">="):
        return min(a, b)
    return a if abs(a - clause.limit) >= abs(b - clause.limit) else b


def _outcome(clause: SloClause, mode: str, result: ModeResult) -> SloOutcome:
    runs = result.runs
    seen: list[tuple[int, float | None, bool, str]] = []
    for index, run in enumerate(runs):
        value, why = _observe(clause, run)
        seen.append((index, value, value is not None and clause.holds(value), why))
    ok = all(good for _, _, good, _ in seen)
    values = [v for _, v, _, _ in seen if v is not None]
    failing_values = [v for _, v, good, _ in seen if v is not None and not good]
    pool = failing_values or values
    observed: float | None = None
    for value in pool:
        observed = value if observed is None else _worse(clause, observed, value)
    if any(v is None for _, v, _, _ in seen):
        observed = None if len(runs) == 1 else observed

    def figure(value: float | None, why: str) -> str:
        return f"{clause.label} unknown: {why}" if value is None else f"{clause.label} {clause.show(value)}"

    if len(runs) == 1:
        _, value, good, why = seen[0]
        verdict = "meets" if good else "misses"
        reason = f"{figure(value, why)}; {verdict} {clause.bound_text}"
    else:
        failed = [(i, v, why) for i, v, good, why in seen if not good]
        if not failed:
            reason = (f"{clause.bound_text} held in all {len(runs)} runs "
                      f"(worst {clause.show(observed) if observed is not None else 'unknown'})")
        else:
            detail = "; ".join(f"run {i + 1}: {figure(v, why)}" for i, v, why in failed)
            reason = f"{clause.bound_text} missed in {len(failed)} of {len(runs)} runs ({detail})"
    return SloOutcome(mode=mode, clause=clause.text, metric=clause.metric, observed=observed,
                      limit=clause.limit, ok=ok, reason=reason)


def check_mode(clauses: Iterable[SloClause], mode: str, result: ModeResult) -> list[SloOutcome]:
    """Check the clauses that apply to ``mode`` against its result.

    Args:
        clauses: parsed objectives (clauses naming other modes are skipped).
        mode: the mode's name.
        result: the mode result (``run.modes[mode]``); with repeats a
            clause holds only if it holds in every run.

    Returns:
        One outcome per applicable clause, in clause order.
    """
    return [_outcome(c, mode, result) for c in clauses if c.applies_to(mode)]


def check(clauses: Iterable[SloClause], document: Run) -> list[SloOutcome]:
    """Check objectives against every mode of a results document.

    A clause naming a mode the document does not hold is a miss (with that
    reason): an objective nobody measured must not pass a CI job.

    Args:
        clauses: parsed objectives.
        document: a results document.

    Returns:
        Outcomes per mode in document order (clauses in clause order), then
        those of clauses about absent modes.
    """
    clause_list = list(clauses)
    modes = document.modes
    outcomes: list[SloOutcome] = []
    for mode, result in modes.items():
        outcomes.extend(check_mode(clause_list, mode, result))
    for clause in clause_list:
        if clause.mode is not None and clause.mode not in modes:
            outcomes.append(SloOutcome(mode=clause.mode, clause=clause.text, metric=clause.metric, observed=None,
                                       limit=clause.limit, ok=False,
                                       reason=f"{clause.mode} is not in the results, so {clause.bound_text} "
                                              "was not measured"))
    return outcomes


def latency_bound(clauses: Iterable[SloClause], mode: str | None = None) -> float | None:
    """The tightest upper latency bound (ms) that applies to ``mode``.

    A ``p99`` bound is preferred (it is what per-second series show); other
    percentiles are used when there is none. ``None`` when no clause bounds a
    latency from above. Drift, publisher-lag and early-stop thresholds scale
    with this figure.
    """
    bounds: dict[str, list[float]] = {}
    for c in clauses:
        if c.is_latency and c.is_upper_bound and (mode is None or c.applies_to(mode)):
            bounds.setdefault(c.metric, []).append(c.limit)
    if not bounds:
        return None
    return min(bounds["p99"]) if "p99" in bounds else min(min(v) for v in bounds.values())


def limits_loss(clauses: Iterable[SloClause], mode: str | None = None) -> bool:
    """Whether any clause applying to ``mode`` bounds ``lost`` from above."""
    return any(c.metric == "lost" and c.op in ("<", "<=", "==") and (mode is None or c.applies_to(mode))
               for c in clauses)


def describe(clauses: Sequence[SloClause], mode: str | None = None) -> str:
    """The objectives that apply to ``mode`` in words: ``p99 ≤ 50 ms and no loss``."""
    words = [c.describe() for c in clauses if mode is None or c.applies_to(mode)]
    words = list(dict.fromkeys(words))
    if not words:
        return "no objectives"
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} and {words[-1]}"
