"""The one clock every subscriber-side time stamp is read from.

Latency is ``receive − due``: ``due`` is stamped by the publisher on the
Locust master, ``receive`` wherever the subscriber runs. On one machine both
read the same wall clock. On a worker on another machine they do not, so the
receive side never calls ``time.time_ns()`` itself: it calls
:func:`now_ns` through this module (``worker_clock.now_ns()``, looked up at
each call), and the clock synchronisation of a worker rebinds it to an
estimate of the master's clock (:func:`use`). On the master, and with no
correction, it is ``time.time_ns`` itself: the C function, no cost added.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["now_ns", "use", "reset"]

#: the subscriber side's clock: the wall clock until a synchronisation says otherwise
now_ns: Callable[[], int] = time.time_ns


def use(source: Callable[[], int]) -> None:
    """Read every later subscriber-side stamp from ``source`` (nanoseconds on the master's clock)."""
    global now_ns
    now_ns = source


def reset() -> None:
    """Back to this machine's wall clock."""
    use(time.time_ns)
