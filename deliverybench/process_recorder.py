"""What one Locust process measured, kept in its event-loop thread.

Every receive path (WebSocket frames, webhook POSTs, poll responses) calls
:meth:`ProcessRecorder.on_event` with the raw bytes and the receive
timestamp it took before parsing. Everything here is mutated only in the loop
thread; :meth:`take_payload` (also run in the loop thread) moves what is ready
into a plain-data *payload* that travels to whoever aggregates (the master's
:class:`~deliverybench.aggregator.RunAggregator`, or the same process).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .core.audit import FanoutTracker, SubscriberRecord
from .core.event import EVENT_PREFIX, MalformedEvent, decode_head
from .core.recording import NS_PER_S, Recorder

__all__ = ["ProcessRecorder", "empty_payload"]

_ECHO_PREFIX = b'{"echo":'


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
    """Histograms, audit records and error counts of one process."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.recorder = Recorder()
        self.fanout = FanoutTracker()
        self.subscribers: dict[str, SubscriberRecord] = {}
        self.finished: list[SubscriberRecord] = []
        self.errors: Counter[str] = Counter()
        self.error_series: Counter[tuple[int, str]] = Counter()
        self.counters: Counter[str] = Counter()
        self.connected = 0
        self.frames = 0

    # -- subscribers -------------------------------------------------------
    def subscriber(self, name: str) -> SubscriberRecord:
        record = self.subscribers.get(name)
        if record is None:
            record = self.subscribers[name] = SubscriberRecord(name)
        return record

    def retire(self, name: str) -> None:
        """A subscriber is gone for good: its record can travel now."""
        record = self.subscribers.pop(name, None)
        if record is not None:
            self.finished.append(record)

    # -- hot path ----------------------------------------------------------
    def on_event(self, record: SubscriberRecord, data: bytes, receive_ns: int, metric: str = "delivery",
                 first_attempt: bool = False) -> bool:
        """Record one arrival; return True if it was a new (non-duplicate) delivery.

        Duplicates are counted in the record but never recorded as
        deliveries twice.
        """
        self.frames += 1
        if not data.startswith(EVENT_PREFIX):
            if data.startswith(_ECHO_PREFIX):
                self._on_echo(data, receive_ns)
                return False
        try:
            head = decode_head(data)
        except MalformedEvent:
            self.error("malformed_event", receive_ns)
            return False
        if not record.received.mark(head.id):  # decode_head guarantees id >= 0
            return False
        recorder = self.recorder
        recorder.record(metric, receive_ns - head.due_ns, receive_ns)
        if first_attempt:
            recorder.record("first_attempt", receive_ns - head.due_ns, receive_ns)
        if head.sent_ns is not None:
            recorder.record("service", receive_ns - head.sent_ns, receive_ns)
        self.fanout.mark(head.id, receive_ns)
        return True

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

    # -- hand-over ---------------------------------------------------------
    def take_payload(self, *, final: bool, now_ns: int | None = None) -> dict[str, Any]:
        """Move out completed seconds (all of them when ``final``) and retired records.

        On ``final`` every subscriber still present is included too, with
        its open window closed at ``now_ns``.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        recorder = self.recorder.take(None if final else now_ns // NS_PER_S)
        subscribers = self.finished
        self.finished = []
        if final:
            for record in self.subscribers.values():
                record.close(now_ns)
                subscribers.append(record)
            self.subscribers = {}
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
