"""The table ``run_bench.py`` prints: modes side by side, from a results document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.metrics import headline_metric

__all__ = ["summary_table"]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _int(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def summary_table(document: Mapping[str, Any]) -> str:
    """A fixed-width table, one row per mode, plus warnings underneath."""
    columns = ["mode", "status", "subs", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "deliv/s",
               "published", "refused", "unique", "dup", "lost", "errors", "harness cpu s", "target cpu s"]
    rows: list[list[str]] = []
    notes: list[str] = []
    for name, mode in document["modes"].items():
        s = mode.get("summary", {}).get(headline_metric(name), {}) or {}
        audit = mode.get("audit", {})
        costs = mode.get("resources", {}).get("costs", {})
        rows.append([
            name, mode.get("status", "?"), _int(mode.get("params", {}).get("subscribers")),
            _ms(s.get("p50")), _ms(s.get("p90")), _ms(s.get("p99")), _ms(s.get("p99_9")), _ms(s.get("max")),
            f"{mode.get('throughput', {}).get('deliveries_per_s', 0):,.0f}",
            _int(audit.get("published")), _int(audit.get("refused")),
            _int(audit.get("delivered_unique")), _int(audit.get("duplicates")), _int(audit.get("lost")),
            _int(sum((mode.get("errors") or {}).values())),
            f"{costs.get('harness', {}).get('cpu_s', 0):.2f}", f"{costs.get('target', {}).get('cpu_s', 0):.2f}",
        ])
        if mode.get("failure"):
            notes.append(f"{name}: {mode['failure']}")
        reasons = mode.get("status_reasons") or []
        if reasons:
            notes.append(f"{name} {mode.get('status', '?')}: " + "; ".join(reasons))
        if mode.get("harness", {}).get("saturated"):
            notes.append(f"{name}: HARNESS SATURATED - {mode['harness']['reason']}")
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    lines += [f"! {note}" for note in notes]
    return "\n".join(lines)
