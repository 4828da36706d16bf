"""Locust's own time limit (``-t``, or the web UI's run time) against what the run needs.

A ``-t`` shorter than spawning + settle + warm-up + stream + drain stops
the test before its stream and drain end: the results are ``interrupted``.
That used to pass silently with exit 0. Now the harness says so in one line
before the run starts (:func:`warning`), and a test that the limit did cut
short (:func:`cut_short`) exits :data:`EXIT_CUT_SHORT`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..core.plan import timed_phases

__all__ = ["EXIT_CUT_SHORT", "TOLERANCE_S", "needed_s", "warning", "cut_short", "cut_short_failure"]

#: the exit code of a test that Locust's time limit cut short: run_bench.py's "the run itself failed"
EXIT_CUT_SHORT = 3
#: how much sooner than ``-t`` a stop from outside still counts as the limit's (Locust starts its timer
#: and the test within a few milliseconds of each other)
TOLERANCE_S = 1.0


def _phases(values: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    # a locustfile has no --subscribers: Locust's own -u is how many there are
    return timed_phases({**values, "subscribers": values.get("num_users") or 0})


def needed_s(values: Mapping[str, Any]) -> float:
    """The least seconds a test with Locust's parsed option ``values`` takes."""
    return sum(seconds for _, seconds in _phases(values))


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def warning(values: Mapping[str, Any]) -> str | None:
    """One line when ``run_time`` in ``values`` is shorter than the run needs, else None."""
    run_time = values.get("run_time")
    phases = _phases(values)
    total = sum(seconds for _, seconds in phases)
    if not run_time or run_time >= total:
        return None
    words = " + ".join(f"{name} {_seconds(seconds)} s" for name, seconds in phases)
    return f"the run needs at least {math.ceil(total)} s ({words}); -t {_seconds(run_time)}s will cut it short"


def cut_short(values: Mapping[str, Any], elapsed_s: float) -> bool:
    """Whether a test stopped from outside after ``elapsed_s`` was stopped by the time limit."""
    run_time = values.get("run_time")
    if not run_time:
        return False
    return elapsed_s >= float(run_time) - TOLERANCE_S


def cut_short_failure(values: Mapping[str, Any]) -> str:
    """The results' failure line for a test the time limit cut short."""
    return (f"Locust's time limit (-t {_seconds(values['run_time'])}s) stopped the test before its stream and drain "
            f"ended (the run needs at least {math.ceil(needed_s(values))} s)")
