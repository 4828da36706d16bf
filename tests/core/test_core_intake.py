"""The batched intake gives exactly what recording one message at a time gives.

The reference is :class:`~deliverybench.core.audit.ReceivedIds` marking
arrivals in order; the intake must agree on every count -- unique,
duplicates (within a batch and across batches), out of order, arrivals,
fan-out, histogram counts -- whatever the order, the batching and the
hostile values mixed in.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from deliverybench.core.audit import FanoutTracker, ReceivedIds
from deliverybench.core.intake import MAX_EARLY_NS, Intake
from deliverybench.core.recording import NS_PER_S, Recorder

T0 = 1_800_000_000 * NS_PER_S
MS = 1_000_000


def push(intake: Intake, sub: int, event_id: int, *, due: int | None = None, sent: int = -1, rx: int = T0) -> None:
    intake.sub.append(sub)
    intake.ids.append(event_id)
    intake.due.append(T0 - 5 * MS if due is None else due)
    intake.sent.append(sent)
    intake.rx.append(rx)


def fold(intake: Intake) -> tuple[Recorder, FanoutTracker, Counter[str], Counter[tuple[int, str]], int]:
    recorder, fanout, errors, series = Recorder(), FanoutTracker(), Counter(), Counter()
    new = intake.fold(recorder, fanout, errors, series)
    return recorder, fanout, errors, series, new


def test_counts_latency_and_service_are_recorded_per_receive_second() -> None:
    intake = Intake(id_limit=10)
    a, b = intake.add("a"), intake.add("b")
    push(intake, a, 0, due=T0 - 10 * MS, sent=T0 - 2 * MS, rx=T0)
    push(intake, b, 0, due=T0 - 10 * MS, sent=T0 - 2 * MS, rx=T0 + NS_PER_S)
    recorder, fanout, errors, _, new = fold(intake)
    assert new == 2 and not errors
    assert recorder.count("delivery") == 2 and recorder.count("service") == 2
    assert recorder.seconds("delivery") == [T0 // NS_PER_S, T0 // NS_PER_S + 1]
    assert recorder.total("delivery").get_value_at_percentile(50) // 1000 == 10  # ms
    assert fanout.count == {0: 2} and fanout.last_ns == {0: T0 + NS_PER_S}
    assert intake.pending() == 0


def test_duplicates_within_and_across_batches_are_counted_and_never_recorded_twice() -> None:
    intake = Intake(id_limit=10)
    s = intake.add("s")
    for event_id in (1, 2, 1, 3):
        push(intake, s, event_id)
    recorder, _, _, _, new = fold(intake)
    assert new == 3 and recorder.count("delivery") == 3
    push(intake, s, 2)
    push(intake, s, 4)
    recorder, _, _, _, new = fold(intake)
    assert new == 1 and recorder.count("delivery") == 1
    record = intake.record(s)
    assert record.received.unique == 4 and record.received.duplicates == 2 and record.received.arrivals == 6


def test_hostile_values_are_counted_by_kind_and_allocate_nothing() -> None:
    intake = Intake(id_limit=100)
    s = intake.add("s")
    push(intake, s, 2**40)
    push(intake, s, -1)
    push(intake, s, 5, due=T0 + MAX_EARLY_NS + 1)  # due far in the future
    push(intake, s, 6, due=-(2**63) + 1)             # rx - due would wrap 64 bits
    push(intake, s, 7, sent=2**62)                   # an impossible sent time: recorded without service
    recorder, _, errors, series, new = fold(intake)
    assert errors == {"unexpected_id": 2, "malformed_due": 2, "malformed_sent": 1}
    assert sum(series.values()) == 5
    assert new == 1 and recorder.count("delivery") == 1 and recorder.count("service") == 0
    assert intake._bits.shape[1] <= 100 // 8 + 1


def reference(arrivals: list[tuple[int, int]], subscribers: int) -> list[ReceivedIds]:
    marks = [ReceivedIds() for _ in range(subscribers)]
    for sub, event_id in arrivals:
        marks[sub].mark(event_id)
    return marks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 63)), max_size=300), st.integers(1, 5))
def test_the_intake_agrees_with_marking_one_arrival_at_a_time(arrivals: list[tuple[int, int]], batches: int) -> None:
    intake = Intake(id_limit=64)
    for s in range(5):
        intake.add(f"s{s}")
    step = max(1, len(arrivals) // batches)
    new_total = 0
    fanout = FanoutTracker()
    for start in range(0, len(arrivals), step):
        for sub, event_id in arrivals[start:start + step]:
            push(intake, sub, event_id)
        new_total += intake.fold(Recorder(), fanout, Counter(), Counter())
    expected = reference(arrivals, 5)
    for s in range(5):
        got = intake.record(s).received
        want = expected[s]
        assert (got.unique, got.duplicates, got.out_of_order, got.arrivals) == (
            want.unique, want.duplicates, want.out_of_order, want.arrivals)
        assert bytes(got.bits).rstrip(b"\0") == bytes(want.bits).rstrip(b"\0")
    assert new_total == sum(m.unique for m in expected)
    assert sum(fanout.count.values()) == new_total
