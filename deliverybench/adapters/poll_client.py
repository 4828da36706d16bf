"""A poll subscriber: "anything new since id N?" on an interval, in the loop thread.

The baseline both push and callback exist to replace. Each poller first asks
for the newest id (so it starts where the stream is, like a fresh subscriber
of the other modes), opens its audit window, and then polls every
``interval_s`` from a random phase so pollers don't arrive in lock-step.
Every event in a response shares the response's receive time, which is
exactly what a polling client experiences. Requests per delivered event are
the mode's cost, so every request is counted, including empty ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..core.event import MalformedEvent, decode_head, split_batch
from ..core.process_recorder import ProcessRecorder

__all__ = ["PollOptions", "Poller", "shared_session"]


@dataclass(frozen=True, slots=True)
class PollOptions:
    url: str
    interval_s: float = 1.0
    limit: int = 1000
    timeout_s: float = 10.0


_sessions: dict[int, aiohttp.ClientSession] = {}


def shared_session(limit: int = 0) -> aiohttp.ClientSession:
    """One keep-alive pool per loop, shared by the process's pollers."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(id(loop))
    if session is None or session.closed:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=60),
                                        trust_env=False)
        _sessions[id(loop)] = session
    return session


class Poller:
    def __init__(self, name: str, recorder_ref: Callable[[], ProcessRecorder], options: PollOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self._recorder_ref = recorder_ref
        self.options = options
        self._notify: Callable[[bool, str | None], None] | None = notify
        self._task: asyncio.Task[None] | None = None
        self.after = -1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self, at_ns: int) -> None:
        recorder = self._recorder_ref()
        record = recorder.subscribers.get(self.name)
        if record is not None:
            record.close(at_ns)
            recorder.retire(self.name)
            recorder.connected -= 1
        if self._task is not None:
            self._task.cancel()

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)

    async def _get(self, session: aiohttp.ClientSession, after: int, limit: int) -> tuple[int, bytes, Any]:
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        async with session.get(self.options.url, params={"after": str(after), "limit": str(limit)},
                               timeout=timeout) as response:
            body = await response.read()
            return response.status, body, response.headers

    async def _run(self) -> None:
        session = shared_session()
        started = time.time_ns()
        try:
            status, _, headers = await self._get(session, -1, 1)
            if status != 200:
                raise RuntimeError(f"poll URL answered {status}")
            self.after = int(headers.get("X-Last-Id", "-1"))
        except asyncio.CancelledError:
            self._tell(False, "stopped")
            raise
        except Exception as exc:  # any failure to start polling is reported, not raised
            self._recorder_ref().error("poll_start_failed", time.time_ns())
            self._tell(False, f"{type(exc).__name__}: {exc}")
            return
        now = time.time_ns()
        recorder = self._recorder_ref()
        recorder.recorder.record("connect", now - started, now)
        record = recorder.subscriber(self.name)
        record.open(now)
        recorder.connected += 1
        self._tell(True, None)
        await asyncio.sleep(random.uniform(0, self.options.interval_s))
        while True:
            began = time.monotonic()
            if await self._poll_once(session):
                continue  # a full page: more is waiting, fetch it now as a real poller would
            await asyncio.sleep(max(0.0, self.options.interval_s - (time.monotonic() - began)))

    async def _poll_once(self, session: aiohttp.ClientSession) -> bool:
        """One request; True when the page was full."""
        sent = time.time_ns()
        try:
            status, body, headers = await self._get(session, self.after, self.options.limit)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._recorder_ref().error("poll_timeout", time.time_ns())
            return False
        except aiohttp.ClientError as exc:
            self._recorder_ref().error(f"poll_{type(exc).__name__}", time.time_ns())
            await asyncio.sleep(min(1.0, self.options.interval_s))
            return False
        received = time.time_ns()
        recorder = self._recorder_ref()
        counters = recorder.counters  # swapped every second: read it after the await
        counters["poll_requests"] += 1
        recorder.recorder.record("poll_request", received - sent, received)
        if status != 200:
            recorder.error(f"poll_http_{status}", received)
            return False
        if headers.get("X-Gap"):
            counters["poll_gaps"] += 1
        events = split_batch(body)
        if not events:
            counters["poll_empty"] += 1
            return False
        record = recorder.subscribers.get(self.name)
        if record is None:
            return False
        for raw in events:
            recorder.on_event(record, raw, received)
        try:
            self.after = max(self.after, decode_head(events[-1]).id)  # responses are in id order
        except MalformedEvent:
            recorder.error("poll_malformed_event", received)
        if len(events) >= self.options.limit:
            counters["poll_full_pages"] += 1
            return True
        return False
