"""The harness as webhook producer: POST an open-model schedule at a consumer.

The master decides the stream's start time and tells every process its share
(event ids with ``id % count == index``); each process POSTs its share from
its event-loop thread with one aiohttp session whose keep-alive pool has one
connection per Locust user of that process. A request that has to wait for a
free connection still counts from its due time, so an overloaded consumer
shows up as latency, never as a slower stream. Latency is acknowledgement
time minus due time (metric ``ack``); ``service`` is acknowledgement minus the
moment the request actually started.

Every attempt ends in exactly one of: a 2xx acknowledgement (a delivery), a
non-2xx status, a timeout, or a connection error -- so
``attempted == acknowledged + failed`` and the audit's ``lost`` is every
event without a 2xx.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import aiohttp

from .core.event import Event, encode_event
from .core.schedule import Schedule, offsets_ns
from .process_recorder import ProcessRecorder

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
    max_in_flight: int = 10_000
    timeout_s: float = 10.0
    secret: str | None = None


class BurstSender:
    """Sends one process's share of the schedule; runs in the loop thread."""

    def __init__(self, options: BurstOptions, recorder_ref: Callable[[], ProcessRecorder]) -> None:
        self.options = options
        self._recorder_ref = recorder_ref
        self._webhook = None
        if options.secret:
            from standardwebhooks.webhooks import Webhook

            self._webhook = Webhook(options.secret)

    def _headers(self, event_id: int, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._webhook is not None:
            msg_id = f"msg_{event_id}"
            now = datetime.now(tz=timezone.utc)
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._webhook.sign(msg_id, now, body.decode())
        return headers

    async def run(self, stream_start_ns: int, index: int, count: int) -> None:
        """POST every event of this share at its due time; return when all have ended."""
        opts = self.options
        recorder = self._recorder_ref()
        record = recorder.subscriber(CONSUMER)
        record.open(stream_start_ns - 1_000_000_000)
        connector = aiohttp.TCPConnector(limit=max(1, opts.connections), keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=opts.timeout_s)
        in_flight = asyncio.Semaphore(opts.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            for event_id, offset in enumerate(offsets_ns(opts.schedule)):
                if event_id % count != index:
                    continue
                due = stream_start_ns + offset
                wait = (due - time.time_ns()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
                await in_flight.acquire()
                task = asyncio.get_running_loop().create_task(self._send(session, event_id, due, in_flight))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, session: aiohttp.ClientSession, event_id: int, due: int,
                    in_flight: asyncio.Semaphore) -> None:
        opts = self.options
        recorder = self._recorder_ref()
        # recorder.counters is swapped out every second: never hold on to it across an await
        try:
            sent = time.time_ns()
            body = encode_event(Event(event_id, due, opts.stream), sent, opts.payload_bytes)
            recorder.counters["attempted"] += 1
            try:
                async with session.post(opts.url, data=body, headers=self._headers(event_id, body)) as response:
                    await response.read()
                    status = response.status
            except asyncio.TimeoutError:
                recorder.counters["timeouts"] += 1
                recorder.error("timeout", time.time_ns())
                return
            except aiohttp.ClientError as exc:
                recorder.counters["connection_errors"] += 1
                recorder.error(f"connection_{type(exc).__name__}", time.time_ns())
                return
            acked = time.time_ns()
            recorder.counters[f"status_{status // 100}xx"] += 1
            if status // 100 != 2:
                recorder.error(f"http_{status}", acked)
                return
            record = recorder.subscribers.get(CONSUMER)
            if record is not None and record.received.mark(event_id):
                recorder.recorder.record("ack", acked - due, acked)
                recorder.recorder.record("service", acked - sent, acked)
        finally:
            in_flight.release()
