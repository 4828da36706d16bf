"""Property tests of the audit arithmetic under loss, duplication, reordering and hostile input.

Whatever a target sends -- events lost, repeated, out of order, ids far
outside the stream, due times from another century -- the sums hold exactly
(``expected == delivered + lost``, ``published == accepted + refused``,
every arrival is recorded once, counted as a duplicate, or counted as bad
input) and no subscriber's memory grows past the stream's length.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deliverybench.core.audit import PublishedLog, audit
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder

MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000

hostile_ids = st.one_of(st.integers(min_value=10_000, max_value=2**70), st.just(2**40), st.just(8 * 10**8))
hostile_times = st.one_of(st.integers(min_value=2**63, max_value=2**80), st.integers(min_value=-(2**80), max_value=-1))


@st.composite
def runs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(min_value=1, max_value=120))
    accepted = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    subscribers = draw(st.integers(min_value=1, max_value=5))
    arrivals = []
    for _s in range(subscribers):
        got = draw(st.lists(st.integers(min_value=0, max_value=n - 1), max_size=3 * n))  # loss, dups, any order
        hostile = draw(st.lists(st.tuples(hostile_ids, st.integers(min_value=0, max_value=n - 1)), max_size=5))
        times = draw(st.lists(st.tuples(st.integers(min_value=0, max_value=n - 1), hostile_times), max_size=5))
        arrivals.append((got, hostile, times))
    return {"n": n, "accepted": accepted, "arrivals": arrivals}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_sums_hold_exactly_and_memory_stays_bounded(run: dict) -> None:
    n = run["n"]
    log = PublishedLog.scheduled([T0 + i * MS for i in range(n)])
    for i, ok in enumerate(run["accepted"]):
        log.settle(i, T0 + i * MS + 1, ok)
    recorder = ProcessRecorder("push", id_limit=n)
    records = []
    bad_expected = 0
    for s, (got, hostile, times) in enumerate(run["arrivals"]):
        record = recorder.subscriber(f"s{s}")
        record.open(T0 - 1000 * MS)
        receive = T0 + n * MS
        for event_id in got:
            recorder.on_event(record, encode_event(Event(event_id, T0 + event_id * MS), T0 + event_id * MS), receive)
        for event_id, _ in hostile:  # ids the stream never had
            recorder.on_event(record, encode_event(Event(event_id, T0), T0), receive)
            bad_expected += 1
        for event_id, due in times:  # real ids with impossible due times
            recorder.on_event(record, b'{"id":%d,"due_ns":%d,"sent_ns":%d,"stream":"s","pad":""}'
                              % (event_id, due, T0), receive)
            bad_expected += 1
        records.append(record)
    payload = recorder.take_payload(final=True, now_ns=T0 + (n + 10_000) * MS)
    totals = audit(log, payload["subscribers"], join_grace_ns=0, drain_ns=0, end_ns=T0 + (n + 10_000) * MS)

    assert totals.balanced
    assert totals.published == totals.accepted + totals.refused == n
    assert totals.expected == totals.delivered_unique + totals.lost
    assert totals.expected == sum(run["accepted"]) * len(records)
    recorded = payload["recorder"].count("delivery")
    assert recorded == totals.delivered_unique + totals.unexpected
    good_arrivals = sum(len(got) for got, _, _ in run["arrivals"])
    assert totals.arrivals == good_arrivals == recorded + totals.duplicates
    errors = payload["errors"]
    assert errors["unexpected_id"] + errors["malformed_due"] == bad_expected
    # no id, however large, made a bitmap grow past the stream's length
    assert all(len(r.received.bits) <= n // 8 + 1 + 64 for r in payload["subscribers"])


@st.composite
def dropped_runs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(min_value=1, max_value=80))
    subscribers = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        # each subscriber: connection windows cut by drops (offsets in ms into the stream), and what arrived
        cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=n + 5), max_size=6)))
        back = draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))
        got = draw(st.sets(st.integers(min_value=0, max_value=n - 1)))
        subscribers.append((cuts, back, got))
    return {"n": n, "subscribers": subscribers, "stopped_at_end": draw(st.booleans())}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dropped_runs())
def test_drops_never_shrink_what_is_expected(run: dict) -> None:
    """However often the target drops a subscriber, and whether it comes back, it is held to every event."""
    n = run["n"]
    log = PublishedLog.scheduled([T0 + i * MS for i in range(n)])
    for i in range(n):
        log.settle(i, T0 + i * MS + 1, True)
    recorder = ProcessRecorder("push", id_limit=n)
    intake = recorder.intake
    end = T0 + (n + 100) * MS
    arrived = 0
    for s, (cuts, back, got) in enumerate(run["subscribers"]):
        index = intake.add(f"p:{s}")
        intake.open(index, T0 - 1000 * MS)
        for cut, comes_back in zip(cuts, back):
            if intake.windows[index][-1][1] is not None:
                break  # dropped for good
            intake.close(index, T0 + cut * MS)  # the target ends the session
            if comes_back:
                intake.open(index, T0 + cut * MS + MS // 2)
        for event_id in got:
            for column, value in zip(intake.appenders, (index, event_id, T0 + event_id * MS, -1, end)):
                column(value)
        arrived += len(got)
        if run["stopped_at_end"]:  # Locust stopping users after the drain: close, then leave
            intake.close(index, end)
            recorder.retire_index(index)
    payload = recorder.take_payload(final=True, now_ns=end)
    totals = audit(log, payload["subscribers"], join_grace_ns=0, drain_ns=0, end_ns=end)
    users = len(run["subscribers"])
    assert totals.expected == n * users and totals.subscribers_full == users
    assert totals.delivered_unique == arrived and totals.unexpected == 0
    assert totals.lost == n * users - arrived and totals.balanced
