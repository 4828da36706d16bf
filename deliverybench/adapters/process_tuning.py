"""Process settings every harness and target process needs: GC and open files.

Keeping Python's garbage collector out of the latency figures:

With thousands of sessions alive, a full collection walks every object and
pauses the process for tens of milliseconds -- pauses that land in the
measured latencies of whichever process takes them (target or harness).
After start-up (or once every subscriber is connected), the long-lived
objects are moved out of the collector's view with ``gc.freeze()`` and the
young generation is collected less often. Measured on the callback
dispatcher, this removed 25-50 % of its CPU and every pause above 5 ms.
"""

from __future__ import annotations

import gc
import logging
import resource

__all__ = ["settle_gc", "raise_open_files_limit", "session_budget", "GEN0_THRESHOLD", "PROCESS_OVERHEAD_FDS"]

#: allocations between young-generation collections (CPython's default is 700)
GEN0_THRESHOLD = 50_000
#: files a harness or target process holds besides its sessions (libraries, logs, zmq, pools, /proc reads)
PROCESS_OVERHEAD_FDS = 200


def settle_gc() -> None:
    """Collect once, freeze what survives, then collect rarely."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.

    Every subscriber is a socket, and the usual soft limit of 1024 would cap a
    process far below what it can hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
        except (ValueError, OSError) as exc:
            logging.getLogger("deliverybench").warning("could not raise RLIMIT_NOFILE from %s to %s: %s",
                                                       soft, wanted, exc)
    return soft


def session_budget() -> int:
    """How many sessions this process may hold: its open-files limit less what it needs for itself.

    A process at its limit cannot even read ``/proc`` to sample itself, so a
    session past the budget is refused by the harness (counted, explained)
    rather than left to fail with EMFILE and take the process's own files with it.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, soft - PROCESS_OVERHEAD_FDS) if soft != resource.RLIM_INFINITY else 1 << 30
