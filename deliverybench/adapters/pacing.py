"""Waiting for a due time in an event loop without spinning.

uvloop's timers (libuv's) have millisecond resolution: a sleep of 50 µs
wakes on the next loop iteration, so a sender pacing itself event by event
at 20,000 events/s would spin a full core doing nothing. Senders wait in
ticks of at least :data:`TICK_S` instead and send everything due by then;
an event is then late by at most about one tick, and that lateness is
measured, since latency counts from the due time.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["TICK_S", "sleep_until"]

#: the shortest wait: the event loop's timer resolution
TICK_S = 0.001


async def sleep_until(due_ns: int) -> None:
    """Return at ``due_ns`` (wall clock) or up to one tick after it; never spin."""
    wait = (due_ns - time.time_ns()) / 1e9
    if wait > 0:
        await asyncio.sleep(max(wait, TICK_S))
