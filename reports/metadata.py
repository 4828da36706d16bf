"""What of a run's metadata a reader compares: commit, machine, packages, and the options that were changed.

A results file records every option and, beside them, Locust's own parsed
options -- some 170 rows, most of them defaults or ``null``. Shown in full
they were 45 % of the report and buried the few that tell two runs apart.
This module picks those: the options whose value differs from its default
in :data:`deliverybench.core.options.OPTIONS`, the handful of Locust's own
that set the load, and no empty values anywhere. The full configuration
stays in ``results.json``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from deliverybench.core.model import SCHEMA_VERSION, ModeResult, Run
from deliverybench.core.options import OPTIONS, Option, by_dest

from .frames import flatten

__all__ = ["changed_options", "run_facts", "flat_facts", "mode_facts", "present", "summary_line", "LOCUST_SHOWN"]

#: Locust's own options that set the load of a plain ``locust -f`` run (which has no ``--subscribers``); the rest
#: of its ~100 parsed options (ports, UI, log files) are left to results.json
LOCUST_SHOWN = ("num_users", "spawn_rate", "run_time", "processes", "host")
#: the group of options run_bench.py or the master sets per mode (paths, pids, URLs of the run), as the option
#: table names it: new for every run, so never worth comparing
_PLUMBING = by_dest("results").group
#: the run id is in the run's facts already
_HIDDEN = frozenset({"run_id"})
_OPTIONS: Mapping[str, Option] = {o.dest: o for o in OPTIONS if o.command is None}


def present(value: Any) -> bool:
    """Whether a value says anything: not ``None``, not an empty string, list or mapping."""
    if value is None:
        return False
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default or value == default
    return bool(value == default)


def _rows(key: str, value: Any, default: Any) -> list[tuple[str, str, str]]:
    """``(option, value, default)`` rows, a nested value flattened into one row per leaf."""
    shown_default = "—" if not present(default) else flatten({"v": default})["v"]
    leaves = flatten({key: value})
    return [(name, text, shown_default) for name, text in leaves.items()
            if text not in ("null", "", "[]", "{}")]


def changed_options(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(option, value, default)`` for every option whose value is not its default.

    Keys that are not options (a hand-written config, a future field) are
    shown when they hold anything. Locust's own options: run_bench.py nests
    them under ``locust``, where they repeat what it handed on (``num_users``
    is ``--subscribers``), so none is shown; a plain ``locust -f`` run has
    them flat beside ours, and only :data:`LOCUST_SHOWN` are shown.
    """
    plain_locust = "locust" not in config and "locustfile" in config
    rows: list[tuple[str, str, str]] = []
    for key, value in config.items():
        option = _OPTIONS.get(key)
        if key == "locust" and isinstance(value, Mapping):
            continue
        if option is not None:
            if option.group != _PLUMBING and key not in _HIDDEN and not _same(value, option.default):
                rows += _rows(key, value, option.default)
        elif plain_locust:
            if key in LOCUST_SHOWN and present(value):
                rows += _rows(key, value, None)
        elif present(value):
            rows += _rows(key, value, None)
    return rows


def _utc(ns: int) -> str | None:
    """A wall-clock time; 0 is the model's "not recorded"."""
    if not ns:
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: int, end: int) -> str | None:
    if not start or not end:
        return None
    seconds = (end - start) / 1e9
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)} min {sec:.1f} s" if minutes else f"{sec:.1f} s"


def _kept(items: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in items.items() if present(v) and v not in ("null", "[]", "{}")}


def flat_facts(block: Mapping[str, Any]) -> dict[str, Any]:
    """A nested block (machine, packages) flattened, nothing empty."""
    return _kept(flatten(block))


def run_facts(doc: Run) -> dict[str, Any]:
    """The run: id, status, times, commit, command, schema version (nothing empty)."""
    run = doc.run
    return _kept({
        "run id": run.id, "status": run.status, "started": _utc(run.started_ns), "ended": _utc(run.ended_ns),
        "duration": _duration(run.started_ns, run.ended_ns), "commit": run.commit,
        "command": " ".join(run.command), "schema version": SCHEMA_VERSION,  # the only version a Run is loaded from
    })


def mode_facts(result: ModeResult) -> dict[str, Any]:
    """One mode: status, times, then its target and workload, flattened, nothing empty."""
    info: dict[str, Any] = {
        "status": result.status, "failure": result.failure, "started": _utc(result.started_ns),
        "stream start": _utc(result.stream_start_ns), "ended": _utc(result.ended_ns),
        "duration": _duration(result.started_ns, result.ended_ns),
    }
    info.update({f"target.{k}": v for k, v in flatten(result.target.to_dict()).items()})
    info.update({f"params.{k}": v for k, v in flatten(result.params.to_dict()).items()})
    return _kept(info)


def summary_line(doc: Run, changed: Sequence[tuple[str, str, str]]) -> str:
    """One line for the collapsed metadata: what tells this run apart at a glance."""
    machine = doc.machine
    parts = [f"run {doc.run.id}" if doc.run.id else "run"]
    if doc.run.commit:
        parts.append(f"commit {doc.run.commit[:12]}")
    cpu = ", ".join(str(x) for x in (f"{machine['cpu_count']} CPUs" if machine.get("cpu_count") else None,
                                     machine.get("cpu_model")) if x)
    host = str(machine.get("hostname") or "")
    if host or cpu:
        parts.append(f"{host}{' (' + cpu + ')' if host and cpu else cpu}")
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if doc.packages.get("locust"):
        parts.append(f"Locust {doc.packages['locust']}")
    names = {name.split(".")[0] for name, _, _ in changed}
    parts.append(f"{len(names)} option{'s' if len(names) != 1 else ''} changed from the defaults")
    return " · ".join(parts)
