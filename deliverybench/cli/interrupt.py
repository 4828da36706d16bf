"""SIGINT and SIGTERM during a run: stop in order, keep what was measured, then exit 130 / 143.

``timeout``, CI cancellation and ``docker stop`` send SIGTERM; a user
presses Ctrl-C. Either way the run must end soon, leave no process behind,
and still write what it measured. The handler only takes note (it never
raises into the middle of a write); the orchestrator polls :attr:`Interrupt.signal`
while a mode runs, asks Locust to stop (Locust writes its results as
``interrupted``), waits a bounded time, kills what is left, skips the
remaining modes, and ``run_bench.py`` writes results and report as usual
before exiting with 128 + the signal number. A second signal while
stopping means "now": the children are killed at once.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

__all__ = ["Interrupt", "EXIT_CODES"]

#: the conventional exit code for a run ended by each signal
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupt:
    """Catches SIGINT/SIGTERM for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.urgent = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for sig in EXIT_CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            self.urgent = True
            return
        self.signal = signal.Signals(signum)

    @property
    def exit_code(self) -> int | None:
        return EXIT_CODES.get(self.signal) if self.signal is not None else None
