"""Merging what every harness process measured into one mode result.

Payloads come from :meth:`ProcessRecorder.take_payload` plus what the gevent
side adds (connection gauges, resource samples). Between processes they
travel in *wire* form (plain dicts, lists, bytes and strings that msgpack
carries through Locust's worker-report and custom messages); in one process
they are merged as objects. Merging is exact: histograms add, bitmaps of
one subscriber come from one process, counters add.

A process that dies takes what it had not handed over with it. The master
says so (:meth:`RunAggregator.process_lost`): the mode result then counts it
as an error of the harness (``harness_worker_lost``), and the subscribers
it took as ``subscribers_unmeasured`` in the audit -- in none of its sums,
and never as the target's loss.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from ..core.audit import (
    FanoutTracker,
    PublishedLog,
    SubscriberRecord,
    audit,
    expected_per_event,
    fanout_times_ns,
)
from ..core.clock import WorkerClock, clock_section, worker_entry
from ..core.recording import Recorder, new_histogram, summarize
from ..core.resources import Sample
from ..core.results import build_mode_result, delivery_span_ns, recorded_headline

__all__ = ["payload_to_wire", "payload_from_wire", "RunAggregator", "WorkerClocks", "WORKER_LOST"]

#: the error kind of a harness process that died (or never handed over its final payload)
WORKER_LOST = "harness_worker_lost"
#: the latencies kept per worker too (each worker's share of the headline)
_PER_WORKER = ("delivery", "ack")


@dataclass
class WorkerClocks:
    """What the master measured of its workers' clocks in one test, by Locust node id."""

    corrected: bool = True
    clocks: Mapping[str, WorkerClock] = field(default_factory=dict)
    #: host, address and process (``host:pid``) each worker named in its answers
    identity: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: the most subscribers each worker had
    sessions: Mapping[str, int] = field(default_factory=dict)


def payload_to_wire(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "recorder": payload["recorder"].encode(),
        "fanout": payload["fanout"].to_wire(),
        "subscribers": [r.to_wire() for r in payload["subscribers"]],
        "errors": dict(payload["errors"]),
        "error_series": [[sec, kind, n] for (sec, kind), n in payload["error_series"].items()],
        "counters": dict(payload["counters"]),
        "gauges": [list(g) for g in payload.get("gauges", [])],
        "samples": [s.to_row() for s in payload.get("samples", [])],
        "undecodable": list(payload.get("undecodable") or ()),
    }


def payload_from_wire(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "recorder": Recorder.decode(data.get("recorder", {})),
        "fanout": FanoutTracker.from_wire(data.get("fanout", {"ids": [], "last_ns": [], "count": []})),
        "subscribers": [SubscriberRecord.from_wire(r) for r in data.get("subscribers", [])],
        "errors": Counter({str(k): int(v) for k, v in data.get("errors", {}).items()}),
        "error_series": Counter({(int(sec), str(kind)): int(n) for sec, kind, n in data.get("error_series", [])}),
        "counters": Counter({str(k): int(v) for k, v in data.get("counters", {}).items()}),
        "gauges": [tuple(g) for g in data.get("gauges", [])],
        "samples": [Sample.from_row(row) for row in data.get("samples", [])],
        "undecodable": _undecodable(data.get("undecodable")),
    }


def _undecodable(value: Any) -> tuple[str, str] | None:
    """A worker's first undecodable message, as ``(sample, expected)``; anything else sent is dropped."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return str(value[0])[:400], str(value[1])[:400]
    return None


class RunAggregator:
    """Everything known about one mode's run, on the master (or local) process."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.recorder = Recorder()
        self.fanout = FanoutTracker()
        self.subscribers: dict[str, SubscriberRecord] = {}
        self.errors: Counter[str] = Counter()
        self.error_series: Counter[tuple[int, str]] = Counter()
        self.counters: Counter[str] = Counter()
        self._gauge_readings: dict[tuple[str, int], int] = {}
        self.samples: list[Sample] = []
        self.payloads = 0
        #: harness processes lost mid-run (by their subscriber-name prefix) and the subscribers each had
        self.lost_processes: dict[str, int] = {}
        #: each worker's total latencies (by Locust node id, then metric): which machine saw what
        self.by_worker: dict[str, dict[str, HdrHistogram]] = {}
        #: set by the master when the test stops; None in a single process (one clock)
        self.worker_clocks: WorkerClocks | None = None
        #: the first message of any process that did not decode: (sample, the shape expected)
        self.undecodable: tuple[str, str] | None = None

    def add(self, payload: Mapping[str, Any], node: str | None = None) -> None:
        """Merge one payload; ``node``: the Locust worker that sent it (its share is kept apart too)."""
        self.payloads += 1
        if node is not None:
            self._add_worker_share(node, payload["recorder"])
        self.recorder.merge(payload["recorder"])
        self.fanout.merge(payload["fanout"])
        for record in payload["subscribers"]:
            self._add_subscriber(record)
        self.errors.update(payload["errors"])
        self.error_series.update(payload["error_series"])
        self.counters.update(payload["counters"])
        for gauge in payload.get("gauges", []):
            sec, n = int(gauge[0]), int(gauge[1])
            process = str(gauge[2]) if len(gauge) > 2 else ""
            self._gauge_readings[(process, sec)] = n  # the last reading of a process in a second wins
        self.samples.extend(payload.get("samples", []))
        if self.undecodable is None and payload.get("undecodable"):
            self.undecodable = payload["undecodable"]

    def add_wire(self, data: Mapping[str, Any], node: str | None = None) -> None:
        self.add(payload_from_wire(data), node)

    def _add_worker_share(self, node: str, recorder: Recorder) -> None:
        totals = self.by_worker.setdefault(node, {})
        for (metric, _), histogram in recorder.slices.items():
            if metric in _PER_WORKER:
                total = totals.get(metric)
                if total is None:
                    total = totals[metric] = new_histogram()
                total.add(histogram)

    def clock(self, headline: str) -> dict[str, Any]:
        """The mode result's ``clock`` section: each worker's clock and its share of the ``headline`` latency."""
        known = self.worker_clocks
        if known is None:
            return clock_section([], [], corrected=False)
        entries = []
        for node in sorted(set(known.clocks) | set(self.by_worker)):
            histogram = self.by_worker.get(node, {}).get(headline)
            figures = summarize(histogram if histogram is not None else new_histogram())
            who = known.identity.get(node, {})
            p50, p99 = figures["p50"], figures["p99"]
            entries.append(worker_entry(
                node=node, host=who.get("host", ""), address=who.get("address", ""),
                process=who.get("process", ""), sessions=int(known.sessions.get(node, 0)),
                clock=known.clocks.get(node), deliveries=int(figures["count"] or 0),
                p50_ms=None if p50 is None else float(p50), p99_ms=None if p99 is None else float(p99)))
        return clock_section(entries, list(known.clocks.values()), corrected=known.corrected)

    def _add_subscriber(self, record: SubscriberRecord) -> None:
        known = self.subscribers.get(record.subscriber)
        if known is None:
            self.subscribers[record.subscriber] = record
            return
        # The same name reported twice (e.g. a user restarted): union the windows and ids.
        known.windows.extend(record.windows)
        mine, theirs = known.received, record.received
        if len(theirs.bits) > len(mine.bits):
            mine.bits.extend(b"\x00" * (len(theirs.bits) - len(mine.bits)))
        for i, byte in enumerate(theirs.bits):
            mine.duplicates += bin(mine.bits[i] & byte).count("1")
            mine.bits[i] |= byte
        mine.duplicates += theirs.duplicates
        mine.out_of_order += theirs.out_of_order
        mine.arrivals += theirs.arrivals

    @property
    def gauges(self) -> dict[int, int]:
        """Connected subscribers per second, summed over processes (one reading each)."""
        out: dict[int, int] = {}
        for (_, sec), n in self._gauge_readings.items():
            out[sec] = out.get(sec, 0) + n
        return out

    def processes(self) -> int:
        """How many harness processes reported (each names itself in its gauges)."""
        return len({process for process, _ in self._gauge_readings})

    def error(self, kind: str, at_ns: int, count: int = 1) -> None:
        self.errors[kind] += count
        self.error_series[(at_ns // 1_000_000_000, kind)] += count

    def process_lost(self, process: str, subscribers: int, at_ns: int) -> None:
        """Harness process ``process`` (its subscribers' name prefix) is gone without its final payload.

        ``subscribers`` is how many it had; those it handed over before it
        died stay measured, the rest count as unmeasured. Said once per process.
        """
        if process in self.lost_processes:
            return
        self.lost_processes[process] = max(0, subscribers)
        self.error(WORKER_LOST, at_ns)

    def unmeasured(self) -> int:
        """Subscribers of lost processes that never reached this aggregator."""
        if not self.lost_processes:
            return 0
        handed = Counter(name.rsplit(":", 1)[0] for name in self.subscribers)
        return sum(max(0, n - handed[process]) for process, n in self.lost_processes.items())

    def build(
        self,
        *,
        log: PublishedLog,
        target: Mapping[str, Any],
        params: Mapping[str, Any],
        started_ns: int,
        stream_start_ns: int,
        ended_ns: int,
        join_grace_ns: int,
        drain_ns: int,
        status: str,
        failure: str | None,
        extra: Mapping[str, Any] | None = None,
        first_id: int = 0,
    ) -> dict[str, Any]:
        """The JSON-ready mode result (see docs/results-schema.md).

        ``first_id``: the log's first ids were a warm-up, left out of every figure.
        """
        records: Iterable[SubscriberRecord] = list(self.subscribers.values())
        totals = audit(log, records, join_grace_ns=join_grace_ns, drain_ns=drain_ns, end_ns=ended_ns,
                       first_id=first_id)
        totals.subscribers_unmeasured = self.unmeasured()
        expected = expected_per_event(log, records, join_grace_ns=join_grace_ns, drain_ns=drain_ns, end_ns=ended_ns,
                                      first_id=first_id)
        fanout = fanout_times_ns(log, self.fanout, expected)
        recorder = Recorder()
        recorder.merge(self.recorder)  # build() stays repeatable: fan-out goes into a copy
        for event_id, value in enumerate(fanout):
            if value is not None:
                recorder.record("fanout", value, log.due_ns[event_id])
        merged_extra: dict[str, Any] = {**dict(self.counters), **dict(extra or {})}
        headline = recorded_headline(recorder)
        if self.lost_processes:
            merged_extra["harness_workers_lost"] = [{"process": process, "subscribers": n}
                                                    for process, n in sorted(self.lost_processes.items())]
        return build_mode_result(
            mode=self.mode,
            target=target,
            params=params,
            recorder=recorder,
            audit_totals=totals,
            published_due_ns=log.due_ns,
            published_ok=[ok and i >= first_id for i, ok in enumerate(log.ok)],
            published_sent_ns=[0 if i < first_id else t for i, t in enumerate(log.sent_ns)],
            span_ns=delivery_span_ns(log.due_ns[first_id:],
                                     (t for i, t in self.fanout.last_ns.items() if i >= first_id)),
            stream_start_ns=stream_start_ns,
            started_ns=started_ns,
            ended_ns=ended_ns,
            fanout_ns=fanout,
            fanout_expected=expected,
            fanout_received=self.fanout.count,
            gauges=dict(self.gauges),
            errors=dict(self.errors),
            errors_series=[(sec, kind, n) for (sec, kind), n in sorted(self.error_series.items())],
            samples=self.samples,
            status=status,
            failure=failure,
            extra=merged_extra,
            clock=self.clock(headline),
        )
