"""The run's progress, rewritten once a second to a small JSON file (``--live-file``).

Why a file: ``run_bench.py`` runs each mode's Locust as a child process and
needs, while it runs, what a person watching wants to see (phase,
subscribers connected, events published, deliveries and p99 so far) and
what a capacity sweep needs to stop a point that has clearly failed (per
interval p99 and the delivered share of what was expected). Locust already
gathers the deliveries from every worker into the master's stats, so the
master alone writes the file, atomically (write, then rename), and nothing
new crosses the master/worker channel.

The file is progress, not a result: ``results.json`` stays the one truth.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gevent

from ..adapters.results_file import write_atomically
from .quiet import wait_for_quiet

__all__ = ["LiveWriter", "percentile_of_counts", "LIVE_VERSION", "ROWS_KEPT"]

log = logging.getLogger("deliverybench")

LIVE_VERSION = 1
#: intervals kept in the file (the early-stop rule needs the last few)
ROWS_KEPT = 120


def percentile_of_counts(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile of a {value: count} table (Locust's response-time buckets), None when empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    return float(max(counts))


class LiveWriter:
    """A greenlet that rewrites ``path`` every second from ``snapshot()`` and Locust's stats.

    Args:
        path: the live file.
        environment: Locust's environment (its ``stats`` hold the deliveries).
        mode: the mode, the Locust stats entry's method.
        snapshot: the controller's own figures: ``phase``, ``connected``,
            ``subscribers`` (wanted), ``published`` (events of the measured
            stream handed to the target so far).
        report_lag: writes between an event's publication and its deliveries
            being in the stats: a process hands over completed seconds, so 3
            in one process; with workers, whose stats reach the master every
            3 s, 6.
    """

    def __init__(self, path: str | os.PathLike[str], environment: Any, mode: str,
                 snapshot: Callable[[], Mapping[str, Any]], *, report_lag: int = 3) -> None:
        self.path = Path(path)
        self.environment = environment
        self.mode = mode
        self.snapshot = snapshot
        self.rows: list[dict[str, Any]] = []
        self._last_counts: dict[int, int] = {}
        self._expected: list[int] = []
        self.report_lag = max(1, report_lag)
        self._greenlet: gevent.Greenlet[..., Any] | None = None
        self._started = time.monotonic()

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._started = time.monotonic()
            self._greenlet = gevent.spawn(self._forever)

    def stop(self) -> None:
        """Write once more (the final phase), then stop."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self.write()

    def _forever(self) -> None:
        while True:
            gevent.sleep(1.0)
            wait_for_quiet()
            self.write()

    def _entry(self) -> Any:
        stats = getattr(self.environment, "stats", None)
        if stats is None:
            return None
        name = "ack" if self.mode == "burst" else "delivery"
        return stats.entries.get((name, self.mode))

    def figures(self) -> dict[str, Any]:
        """The file's content now; appends one row per call while the stream runs."""
        own = dict(self.snapshot())
        entry = self._entry()
        counts = dict(entry.response_times) if entry is not None else {}
        deliveries = int(entry.num_requests) if entry is not None else 0
        delta = {k: v - self._last_counts.get(k, 0) for k, v in counts.items() if v > self._last_counts.get(k, 0)}
        self._last_counts = counts
        connected = int(own.get("connected") or 0)
        published = int(own.get("published") or 0)
        if own.get("phase") in ("streaming", "draining"):
            # deliveries lag their events: what has arrived is compared with what was expected of the
            # events published report_lag writes ago (cumulative, so jitter does not count as loss)
            back = self._expected[-self.report_lag] if len(self._expected) >= self.report_lag else 0
            self.rows.append({"p99_ms": percentile_of_counts(delta, 0.99), "deliveries": deliveries,
                              "expected": back or None})
            del self.rows[:-ROWS_KEPT]
            self._expected.append(published * connected)
            del self._expected[:-self.report_lag]
        return {"live_version": LIVE_VERSION, "mode": self.mode,
                "elapsed_s": round(time.monotonic() - self._started, 1), **own, "deliveries": deliveries,
                "p99_ms": percentile_of_counts(counts, 0.99), "rows": list(self.rows)}

    def write(self) -> None:
        try:
            write_atomically(json.dumps(self.figures(), separators=(",", ":")), self.path, prefix=".live-")
        except Exception as exc:  # progress must never cost the run (a full disk included)
            log.debug("live file not written: %s", exc)
