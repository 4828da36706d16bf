"""What one Locust process measured, kept in its event-loop thread.

Every receive path (WebSocket frames, webhook POSTs, poll responses) calls
:meth:`ProcessRecorder.on_event` with the raw bytes and the receive
timestamp it took before parsing. Everything here is mutated only in the loop
thread; :meth:`take_payload` (also run in the loop thread) moves what is ready
into a plain-data *payload* that travels to whoever aggregates (the master's
:class:`~deliverybench.harness.aggregator.RunAggregator`, or the same process).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .audit import FanoutTracker, SubscriberRecord
from .event import WARMUP_MARK, MalformedEvent, read_head
from .intake import Intake
from .recording import NS_PER_S, Recorder

__all__ = ["ProcessRecorder", "empty_payload", "CONNECT_FAILURE_KINDS", "DEFAULT_ID_LIMIT", "MAX_EARLY_NS",
           "MAX_LATE_NS"]

_ECHO_PREFIX = b'{"echo":'


#: error kinds that mean a subscriber could not connect (subscribe, start polling)
CONNECT_FAILURE_KINDS = ("connect_", "subscribe_failed", "poll_start_failed", "sse_not_event_stream")
#: ids accepted when the stream's length is not known: 1 Mi ids, 128 KiB of bitmap per subscriber at most
DEFAULT_ID_LIMIT = 1 << 20
#: an event due more than this after it arrived is not one of ours (clock skew between machines
#: is allowed for; a due time from the far future is not)
MAX_EARLY_NS = 3_600 * 1_000_000_000
#: an event that arrives more than this after its due time is not one of ours either: the
#: histograms hold up to an hour, and no run waits a day for a delivery
MAX_LATE_NS = 24 * 3_600 * 1_000_000_000


def empty_payload() -> dict[str, Any]:
    return {
        "recorder": Recorder(),
        "fanout": FanoutTracker(),
        "subscribers": [],
        "errors": Counter(),
        "error_series": Counter(),
        "counters": Counter(),
    }


class ProcessRecorder:
    """Histograms, audit records and error counts of one process.

    Everything a target sends is untrusted: an event id outside
    ``[0, id_limit)`` (the stream's length) is counted as ``unexpected_id``
    and never indexes a bitmap, so no id can make a subscriber allocate;
    a due or sent time that cannot belong to this run (see
    :data:`MAX_EARLY_NS`, :data:`MAX_LATE_NS`) is counted as
    ``malformed_due`` / ``malformed_sent`` and never reaches a histogram.
    """

    def __init__(self, mode: str, *, id_limit: int = DEFAULT_ID_LIMIT) -> None:
        self.mode = mode
        self.id_limit = id_limit
        self.recorder = Recorder()
        self.fanout = FanoutTracker()
        self.subscribers: dict[str, SubscriberRecord] = {}
        self.finished: list[SubscriberRecord] = []
        self.errors: Counter[str] = Counter()
        self.error_series: Counter[tuple[int, str]] = Counter()
        self.counters: Counter[str] = Counter()
        self.connected = 0
        self.frames = 0
        #: failed connection attempts since the test started, by kind (never handed over: the
        #: controller reads them to stop waiting for subscribers that cannot connect)
        self.connect_failures: Counter[str] = Counter()
        self._intake: Intake | None = None
        self._named = 0
        self._retired: list[int] = []
        self._handed: set[int] = set()
        self._buffer: dict[tuple[str, int], list[int]] = {}

    # -- subscribers -------------------------------------------------------
    def subscriber(self, name: str) -> SubscriberRecord:
        record = self.subscribers.get(name)
        if record is None:
            record = self.subscribers[name] = SubscriberRecord(name)
            self._named += 1
        return record

    @property
    def subscriber_count(self) -> int:
        """Subscribers this process has had since the test started, here or gone, connected or not.

        The master keeps the latest count of each worker: if the worker dies,
        that is how many subscribers went unmeasured with it.
        """
        return self._named + (len(self._intake.names) if self._intake is not None else 0)

    @property
    def intake(self) -> Intake:
        """The batched columns push sessions append to (see :mod:`deliverybench.core.intake`)."""
        if self._intake is None:
            self._intake = Intake(id_limit=self.id_limit)
        return self._intake

    def retire_index(self, index: int) -> None:
        """The test made an intake subscriber leave (as of its latest close): its record travels next."""
        self.intake.leave(index)
        self._retired.append(index)

    def on_echo(self, data: bytes, receive_ns: int) -> None:
        self._on_echo(data, receive_ns)

    def retire(self, name: str) -> None:
        """A subscriber is gone for good: its record can travel now."""
        record = self.subscribers.pop(name, None)
        if record is not None:
            self.finished.append(record)

    def unsubscribe(self, name: str, at_ns: int) -> None:
        """A connected subscriber (a poller) leaves as of ``at_ns``: its window closes, its record travels,
        and it no longer counts as connected. A name not subscribed is left alone."""
        record = self.subscribers.get(name)
        if record is not None:
            record.close(at_ns)
            self.retire(name)
            self.connected -= 1

    # -- hot path ----------------------------------------------------------
    def on_event(self, record: SubscriberRecord, data: bytes, receive_ns: int, metric: str = "delivery",
                 first_attempt: bool = False) -> bool:
        """Record one arrival; return True if it was a new (non-duplicate) delivery.

        Duplicates are counted in the record but never recorded as
        deliveries twice. Latencies are buffered as integers per second and
        folded into the histograms by :meth:`take_payload` in one vectorised
        pass (a Python ``record_value`` call per sample cost ~2 µs each).
        """
        self.frames += 1
        if b"\n" in data:  # a relay forwarded a batch as one message: every event in it counts
            new = False
            for line in data.split(b"\n"):
                if line.strip():
                    new = self._on_one(record, line, receive_ns, metric, first_attempt) or new
            return new
        return self._on_one(record, data, receive_ns, metric, first_attempt)

    def _on_one(self, record: SubscriberRecord, data: bytes, receive_ns: int, metric: str,
                first_attempt: bool) -> bool:
        if data.startswith(_ECHO_PREFIX):
            self._on_echo(data, receive_ns)
            return False
        if WARMUP_MARK in data:  # the run's warm-up: delivered, never recorded
            return False
        try:
            event_id, due_ns, sent_ns = read_head(data)
        except MalformedEvent:
            self.error("malformed_event", receive_ns)
            return False
        return self.record_delivery(record, event_id, due_ns, sent_ns, receive_ns, metric, first_attempt)

    def record_delivery(self, record: SubscriberRecord, event_id: int, due_ns: int, sent_ns: int | None,
                 receive_ns: int, metric: str = "delivery", first_attempt: bool = False) -> bool:
        """Record a decoded arrival (or, for bursts, an acknowledgement); False for a duplicate or bad input."""
        if not 0 <= event_id < self.id_limit:
            self.error("unexpected_id", receive_ns)
            return False
        if not -MAX_EARLY_NS <= receive_ns - due_ns <= MAX_LATE_NS:
            self.error("malformed_due", receive_ns)
            return False
        if sent_ns is not None and not -MAX_EARLY_NS <= receive_ns - sent_ns <= MAX_LATE_NS:
            self.error("malformed_sent", receive_ns)
            sent_ns = None
        if not record.received.mark(event_id):
            return False
        second = receive_ns // NS_PER_S
        buffer = self._buffer
        key = (metric, second)
        values = buffer.get(key)
        if values is None:
            values = buffer[key] = []
        values.append((receive_ns - due_ns) // 1000)
        if sent_ns is not None:
            service = buffer.get(("service", second))
            if service is None:
                service = buffer[("service", second)] = []
            service.append((receive_ns - sent_ns) // 1000)
        if first_attempt:
            first = buffer.get(("first_attempt", second))
            if first is None:
                first = buffer[("first_attempt", second)] = []
            first.append((receive_ns - due_ns) // 1000)
        self.fanout.mark(event_id, receive_ns)
        return True

    def fold_buffer(self) -> None:
        """Move buffered latencies (and the intake's columns) into the histograms."""
        buffer, self._buffer = self._buffer, {}
        for (metric, second), values in buffer.items():
            self.recorder.record_many_us(metric, second, values)
        if self._intake is not None:
            self._intake.fold(self.recorder, self.fanout, self.errors, self.error_series)

    def _on_echo(self, data: bytes, receive_ns: int) -> None:
        try:
            sent_ns = int(data[8 : data.index(b"}")])
        except ValueError:
            self.error("malformed_echo", receive_ns)
            return
        self.recorder.record("echo_rtt", receive_ns - sent_ns, receive_ns)

    def error(self, kind: str, at_ns: int, count: int = 1) -> None:
        self.errors[kind] += count
        self.error_series[(at_ns // NS_PER_S, kind)] += count
        if kind.startswith(CONNECT_FAILURE_KINDS):
            self.connect_failures[kind] += count

    # -- hand-over ---------------------------------------------------------
    def take_payload(self, *, final: bool, now_ns: int) -> dict[str, Any]:
        """Move out completed seconds (all of them when ``final``) and retired records.

        On ``final`` every subscriber still present is included too: the
        test is over, so it leaves at ``now_ns`` -- its open window ends
        then, and so does one the target dropped and nothing continued.
        """
        self.fold_buffer()
        recorder = self.recorder.take(None if final else now_ns // NS_PER_S)
        subscribers = self.finished
        self.finished = []
        if final:
            for record in self.subscribers.values():
                record.close(now_ns)
                subscribers.append(record)
            self.subscribers = {}
        intake = self._intake
        if intake is not None:
            retired, self._retired = self._retired, []
            if final:
                for index in range(len(intake.names)):
                    intake.leave(index, now_ns)
                retired += range(len(intake.names))
            fresh = [i for i in dict.fromkeys(retired) if i not in self._handed]
            self._handed.update(fresh)
            subscribers.extend(intake.records(fresh))
        payload = {
            "recorder": recorder,
            "fanout": self.fanout.take() if final else FanoutTracker(),
            "subscribers": subscribers,
            "errors": self.errors,
            "error_series": self.error_series,
            "counters": self.counters,
        }
        self.errors, self.error_series, self.counters = Counter(), Counter(), Counter()
        return payload
