"""The table ``run_bench.py`` prints: modes side by side, from a results document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.model import Run

__all__ = ["summary_table"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


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
            name, mode.status, _int(mode.params.subscribers),
            _ms(s.p50), _ms(s.p90), _ms(s.p99), _ms(s.p99_9), _ms(s.max),
            f"{mode.throughput.deliveries_per_s or 0:,.0f}",
            _int(audit.published), _int(audit.refused), _int(audit.delivered_unique), _int(audit.duplicates),
            _int(audit.lost), _int(sum(mode.errors.values())),
            f"{mode.resources.cpu_s('harness') or 0:.2f}", f"{mode.resources.cpu_s('target') or 0:.2f}",
        ])
        if mode.failure:
            notes.append(f"{name}: {mode.failure}")
        if mode.status_reasons:
            notes.append(f"{name} {mode.status}: " + "; ".join(mode.status_reasons))
        if mode.harness.saturated:
            notes.append(f"{name}: HARNESS SATURATED - {mode.harness.reason}")
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    lines += [f"! {note}" for note in notes]
    return "\n".join(lines)
