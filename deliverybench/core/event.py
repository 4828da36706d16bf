"""The event wire format: the contract between the harness and any target.

An event is one JSON object on one line::

    {"id":17,"due_ns":1764245000000000000,"sent_ns":1764245000000150000,"stream":"s","pad":"xxxx"}

* ``id`` -- per stream, from 0, in publication order.
* ``due_ns`` -- wall-clock ``time.time_ns()`` at which the open-model schedule
  said the event should be published (not when it was).
* ``sent_ns`` -- when the publisher actually sent it; ``receive - sent`` is the
  *service* latency, ``receive - due`` the *delivery* latency.
* ``stream`` -- stream name, so several streams can share a target.
* ``pad`` -- filler so the encoded event has the requested size in bytes.

A target must forward the bytes of an event verbatim. The harness always
writes the keys in the order above with no spaces, so the receiving hot path
can read ``id``, ``due_ns`` and ``sent_ns`` by slicing instead of parsing the
whole object (and the padding). Anything that does not start with that exact
prefix falls back to :func:`json.loads`, so a relay that re-serialises events
still works, only more slowly.

A batch (``POST /publish`` with several events) is newline-delimited JSON:
one event per line, so a target can split it with ``bytes.split(b"\\n")`` and
forward each line without re-encoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "Event",
    "EventHead",
    "EVENT_PREFIX",
    "WARMUP_STREAM",
    "WARMUP_MARK",
    "MalformedEvent",
    "encode_event",
    "encode_batch",
    "decode_head",
    "read_head",
    "split_batch",
    "min_event_size",
]

EVENT_PREFIX = b'{"id":'
#: the stream name of warm-up events: sent and delivered like the rest, dropped by every receiver
WARMUP_STREAM = "__warmup__"
#: how a warm-up event reads in its encoded form (the harness always writes this exact spelling)
WARMUP_MARK = b'"stream":"__warmup__"'
_DUE_KEY = b'"due_ns":'
_SENT_KEY = b'"sent_ns":'


class MalformedEvent(ValueError):
    """Raised when bytes received as an event are not one."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event as the publisher knows it before it is sent."""

    id: int
    due_ns: int
    stream: str = "s"


@dataclass(frozen=True, slots=True)
class EventHead:
    """The fields the receiving side needs; the padding is never decoded."""

    id: int
    due_ns: int
    sent_ns: int | None
    stream: str | None = None


@lru_cache(maxsize=64)
def _stream_json(stream: str) -> bytes:
    return json.dumps(stream).encode()


def _skeleton(event: Event, sent_ns: int) -> bytes:
    return b'{"id":%d,"due_ns":%d,"sent_ns":%d,"stream":%b,"pad":""}' % (
        event.id, event.due_ns, sent_ns, _stream_json(event.stream))


def min_event_size(event: Event, sent_ns: int) -> int:
    """Size in bytes of ``event`` with empty padding: the smallest it can be."""
    return len(_skeleton(event, sent_ns))


def encode_event(event: Event, sent_ns: int, size: int = 0) -> bytes:
    """Encode one event, padded with ``x`` up to ``size`` bytes when possible.

    Padding can only grow an event, so a ``size`` below the skeleton's length
    yields the skeleton itself.
    """
    body = _skeleton(event, sent_ns)
    missing = size - len(body)
    if missing <= 0:
        return body
    return b"%b%b\"}" % (body[:-2], _pad(missing))


@lru_cache(maxsize=256)
def _pad(n: int) -> bytes:
    return b"x" * n


def encode_batch(events: Iterable[Event], sent_ns: int, size: int = 0) -> bytes:
    """Encode events as newline-delimited JSON, the batch form of ``/publish``."""
    return b"\n".join(encode_event(e, sent_ns, size) for e in events)


def split_batch(body: bytes) -> list[bytes]:
    """Split a ``/publish`` body into single events, dropping blank lines."""
    return [line for line in body.split(b"\n") if line.strip()]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _canonical_head(raw: bytes) -> tuple[int, int, int] | None:
    """``(id, due_ns, sent_ns)`` read by splitting the canonical prefix, or None."""
    if not raw.startswith(EVENT_PREFIX) or not raw.endswith(b"}"):  # a cut-off event is not an event
        return None
    parts = raw.split(b",", 3)
    if len(parts) != 4 or not parts[1].startswith(_DUE_KEY) or not parts[2].startswith(_SENT_KEY):
        return None
    digits = parts[0][6:]
    if not digits.isdigit():  # no sign, no underscores, no spaces: ids count from 0
        return None
    try:
        return int(digits), int(parts[1][len(_DUE_KEY):]), int(parts[2][len(_SENT_KEY):])
    except ValueError:
        return None


def _json_head(raw: bytes) -> EventHead:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent("event is not a JSON object")
    fields: dict[str, Any] = obj
    if not _is_int(fields.get("id")) or not _is_int(fields.get("due_ns")):
        raise MalformedEvent("event lacks an integer id or due_ns")
    if fields["id"] < 0:
        raise MalformedEvent("event id is negative")
    sent = obj.get("sent_ns")
    stream = obj.get("stream")
    return EventHead(
        fields["id"],
        fields["due_ns"],
        sent if _is_int(sent) else None,
        stream if isinstance(stream, str) else None,
    )


def read_head(raw: bytes) -> tuple[int, int, int | None]:
    """``(id, due_ns, sent_ns)`` of an encoded event, without building an object.

    The receive hot paths call this once per delivery. Raises
    :class:`MalformedEvent` when the data is not an event.
    """
    head = _canonical_head(raw)
    if head is not None:
        return head
    parsed = _json_head(raw)
    return parsed.id, parsed.due_ns, parsed.sent_ns


def decode_head(data: bytes | str) -> EventHead:
    """Read ``id``, ``due_ns`` and ``sent_ns`` from an encoded event.

    The fast path splits the canonical prefix; anything else is parsed as
    JSON. Raises :class:`MalformedEvent` when the data is not an event.
    """
    raw = data.encode() if isinstance(data, str) else data
    head = _canonical_head(raw)
    if head is not None:
        return EventHead(*head)
    return _json_head(raw)
