"""Audit bookkeeping: which events each subscriber got, and what is missing.

Each subscriber keeps a bitmap of the event ids it received, plus the windows
of time during which it was subscribed. After the run the aggregator knows
which events were really published and when each was due, and computes:

* **expected** -- for each subscriber, the published events due inside one of
  its windows, from ``subscribed + join_grace`` to ``unsubscribed - drain``:
  an event it could not have been sent, or had no time to arrive, is not
  held against it. Only the test ends a window (a subscriber it made leave,
  or the end of the run): a session the *target* dropped (:data:`DROPPED`)
  keeps its window open until the subscriber's next connection continues
  it, or to the end of the run -- what it missed meanwhile is lost;
* **delivered_unique** -- expected events that arrived at least once;
* **lost** -- expected events that never arrived: ``expected - delivered_unique``;
* **duplicates** -- arrivals after the first of the same id (any id);
* **out_of_order** -- first arrivals of an id lower than one already seen;
* **unexpected** -- unique arrivals outside the expected set (before the
  subscriber joined, after it left, or events whose publish was not confirmed).

``expected == delivered_unique + lost`` holds by construction, exactly; when
every subscriber stays for the whole stream, ``expected == published ×
subscribers``. Everything is plain integers so it travels between processes.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

#: the third item of a window that ended because the target dropped the session (not because the
#: test made the subscriber leave): what is expected of the subscriber goes on past its end
DROPPED = 1

__all__ = [
    "DROPPED",
    "ReceivedIds",
    "SubscriberRecord",
    "PublishedLog",
    "FanoutTracker",
    "AuditTotals",
    "audit",
    "expected_per_event",
    "held_windows",
    "fanout_times_ns",
]


class ReceivedIds:
    """A growable bitmap of received ids, with duplicate and order counters."""

    __slots__ = ("bits", "duplicates", "out_of_order", "arrivals", "_max_id")

    def __init__(self) -> None:
        self.bits = bytearray()
        self.duplicates = 0
        self.out_of_order = 0
        self.arrivals = 0
        self._max_id = -1

    def mark(self, event_id: int) -> bool:
        """Note an arrival; return True if it is the first of this id."""
        if event_id < 0:
            raise ValueError("event ids count from 0")
        self.arrivals += 1
        byte, bit = event_id >> 3, 1 << (event_id & 7)
        bits = self.bits
        if byte >= len(bits):
            bits.extend(b"\x00" * (byte + 1 - len(bits) + 64))
        elif bits[byte] & bit:
            self.duplicates += 1
            return False
        bits[byte] |= bit
        if event_id < self._max_id:
            self.out_of_order += 1
        else:
            self._max_id = event_id
        return True

    def as_int(self) -> int:
        return int.from_bytes(self.bits, "little")

    @property
    def unique(self) -> int:
        return self.as_int().bit_count()

    def __contains__(self, event_id: int) -> bool:
        byte = event_id >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (1 << (event_id & 7)))


@dataclass
class SubscriberRecord:
    """One subscriber's windows and arrivals, as shipped to the aggregator.

    ``windows`` are ``[subscribed_ns, unsubscribed_ns]`` pairs; an open
    window (still subscribed when the record was taken) has ``None`` as its
    end and is closed by the aggregator at the end of the run. A window the
    target ended has a third item, :data:`DROPPED` (see :meth:`drop`).
    """

    subscriber: str
    windows: list[list[int | None]] = field(default_factory=list)
    received: ReceivedIds = field(default_factory=ReceivedIds)

    def open(self, at_ns: int) -> None:
        self.windows.append([at_ns, None])

    def close(self, at_ns: int) -> None:
        """The subscriber left (the test made it): nothing is expected of it after ``at_ns``."""
        if self.windows and self.windows[-1][1] is None:
            self.windows[-1][1] = at_ns

    def drop(self, at_ns: int) -> None:
        """The target ended the session at ``at_ns``: the subscriber still expects every event.

        Its window stays open in the audit until the next :meth:`open` (a
        reconnect) continues it, or to the end of the run.
        """
        if self.windows and self.windows[-1][1] is None:
            self.windows[-1][1] = at_ns
            self.windows[-1].append(DROPPED)

    def to_wire(self) -> dict[str, object]:
        r = self.received
        return {
            "subscriber": self.subscriber,
            "windows": [list(w) for w in self.windows],
            "bits": zlib.compress(bytes(r.bits)),
            "duplicates": r.duplicates,
            "out_of_order": r.out_of_order,
            "arrivals": r.arrivals,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> SubscriberRecord:
        received = ReceivedIds()
        bits = data["bits"]
        assert isinstance(bits, (bytes, bytearray))
        received.bits = bytearray(zlib.decompress(bits))
        received.duplicates = int(data["duplicates"])  # type: ignore[call-overload]
        received.out_of_order = int(data["out_of_order"])  # type: ignore[call-overload]
        received.arrivals = int(data["arrivals"])  # type: ignore[call-overload]
        windows = [list(w) for w in data["windows"]]  # type: ignore[attr-defined]
        return cls(str(data["subscriber"]), windows, received)


@dataclass
class PublishedLog:
    """What the publisher really did: per scheduled id, when it was due, sent, and accepted.

    An open-model publisher has many requests in flight, so outcomes arrive
    out of order: :meth:`scheduled` lays out every due time first and
    :meth:`settle` fills in each event's outcome as it comes back. ``sent_ns``
    is 0 for an event never sent (the publisher stopped first). Of the events
    sent (*published*), those the target acknowledged with a 2xx are
    *accepted*; the rest -- refused with a status, timed out, or never
    answered -- are *refused*: ``published == accepted + refused`` exactly.
    Only accepted events are expected of subscribers.
    """

    due_ns: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)

    @classmethod
    def scheduled(cls, due_ns: Sequence[int]) -> PublishedLog:
        """A log of ``len(due_ns)`` events, none sent yet."""
        n = len(due_ns)
        return cls(list(due_ns), [0] * n, [False] * n)

    def add(self, event_id: int, due_ns: int, sent_ns: int, ok: bool) -> None:
        """Append the next event, already settled (for publishers that go one at a time)."""
        if event_id != len(self.due_ns):
            raise ValueError(f"events must be logged in id order: got {event_id}, expected {len(self.due_ns)}")
        self.due_ns.append(due_ns)
        self.sent_ns.append(sent_ns)
        self.ok.append(ok)

    def settle(self, event_id: int, sent_ns: int, accepted: bool) -> None:
        """Record the outcome of scheduled event ``event_id``, sent at ``sent_ns`` (> 0)."""
        self.sent_ns[event_id] = sent_ns
        self.ok[event_id] = accepted

    @property
    def scheduled_count(self) -> int:
        return len(self.due_ns)

    @property
    def published(self) -> int:
        """Events sent to the target's ingress."""
        return sum(1 for sent in self.sent_ns if sent)

    @property
    def accepted(self) -> int:
        return sum(self.ok)

    @property
    def refused(self) -> int:
        return self.published - self.accepted

    def ok_mask(self) -> int:
        return int("".join("1" if accepted else "0" for accepted in reversed(self.ok)) or "0", 2)

    def expected_range(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Ids ``[lo, hi)`` due within ``[start_ns, end_ns]`` (due times are sorted)."""
        lo = bisect.bisect_left(self.due_ns, start_ns)
        hi = bisect.bisect_right(self.due_ns, end_ns)
        return lo, max(lo, hi)

    def to_wire(self) -> dict[str, list[int]]:
        return {"due_ns": list(self.due_ns), "sent_ns": list(self.sent_ns), "ok": [int(x) for x in self.ok]}

    @classmethod
    def from_wire(cls, data: Mapping[str, Sequence[int]]) -> PublishedLog:
        return cls(list(data["due_ns"]), list(data["sent_ns"]), [bool(x) for x in data["ok"]])


class FanoutTracker:
    """Per event: how many subscribers had it and when the last one got it."""

    __slots__ = ("last_ns", "count")

    def __init__(self) -> None:
        self.last_ns: dict[int, int] = {}
        self.count: dict[int, int] = {}

    def mark(self, event_id: int, receive_ns: int) -> None:
        """Call on the first arrival of an id at a subscriber."""
        last = self.last_ns.get(event_id)
        if last is None or receive_ns > last:
            self.last_ns[event_id] = receive_ns
        self.count[event_id] = self.count.get(event_id, 0) + 1

    def merge(self, other: FanoutTracker) -> None:
        for event_id, last in other.last_ns.items():
            mine = self.last_ns.get(event_id)
            if mine is None or last > mine:
                self.last_ns[event_id] = last
        for event_id, n in other.count.items():
            self.count[event_id] = self.count.get(event_id, 0) + n

    def take(self) -> FanoutTracker:
        taken = FanoutTracker()
        taken.last_ns, self.last_ns = self.last_ns, {}
        taken.count, self.count = self.count, {}
        return taken

    def to_wire(self) -> dict[str, list[int]]:
        ids = sorted(self.count)
        return {"ids": ids, "last_ns": [self.last_ns[i] for i in ids], "count": [self.count[i] for i in ids]}

    @classmethod
    def from_wire(cls, data: Mapping[str, Sequence[int]]) -> FanoutTracker:
        tracker = cls()
        for event_id, last, n in zip(data["ids"], data["last_ns"], data["count"]):
            tracker.last_ns[int(event_id)] = int(last)
            tracker.count[int(event_id)] = int(n)
        return tracker


@dataclass
class AuditTotals:
    """Run-wide audit figures. ``expected == delivered_unique + lost`` and
    ``published == accepted + refused``, always."""

    scheduled: int = 0
    published: int = 0
    accepted: int = 0
    refused: int = 0
    subscribers: int = 0
    subscribers_full: int = 0
    expected: int = 0
    delivered_unique: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    arrivals: int = 0
    subscribers_with_loss: int = 0
    subscribers_never_connected: int = 0
    #: subscribers of a harness process that died before it handed them over: in none of the sums
    #: above (written only when there were any)
    subscribers_unmeasured: int = 0

    @property
    def balanced(self) -> bool:
        return self.expected == self.delivered_unique + self.lost and self.published == self.accepted + self.refused

    def to_dict(self) -> dict[str, int | bool]:
        out: dict[str, int | bool] = dict(asdict(self))
        if not self.subscribers_unmeasured:
            del out["subscribers_unmeasured"]
        out["balanced"] = self.balanced
        return out


def held_windows(windows: Iterable[Sequence[int | None]]) -> list[tuple[int, int | None]]:
    """The spans during which a subscriber is held to every event, from its connection windows.

    A window the target ended (:data:`DROPPED`) does not end the span: the
    next window continues it, and when none follows it runs to the end of
    the run (``None``). Only a window the test ended (a leave) ends one.
    """
    held: list[tuple[int, int | None]] = []
    continues = False
    for window in sorted(windows, key=lambda w: w[0] or 0):
        start, stop = window[0], window[1]
        assert start is not None
        dropped = len(window) > 2 and window[2] == DROPPED
        end = None if dropped else stop
        if continues:
            held[-1] = (held[-1][0], end)
        else:
            held.append((start, end))
        continues = dropped
    return held


def _expected_ranges(record: SubscriberRecord, log: PublishedLog, join_grace_ns: int, drain_ns: int,
                     end_ns: int) -> list[tuple[int, int]]:
    """Id ranges ``[lo, hi)`` expected of ``record``, merged so overlapping windows count once."""
    ranges = []
    for start, stop in held_windows(record.windows):
        window_end = (stop if stop is not None else end_ns) - drain_ns
        lo, hi = log.expected_range(start + join_grace_ns, window_end)
        if hi > lo:
            ranges.append((lo, hi))
    return _merge_ranges(ranges)


def _ranges_mask(ranges: Iterable[tuple[int, int]]) -> int:
    mask = 0
    for lo, hi in ranges:
        mask |= ((1 << (hi - lo)) - 1) << lo
    return mask


def _expected_mask(
    record: SubscriberRecord, log: PublishedLog, ok_mask: int, join_grace_ns: int, drain_ns: int, end_ns: int,
    got: int = 0,
) -> int:
    """The accepted ids this subscriber is held to, plus those it got in the edges of its windows.

    An event due in the first ``join_grace`` or the last ``drain`` of a
    subscription window is not held against the subscriber -- it may not
    have been registered yet, or had no time to arrive before it left.
    If it *did* arrive, it is a delivery of that window, not "unexpected".
    """
    strict = _ranges_mask(_expected_ranges(record, log, join_grace_ns, drain_ns, end_ns))
    whole = _ranges_mask(_expected_ranges(record, log, 0, 0, end_ns))
    return (strict | (got & whole)) & ok_mask


def audit(
    log: PublishedLog,
    records: Iterable[SubscriberRecord],
    *,
    join_grace_ns: int,
    drain_ns: int,
    end_ns: int,
    first_id: int = 0,
) -> AuditTotals:
    """Compute the audit totals.

    Args:
        log: What was published.
        records: One record per subscriber (merge reconnects beforehand).
        join_grace_ns: Events due within this long after subscribing are not
            expected (the target may not have registered the session yet).
        drain_ns: Events due within this long before unsubscribing are not
            expected (they had no time to arrive).
        end_ns: When the run ended; closes windows left open.
        first_id: ids below it were the warm-up: published like the rest,
            dropped by the receivers, and left out of every count here.
    """
    measured = ~((1 << first_id) - 1)
    ok_mask = log.ok_mask() & measured
    sent = log.sent_ns[first_id:]
    published = sum(1 for t in sent if t)
    accepted = sum(log.ok[first_id:])
    totals = AuditTotals(scheduled=log.scheduled_count - first_id, published=published, accepted=accepted,
                         refused=published - accepted)
    full_mask = ok_mask
    for record in records:
        totals.subscribers += 1
        if not record.windows:
            totals.subscribers_never_connected += 1
        got = record.received.as_int() & measured
        expected_mask = _expected_mask(record, log, ok_mask, join_grace_ns, drain_ns, end_ns, got)
        expected = expected_mask.bit_count()
        unique_expected = (got & expected_mask).bit_count()
        totals.expected += expected
        totals.delivered_unique += unique_expected
        totals.lost += expected - unique_expected
        totals.unexpected += (got & ~expected_mask).bit_count()
        totals.duplicates += record.received.duplicates
        totals.out_of_order += record.received.out_of_order
        totals.arrivals += record.received.arrivals
        if expected_mask == full_mask:
            totals.subscribers_full += 1
        if expected != unique_expected:
            totals.subscribers_with_loss += 1
    return totals


def expected_per_event(
    log: PublishedLog,
    records: Iterable[SubscriberRecord],
    *,
    join_grace_ns: int,
    drain_ns: int,
    end_ns: int,
    first_id: int = 0,
) -> list[int]:
    """How many subscribers were expected to get each event id (as :func:`audit` counts them)."""
    diff = [0] * (log.scheduled_count + 1)
    for record in records:
        strict = _expected_ranges(record, log, join_grace_ns, drain_ns, end_ns)
        for lo, hi in strict:
            diff[lo] += 1
            diff[hi] -= 1
        # events that arrived in the edges of a window count as expected of it too
        edges = (record.received.as_int() & _ranges_mask(_expected_ranges(record, log, 0, 0, end_ns))
                 & ~_ranges_mask(strict))
        while edges:
            low = edges & -edges
            i = low.bit_length() - 1
            if i < log.scheduled_count:
                diff[i] += 1
                diff[i + 1] -= 1
            edges ^= low
    counts, running = [], 0
    for i in range(log.scheduled_count):
        running += diff[i]
        counts.append(running if log.ok[i] and i >= first_id else 0)
    return counts


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def fanout_times_ns(log: PublishedLog, tracker: FanoutTracker, expected: Sequence[int]) -> list[int | None]:
    """Per event id: due -> last expected arrival, or None if someone never got it.

    Events nobody was expected to get have no fan-out time either.
    """
    out: list[int | None] = []
    for event_id, due in enumerate(log.due_ns):
        want = expected[event_id] if event_id < len(expected) else 0
        have = tracker.count.get(event_id, 0)
        if want == 0 or have < want:
            out.append(None)
        else:
            out.append(tracker.last_ns[event_id] - due)
    return out
