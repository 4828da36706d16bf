"""The results document: one versioned JSON file per run.

Reports, comparisons and the CI gate read only this document, never the
processes that produced it, so it carries everything needed to judge a run:
configuration, machine, package versions, commit, per-mode histograms (per
metric and second), precomputed summaries and series, audit, fan-out,
resource samples and errors. ``docs/results-schema.md`` describes every field.

Like asv's ``Results``, a document declares ``schema_version``; loading a
document of another version fails with a clear message instead of guessing.
This module builds and validates documents in memory; reading and writing
files is the adapters' job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import hdr_fast
from .audit import AuditTotals
from .model import SCHEMA_VERSION, ResultsFormatError, ResultsVersionError, Run
from .recording import Recorder, summarize
from .resources import Sample, costs_to_dict, harness_saturation, one_per_second, role_costs
from .status import as_mode_result, decide, document_status

__all__ = [
    "SCHEMA_VERSION",
    "ResultsVersionError",
    "ResultsFormatError",
    "SERIES_COLUMNS",
    "per_second_series",
    "build_mode_result",
    "finalize_mode",
    "delivery_span_ns",
    "recorded_headline",
    "new_document",
    "merge_documents",
    "dumps",
    "loads",
    "load_run",
]

NS_PER_S = 1_000_000_000

SERIES_COLUMNS = (
    "second",  # unix second (receive time)
    "deliveries",  # deliveries received in that second
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "service_p50_ms",
    "service_p99_ms",
    "published",  # events published (confirmed) with due time in that second
    "connected",  # subscriber sessions open (sum over harness processes)
    "errors",  # errors of any kind in that second
)


def _ms(value_us: int) -> float:
    return round(value_us / 1000.0, 3)


def per_second_series(
    recorder: Recorder,
    *,
    published_due_ns: Sequence[int] = (),
    published_ok: Sequence[bool] = (),
    gauges: Mapping[int, int] | None = None,
    errors_per_second: Mapping[int, int] | None = None,
    metric: str = "delivery",
) -> list[list[float | int | None]]:
    """Rows of :data:`SERIES_COLUMNS`, one per second that saw anything.

    ``metric`` is the latency the row describes: ``delivery``, or ``ack`` for bursts.
    """
    published: dict[int, int] = {}
    for due, ok in zip(published_due_ns, published_ok):
        if ok:
            sec = due // NS_PER_S
            published[sec] = published.get(sec, 0) + 1
    gauges = gauges or {}
    errors_per_second = errors_per_second or {}
    seconds = set(recorder.seconds(metric)) | set(published) | set(gauges) | set(errors_per_second)
    rows: list[list[float | int | None]] = []
    for sec in sorted(seconds):
        delivery = recorder.slices.get((metric, sec))
        service = recorder.slices.get(("service", sec))
        n = delivery.get_total_count() if delivery is not None else 0
        row: list[float | int | None] = [sec, n]
        if delivery is not None and n:
            row += [_ms(v) for v in hdr_fast.percentiles(delivery, (50, 90, 99))]
            row.append(_ms(delivery.get_max_value()))
        else:
            row += [None, None, None, None]
        if service is not None and service.get_total_count():
            row += [_ms(v) for v in hdr_fast.percentiles(service, (50, 99))]
        else:
            row += [None, None]
        row += [published.get(sec, 0), gauges.get(sec), errors_per_second.get(sec, 0)]
        rows.append(row)
    return rows


def delivery_span_ns(due_ns: Sequence[int], last_arrival_ns: Iterable[int]) -> int | None:
    """How long the measured stream's deliveries took: the first due time to the later of the schedule's end
    and the last arrival (None without events or time).

    Why not the whole seconds that saw deliveries: a 20-second stream straddles 20 or 21 wall-clock seconds
    depending on where it starts, so identical runs differed by 5 % in deliveries/s -- noise a regression gate
    then has to see through. The schedule's end is its last due time plus one mean spacing, so N evenly spaced
    events span exactly N spacings and a target that keeps up delivers exactly subscribers x rate; a target
    that falls behind stretches the span to its last arrival, and its rate drops with it.
    """
    if not due_ns:
        return None
    first, last = min(due_ns), max(due_ns)
    step = (last - first) / (len(due_ns) - 1) if len(due_ns) > 1 else 0.0
    end = max(last + step, max(last_arrival_ns, default=first))
    span = int(end - first)
    return span if span > 0 else None


def recorded_headline(recorder: Recorder) -> str:
    """The latency a mode result leads with: deliveries, or acknowledgements when only those were recorded."""
    return "delivery" if recorder.count("delivery") or not recorder.count("ack") else "ack"


def build_mode_result(
    *,
    mode: str,
    target: Mapping[str, Any],
    params: Mapping[str, Any],
    recorder: Recorder,
    audit_totals: AuditTotals,
    published_due_ns: Sequence[int],
    published_ok: Sequence[bool],
    stream_start_ns: int,
    published_sent_ns: Sequence[int] | None = None,
    span_ns: int | None = None,
    started_ns: int,
    ended_ns: int,
    fanout_ns: Sequence[int | None] = (),
    fanout_expected: Sequence[int] = (),
    fanout_received: Mapping[int, int] | None = None,
    gauges: Mapping[int, int] | None = None,
    errors: Mapping[str, int] | None = None,
    errors_series: Iterable[tuple[int, str, int]] = (),
    samples: Sequence[Sample] = (),
    status: str = "ok",
    failure: str | None = None,
    extra: Mapping[str, Any] | None = None,
    clock: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON-ready result of one mode, its status as the runner gave it.

    The status is not decided here: whoever owns the document adds what it
    learned about the run (interrupted, stopped early, a warning) and then
    decides it once with :func:`~deliverybench.core.status.decide`.
    Everything time-like is passed in; the function reads no clock. ``span_ns``
    (:func:`delivery_span_ns`) is what deliveries/s divides by; without it, the
    whole seconds that saw deliveries. ``clock`` (:func:`~deliverybench.core.clock.clock_section`) says how
    the receive stamps were timed; without it the section is left out.
    """
    error_triples = [(int(sec), str(kind), int(n)) for sec, kind, n in errors_series]
    error_rows = [list(row) for row in error_triples]
    errors_per_second: dict[int, int] = {}
    for sec, _, n in error_triples:
        errors_per_second[sec] = errors_per_second.get(sec, 0) + n
    samples = one_per_second(samples)
    fanout_recorder_ms = [None if v is None else _ms(v // 1000) for v in fanout_ns]
    summary = {metric: summarize(recorder.total(metric)) for metric in recorder.metrics()}
    headline = recorded_headline(recorder)
    deliveries = recorder.count(headline)
    stream_s = max((ended_ns - stream_start_ns) / NS_PER_S, 1e-9)
    delivery_seconds = recorder.seconds(headline)
    active_s: float
    if span_ns and headline == "delivery":  # the span times deliveries, not acks
        active_s, span_from = span_ns / NS_PER_S, "schedule"
    else:
        active_s = (delivery_seconds[-1] - delivery_seconds[0] + 1) if delivery_seconds else 0
        span_from = "whole_seconds"
    costs = role_costs(samples)
    window = (stream_start_ns / NS_PER_S, ended_ns / NS_PER_S)
    saturation = harness_saturation(samples, window=window)
    accepted = sum(1 for ok in published_ok if ok)
    published = accepted if published_sent_ns is None else sum(1 for sent in published_sent_ns if sent)
    result: dict[str, Any] = {
        "mode": mode,
        "status": status,
        "status_reasons": [],
        "failure": failure,
        "target": dict(target),
        "params": dict(params),
        "started_ns": started_ns,
        "stream_start_ns": stream_start_ns,
        "ended_ns": ended_ns,
        "histograms": recorder.encode(),
        "summary": summary,
        "throughput": {
            "deliveries": deliveries,
            "deliveries_per_s": round(deliveries / active_s, 3) if active_s else 0.0,
            "published": published,
            "accepted": accepted,
            "stream_seconds": round(stream_s, 3),
            "span_seconds": round(float(active_s), 3),
            "span_from": span_from,
        },
        "series": {"columns": list(SERIES_COLUMNS), "rows": per_second_series(
            recorder, published_due_ns=published_due_ns, published_ok=published_ok,
            gauges=gauges, errors_per_second=errors_per_second, metric=headline)},
        "audit": {**audit_totals.to_dict(), "recorded": deliveries,
                  # every recorded delivery must be a first arrival of some subscriber's id
                  "recorded_matches": deliveries == audit_totals.delivered_unique + audit_totals.unexpected},
        "fanout": {
            # expected: subscribers that should get the event; received: how many did.
            # fanout_ms is null when expected == 0 or received < expected.
            "columns": ["id", "due_ns", "fanout_ms", "expected", "received"],
            "rows": [[i, due, fanout_recorder_ms[i] if i < len(fanout_recorder_ms) else None,
                      fanout_expected[i] if i < len(fanout_expected) else None,
                      (fanout_received or {}).get(i, 0)]
                     for i, due in enumerate(published_due_ns)],
        },
        "errors": dict(sorted((errors or {}).items())),
        "errors_series": {"columns": ["second", "kind", "count"], "rows": error_rows},
        "resources": {
            "columns": ["t_s", "role", "pid", "cpu_s", "cpu_percent", "rss_bytes", "connections"],
            "rows": [s.to_row() for s in samples],
            "costs": costs_to_dict(costs),
        },
        "harness": saturation.to_dict(),
        "extra": dict(extra or {}),
    }
    if clock is not None:
        result["clock"] = dict(clock)
    return result


def finalize_mode(result: Mapping[str, Any]) -> dict[str, Any]:
    """A built mode result with its status decided: what the owner of the document calls, once per run."""
    return decide(as_mode_result(result)).to_dict()


def new_document(
    *,
    run_id: str,
    config: Mapping[str, Any],
    machine: Mapping[str, Any],
    packages: Mapping[str, str],
    commit: str | None,
    started_ns: int,
    ended_ns: int,
    modes: Mapping[str, Mapping[str, Any]],
    command: Sequence[str] = (),
) -> dict[str, Any]:
    """The top-level document around one or more mode results."""
    status = document_status([str(m.get("status", "ok")) for m in modes.values()])
    machine = dict(machine)
    said = list(dict.fromkeys(str(m["clock"]["description"]) for m in modes.values()
                              if isinstance(m.get("clock"), Mapping) and m["clock"].get("description")))
    if said:  # what was done about clocks, instead of assuming one machine
        machine["clock"] = "; ".join(said)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "deliverybench",
        "run": {
            "id": run_id,
            "status": status,
            "started_ns": started_ns,
            "ended_ns": ended_ns,
            "commit": commit,
            "command": list(command),
        },
        "config": dict(config),
        "machine": machine,
        "packages": dict(packages),
        "modes": {name: dict(result) for name, result in modes.items()},
    }


def merge_documents(documents: Sequence[Mapping[str, Any]], *, run_id: str) -> dict[str, Any]:
    """One document holding the modes of several single-mode runs (in order).

    Config, machine and packages come from the first; a mode appearing twice
    is an error rather than a silent overwrite.
    """
    if not documents:
        raise ResultsFormatError("nothing to merge")
    modes: dict[str, Mapping[str, Any]] = {}
    for doc in documents:
        validate(doc)
        for name, result in doc["modes"].items():
            if name in modes:
                raise ResultsFormatError(f"mode {name!r} appears in more than one document")
            modes[name] = result
    first = documents[0]
    return new_document(
        run_id=run_id,
        config=first["config"],
        machine=first["machine"],
        packages=first["packages"],
        commit=first["run"].get("commit"),
        started_ns=min(d["run"]["started_ns"] for d in documents),
        ended_ns=max(d["run"]["ended_ns"] for d in documents),
        modes=modes,
        command=first["run"].get("command", []),
    )


def validate(doc: Mapping[str, Any]) -> Run:
    """The document as the typed model; :class:`ResultsFormatError` (naming the field) if it is unusable."""
    return Run.from_dict(doc)


def dumps(doc: Mapping[str, Any]) -> str:
    """Strict JSON (never a bare ``NaN`` or ``Infinity``) of a document that validates."""
    validate(doc)
    return json.dumps(doc, separators=(",", ":"), sort_keys=False, allow_nan=False)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFormatError(f"results file is not JSON: {exc}") from None
    except RecursionError:
        raise ResultsFormatError("results file is not JSON: nested too deeply") from None


def loads(text: str) -> dict[str, Any]:
    """A validated document as plain JSON (for writers that add to it)."""
    doc = _parse(text)
    validate(doc)
    return dict(doc)


def load_run(text: str) -> Run:
    """A results file's text as the typed model: validated once, read through attributes afterwards."""
    return validate(_parse(text))
