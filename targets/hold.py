"""Holding an event until a moment known to well under a millisecond (the test knobs).

Why: a test knob is only useful if what it adds is what it says. uvloop's
timers (libuv's) and ``loop.time()`` have millisecond resolution, so a hold
of 1.65 ms came out as 2-3 ms (measured: a knob meant as +30 % of a 5.5 ms
p99 moved it by +68 %), and the CI gate's noise benchmark could not say what
effect it had injected. Here the clock is :func:`time.monotonic` and the
wait is a timer that wakes :data:`EARLY_S` before the moment, then one loop
turn at a time (other I/O keeps being served) until it has come. The last
stretch costs the target some CPU (up to ~2.5 ms per held event), so it is
paid only where a hold must be exact -- ``--delay-ms`` -- and not by the
capacity knob alone, whose service times are what a sweep measures and which
a millisecond of timer slack does not change (``precise=False``: one coarse
timer, as uvloop gives it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["EARLY_S", "now", "wake_at", "sleep_until"]

#: how long before the moment the coarse timer wakes (timer resolution plus a loop turn)
EARLY_S = 0.0015

#: the clock every hold is measured on
now = time.monotonic


def wake_at(loop: asyncio.AbstractEventLoop, at: float, callback: Callable[[], None], *,
            precise: bool = True) -> asyncio.Handle:
    """Call ``callback`` at or soon before ``at`` (:func:`now` clock); the callback checks and re-arms.

    A coarse timer while the moment is far, then once per loop turn (only the
    coarse timer when not ``precise``).
    """
    wait = at - now()
    if not precise:
        return loop.call_later(max(0.0, wait), callback)
    if wait > EARLY_S:
        return loop.call_later(wait - EARLY_S, callback)
    return loop.call_soon(callback)


async def sleep_until(at: float, *, precise: bool = True) -> None:
    """Return at ``at`` (:func:`now` clock), to within a loop turn (a timer's slack when not ``precise``)."""
    if not precise:
        await asyncio.sleep(max(0.0, at - now()))
        return
    while True:
        wait = at - now()
        if wait <= 0:
            return
        await asyncio.sleep(wait - EARLY_S if wait > EARLY_S else 0)
