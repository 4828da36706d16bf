"""The results document as typed, validated values: read once, trusted afterwards.

A results file is untrusted input (it may come from another version, another
machine, or a hand edit). :meth:`Run.from_dict` checks it once -- versions,
types, finite and non-negative numbers, integer ranges, decodable histogram
text, table shapes -- and raises :class:`ResultsFormatError` naming the field
(``modes.push.audit.lost: must be a whole number >= 0, got -3``) instead of
letting a NaN, a 10**400 or a cut base64 string surface as a traceback deep
in the gate or the report. Everything after that reads attributes, never
``.get(...) or {}`` chains, so a misspelt key is a type error, not a "—".

:meth:`Run.to_dict` writes the same JSON back (field order as the builder
writes it, keys this version does not know kept as they were), so loading
and saving a file changes nothing. The schema itself is described in
``docs/results-schema.md``; :data:`SCHEMA_VERSION` is 2.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "RUN_STATUSES",
    "MIN_LAG_EVENTS",
    "SCHEDULE_LAG_METRIC",
    "ResultsFormatError",
    "ResultsVersionError",
    "LatencySummary",
    "Audit",
    "Throughput",
    "Table",
    "RoleCost",
    "Resources",
    "HarnessCheck",
    "TargetInfo",
    "Params",
    "PublisherFigures",
    "PollFigures",
    "WorkerTiming",
    "ClockInfo",
    "ModeResult",
    "RunInfo",
    "Run",
    "headline_metric",
]

SCHEMA_VERSION = 2
#: every status a mode can have
STATUSES = ("ok", "degraded", "failed", "interrupted")
#: every status a run (document) can have: a mode's, or ``incomplete`` when only some modes failed
RUN_STATUSES = (*STATUSES, "incomplete")
#: the summary metric of the publisher's own lateness (event handed to the pool - due)
SCHEDULE_LAG_METRIC = "schedule_lag"
#: a lag p99 says the publisher could not keep up only when it rests on this many events (ten of
#: them beyond it). Over the 160 events of the CI profile it is the second-worst event: a few ms of
#: scheduler jitter on a shared machine, which a saturated harness shows as CPU saturation anyway.
MIN_LAG_EVENTS = 1000
#: the largest integer a count or a time may be: what a signed 64-bit field of any reader holds
_MAX_INT = 2**63 - 1

class ResultsFormatError(ValueError):
    """The document is not a usable deliverybench results document; the message names the field."""


class ResultsVersionError(ResultsFormatError):
    """The document has another ``schema_version`` than this code reads."""


def headline_metric(mode: str) -> str:
    """Burst runs time acknowledgements (``ack``); every other mode times deliveries."""
    return "ack" if mode == "burst" else "delivery"


# -- reading untrusted JSON ------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Fields:
    """One JSON object being read, with the dotted path its errors name."""

    __slots__ = ("data", "path", "used")

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ResultsFormatError(f"{path}: must be an object, got {_shown(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def int_(self, key: str, default: int | None = 0, *, lo: int = 0) -> int | None:
        value = self.raw(key)
        return default if value is None else _int(value, self.where(key), lo=lo)

    def req_int(self, key: str, *, lo: int = 0) -> int:
        value = self.raw(key)
        if value is None:
            raise ResultsFormatError(f"{self.where(key)}: missing")
        return _int(value, self.where(key), lo=lo)

    def num(self, key: str, *, lo: float | None = 0.0, hi: float | None = None) -> float | None:
        value = self.raw(key)
        return None if value is None else _num(value, self.where(key), lo=lo, hi=hi)

    def str_(self, key: str, default: str = "") -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ResultsFormatError(f"{self.where(key)}: must be text, got {_shown(value)}")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.str_(key) if self.raw(key) is not None else None

    def bool_(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ResultsFormatError(f"{self.where(key)}: must be true or false, got {_shown(value)}")
        return value

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ResultsFormatError(f"{self.where(key)}: must be a list of text")
        return tuple(value)

    def obj(self, key: str) -> _Fields:
        value = self.raw(key)
        return _Fields({} if value is None else value, self.where(key))

    def json(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ResultsFormatError(f"{self.where(key)}: must be an object, got {_shown(value)}")
        _check_json(value, self.where(key))
        return value

    def rest(self) -> dict[str, Any]:
        """Keys this version does not read, validated as plain JSON and kept for writing back."""
        out = {k: v for k, v in self.data.items() if k not in self.used}
        _check_json(out, self.path)
        return out


def _int(value: Any, where: str, *, lo: int = 0) -> int:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)  # 3.0 from a hand edit is still three
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResultsFormatError(f"{where}: must be a whole number >= {lo}, got {_shown(value)}")
    if value < lo or value > _MAX_INT:
        raise ResultsFormatError(f"{where}: must be a whole number >= {lo} and < 2**63, got {_shown(value)}")
    return value


def _num(value: Any, where: str, *, lo: float | None = 0.0, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsFormatError(f"{where}: must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ResultsFormatError(f"{where}: number out of range: {_shown(value)}") from None
    if not math.isfinite(number):
        raise ResultsFormatError(f"{where}: must be a finite number, got {_shown(value)}")
    if lo is not None and number < lo:
        raise ResultsFormatError(f"{where}: must be >= {lo:g}, got {_shown(value)}")
    if hi is not None and number > hi:
        raise ResultsFormatError(f"{where}: must be <= {hi:g}, got {_shown(value)}")
    return number


def _check_json(value: Any, where: str) -> None:
    """Plain JSON only, every number finite and in range (a document's free-form parts too)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ResultsFormatError(f"{where}: must be a finite number, got {_shown(value)}")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > _MAX_INT:
            raise ResultsFormatError(f"{where}: number out of range: {_shown(value)}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, bool))):
        raise ResultsFormatError(f"{where}: not plain JSON: {_shown(value)}")


def _without_none(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


# -- the parts of a mode result --------------------------------------------------------------

#: the figures of a latency summary, in the order they are written
_SUMMARY_FIELDS = ("p50", "p90", "p99", "p99_9", "p99_99", "min", "max", "mean")


@dataclass(frozen=True)
class LatencySummary:
    """Count and percentiles of one metric, in milliseconds; ``None`` where nothing was recorded."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    p99_99: float | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def from_fields(cls, f: _Fields) -> LatencySummary:
        return cls(f.int_("count") or 0, *(f.num(name) for name in _SUMMARY_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, **{name: getattr(self, name) for name in _SUMMARY_FIELDS}}

    def value(self, name: str) -> float | None:
        """A percentile by its results name (``p99_9``), or ``None`` if unknown."""
        return getattr(self, name) if name in _SUMMARY_FIELDS else None


#: audit counts in the order the audit writes them; ``None`` when a document did not record one
_AUDIT_COUNTS = ("scheduled", "published", "accepted", "refused", "subscribers", "subscribers_full", "expected",
                 "delivered_unique", "lost", "duplicates", "out_of_order", "unexpected", "arrivals",
                 "subscribers_with_loss", "subscribers_never_connected", "subscribers_unmeasured")


@dataclass(frozen=True)
class Audit:
    """Who got which event (see ``core/audit.py``). A count the run did not record is ``None``, not 0."""

    scheduled: int | None = None
    published: int | None = None
    accepted: int | None = None
    refused: int | None = None
    subscribers: int | None = None
    subscribers_full: int | None = None
    expected: int | None = None
    delivered_unique: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    out_of_order: int | None = None
    unexpected: int | None = None
    arrivals: int | None = None
    subscribers_with_loss: int | None = None
    subscribers_never_connected: int | None = None
    #: subscribers of a harness process that died: neither delivered nor lost, not measured
    subscribers_unmeasured: int | None = None
    balanced: bool = True
    recorded: int | None = None
    recorded_matches: bool = True
    more: Mapping[str, Any] = field(default_factory=dict)
    #: whether the document had an audit at all (a failed run's may not)
    present: bool = True

    @classmethod
    def from_fields(cls, f: _Fields) -> Audit:
        counts = {name: f.int_(name, None) for name in _AUDIT_COUNTS}
        return cls(**counts, balanced=f.bool_("balanced", True), recorded=f.int_("recorded", None),
                   recorded_matches=f.bool_("recorded_matches", True), more=f.rest(), present=bool(f.data))

    def to_dict(self) -> dict[str, Any]:
        if not self.present:
            return {}
        out = _without_none({name: getattr(self, name) for name in _AUDIT_COUNTS})
        out["balanced"] = self.balanced
        if self.recorded is not None:
            out["recorded"] = self.recorded
        out["recorded_matches"] = self.recorded_matches
        return {**out, **self.more}

    def count(self, name: str) -> int:
        """A count, 0 when not recorded (for sums and sentences, never for the gate)."""
        value = getattr(self, name)
        return int(value) if isinstance(value, int) else 0


@dataclass(frozen=True)
class Throughput:
    """Deliveries and their rate; ``span_seconds`` is what ``deliveries_per_s`` divides by."""

    deliveries: int = 0
    deliveries_per_s: float | None = None
    published: int | None = None
    accepted: int | None = None
    stream_seconds: float | None = None
    span_seconds: float | None = None
    span_from: str | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> Throughput:
        return cls(f.int_("deliveries") or 0, f.num("deliveries_per_s"), f.int_("published", None),
                   f.int_("accepted", None), f.num("stream_seconds"), f.num("span_seconds"), f.opt_str("span_from"),
                   f.rest())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"deliveries": self.deliveries, "deliveries_per_s": self.deliveries_per_s}
        out.update(_without_none({"published": self.published, "accepted": self.accepted,
                                  "stream_seconds": self.stream_seconds, "span_seconds": self.span_seconds,
                                  "span_from": self.span_from}))
        return {**out, **self.more}


Cell = int | float | str | bool | None


@dataclass(frozen=True)
class Table:
    """Columns and rows (series, fan-out, errors over time, resource samples)."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Cell, ...], ...] = ()

    @classmethod
    def from_fields(cls, f: _Fields, *, default_columns: Sequence[str] = ()) -> Table:
        columns = f.strs("columns") or tuple(default_columns)
        raw_rows = f.raw("rows")
        if raw_rows is None:
            raw_rows = []
        if not isinstance(raw_rows, list):
            raise ResultsFormatError(f"{f.where('rows')}: must be a list of rows")
        rows: list[tuple[Cell, ...]] = []
        for i, row in enumerate(raw_rows):
            where = f"{f.where('rows')}[{i}]"
            if not isinstance(row, list) or (columns and len(row) != len(columns)):
                raise ResultsFormatError(f"{where}: must be a list of {len(columns)} values")
            for j, cell in enumerate(row):
                if isinstance(cell, (list, dict)):
                    raise ResultsFormatError(f"{where}[{j}]: must be a number, text or null")
                _check_json(cell, f"{where}[{j}]")
            rows.append(tuple(row))
        return cls(columns, tuple(rows))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "rows": [list(row) for row in self.rows]}

    def column(self, name: str) -> list[Cell]:
        """One column's values (empty when the table lacks it)."""
        if name not in self.columns:
            return []
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> Iterator[dict[str, Cell]]:
        """Rows as ``{column: value}``."""
        for row in self.rows:
            yield dict(zip(self.columns, row))


@dataclass(frozen=True)
class RoleCost:
    """What one role's processes (harness, target, machine, steal) spent."""

    processes: int = 0
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    max_cpu_percent: float | None = None
    mean_cpu_percent: float | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> RoleCost:
        return cls(f.int_("processes") or 0, f.num("cpu_s"), f.int_("peak_rss_bytes", None),
                   f.num("max_cpu_percent"), f.num("mean_cpu_percent"), f.rest())

    def to_dict(self) -> dict[str, Any]:
        return {"processes": self.processes, "cpu_s": self.cpu_s, "peak_rss_bytes": self.peak_rss_bytes,
                "max_cpu_percent": self.max_cpu_percent, "mean_cpu_percent": self.mean_cpu_percent, **self.more}


RESOURCE_COLUMNS = ("t_s", "role", "pid", "cpu_s", "cpu_percent", "rss_bytes", "connections")


@dataclass(frozen=True)
class Resources:
    """psutil samples of the harness, target and machine, one per process per second, and their costs."""

    samples: Table = field(default_factory=Table)
    costs: Mapping[str, RoleCost] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> Resources:
        costs_f = f.obj("costs")
        costs = {str(role): RoleCost.from_fields(costs_f.obj(role)) for role in costs_f.data}
        return cls(Table.from_fields(f), costs)

    def to_dict(self) -> dict[str, Any]:
        return {**self.samples.to_dict(), "costs": {role: c.to_dict() for role, c in self.costs.items()}}

    def cpu_s(self, role: str) -> float | None:
        """CPU-seconds a role spent, or ``None`` when it was not sampled (an external target)."""
        cost = self.costs.get(role)
        return None if cost is None else cost.cpu_s


@dataclass(frozen=True)
class HarnessCheck:
    """Whether the harness (or the whole machine) was the bottleneck while it measured."""

    saturated: bool = False
    reason: str = ""
    busiest_pid: int | None = None
    busy_fraction: float | None = None
    machine_busy_fraction: float | None = None
    steal_fraction: float | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> HarnessCheck:
        return cls(f.bool_("saturated", False), f.str_("reason"), f.int_("busiest_pid", None),
                   f.num("busy_fraction", hi=1.0), f.num("machine_busy_fraction", hi=1.0),
                   f.num("steal_fraction", hi=1.0), f.rest())

    def to_dict(self) -> dict[str, Any]:
        return {"saturated": self.saturated, "reason": self.reason, "busiest_pid": self.busiest_pid,
                "busy_fraction": self.busy_fraction, "machine_busy_fraction": self.machine_busy_fraction,
                "steal_fraction": self.steal_fraction, **self.more}


@dataclass(frozen=True)
class TargetInfo:
    """Which system was measured: its name, ``builtin`` or ``external``, and its URLs."""

    name: str | None = None
    kind: str | None = None
    urls: Mapping[str, Any] | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> TargetInfo:
        return cls(f.opt_str("name"), f.opt_str("kind"), f.json("urls") if f.has("urls") else None, f.rest())

    def to_dict(self) -> dict[str, Any]:
        out = _without_none({"name": self.name, "kind": self.kind})
        if self.urls is not None:
            out["urls"] = dict(self.urls)
        return {**out, **self.more}


@dataclass(frozen=True)
class Params:
    """The workload of a mode run: what two runs must share to be compared."""

    subscribers: int | None = None
    rate: float | None = None
    duration_s: float | None = None
    schedule: Mapping[str, Any] = field(default_factory=dict)
    payload_bytes: int | None = None
    processes: int | None = None
    drain_s: float | None = None
    join_grace_s: float | None = None
    warmup_s: float | None = None
    warmup_events: int | None = None
    repeats: int | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> Params:
        return cls(f.int_("subscribers", None), f.num("rate"), f.num("duration_s"), f.json("schedule"),
                   f.int_("payload_bytes", None), f.int_("processes", None), f.num("drain_s"), f.num("join_grace_s"),
                   f.num("warmup_s"), f.int_("warmup_events", None), f.int_("repeats", None), f.rest())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("subscribers", "rate", "duration_s"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.schedule:
            out["schedule"] = dict(self.schedule)
        for name in ("payload_bytes", "processes", "drain_s", "join_grace_s", "warmup_s", "warmup_events",
                     "repeats"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return {**out, **self.more}


@dataclass(frozen=True)
class PublisherFigures:
    """The open-model publisher's own account (``extra.publisher``)."""

    requests: int = 0
    failed_requests: int = 0
    max_lag_ms: float | None = None
    errors: Mapping[str, int] = field(default_factory=dict)
    peak_in_flight: int | None = None
    concurrency: int | None = None
    batch: int | None = None


@dataclass(frozen=True)
class PollFigures:
    """What polling cost: requests, answers with nothing new, gaps, full pages (``extra`` of a poll or longpoll run).

    A long-poll run's empty answers and gaps are its ``longpoll_*`` counters;
    ``held_ms_mean`` (the mean time a request was held) is long-polling's alone.
    """

    requests: int | None = None
    requests_per_delivery: float | None = None
    empty_polls: int | None = None
    gaps: int | None = None
    full_pages: int | None = None
    held_ms_mean: float | None = None


@dataclass(frozen=True)
class WorkerTiming:
    """One Locust worker: who it was, how its clock stood against the master's, and what it received.

    ``offset_ms`` (its wall clock minus the master's) and ``drift_ms`` (how far
    its wall clock moved against its monotonic clock over the run) may be
    negative; the medians are kept as recorded and both ways (``p50_raw_ms``:
    on its own wall clock, ``p50_corrected_ms``: on the master's).
    """

    node: str = ""
    host: str = ""
    address: str = ""
    process: str = ""
    sessions: int = 0
    deliveries: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    offset_ms: float | None = None
    uncertainty_ms: float | None = None
    drift_ms: float | None = None
    rtt_ms: float | None = None
    exchanges: int | None = None
    corrected: bool | None = None
    p50_raw_ms: float | None = None
    p50_corrected_ms: float | None = None
    more: Mapping[str, Any] = field(default_factory=dict)

    _ORDER: ClassVar[tuple[str, ...]] = ("node", "host", "address", "process", "sessions", "deliveries", "p50_ms",
                                         "p99_ms", "offset_ms", "uncertainty_ms", "drift_ms",
                                         "rtt_ms", "exchanges", "corrected", "p50_raw_ms", "p50_corrected_ms")

    @classmethod
    def from_fields(cls, f: _Fields) -> WorkerTiming:
        corrected = f.bool_("corrected", False) if f.has("corrected") else None
        return cls(f.str_("node"), f.str_("host"), f.str_("address"), f.str_("process"), f.int_("sessions") or 0,
                   f.int_("deliveries") or 0, f.num("p50_ms", lo=None), f.num("p99_ms", lo=None),
                   f.num("offset_ms", lo=None), f.num("uncertainty_ms"), f.num("drift_ms", lo=None), f.num("rtt_ms"),
                   f.int_("exchanges", None), corrected, f.num("p50_raw_ms", lo=None),
                   f.num("p50_corrected_ms", lo=None), f.rest())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self._ORDER[:8]}
        out.update({k: getattr(self, k) for k in self._ORDER[8:] if getattr(self, k) is not None})
        return {**out, **self.more}


@dataclass(frozen=True)
class ClockInfo:
    """How receive stamps were timed (``clock``): one process, or workers measured and corrected or not.

    ``uncertainty_ms`` is the run's timing uncertainty: how far any receive
    stamp may be from the master's clock, reported beside the percentiles.
    """

    description: str = ""
    corrected: bool = False
    uncertainty_ms: float = 0.0
    workers: tuple[WorkerTiming, ...] = ()
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> ClockInfo:
        workers = f.raw("workers")
        if workers is not None and not isinstance(workers, list):
            raise ResultsFormatError(f"{f.where('workers')}: must be a list of workers")
        rows = tuple(WorkerTiming.from_fields(_Fields(w, f"{f.where('workers')}[{i}]"))
                     for i, w in enumerate(workers or ()))
        return cls(f.str_("description"), f.bool_("corrected", False), f.num("uncertainty_ms") or 0.0, rows,
                   f.rest())

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "corrected": self.corrected, "uncertainty_ms": self.uncertainty_ms,
                "workers": [w.to_dict() for w in self.workers], **self.more}


def _histograms(f: _Fields) -> Mapping[str, Any]:
    """Check the shape of the encoded histograms and that every slice is base64 text."""
    slices = f.obj("slices")
    for metric in slices.data:
        per_second = slices.obj(metric)
        for second, text in per_second.data.items():
            where = per_second.where(str(second))
            if not str(second).lstrip("-").isdigit() or not isinstance(text, str):
                raise ResultsFormatError(f"{where}: must map a unix second to histogram text")
            try:
                binascii.a2b_base64(text, strict_mode=True)
            except (binascii.Error, ValueError):
                raise ResultsFormatError(f"{where}: histogram is not valid base64 (cut or edited?)") from None
    for counter in ("negative", "clamped"):
        counts = f.obj(counter)
        for metric in counts.data:
            counts.int_(metric)
    return f.data


def _publisher_figures(extra: Mapping[str, Any], where: str) -> PublisherFigures | None:
    raw = extra.get("publisher")
    if raw is None:
        return None
    f = _Fields(raw, f"{where}.publisher")
    errors = f.obj("errors")
    return PublisherFigures(f.int_("requests") or 0, f.int_("failed_requests") or 0, f.num("max_lag_ms"),
                            {str(k): errors.int_(k) or 0 for k in errors.data}, f.int_("peak_in_flight", None),
                            f.int_("concurrency", None), f.int_("batch", None))


def _poll_figures(extra: Mapping[str, Any], where: str) -> PollFigures:
    f = _Fields(extra, where)
    requests = f.int_("requests", None)
    if requests is None:
        requests = f.int_("poll_requests", None)
    if "longpoll_requests" in extra or "held_ms_mean" in extra:  # a long-poll run: its own counters
        return PollFigures(requests, f.num("requests_per_delivery"), f.int_("longpoll_empty"),
                           f.int_("longpoll_gaps"), None, f.num("held_ms_mean"))
    return PollFigures(requests, f.num("requests_per_delivery"), f.int_("poll_empty"), f.int_("poll_gaps"),
                       f.int_("poll_full_pages"))


#: the order in which the builder writes a mode result's sections
_MODE_ORDER = ("mode", "status", "status_reasons", "failure", "stopped_early", "warnings", "target", "params",
               "started_ns", "stream_start_ns", "ended_ns", "histograms", "summary", "throughput", "series",
               "audit", "fanout", "errors", "errors_series", "resources", "harness", "clock", "extra", "notes",
               "repeats")


@dataclass(frozen=True)
class ModeResult:
    """One mode's measurement (one run, or the combined view of ``--repeats K`` with the runs inside)."""

    mode: str
    status: str = "ok"
    status_reasons: tuple[str, ...] = ()
    failure: str | None = None
    stopped_early: str | None = None
    warnings: tuple[str, ...] = ()
    target: TargetInfo = field(default_factory=TargetInfo)
    params: Params = field(default_factory=Params)
    started_ns: int = 0
    stream_start_ns: int = 0
    ended_ns: int = 0
    histograms: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, LatencySummary] = field(default_factory=dict)
    throughput: Throughput = field(default_factory=Throughput)
    series: Table = field(default_factory=Table)
    audit: Audit = field(default_factory=lambda: Audit(present=False))
    fanout: Table = field(default_factory=Table)
    errors: Mapping[str, int] = field(default_factory=dict)
    errors_series: Table = field(default_factory=Table)
    resources: Resources = field(default_factory=Resources)
    harness: HarnessCheck = field(default_factory=HarnessCheck)
    #: how receive stamps were timed; None in documents from before workers' clocks were measured
    clock: ClockInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    repeats: tuple[ModeResult, ...] = ()
    more: Mapping[str, Any] = field(default_factory=dict)
    #: which sections the document had, so writing it back adds none
    present: frozenset[str] = frozenset(_MODE_ORDER)

    # -- reading and writing

    @classmethod
    def from_dict(cls, data: Any, path: str = "mode") -> ModeResult:
        """Validate one mode result; :class:`ResultsFormatError` names the first bad field."""
        f = _Fields(data, path)
        mode = f.str_("mode")
        status = f.str_("status", "ok")
        if status not in STATUSES:
            raise ResultsFormatError(f"{f.where('status')}: must be one of {', '.join(STATUSES)}, got {status!r}")
        summary_f = f.obj("summary")
        summary = {str(m): LatencySummary.from_fields(summary_f.obj(m)) for m in summary_f.data}
        errors_f = f.obj("errors")
        errors = {str(kind): errors_f.int_(kind) or 0 for kind in errors_f.data}
        repeats_raw = f.raw("repeats")
        if repeats_raw is not None and not isinstance(repeats_raw, list):
            raise ResultsFormatError(f"{f.where('repeats')}: must be a list of mode results")
        repeats = tuple(cls.from_dict(r, f"{f.where('repeats')}[{i}]") for i, r in enumerate(repeats_raw or ()))
        extra = f.json("extra")
        _publisher_figures(extra, f.where("extra"))  # the typed parts of extra are checked now, not when read
        _poll_figures(extra, f.where("extra"))
        return cls(
            mode=mode, status=status, status_reasons=f.strs("status_reasons"), failure=f.opt_str("failure"),
            stopped_early=f.opt_str("stopped_early"), warnings=f.strs("warnings"),
            target=TargetInfo.from_fields(f.obj("target")), params=Params.from_fields(f.obj("params")),
            started_ns=f.int_("started_ns") or 0, stream_start_ns=f.int_("stream_start_ns") or 0,
            ended_ns=f.int_("ended_ns") or 0, histograms=_histograms(f.obj("histograms")), summary=summary,
            throughput=Throughput.from_fields(f.obj("throughput")), series=Table.from_fields(f.obj("series")),
            audit=Audit.from_fields(f.obj("audit")), fanout=Table.from_fields(f.obj("fanout")), errors=errors,
            errors_series=Table.from_fields(f.obj("errors_series")),
            resources=Resources.from_fields(f.obj("resources")), harness=HarnessCheck.from_fields(f.obj("harness")),
            clock=ClockInfo.from_fields(f.obj("clock")) if f.raw("clock") is not None else None, extra=extra,
            notes=f.strs("notes"), repeats=repeats, more=f.rest(),
            present=frozenset(k for k in _MODE_ORDER if k in f.data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, in the builder's order; sections the source lacked stay absent."""
        values: dict[str, Callable[[], Any]] = {
            "mode": lambda: self.mode, "status": lambda: self.status,
            "status_reasons": lambda: list(self.status_reasons), "failure": lambda: self.failure,
            "stopped_early": lambda: self.stopped_early, "warnings": lambda: list(self.warnings),
            "target": self.target.to_dict, "params": self.params.to_dict, "started_ns": lambda: self.started_ns,
            "stream_start_ns": lambda: self.stream_start_ns, "ended_ns": lambda: self.ended_ns,
            "histograms": lambda: dict(self.histograms),
            "summary": lambda: {m: s.to_dict() for m, s in self.summary.items()},
            "throughput": self.throughput.to_dict, "series": self.series.to_dict, "audit": self.audit.to_dict,
            "fanout": self.fanout.to_dict, "errors": lambda: dict(self.errors),
            "errors_series": self.errors_series.to_dict, "resources": self.resources.to_dict,
            "harness": self.harness.to_dict, "clock": lambda: self.clock.to_dict() if self.clock else None,
            "extra": lambda: dict(self.extra), "notes": lambda: list(self.notes),
            "repeats": lambda: [r.to_dict() for r in self.repeats],
        }
        out = {key: values[key]() for key in _MODE_ORDER if key in self.present}
        # fields set after loading (a status decided, a warning added) are written even if the source lacked them
        for key in ("stopped_early", "warnings", "notes", "repeats"):
            if key not in self.present and getattr(self, key):
                out[key] = values[key]()
        return {**out, **self.more}

    def with_status(self, status: str, reasons: Sequence[str]) -> ModeResult:
        """A copy with its status decided (see ``core/status.py``)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        return replace(self, status=status, status_reasons=tuple(reasons),
                       present=self.present | {"status", "status_reasons"})

    # -- what every reader asks

    @property
    def runs(self) -> tuple[ModeResult, ...]:
        """The independent runs behind this result: its repeats, or itself (the unit of replication)."""
        return self.repeats or (self,)

    @property
    def headline_metric(self) -> str:
        return headline_metric(self.mode)

    def latency(self, metric: str | None = None) -> LatencySummary:
        """The summary of ``metric`` (default: the headline), empty when it was not recorded."""
        return self.summary.get(metric or self.headline_metric) or LatencySummary()

    @property
    def headline(self) -> LatencySummary:
        return self.latency()

    @property
    def timing_uncertainty_ms(self) -> float | None:
        """How far a receive stamp may be from the master's clock (ms); None when the run did not say."""
        return None if self.clock is None else self.clock.uncertainty_ms

    @property
    def schedule_lag_p99(self) -> float | None:
        """The publisher's schedule-lag p99 (ms), when it rests on enough events to mean anything."""
        lag = self.summary.get(SCHEDULE_LAG_METRIC)
        if lag is None or lag.p99 is None or lag.count < MIN_LAG_EVENTS:
            return None
        return lag.p99

    @property
    def publisher(self) -> PublisherFigures | None:
        """The publisher's own figures, when this mode published."""
        return _publisher_figures(self.extra, "extra")

    @property
    def poll(self) -> PollFigures:
        """Polling's cost, from the poller's counters (a counter that never moved is absent: 0)."""
        return _poll_figures(self.extra, "extra")

    def cpu_per_1k(self, role: str) -> float | None:
        """A role's CPU-seconds per 1,000 deliveries (``None``: not sampled, or nothing delivered)."""
        cpu = self.resources.cpu_s(role)
        deliveries = self.throughput.deliveries
        return None if cpu is None or not deliveries else cpu / deliveries * 1000.0


def _check_modes(f: _Fields) -> dict[str, ModeResult]:
    modes = f.obj("modes")
    out: dict[str, ModeResult] = {}
    for name in modes.data:
        result = ModeResult.from_dict(modes.raw(name), modes.where(str(name)))
        if result.mode and result.mode != name:
            raise ResultsFormatError(f"{modes.where(str(name))}.mode: says {result.mode!r} under {name!r}")
        out[str(name)] = result if result.mode else replace(result, mode=str(name))
    return out


@dataclass(frozen=True)
class RunInfo:
    """The run as a whole: its id (the folder name), status, times, commit and command."""

    id: str
    status: str
    started_ns: int = 0
    ended_ns: int = 0
    commit: str | None = None
    command: tuple[str, ...] = ()
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, f: _Fields) -> RunInfo:
        status = f.str_("status", "ok")
        if status not in RUN_STATUSES:
            raise ResultsFormatError(f"{f.where('status')}: must be one of {', '.join(RUN_STATUSES)}, "
                                     f"got {status!r}")
        return cls(f.str_("id"), status, f.int_("started_ns") or 0, f.int_("ended_ns") or 0, f.opt_str("commit"),
                   f.strs("command"), f.rest())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "started_ns": self.started_ns, "ended_ns": self.ended_ns,
                "commit": self.commit, "command": list(self.command), **self.more}


@dataclass(frozen=True)
class Run:
    """A whole results document: the run, its configuration and machine, and its modes."""

    run: RunInfo
    config: Mapping[str, Any] = field(default_factory=dict)
    machine: Mapping[str, Any] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)
    modes: Mapping[str, ModeResult] = field(default_factory=dict)
    more: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Validate a document once (:class:`ResultsVersionError` for another schema version)."""
        if not isinstance(data, Mapping) or data.get("tool") != "deliverybench":
            raise ResultsFormatError("not a deliverybench results document")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultsVersionError(
                f"results schema_version {version!r} is not supported by this deliverybench "
                f"(it reads version {SCHEMA_VERSION}); re-run the benchmark or use a matching release")
        f = _Fields(data, "")
        f.raw("tool")
        f.raw("schema_version")
        for key in ("run", "config", "modes"):
            if not isinstance(data.get(key), Mapping):
                raise ResultsFormatError(f"results document lacks {key!r}")
        packages_f = f.obj("packages")
        packages = {str(name): packages_f.str_(name) for name in packages_f.data}
        return cls(RunInfo.from_fields(f.obj("run")), f.json("config"), f.json("machine"), packages,
                   _check_modes(f), f.rest())

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "tool": "deliverybench", "run": self.run.to_dict(),
                "config": dict(self.config), "machine": dict(self.machine), "packages": dict(self.packages),
                "modes": {name: result.to_dict() for name, result in self.modes.items()}, **self.more}

    def mode(self, name: str) -> ModeResult:
        """One mode's result (``KeyError`` naming the modes there are)."""
        try:
            return self.modes[name]
        except KeyError:
            raise KeyError(f"no mode {name!r} in run {self.run.id} (it has {', '.join(self.modes) or 'none'})") \
                from None
