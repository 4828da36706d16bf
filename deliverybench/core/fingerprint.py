"""What must match for two runs to be compared, and what merely differs.

A p99 measured with 20 subscribers says nothing about one measured with 200:
the CI gate must refuse such a comparison ("not comparable", naming the
fields) rather than report a regression that is only a change of workload.
The *workload fingerprint* of a mode result is that set of fields -- the mode,
subscribers, rate, schedule, payload, duration, drain, harness processes,
target and results schema -- normalised so that ``25`` and ``25.0``, or a
schedule written with and without its default fields, are the same workload.

Deliberately left out: the commit (it is what a comparison is *about*),
machine facts (listed separately by :func:`machine_diff`, because a different
machine weakens a comparison without making it meaningless), and the built-in
target's test knob ``delay_ms`` / ``target_delay_ms``: a test makes the target
slower on purpose and expects the gate to say "regression", not "not
comparable". Only the target's name and kind are part of the workload; its
URLs, ports and options are not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from .model import SCHEMA_VERSION, Run
from .schedule import Schedule

__all__ = [
    "FINGERPRINT_FIELDS",
    "MACHINE_FIELDS",
    "workload_fingerprint",
    "fingerprint_key",
    "fingerprint_diff",
    "machine_diff",
]

#: Fields of :func:`workload_fingerprint`, in the order they are reported.
FINGERPRINT_FIELDS: tuple[str, ...] = (
    "schema_version",
    "mode",
    "target.name",
    "target.kind",
    "subscribers",
    "rate",
    "schedule",
    "payload_bytes",
    "duration_s",
    "drain_s",
    "join_grace_s",
    "processes",
)

#: Machine facts compared by :func:`machine_diff` (``hostname`` is not one:
#: CI runners get a new name every job).
MACHINE_FIELDS: tuple[str, ...] = ("cpu_model", "cpu_count", "memory_bytes", "platform", "python")

# Schedule fields that change the due times, per kind; the others are ignored
# (a seed does not change a constant-rate schedule).
_SCHEDULE_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("kind", "rate", "duration_s", "max_events"),
    "burst": ("kind", "duration_s", "burst_size", "burst_interval_s", "max_events"),
    "poisson": ("kind", "rate", "duration_s", "seed", "max_events"),
    "ramp": ("kind", "rate", "rate_end", "duration_s", "max_events"),
}
_SCHEDULE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Schedule)}


def _plain(value: Any) -> Any:
    """JSON-shaped copy with integral floats as ints, so ``25 == 25.0`` hashes alike."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _schedule(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return _plain(raw)
    kind = raw.get("kind", _SCHEDULE_DEFAULTS["kind"])
    keep = _SCHEDULE_FIELDS.get(str(kind))
    if keep is None:  # unknown kind: compare everything that was written
        return _plain(raw)
    return _plain({name: raw.get(name, _SCHEDULE_DEFAULTS[name]) for name in keep})


def workload_fingerprint(document: Run, mode: str) -> dict[str, Any]:
    """The workload fields of one mode that must match for a comparison.

    Values come from the mode result's ``params`` and ``target`` (falling back
    to its first repeat when the mode result itself lacks them). Missing
    fields are ``None``.

    Args:
        document: a results document.
        mode: one of the document's modes.

    Returns:
        A JSON-ready mapping with the keys of :data:`FINGERPRINT_FIELDS`.

    Raises:
        KeyError: ``mode`` is not in the document.
    """
    result = document.modes[mode]
    first = result.runs[0]
    params = result.params if result.params.to_dict() else first.params
    target = result.target if result.target.to_dict() else first.target
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": result.mode or mode,
        "target.name": _plain(target.name),
        "target.kind": _plain(target.kind),
        "subscribers": _plain(params.subscribers),
        "rate": _plain(params.rate),
        "schedule": _schedule(dict(params.schedule) if params.schedule else None),
        "payload_bytes": _plain(params.payload_bytes),
        "duration_s": _plain(params.duration_s),
        "drain_s": _plain(params.drain_s),
        "join_grace_s": _plain(params.join_grace_s),
        "processes": _plain(params.processes),
    }


def fingerprint_key(fingerprint: Mapping[str, Any]) -> str:
    """A stable short name for a fingerprint: the first 16 hex digits of the SHA-256 of its canonical JSON."""
    canonical = json.dumps(_plain(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def fingerprint_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Fields whose values differ, as ``(field, a_value, b_value)``.

    Known fields come first in :data:`FINGERPRINT_FIELDS` order, then any
    others alphabetically; a field present on one side only is reported with
    ``None`` on the other.
    """
    names = [n for n in FINGERPRINT_FIELDS if n in a or n in b]
    names += sorted((set(a) | set(b)) - set(FINGERPRINT_FIELDS))
    out: list[tuple[str, Any, Any]] = []
    for name in names:
        left, right = _plain(a.get(name)), _plain(b.get(name))
        if left != right:
            out.append((name, a.get(name), b.get(name)))
    return out


def machine_diff(
    doc_a: Run,
    doc_b: Run,
    *,
    memory_tolerance: float = 0.05,
    ignore_packages: Sequence[str] = ("deliverybench",),
) -> list[tuple[str, Any, Any]]:
    """Differences between the machines and package versions of two documents.

    Args:
        doc_a: the baseline document.
        doc_b: the new document.
        memory_tolerance: relative difference of ``memory_bytes`` below which
            two machines count as equal (default 5 %: identical CI runners
            report slightly different totals).
        ignore_packages: packages whose versions are not compared (default:
            deliverybench itself, which is the code under test, like the commit).

    Returns:
        ``(field, a_value, b_value)`` with fields named ``machine.<fact>`` and
        ``packages.<name>``; empty when the machines match.
    """
    out: list[tuple[str, Any, Any]] = []
    ma, mb = doc_a.machine, doc_b.machine
    for name in MACHINE_FIELDS:
        left, right = ma.get(name), mb.get(name)
        if name == "memory_bytes" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if max(left, right) > 0 and abs(left - right) / max(left, right) <= memory_tolerance:
                continue
        if _plain(left) != _plain(right):
            out.append((f"machine.{name}", left, right))
    pa, pb = doc_a.packages, doc_b.packages
    for name in sorted(set(pa) | set(pb)):
        if name in ignore_packages:
            continue
        if pa.get(name) != pb.get(name):
            out.append((f"packages.{name}", pa.get(name), pb.get(name)))
    return out
