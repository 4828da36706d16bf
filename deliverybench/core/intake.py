"""Batched recording of push deliveries: append per message, fold once a second with numpy.

At 10,000 sessions a Python call per message into histograms, bitmaps and
audit counters costs more than receiving the message itself. So the receive
path only appends five integers per delivery -- subscriber index, event id,
due, sent and receive time (ns) -- to preallocated ``array('q')`` columns,
and :meth:`Intake.fold` turns a second's worth into histogram samples,
received-id bitmaps, duplicate / out-of-order / arrival counts and fan-out
in a handful of vectorised passes.

Everything a target sends is untrusted, and the columns are the first place
it lands: a value that does not fit 64 bits never gets in (the receiver
counts it as malformed), and :meth:`fold` bounds the rest before anything is
indexed -- an id outside ``[0, id_limit)`` is ``unexpected_id``, a due or sent
time that cannot belong to the run is ``malformed_due`` / ``malformed_sent``.
The bitmaps are one ``uint8`` matrix (a row per subscriber) grown only as far
as the largest *valid* id seen, so no input can make it allocate past the
stream's length.

Subscribers are small integers handed out by :meth:`Intake.add`; windows and
names stay in plain lists, and :meth:`Intake.records` turns a subscriber into
an ordinary :class:`~deliverybench.core.audit.SubscriberRecord` when it
travels to the aggregator. A window is one connection: :meth:`Intake.close`
ends it as dropped by the target (:data:`~deliverybench.core.audit.DROPPED`:
the subscriber still expects every event) unless :meth:`Intake.leave` says
the test made the subscriber leave. Pure: times are passed in.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable

import numpy as np

from .audit import DROPPED, FanoutTracker, ReceivedIds, SubscriberRecord
from .recording import NS_PER_S, Recorder

__all__ = ["Intake", "MAX_EARLY_NS", "MAX_LATE_NS"]

#: an event due more than this after it arrived is not one of ours (clock skew between machines is allowed)
MAX_EARLY_NS = 3_600 * NS_PER_S
#: an event arriving more than this after its due time is not one of ours either
MAX_LATE_NS = 24 * 3_600 * NS_PER_S


class Intake:
    """The push deliveries of one process, batched.

    Args:
        id_limit: the stream's length; ids at or above it are not ours.
    """

    def __init__(self, *, id_limit: int) -> None:
        self.id_limit = max(1, int(id_limit))
        # the columns the receive path appends to (one entry per delivery)
        self.sub = array("q")
        self.ids = array("q")
        self.due = array("q")
        self.sent = array("q")  # -1: no sent time
        self.rx = array("q")
        #: the columns' ``append`` methods in the order (sub, id, due, sent, rx), made once and shared
        #: by every receiver (one attribute lookup per message instead of five)
        self.appenders = (self.sub.append, self.ids.append, self.due.append, self.sent.append, self.rx.append)
        # per subscriber
        self.names: list[str] = []
        self.windows: list[list[list[int | None]]] = []
        self._closed_ns: list[int | None] = []  # each subscriber's latest close
        self._bits = np.zeros((0, 0), dtype=np.uint8)
        self._max_id = np.zeros(0, dtype=np.int64)
        self._duplicates = np.zeros(0, dtype=np.int64)
        self._out_of_order = np.zeros(0, dtype=np.int64)
        self._arrivals = np.zeros(0, dtype=np.int64)

    # -- subscribers ------------------------------------------------------------------------
    def add(self, name: str) -> int:
        """A new subscriber; returns its index (what the receive path appends)."""
        index = len(self.names)
        self.names.append(name)
        self.windows.append([])
        self._closed_ns.append(None)
        if index >= len(self._max_id):
            self._grow_rows(max(64, 2 * len(self._max_id)))
        return index

    def open(self, index: int, at_ns: int) -> None:
        self.windows[index].append([at_ns, None])

    def close(self, index: int, at_ns: int) -> None:
        """A connection of subscriber ``index`` ended at ``at_ns``: dropped, unless :meth:`leave` follows.

        A session stopped by the test closes, then leaves; one the target
        dropped only closes -- a reconnect continues its window, and without
        one it expects every event to the end of the run.
        """
        self._closed_ns[index] = at_ns
        windows = self.windows[index]
        if windows and windows[-1][1] is None:
            windows[-1][1] = at_ns
            windows[-1].append(DROPPED)

    def leave(self, index: int, at_ns: int | None = None) -> None:
        """The test made subscriber ``index`` leave, at ``at_ns`` (by default at its latest :meth:`close`).

        Its last window ends then, whether its connection was still open or
        had been dropped meanwhile: a subscriber stopped while reconnecting
        expected every event until it was stopped.
        """
        at = self._closed_ns[index] if at_ns is None else at_ns
        windows = self.windows[index]
        if at is None or not windows:
            return
        start, end = windows[-1][0], windows[-1][1]
        if end is None or len(windows[-1]) > 2:
            windows[-1] = [start, at]

    def _grow_rows(self, rows: int) -> None:
        old = len(self._max_id)
        bits = np.zeros((rows, self._bits.shape[1]), dtype=np.uint8)
        bits[:old] = self._bits
        self._bits = bits
        self._max_id = np.concatenate([self._max_id, np.full(rows - old, -1, dtype=np.int64)])
        for name in ("_duplicates", "_out_of_order", "_arrivals"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(rows - old, dtype=np.int64)]))

    def _grow_cols(self, max_id: int) -> None:
        need = max_id // 8 + 1
        cols = self._bits.shape[1]
        if need <= cols:
            return
        cols = min(max(need, 2 * cols, 8), (self.id_limit + 7) // 8)
        bits = np.zeros((self._bits.shape[0], cols), dtype=np.uint8)
        bits[:, : self._bits.shape[1]] = self._bits
        self._bits = bits

    # -- the fold ------------------------------------------------------------------------------
    def pending(self) -> int:
        return len(self.ids)

    def fold(self, recorder: Recorder, fanout: FanoutTracker, errors: Counter[str],
             error_series: Counter[tuple[int, str]], *, metric: str = "delivery") -> int:
        """Move every appended delivery into ``recorder``, the bitmaps, the counts and ``fanout``.

        Returns how many deliveries were new (first arrivals of valid ids).
        """
        n = len(self.ids)
        if n == 0:
            return 0
        sub = np.frombuffer(self.sub, dtype=np.int64, count=n).copy()
        ids = np.frombuffer(self.ids, dtype=np.int64, count=n).copy()
        due = np.frombuffer(self.due, dtype=np.int64, count=n).copy()
        sent = np.frombuffer(self.sent, dtype=np.int64, count=n).copy()
        rx = np.frombuffer(self.rx, dtype=np.int64, count=n).copy()
        for column in (self.sub, self.ids, self.due, self.sent, self.rx):
            del column[:]

        def count_bad(mask: np.ndarray, kind: str) -> None:
            if mask.any():
                seconds, counts = np.unique(rx[mask] // NS_PER_S, return_counts=True)
                for second, k in zip(seconds.tolist(), counts.tolist()):
                    errors[kind] += k
                    error_series[(second, kind)] += k

        # untrusted input, bounded before it indexes anything (int64 arithmetic cannot overflow:
        # both sides are real 64-bit values and the bounds are checked in that order)
        bad_id = (ids < 0) | (ids >= self.id_limit)
        count_bad(bad_id, "unexpected_id")
        lateness = rx - due  # may wrap for absurd due times: caught by the range check below
        wrapped = (due > rx) != (lateness < 0)
        bad_due = ~bad_id & (wrapped | (lateness < -MAX_EARLY_NS) | (lateness > MAX_LATE_NS))
        count_bad(bad_due, "malformed_due")
        keep = ~(bad_id | bad_due)
        sub, ids, due, sent, rx, lateness = sub[keep], ids[keep], due[keep], sent[keep], rx[keep], lateness[keep]
        has_sent = sent >= 0
        service = rx - sent
        sent_wrapped = (sent > rx) != (service < 0)
        bad_sent = has_sent & (sent_wrapped | (service < -MAX_EARLY_NS) | (service > MAX_LATE_NS))
        count_bad(bad_sent, "malformed_sent")
        has_sent &= ~bad_sent
        if len(ids) == 0:
            return 0

        np.add.at(self._arrivals, sub, 1)
        # first arrivals: new in this batch (first of its (subscriber, id) pair) and not seen before
        self._grow_cols(int(ids.max()))
        key = sub * self.id_limit + ids
        _, first = np.unique(key, return_index=True)
        first_in_batch = np.zeros(len(ids), dtype=bool)
        first_in_batch[first] = True
        byte, bit = ids >> 3, (np.uint8(1) << (ids & 7).astype(np.uint8))
        seen = (self._bits[sub, byte] & bit) != 0
        new = first_in_batch & ~seen
        np.add.at(self._duplicates, sub[~new], 1)
        nsub, nids, nrx = sub[new], ids[new], rx[new]
        np.bitwise_or.at(self._bits, (nsub, byte[new]), bit[new])
        self._count_out_of_order(nsub, nids)

        # latencies of first arrivals, per receive second (a duplicate is never recorded twice)
        seconds = nrx // NS_PER_S
        lat_us = lateness[new] // 1000
        svc_us = service[new] // 1000
        svc_ok = has_sent[new]
        first_second, last_second = (int(seconds.min()), int(seconds.max())) if len(seconds) else (0, -1)
        for second in range(first_second, last_second + 1):  # a second or two at most
            in_second = seconds == second
            if not in_second.any():
                continue
            recorder.record_many_us(metric, int(second), lat_us[in_second])
            with_sent = in_second & svc_ok
            if with_sent.any():
                recorder.record_many_us("service", int(second), svc_us[with_sent])

        # fan-out: per event, how many first arrivals and when the last one came
        order = np.argsort(nids, kind="stable")
        uids, starts, counts = np.unique(nids[order], return_index=True, return_counts=True)
        last = np.maximum.reduceat(nrx[order], starts) if len(starts) else np.zeros(0, dtype=np.int64)
        for event_id, k, t in zip(uids.tolist(), counts.tolist(), last.tolist()):
            known = fanout.last_ns.get(event_id)
            if known is None or t > known:
                fanout.last_ns[event_id] = t
            fanout.count[event_id] = fanout.count.get(event_id, 0) + k
        return int(new.sum())

    def _count_out_of_order(self, sub: np.ndarray, ids: np.ndarray) -> None:
        """First arrivals of an id lower than one the subscriber already had (in arrival order)."""
        if len(ids) == 0:
            return
        order = np.argsort(sub, kind="stable")  # arrival order kept within each subscriber
        s, v = sub[order], ids[order]
        offset = s * (self.id_limit + 1)  # groups never reach into each other's maxima
        running = np.maximum.accumulate(v + offset)
        before = np.empty_like(running)
        before[0] = -1
        before[1:] = running[:-1]
        same = np.empty(len(s), dtype=bool)
        same[0] = False
        same[1:] = s[1:] == s[:-1]
        previous = np.where(same, before - offset, -1)
        previous = np.maximum(previous, self._max_id[s])
        late = v < previous
        np.add.at(self._out_of_order, s[late], 1)
        np.maximum.at(self._max_id, s, v)

    # -- hand-over -------------------------------------------------------------------------------
    def record(self, index: int) -> SubscriberRecord:
        """Subscriber ``index`` as an ordinary record (fold first)."""
        received = ReceivedIds()
        row = self._bits[index] if index < self._bits.shape[0] else np.zeros(0, dtype=np.uint8)
        nonzero = np.flatnonzero(row)
        received.bits = bytearray(row[: int(nonzero[-1]) + 1].tobytes()) if len(nonzero) else bytearray()
        received.duplicates = int(self._duplicates[index])
        received.out_of_order = int(self._out_of_order[index])
        received.arrivals = int(self._arrivals[index])
        received._max_id = int(self._max_id[index])
        return SubscriberRecord(self.names[index], [list(w) for w in self.windows[index]], received)

    def records(self, indices: Iterable[int]) -> list[SubscriberRecord]:
        return [self.record(i) for i in indices]
