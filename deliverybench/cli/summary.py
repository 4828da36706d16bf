"""The table ``run_bench.py`` prints: modes side by side, from a results document.

Figures are spelled by :mod:`deliverybench.core.numbers`, as the report and
the CI markdown spell them; a figure that was not measured (an external
target's CPU) prints as "—", never as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core import numbers
from ..core.model import Run

__all__ = ["summary_table"]


def summary_table(document: Run | Mapping[str, Any]) -> str:
    """A fixed-width table, one row per mode, plus warnings underneath."""
    run = document if isinstance(document, Run) else Run.from_dict(document)
    columns = ["mode", "status", "subs", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "deliv/s",
               "published", "refused", "unique", "dup", "lost", "errors", "harness cpu s", "target cpu s"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for name, mode in run.modes.items():
        s, audit = mode.headline, mode.audit
        rows.append([
            name, mode.status, numbers.count(mode.params.subscribers),
            *(numbers.ms(v) for v in (s.p50, s.p90, s.p99, s.p99_9, s.max)),
            numbers.rate(mode.throughput.deliveries_per_s),
            *(numbers.count(v) for v in (audit.published, audit.refused, audit.delivered_unique, audit.duplicates,
                                         audit.lost, sum(mode.errors.values()))),
            numbers.cpu_seconds(mode.resources.cpu_s("harness")), numbers.cpu_seconds(mode.resources.cpu_s("target")),
        ])
        if mode.failure:
            notes.append(f"{name}: {mode.failure}")
        if mode.status_reasons:
            notes.append(f"{name} {mode.status}: " + "; ".join(mode.status_reasons))
        if mode.harness.saturated:
            notes.append(f"{name}: HARNESS SATURATED - {mode.harness.reason}")
        if mode.clock is not None and mode.clock.workers:
            clock = mode.clock
            notes.append(f"{name}: timing uncertainty ±{clock.uncertainty_ms:.3f} ms ({len(clock.workers)} workers, "
                         f"{'corrected' if clock.corrected else 'not corrected'} onto the master's clock)")
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    lines += [f"! {note}" for note in notes]
    return "\n".join(lines)
