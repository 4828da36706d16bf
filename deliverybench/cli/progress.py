"""What a run is doing, while it does it: one live line on a terminal, plain lines in a log.

A run used to print one line and then nothing for the length of a mode.
Now each mode's Locust rewrites a small live file every second
(:mod:`deliverybench.harness.live`) and this module turns it into a line:
phase, subscribers connected, events published, deliveries and p99 so far.
On a terminal the line is redrawn in place (rich); when stdout is not a
terminal (a CI log) a plain line is printed when the phase changes and every
:data:`PLAIN_EVERY_S` seconds, and nothing is ever redrawn, so a log reads
top to bottom. A sweep adds its own context (point k of n, time left).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["Progress", "live_line", "PLAIN_EVERY_S"]

#: in a log, the streaming line is repeated this often
PLAIN_EVERY_S = 10.0


def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def live_line(mode: str, live: Mapping[str, Any]) -> str:
    """``push: streaming · 100/100 connected · 320 events · 31,200 deliveries · p99 7 ms · 12 s``."""
    parts = [f"{mode}: {live.get('phase', '?')}"]
    wanted = live.get("subscribers")
    parts.append(f"{_n(live.get('connected'))}/{_n(wanted)} connected" if wanted else
                 f"{_n(live.get('connected'))} connected")
    if live.get("published"):
        parts.append(f"{_n(live.get('published'))} events")
    parts.append(f"{_n(live.get('deliveries'))} deliveries")
    p99 = live.get("p99_ms")
    if isinstance(p99, (int, float)):
        parts.append(f"p99 {p99:,.0f} ms so far")
    if isinstance(live.get("elapsed_s"), (int, float)):
        parts.append(f"{live['elapsed_s']:.0f} s")
    return " · ".join(parts)


class Progress:
    """Permanent lines (:meth:`say`) and one transient status line (:meth:`status`).

    Args:
        stream: where to write (stdout).
        interactive: redraw in place; default: whether ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.context = ""
        self._live: Any = None
        self._last_text = ""
        self._last_plain = 0.0
        self._last_phase = ""

    # -- permanent lines ---------------------------------------------------------
    def say(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream, flush=True)

    # -- the status line ---------------------------------------------------------
    def status(self, text: str, *, phase: str = "") -> None:
        """Show ``text`` as the current status (redrawn, or printed when it matters in a log)."""
        full = f"{self.context} | {text}" if self.context else text
        if self.interactive:
            self._ensure_live()
            from rich.text import Text

            self._live.update(Text(full, overflow="ellipsis", no_wrap=True))
            return
        now = time.monotonic()
        if phase != self._last_phase or now - self._last_plain >= PLAIN_EVERY_S:
            if full != self._last_text:
                print(f"  {full}", file=self.stream, flush=True)
                self._last_text = full
            self._last_plain, self._last_phase = now, phase

    def live(self, mode: str, live: Mapping[str, Any]) -> None:
        """Show a mode's live file."""
        self.status(live_line(mode, live), phase=str(live.get("phase", "")))

    def clear(self) -> None:
        """Remove the status line (before a table is printed)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._last_phase = ""

    def _ensure_live(self) -> None:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream), transient=True, refresh_per_second=4,
                              auto_refresh=True)
            self._live.start()
