"""A bounded buffer of recent events, served as ``GET /events?after=N``.

Both built-in targets keep one so the polling baseline can be measured
against the very same stream. It holds the raw bytes as published (events are
forwarded verbatim everywhere) and drops the oldest beyond ``capacity``; a
poller that asks for ids older than what is retained is told so with
``X-Gap: 1`` instead of silently receiving a hole.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping

from aiohttp import web

__all__ = ["EventBuffer", "poll_handler", "poll_query", "poll_answer", "longpoll_query", "DEFAULT_HOLD_S",
           "MAX_HOLD_S"]


class EventBuffer:
    """Ring of ``(id, raw_event)`` in publication order."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("buffer capacity must be at least 1")
        self.capacity = capacity
        self._ids: deque[int] = deque(maxlen=capacity)
        self._raw: deque[bytes] = deque(maxlen=capacity)

    def append(self, event_id: int, raw: bytes) -> None:
        self._ids.append(event_id)
        self._raw.append(raw)

    @property
    def last_id(self) -> int:
        return self._ids[-1] if self._ids else -1

    @property
    def first_id(self) -> int:
        return self._ids[0] if self._ids else -1

    def after(self, after_id: int, limit: int = 1000) -> tuple[list[bytes], bool]:
        """Events with id > ``after_id`` (at most ``limit``), and whether some were already dropped."""
        _, raws, gap = self.entries_after(after_id, limit)
        return raws, gap

    def entries_after(self, after_id: int, limit: int = 1000) -> tuple[list[int], list[bytes], bool]:
        """Like :meth:`after`, with the events' ids (an SSE ``id:`` line, a long-poll ``Etag``)."""
        if not self._ids:
            return [], [], False
        gap = after_id + 1 < self._ids[0] and len(self._ids) == self.capacity
        start = bisect.bisect_right(self._ids, after_id)  # ids are ascending
        end = min(start + limit, len(self._raw))
        return [self._ids[i] for i in range(start, end)], [self._raw[i] for i in range(start, end)], gap


def poll_query(query: Mapping[str, str]) -> tuple[int, int]:
    """``(after, limit)`` of a poll request's query; ValueError if either is not an integer."""
    after = int(query.get("after", "-1"))
    limit = max(1, min(int(query.get("limit", "1000")), 100_000))
    return after, limit


#: a long-poll's hold when it names none (``?hold=``), and the longest it may ask for
DEFAULT_HOLD_S, MAX_HOLD_S = 30.0, 120.0


def longpoll_query(query: Mapping[str, str]) -> tuple[int, int, float]:
    """``(after, limit, hold)`` of a long-poll request, the hold within 0..:data:`MAX_HOLD_S`; ValueError if
    any is not a number."""
    after, limit = poll_query(query)
    hold = float(query.get("hold", DEFAULT_HOLD_S))
    if not math.isfinite(hold):
        raise ValueError(hold)
    return after, limit, min(max(hold, 0.0), MAX_HOLD_S)


def poll_answer(buffer: EventBuffer, after: int, limit: int) -> web.Response:
    """The poll contract's answer: events newer than ``after`` as NDJSON, ``X-Last-Id``, ``X-Gap`` when cut."""
    events, gap = buffer.after(after, limit)
    headers = {"X-Last-Id": str(buffer.last_id)}
    if gap:
        headers["X-Gap"] = "1"
    return web.Response(body=b"\n".join(events), headers=headers, content_type="application/x-ndjson")


def poll_handler(buffer: EventBuffer):  # type: ignore[no-untyped-def]
    """aiohttp handler for ``GET /events?after=N&limit=M`` returning NDJSON."""

    async def handle(request: web.Request) -> web.Response:
        try:
            after, limit = poll_query(request.query)
        except ValueError:
            return web.Response(status=400, text="after and limit must be integers\n")
        return poll_answer(buffer, after, limit)

    return handle
