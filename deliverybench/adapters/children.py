"""Child processes that never outlive the run that started them.

Every server and Locust a run starts gets two guarantees:

* its own session (process group), so a Ctrl-C at the terminal reaches only
  the parent, which stops the children in order -- Locust first, so it can
  write what it measured -- and a whole group (Locust's ``--processes``
  workers included) can be killed at once;
* ``PR_SET_PDEATHSIG`` on Linux: if the parent dies without cleaning up
  (``SIGKILL``, a crash), the kernel sends the child ``SIGTERM``.

:func:`stop_group` is the bounded end of every child: a signal, a wait, then
``SIGKILL`` for the whole group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any

__all__ = ["child_options", "die_with_parent", "stop_group"]

_PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: between fork and exec the child must not load libraries
# (another thread of the parent may hold the loader's lock).
_prctl: Any = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def die_with_parent() -> None:
    """In the child (``preexec_fn``): ask the kernel for SIGTERM when the parent dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def child_options() -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments for a child that ends with its parent."""
    return {"start_new_session": True, "preexec_fn": die_with_parent}


def stop_group(proc: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> int | None:
    """Send ``sig`` to ``proc``, wait up to ``grace_s``, then SIGKILL its whole process group.

    Returns the child's exit code (None if it had to be killed and was not
    reaped). Safe to call on a process that already ended: whatever is left
    of its group (forked workers, servers it started) is still killed.
    """
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader's pid is the group's id (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None
