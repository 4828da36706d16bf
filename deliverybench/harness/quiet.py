"""When this process may do its book-keeping without delaying the stream it measures.

Once a second a harness process hands over what it measured and samples
its resources: a few milliseconds during which its event loop stamps no
arrival and publishes nothing. The publisher in this process (the local
process or the master) knows every due time; while a stream runs, the
once-a-second greenlets wait here for the middle of the next gap between
due events, so the pause lands where nothing is due and nothing is
arriving. With no publisher in this process, or a stream too dense to
have gaps, they do not wait at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent

__all__ = ["follow", "forget", "wait_for_quiet", "MAX_WAIT_S"]

#: the book-keeping is never put off longer than this (the hand-over stays about once a second)
MAX_WAIT_S = 0.5

_source: Callable[[int], int | None] | None = None


def follow(source: Callable[[int], int | None]) -> None:
    """Take quiet moments from ``source`` (a publisher's ``quiet_moment_ns``) from now on."""
    global _source
    _source = source


def forget() -> None:
    """The stream is over: book-keeping need not wait any more."""
    global _source
    _source = None


def wait_for_quiet() -> None:
    """Sleep this greenlet until the next quiet moment (at most :data:`MAX_WAIT_S`)."""
    source = _source
    if source is None:
        return
    now = time.time_ns()
    try:
        at = source(now)
    except Exception:  # never let book-keeping stop over a timing hint
        return
    if at is not None and at > now:
        gevent.sleep(min(MAX_WAIT_S, (at - now) / 1e9))
