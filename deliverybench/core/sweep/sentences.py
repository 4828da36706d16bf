"""The answer in words: one capacity sentence per mode, and whether ``--require`` is met."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..slo import SloClause, describe, format_number
from .judge import drift_min_duration_s
from .search import ABOVE_RANGE, BELOW_RANGE, HARNESS_LIMITED, PENDING, CapacityAnswer
from .spec import Requirement, parse_require

__all__ = ["capacity_sentence", "capacity_sentences", "RequireResult", "require_met"]


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
        lowest = format_number(fail_n or 0)
        return f"fewer than {lowest}{noun}{at} ({lowest}, the lowest tried, fails{why})"
    if answer.status == ABOVE_RANGE:
        return f"{format_number(answer.capacity or 0)}{noun}{at} (the most tried; nothing failed)"
    return f"{format_number(answer.capacity or 0)}{noun}{at} ({format_number(fail_n or 0)} fails{why})"


def _so_far_clause(answer: CapacityAnswer) -> str:
    """What a search cut short had found: ``100 subscribers passed at 1 event/s (200 fails: p99 212 ms)``."""
    at = f" at {_rate_text(answer.rate)}"
    found = []
    if answer.bracket[1] is not None:
        found.append(f"{format_number(answer.bracket[1])} fails"
                     + (f": {answer.fail_reason}" if answer.fail_reason else ""))
    if answer.harness_limit is not None:
        found.append(f"harness limit at {format_number(answer.harness_limit)}")
    evidence = f" ({'; '.join(found)})" if found else ""
    if answer.largest_pass is not None:
        return f"{format_number(answer.largest_pass)} subscribers passed{at}{evidence}"
    return f"nothing passed{at}{evidence}" if found else f"no point finished{at}"


def _finished_sentence(mode: str, mine: Sequence[CapacityAnswer], objectives: str) -> str:
    parts = [_answer_clause(a, first=i == 0) for i, a in enumerate(mine)]
    if len(parts) == 1 and mine[0].status == HARNESS_LIMITED and mine[0].capacity is None:
        return f"{mode}: {parts[0]} within {objectives}"
    if len(parts) == 1:
        head, _, tail = parts[0].partition(" (")
        return f"{mode} holds {head} within {objectives}" + (f" ({tail}" if tail else "")
    return f"{mode}, within {objectives}, holds {'; '.join(parts[:-1])} and {parts[-1]}"


def capacity_sentence(mode: str, answers: Sequence[CapacityAnswer], clauses: Sequence[SloClause]) -> str:
    """One sentence for a mode, from the numbers.

    E.g. ``push holds 4,000 subscribers at 10 events/s within p99 ≤ 50 ms and
    no loss (8,000 fails: p99 212 ms)``; several rates are joined with
    "and"; a harness-limited answer says "at least N (harness limit at M: why)".
    A search the sweep did not finish (it was interrupted) says so and what it
    had found ("interrupted before it finished: so far 100 subscribers passed
    at 1 event/s"); an answer resting on points too short to judge drift says
    that drift was not judged.
    """
    mine = [a for a in answers if a.mode == mode]
    if not mine:
        return f"{mode} was not swept"
    objectives = describe(clauses, mode)
    finished = [a for a in mine if a.status != PENDING]
    cut = [a for a in mine if a.status == PENDING]
    sentence = _finished_sentence(mode, finished, objectives) if finished else ""
    if cut:
        so_far = f"interrupted before it finished: so far {'; '.join(_so_far_clause(a) for a in cut)}"
        sentence = f"{sentence}; {so_far}" if sentence else f"{mode}, within {objectives}, was {so_far}"
    if any(not a.drift_judged for a in mine if a.capacity is not None or a.largest_pass is not None):
        sentence += (f"; drift (p99 still climbing at the end) not judged: points need "
                     f"{format_number(drift_min_duration_s())} s of stream for it")
    return sentence


def capacity_sentences(answers: Sequence[CapacityAnswer], clauses: Sequence[SloClause]) -> list[str]:
    """One :func:`capacity_sentence` per mode, in the order the modes first appear."""
    modes = list(dict.fromkeys(a.mode for a in answers))
    return [capacity_sentence(m, answers, clauses) for m in modes]


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
