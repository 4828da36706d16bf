"""The harness as webhook producer: POST an open-model schedule at a consumer.

The master decides the stream's start time and tells every process its share
(event ids with ``id % count == index``); each process POSTs its share from
its event-loop thread through a pool of keep-alive connections, one per
Locust user of that process (``http_post.py`` says why not aiohttp's client).
A request that has to wait for a free connection still counts from its due
time, so an overloaded consumer
shows up as latency, never as a slower stream. Latency is acknowledgement
time minus due time (metric ``ack``); ``service`` is acknowledgement minus the
moment the request actually started.

Every attempt ends in exactly one of: a 2xx acknowledgement (a delivery), a
non-2xx status, a timeout, or a connection error -- so
``attempted == acknowledged + failed`` and the audit's ``lost`` is every
event without a 2xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..core.event import Event, encode_event
from ..core.process_recorder import ProcessRecorder
from ..core.schedule import Schedule, offsets_ns
from .http_post import Job, Outcome, PostPool
from .pacing import sleep_until

__all__ = ["BurstOptions", "BurstSender", "CONSUMER"]

#: the one "subscriber" of a burst run: the consumer endpoint
CONSUMER = "consumer"


@dataclass(frozen=True, slots=True)
class BurstOptions:
    url: str
    schedule: Schedule
    stream: str = "s"
    payload_bytes: int = 256
    connections: int = 100
    timeout_s: float = 10.0
    secret: str | None = None


class BurstSender:
    """Sends one process's share of the schedule; runs in the loop thread."""

    def __init__(self, options: BurstOptions, recorder_ref: Callable[[], ProcessRecorder]) -> None:
        self.options = options
        self._recorder_ref = recorder_ref
        self._pool: PostPool | None = None
        self._stopped = False
        self._webhook = None
        if options.secret:
            from standardwebhooks.webhooks import Webhook

            self._webhook = Webhook(options.secret)

    def _signature_lines(self, event_id: int, body: bytes) -> bytes:
        if self._webhook is None:
            return b""
        msg_id = f"msg_{event_id}"
        now = datetime.now(tz=UTC)
        signature = self._webhook.sign(msg_id, now, body.decode())
        return (f"webhook-id: {msg_id}\r\nwebhook-timestamp: {int(now.timestamp())}\r\n"
                f"webhook-signature: {signature}\r\n").encode()

    async def run(self, stream_start_ns: int, index: int, count: int) -> None:
        """POST every event of this share at its due time; return when all have ended.

        Due events queue for the next free keep-alive connection; one waiting
        for a connection is late, and that lateness is in its latency.
        """
        opts = self.options
        record = self._recorder_ref().subscriber(CONSUMER)
        record.open(stream_start_ns - 1_000_000_000)
        pool = self._pool = PostPool(opts.url, size=opts.connections, timeout_s=opts.timeout_s,
                                     on_result=self._on_result)
        try:
            for event_id, offset in enumerate(offsets_ns(opts.schedule)):
                if event_id % count != index:
                    continue
                due = stream_start_ns + offset
                await sleep_until(due)
                if self._stopped:
                    return
                sent = time.time_ns()
                body = encode_event(Event(event_id, due, opts.stream), sent, opts.payload_bytes)
                self._recorder_ref().counters["attempted"] += 1
                pool.submit(((event_id, due), b"", body, self._signature_lines(event_id, body)))
            await pool.drain()
        finally:
            pool.close()

    def stop(self) -> None:
        """End now (in the loop thread): every attempt still open gets its class before this returns.

        Written and not yet answered: ``unanswered``; still waiting for a
        connection: ``unsent`` -- so ``attempted`` always equals the sum of the
        classes, whatever the timeout and the drain.
        """
        self._stopped = True
        if self._pool is not None:
            self._pool.abort(in_flight="unanswered", queued="unsent")

    def _on_result(self, job: Job, outcome: Outcome, sent_ns: int, done_ns: int, _retry_after: str | None) -> None:
        recorder = self._recorder_ref()
        counters = recorder.counters
        if outcome in ("unanswered", "unsent"):
            counters[str(outcome)] += 1
            recorder.error(f"burst_{outcome}", done_ns)
            return
        if outcome == "timeout":
            counters["timeouts"] += 1
            recorder.error("timeout", done_ns)
            return
        if outcome == "connection":
            counters["connection_errors"] += 1
            recorder.error("connection_error", done_ns)
            return
        status = int(outcome)
        counters[f"status_{status // 100}xx"] += 1
        if status // 100 != 2:
            recorder.error(f"http_{status}", done_ns)
            return
        record = recorder.subscribers.get(CONSUMER)
        if record is not None:
            event_id, due_ns = job[0]
            recorder.record_delivery(record, event_id, due_ns, sent_ns, done_ns, "ack")
