"""deliverybench.core.audit: bookkeeping of who got what, with synthetic runs."""

from __future__ import annotations

import random

import msgpack
import pytest

from deliverybench.core.audit import (
    DROPPED,
    AuditTotals,
    FanoutTracker,
    PublishedLog,
    ReceivedIds,
    SubscriberRecord,
    audit,
    expected_per_event,
    fanout_times_ns,
    held_windows,
)

NS = 1_000_000_000
MS = 1_000_000
T0 = 1_764_245_000 * NS
N = 20  # events, due every 10 ms from T0
GRACE = 25 * MS
DRAIN = 35 * MS
END = T0 + 2 * NS  # run end: well after the last due time plus drain


def due(i: int) -> int:
    return T0 + i * 10 * MS


def make_log(n: int = N, failed: tuple[int, ...] = ()) -> PublishedLog:
    log = PublishedLog()
    for i in range(n):
        log.add(i, due(i), due(i) + 150_000, i not in failed)
    return log


def subscriber(name: str, ids: object, start: int = T0 - NS, stop: int | None = None) -> SubscriberRecord:
    record = SubscriberRecord(name)
    record.open(start)
    if stop is not None:
        record.close(stop)
    for i in ids:  # type: ignore[attr-defined]
        record.received.mark(i)
    return record


def run(log: PublishedLog, records: list[SubscriberRecord]) -> AuditTotals:
    return audit(log, records, join_grace_ns=GRACE, drain_ns=DRAIN, end_ns=END)


def per_event(log: PublishedLog, records: list[SubscriberRecord]) -> list[int]:
    return expected_per_event(log, records, join_grace_ns=GRACE, drain_ns=DRAIN, end_ns=END)


# -- ReceivedIds -----------------------------------------------------------------------


def test_received_ids_mark_unique_duplicates_out_of_order() -> None:
    r = ReceivedIds()
    assert [r.mark(i) for i in (0, 1, 2, 5, 3, 3, 9, 4, 5, 0)] == [
        True, True, True, True, True, False, True, True, False, False
    ]
    assert r.arrivals == 10
    assert r.duplicates == 3
    assert r.out_of_order == 2  # 3 after 5, 4 after 9 (duplicates do not count)
    assert r.unique == 7
    assert [i in r for i in range(11)] == [True, True, True, True, True, True, False, False, False, True, False]
    assert 10_000 not in r
    assert r.as_int() == sum(1 << i for i in (0, 1, 2, 3, 4, 5, 9))


def test_received_ids_grow_for_large_ids() -> None:
    r = ReceivedIds()
    assert r.mark(100_000)
    assert r.mark(7)
    assert not r.mark(100_000)
    assert r.unique == 2 and r.duplicates == 1 and r.out_of_order == 1
    assert len(r.bits) >= 100_000 // 8 + 1
    assert 100_000 in r and 99_999 not in r and 100_001 not in r


def test_received_ids_empty() -> None:
    r = ReceivedIds()
    assert r.unique == 0 and r.as_int() == 0 and 0 not in r
    assert (r.arrivals, r.duplicates, r.out_of_order) == (0, 0, 0)


# -- SubscriberRecord --------------------------------------------------------------------


def test_subscriber_windows_open_close() -> None:
    record = SubscriberRecord("u1")
    record.close(5)  # nothing open: no effect
    assert record.windows == []
    record.open(10)
    record.close(20)
    record.close(30)  # already closed: no effect
    record.open(40)
    assert record.windows == [[10, 20], [40, None]]


def test_a_drop_ends_the_connection_but_is_marked() -> None:
    record = SubscriberRecord("u1")
    record.drop(5)  # nothing open: no effect
    record.open(10)
    record.drop(20)
    record.drop(25)  # already ended: no effect
    record.open(30)
    record.close(40)
    assert record.windows == [[10, 20, DROPPED], [30, 40]]


def test_held_windows_run_through_drops_and_end_only_when_the_subscriber_left() -> None:
    assert held_windows([]) == []
    assert held_windows([[10, 20], [30, None]]) == [(10, 20), (30, None)]  # left, came back: a gap
    assert held_windows([[10, 20, DROPPED], [30, 40]]) == [(10, 40)]  # the reconnect continues the window
    assert held_windows([[10, 20, DROPPED], [30, 40, DROPPED], [50, 60]]) == [(10, 60)]
    assert held_windows([[10, 20, DROPPED]]) == [(10, None)]  # never back: held to the end of the run
    assert held_windows([[30, 40], [10, 20, DROPPED]]) == [(10, 40)]  # merged out of order (two processes)


def test_subscriber_record_wire_round_trip_through_msgpack() -> None:
    record = subscriber("push:7", [0, 1, 1, 5, 3, 700], start=T0, stop=T0 + NS)
    record.open(T0 + 2 * NS)
    wire = record.to_wire()
    assert isinstance(wire["bits"], bytes)
    raw = msgpack.packb(wire, use_bin_type=True)
    back = SubscriberRecord.from_wire(msgpack.unpackb(raw, raw=False))
    assert back.subscriber == "push:7"
    assert back.windows == [[T0, T0 + NS], [T0 + 2 * NS, None]]
    record.drop(T0 + 3 * NS)  # how it ended travels too
    back = SubscriberRecord.from_wire(msgpack.unpackb(msgpack.packb(record.to_wire(), use_bin_type=True), raw=False))
    assert back.windows == [[T0, T0 + NS], [T0 + 2 * NS, T0 + 3 * NS, DROPPED]]
    assert back.received.as_int() == record.received.as_int()
    assert (back.received.unique, back.received.duplicates, back.received.out_of_order, back.received.arrivals) == (
        5, 1, 1, 6
    )
    assert [i in back.received for i in (0, 1, 3, 5, 700, 2)] == [True] * 5 + [False]


# -- PublishedLog ---------------------------------------------------------------------


def test_published_log_requires_id_order() -> None:
    log = PublishedLog()
    log.add(0, 1, 1, True)
    with pytest.raises(ValueError, match="got 2, expected 1"):
        log.add(2, 3, 3, True)
    with pytest.raises(ValueError):
        log.add(0, 3, 3, True)
    log.add(1, 2, 2, False)
    assert log.published == 2 and log.accepted == 1 and log.refused == 1
    assert log.ok_mask() == 0b01


def test_a_scheduled_log_settles_out_of_order() -> None:
    log = PublishedLog.scheduled([10, 20, 30, 40])
    assert (log.scheduled_count, log.published, log.accepted, log.refused) == (4, 0, 0, 0)
    log.settle(2, 35, True)
    log.settle(0, 15, False)
    log.settle(1, 25, True)
    assert (log.published, log.accepted, log.refused) == (3, 2, 1)
    assert log.ok_mask() == 0b0110
    assert log.sent_ns == [15, 25, 35, 0]
    totals = audit(log, [], join_grace_ns=0, drain_ns=0, end_ns=100)
    assert (totals.scheduled, totals.published, totals.accepted, totals.refused) == (4, 3, 2, 1)
    assert totals.balanced


def test_published_log_counts_and_mask() -> None:
    log = make_log(failed=(3, 7))
    assert log.published == 20 and log.accepted == 18 and log.refused == 2
    assert log.ok_mask() == ((1 << 20) - 1) & ~(1 << 3) & ~(1 << 7)


def test_expected_range_is_inclusive_on_both_ends() -> None:
    log = make_log()
    assert log.expected_range(due(3), due(7)) == (3, 8)
    assert log.expected_range(due(3) + 1, due(7) - 1) == (4, 7)
    assert log.expected_range(T0 - NS, END) == (0, 20)
    assert log.expected_range(due(19) + 1, END) == (20, 20)
    assert log.expected_range(due(10), due(5)) == (10, 10)  # empty, never negative
    assert log.expected_range(T0 - NS, T0 - 1) == (0, 0)


def test_published_log_wire_round_trip() -> None:
    log = make_log(failed=(1,))
    wire = log.to_wire()
    assert wire["ok"][:3] == [1, 0, 1]
    back = PublishedLog.from_wire(msgpack.unpackb(msgpack.packb(wire), raw=False))
    assert back == log


# -- FanoutTracker -------------------------------------------------------------------------


def test_fanout_tracker_mark_merge_take_wire() -> None:
    a, b = FanoutTracker(), FanoutTracker()
    a.mark(0, 100)
    a.mark(0, 90)  # earlier arrival does not lower the last one
    a.mark(1, 50)
    b.mark(0, 120)
    b.mark(2, 70)
    a.merge(b)
    assert a.last_ns == {0: 120, 1: 50, 2: 70}
    assert a.count == {0: 3, 1: 1, 2: 1}
    back = FanoutTracker.from_wire(msgpack.unpackb(msgpack.packb(a.to_wire()), raw=False))
    assert back.last_ns == a.last_ns and back.count == a.count
    taken = a.take()
    assert taken.count == {0: 3, 1: 1, 2: 1}
    assert a.count == {} and a.last_ns == {}


# -- audit arithmetic -----------------------------------------------------------------------


def test_everyone_present_and_complete() -> None:
    log = make_log()
    records = [subscriber(f"s{i}", range(N)) for i in range(3)]
    totals = run(log, records)
    assert totals == AuditTotals(
        scheduled=20, published=20, accepted=20, refused=0, subscribers=3, subscribers_full=3, expected=60,
        delivered_unique=60, lost=0, duplicates=0, out_of_order=0, unexpected=0, arrivals=60,
        subscribers_with_loss=0,
    )
    assert totals.expected == log.accepted * 3
    assert totals.balanced
    assert totals.to_dict()["balanced"] is True
    assert per_event(log, records) == [3] * N


def test_loss_is_expected_minus_unique() -> None:
    log = make_log()
    records = [subscriber("a", range(N)), subscriber("b", [i for i in range(N) if i not in (4, 9, 19)])]
    totals = run(log, records)
    assert (totals.expected, totals.delivered_unique, totals.lost) == (40, 37, 3)
    assert totals.subscribers_with_loss == 1
    assert totals.subscribers_full == 2  # both were expected to get everything
    assert totals.balanced


def test_late_joiner_join_grace() -> None:
    log = make_log()
    # Subscribes 1 ns before event 5 is due; + 25 ms grace -> first expected is event 8 (due at 80 ms).
    late = subscriber("late", range(5, N), start=due(5) - 1)
    totals = run(log, [late])
    # ids 5, 6, 7 are not held against it, but they did arrive: deliveries of its window
    assert totals.expected == 15 and totals.delivered_unique == 15
    assert totals.unexpected == 0 and totals.lost == 0
    assert totals.subscribers_full == 0
    assert per_event(log, [late]) == [0] * 5 + [1] * 15
    # had they not arrived, they would not be lost either
    missing_grace = subscriber("late", range(8, N), start=due(5) - 1)
    assert (run(log, [missing_grace]).expected, run(log, [missing_grace]).lost) == (12, 0)


def test_join_grace_boundary_is_inclusive() -> None:
    log = make_log()
    exact = subscriber("x", [], start=due(5) - GRACE)
    assert per_event(log, [exact]) == [0] * 5 + [1] * 15
    assert run(log, [exact]).lost == 15


def test_early_leaver_drain() -> None:
    log = make_log()
    # Leaves at 150 ms; - 35 ms drain -> the last expected event is 11 (due at 110 ms).
    leaver = subscriber("early", range(14), stop=due(15))
    totals = run(log, [leaver])
    # 12 and 13 arrived in the drain tail: deliveries of the window, not unexpected
    assert totals.expected == 14 and totals.delivered_unique == 14
    assert totals.unexpected == 0 and totals.lost == 0
    assert per_event(log, [leaver]) == [1] * 14 + [0] * 6


def test_open_window_closed_at_end_minus_drain() -> None:
    log = make_log()
    record = subscriber("open", range(N))
    t = audit(log, [record], join_grace_ns=0, drain_ns=0, end_ns=due(9))
    assert t.expected == 10 and t.unexpected == 10
    t = audit(log, [record], join_grace_ns=0, drain_ns=10 * MS, end_ns=due(9))
    assert t.expected == 10 and t.unexpected == 10  # id 9 is in the drain tail, and it arrived
    missing_last = subscriber("open", range(9))
    t = audit(log, [missing_last], join_grace_ns=0, drain_ns=10 * MS, end_ns=due(9))
    assert t.expected == 9 and t.lost == 0  # ... and is not held against it when it did not


def test_reconnect_gap_not_expected() -> None:
    """A subscriber that *left* (the test made it) and came back: the gap was its own choice."""
    log = make_log()
    record = SubscriberRecord("r")
    record.open(T0 - NS)
    record.close(due(6))  # 60 ms - 35 ms drain = 25 ms -> ids 0..2 held against it
    record.open(due(10))  # 100 ms + 25 ms grace = 125 ms -> ids 13..19 held against it
    for i in range(N):
        record.received.mark(i)
    totals = run(log, [record])
    # what arrived in the edges of a window (3..6 before the drop, 10..12 after) counts for that window;
    # only the gap between the windows (7, 8, 9) is unexpected
    assert totals.expected == 7 + 10
    assert totals.delivered_unique == 17
    assert totals.unexpected == 3
    assert per_event(log, [record]) == [1] * 7 + [0] * 3 + [1] * 10


def test_a_dropped_subscriber_expects_every_event_through_the_gap() -> None:
    log = make_log()
    record = SubscriberRecord("d")
    record.open(T0 - NS)
    record.drop(due(6))  # the target ended the session ...
    record.open(due(10))  # ... the reconnect continues the same window: no drain before, no grace after
    for i in (*range(6), *range(10, N)):
        record.received.mark(i)
    totals = run(log, [record])
    assert totals.expected == N and totals.subscribers_full == 1
    assert totals.delivered_unique == 16 and totals.lost == 4 and totals.unexpected == 0  # 6..9 missed
    assert per_event(log, [record]) == [1] * N


def test_a_subscriber_dropped_for_good_is_held_to_the_end_of_the_run() -> None:
    log = make_log()
    gone = subscriber("gone", range(5))
    gone.drop(due(5))
    stays = subscriber("stays", range(N))
    totals = run(log, [gone, stays])
    assert totals.expected == 2 * N == log.accepted * 2  # published x subscribers, drop or no drop
    assert totals.delivered_unique == N + 5 and totals.lost == N - 5
    assert totals.subscribers_full == 2 and totals.subscribers_with_loss == 1


def test_unmeasured_subscribers_are_written_only_when_there_were_any() -> None:
    totals = AuditTotals(expected=4, delivered_unique=4)
    assert "subscribers_unmeasured" not in totals.to_dict()
    totals.subscribers_unmeasured = 50
    assert totals.to_dict()["subscribers_unmeasured"] == 50 and totals.balanced


def test_publish_failures_are_not_expected() -> None:
    log = make_log(failed=(3, 7))
    got_all = subscriber("a", range(N))  # got 3 and 7 anyway (the publisher timed out, target took it)
    got_published = subscriber("b", [i for i in range(N) if i not in (3, 7)])
    totals = run(log, [got_all, got_published])
    assert totals.published == 20 and totals.accepted == 18 and totals.refused == 2
    assert totals.expected == 36 == log.accepted * 2
    assert totals.delivered_unique == 36 and totals.lost == 0
    assert totals.unexpected == 2
    assert totals.subscribers_full == 2
    expected = per_event(log, [got_all, got_published])
    assert expected[3] == expected[7] == 0
    assert sum(expected) == 36


def test_unexpected_arrivals_of_ids_never_published() -> None:
    log = make_log()
    record = subscriber("a", [*range(N), 20, 21, 500])
    totals = run(log, [record])
    assert totals.unexpected == 3
    assert totals.delivered_unique == 20 and totals.lost == 0


def test_duplicates_never_counted_as_unique() -> None:
    log = make_log()
    record = subscriber("dup", [0, 0, 0, 1, 2, 2, 5, 4])
    totals = run(log, [record])
    assert totals.delivered_unique == 5
    assert totals.duplicates == 3
    assert totals.arrivals == 8
    assert totals.out_of_order == 1
    assert totals.lost == 15
    assert totals.balanced


def test_no_subscribers() -> None:
    totals = run(make_log(), [])
    assert totals.subscribers == 0 and totals.expected == 0 and totals.balanced
    assert totals.published == 20


@pytest.mark.parametrize("seed", range(8))
def test_random_runs_balance_and_agree_with_expected_per_event(seed: int) -> None:
    rng = random.Random(seed)
    n = 300
    log = PublishedLog()
    for i in range(n):
        log.add(i, T0 + i * MS, T0 + i * MS, rng.random() > 0.05)
    records = []
    for s in range(12):
        record = SubscriberRecord(f"s{s}")
        t = T0 - 10 * MS + rng.randrange(0, 100 * MS)
        for _ in range(rng.randint(1, 3)):
            record.open(t)
            t += rng.randrange(20 * MS, 120 * MS)
            record.close(t)
            t += rng.randrange(1 * MS, 40 * MS)
        if rng.random() < 0.5:
            record.open(t)  # still subscribed at the end
        for i in range(n):
            if rng.random() < 0.9:
                record.received.mark(i)
            if rng.random() < 0.02:
                record.received.mark(i)
        records.append(record)
    end = T0 + (n + 50) * MS
    totals = audit(log, records, join_grace_ns=5 * MS, drain_ns=5 * MS, end_ns=end)
    expected = expected_per_event(log, records, join_grace_ns=5 * MS, drain_ns=5 * MS, end_ns=end)
    assert totals.balanced
    assert totals.expected == sum(expected)
    assert totals.delivered_unique + totals.unexpected == sum(r.received.unique for r in records)
    assert totals.arrivals == sum(r.received.unique for r in records) + totals.duplicates
    assert totals.lost == totals.expected - totals.delivered_unique >= 0
    assert all(e == 0 for e, ok in zip(expected, log.ok) if not ok)


def test_overlapping_windows_count_a_subscriber_once() -> None:
    log = make_log()
    record = SubscriberRecord("reopened")
    record.open(T0 - NS)
    record.open(due(10))  # re-opened without a close: both windows run to the end
    for i in range(N):
        record.received.mark(i)
    totals = run(log, [record])
    assert totals.expected == 20  # audit() counts each id once
    expected = per_event(log, [record])
    assert sum(expected) == totals.expected
    tracker = FanoutTracker()
    for i in range(N):
        tracker.mark(i, due(i) + MS)
    assert None not in fanout_times_ns(log, tracker, expected)  # it got every event


# -- fan-out ---------------------------------------------------------------------------------


def test_fanout_times() -> None:
    log = make_log(n=5, failed=(4,))
    a = subscriber("a", [0, 1, 2, 3])
    b = subscriber("b", [0, 2, 3])  # missed 1
    late = subscriber("late", [3], start=due(3) - GRACE)
    records = [a, b, late]
    tracker = FanoutTracker()
    arrivals = {("a", 0): 3, ("b", 0): 9, ("a", 1): 4, ("a", 2): 1, ("b", 2): 2, ("a", 3): 5, ("b", 3): 6,
                ("late", 3): 8}
    for (_, i), ms in arrivals.items():
        tracker.mark(i, due(i) + ms * MS)
    expected = per_event(log, records)
    assert expected == [2, 2, 2, 3, 0]
    assert fanout_times_ns(log, tracker, expected) == [9 * MS, None, 2 * MS, 8 * MS, None]


def test_fanout_when_expected_list_is_short_or_tracker_empty() -> None:
    log = make_log(n=3)
    tracker = FanoutTracker()
    tracker.mark(0, due(0) + 7)
    assert fanout_times_ns(log, tracker, [1]) == [7, None, None]
    assert fanout_times_ns(log, FanoutTracker(), [1, 1, 1]) == [None, None, None]
    assert fanout_times_ns(PublishedLog(), tracker, []) == []
