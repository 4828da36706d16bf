"""Will the run fit in the open-files limit? Checked before anything starts.

Every WebSocket session is a socket in a harness process *and* in the
built-in target; every concurrent poller too. Past the limit, connects fail
with EMFILE deep in a run, and the cause hides among thousands of errors.
So ``run_bench.py`` checks first -- per harness process (the subscribers
are spread over ``--processes``) and for the built-in target (one process,
every session) -- and says in one line how many fit and how to get more.
Every process raises its soft limit to the hard limit at start, so the hard
limit is what counts.
"""

from __future__ import annotations

import math
import resource
from typing import Any

from ..adapters.process_tuning import PROCESS_OVERHEAD_FDS

__all__ = ["open_files_problem", "source_ports_warning", "PROCESS_OVERHEAD_FDS", "SESSION_MODES",
           "SESSIONS_PER_SOURCE_ADDRESS"]

#: modes in which every subscriber holds a socket open for the whole run
SESSION_MODES = ("push", "sse", "longpoll", "poll")


#: sessions one loopback source address carries well. It has ~28,000 ephemeral ports, but the kernel
#: probes for a free one on every connect: at 25,000 sessions an address (100,000 sessions against nginx +
#: nchan, measured) that probing took most of every Locust worker's CPU and starved its heartbeats; at
#: 10,000 an address all 100,000 connected with no worker missed
SESSIONS_PER_SOURCE_ADDRESS = 10_000
#: modes whose sessions can be spread over ``--source-addresses``
SOURCE_ADDRESS_MODES = ("push", "sse")


def source_ports_warning(config: Any) -> str | None:
    """One line when a session mode puts more sessions on one source address than connect well, else None.

    A warning, not a refusal: connecting is slower, not wrong, and a machine with
    a wider ``ip_local_port_range`` may do better.
    """
    modes = [m for m in config.modes if m in SOURCE_ADDRESS_MODES]
    if not modes:
        return None
    addresses = [a for a in str(config.source_addresses or "").split(",") if a.strip()]
    per_address = math.ceil(int(config.subscribers) / max(1, len(addresses)))
    if per_address <= SESSIONS_PER_SOURCE_ADDRESS:
        return None
    need = math.ceil(int(config.subscribers) / SESSIONS_PER_SOURCE_ADDRESS)
    return (f"{per_address:,} {modes[0]} sessions per source address: past about "
            f"{SESSIONS_PER_SOURCE_ADDRESS:,} the kernel's search for a free port slows every connect and can starve "
            f"the harness -- give {need} addresses with --source-addresses 127.0.0.2,127.0.0.3,...")


def _limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if hard == resource.RLIM_INFINITY else max(soft, hard)


def open_files_problem(config: Any, *, limit: int | None = None) -> str | None:
    """One line saying why ``config`` will not fit in the open-files limit, or None."""
    limit = _limit() if limit is None else limit
    modes = [m for m in config.modes if m in SESSION_MODES]
    if not modes:
        return None
    subscribers, processes = int(config.subscribers), max(1, int(config.processes))
    usable = max(0, limit - PROCESS_OVERHEAD_FDS)
    # a single process also holds the publisher's keep-alive pool
    per_process = math.ceil(subscribers / processes) + (int(config.publish_concurrency) if processes == 1 else 0)
    if per_process > usable:
        fit = max(0, usable - (int(config.publish_concurrency) if processes == 1 else 0))
        need = math.ceil(subscribers / max(1, usable))
        return (f"{subscribers:,} {modes[0]} subscribers need about {per_process + PROCESS_OVERHEAD_FDS:,} open files "
                f"in each harness process, but the limit is {limit:,}: about {fit:,} fit per process -- use "
                f"--processes {max(need, processes + 1)} or raise the limit (ulimit -n)")
    if config.target == "builtin" and subscribers + PROCESS_OVERHEAD_FDS > limit:
        return (f"the built-in {modes[0]} target holds all {subscribers:,} sessions in one process and needs about "
                f"{subscribers + PROCESS_OVERHEAD_FDS:,} open files, but the limit is {limit:,}: at most {usable:,} "
                "subscribers fit -- raise the limit (ulimit -n) or run the target elsewhere")
    return None
