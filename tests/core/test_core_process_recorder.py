"""deliverybench.core.process_recorder: the per-process receive path, fed synthetic frames."""

from __future__ import annotations

import json

import pytest

from deliverybench.harness.aggregator import RunAggregator, payload_from_wire, payload_to_wire
from deliverybench.core.audit import PublishedLog
from deliverybench.core.event import Event, encode_event
from deliverybench.core.process_recorder import ProcessRecorder, empty_payload

NS = 1_000_000_000
MS = 1_000_000
S = 1_764_245_000
T0 = S * NS


def frame(event_id: int, due_ns: int, sent_ns: int, size: int = 128) -> bytes:
    return encode_event(Event(event_id, due_ns), sent_ns, size)


def folded(pr: ProcessRecorder):  # type: ignore[no-untyped-def]
    """The recorder after buffered latencies were folded in (take_payload does this too)."""
    pr.fold_buffer()
    return pr.recorder


def only_value_us(pr: ProcessRecorder, metric: str) -> int:
    hist = folded(pr).total(metric)
    assert hist.get_total_count() == 1
    return hist.get_min_value()


def test_on_event_records_delivery_and_service() -> None:
    pr = ProcessRecorder("push")
    record = pr.subscriber("s1")
    receive = T0 + 7 * MS
    assert pr.on_event(record, frame(0, T0, T0 + 2 * MS), receive) is True
    assert only_value_us(pr, "delivery") == 7000
    assert only_value_us(pr, "service") == 5000
    assert folded(pr).seconds("delivery") == [S]
    assert 0 in record.received
    assert pr.fanout.count == {0: 1} and pr.fanout.last_ns == {0: receive}
    assert pr.frames == 1
    assert not pr.errors


def test_duplicates_are_not_recorded_twice() -> None:
    pr = ProcessRecorder("push")
    record = pr.subscriber("s1")
    data = frame(3, T0, T0)
    assert pr.on_event(record, data, T0 + MS) is True
    assert pr.on_event(record, data, T0 + 2 * MS) is False
    assert folded(pr).count("delivery") == 1
    assert folded(pr).count("service") == 1
    assert record.received.duplicates == 1 and record.received.arrivals == 2
    assert pr.fanout.count == {3: 1} and pr.fanout.last_ns == {3: T0 + MS}
    assert pr.frames == 2
    # the same id at another subscriber is a delivery of its own
    assert pr.on_event(pr.subscriber("s2"), data, T0 + 4 * MS) is True
    assert folded(pr).count("delivery") == 2
    assert pr.fanout.count == {3: 2} and pr.fanout.last_ns == {3: T0 + 4 * MS}


def test_custom_metric() -> None:
    pr = ProcessRecorder("callback")
    assert pr.on_event(pr.subscriber("c"), frame(0, T0, T0 + MS), T0 + 3 * MS, metric="first_attempt")
    assert folded(pr).metrics() == ["first_attempt", "service"]
    assert only_value_us(pr, "first_attempt") == 3000


def test_reserialised_event_without_sent_ns_records_delivery_only() -> None:
    pr = ProcessRecorder("push")
    data = json.dumps({"stream": "s", "due_ns": T0, "id": 4}).encode()
    assert pr.on_event(pr.subscriber("s"), data, T0 + 9 * MS) is True
    assert only_value_us(pr, "delivery") == 9000
    assert folded(pr).count("service") == 0


def test_echo_frames_record_echo_rtt() -> None:
    pr = ProcessRecorder("push")
    record = pr.subscriber("s1")
    assert pr.on_event(record, b'{"echo":%d}' % (T0 + MS), T0 + 3 * MS) is False
    assert only_value_us(pr, "echo_rtt") == 2000
    assert folded(pr).count("delivery") == 0
    assert record.received.arrivals == 0
    assert pr.frames == 1
    assert not pr.errors


@pytest.mark.parametrize("data", [b'{"echo":soon}', b'{"echo":12', b'{"echo":}'])
def test_malformed_echo(data: bytes) -> None:
    pr = ProcessRecorder("push")
    assert pr.on_event(pr.subscriber("s"), data, T0 + NS + 5) is False
    assert pr.errors == {"malformed_echo": 1}
    assert pr.error_series == {(S + 1, "malformed_echo"): 1}
    assert not folded(pr)


@pytest.mark.parametrize("data", [b"", b"garbage", b'{"id":1}', b"[1,2]", b'{"id":"x","due_ns":1}', b"\xff"])
def test_malformed_frames_counted_as_errors(data: bytes) -> None:
    pr = ProcessRecorder("push")
    record = pr.subscriber("s")
    assert pr.on_event(record, data, T0 + 2 * NS) is False
    assert pr.errors == {"malformed_event": 1}
    assert pr.error_series == {(S + 2, "malformed_event"): 1}
    assert pr.frames == 1
    assert not folded(pr)
    assert record.received.arrivals == 0


@pytest.mark.parametrize(
    "data", [b'{"id":-1,"due_ns":5,"sent_ns":6,"stream":"s","pad":""}', b'{"id": Infinity, "due_ns": 5}']
)
def test_hostile_ids_are_malformed_not_crashes(data: bytes) -> None:
    pr = ProcessRecorder("push")
    assert pr.on_event(pr.subscriber("s"), data, T0) is False
    assert pr.errors == {"malformed_event": 1}


def test_negative_latency_is_counted() -> None:
    pr = ProcessRecorder("push")
    assert pr.on_event(pr.subscriber("s"), frame(0, T0 + 5 * MS, T0 + 5 * MS), T0) is True
    assert folded(pr).negative == {"delivery": 1, "service": 1}


def test_subscriber_and_retire() -> None:
    pr = ProcessRecorder("push")
    a = pr.subscriber("a")
    assert pr.subscriber("a") is a
    pr.retire("a")
    pr.retire("nobody")
    assert pr.subscribers == {} and pr.finished == [a]
    assert pr.subscriber("a") is not a  # a new session under the same name


def fill(pr: ProcessRecorder) -> None:
    a, b = pr.subscriber("a"), pr.subscriber("b")
    a.open(T0 - NS)
    b.open(T0 - NS)
    for i, sec in enumerate((0, 0, 1, 2)):
        receive = T0 + sec * NS + 10 * MS
        pr.on_event(a, frame(i, receive - 3 * MS, receive - MS), receive)
        pr.on_event(b, frame(i, receive - 3 * MS, receive - MS), receive + MS)
    pr.on_event(b, b"junk", T0 + NS)
    pr.counters["echo_sent"] += 2


def test_take_payload_not_final_keeps_current_second() -> None:
    pr = ProcessRecorder("push")
    fill(pr)
    pr.retire("b")
    now = T0 + 2 * NS + 500 * MS  # inside second S + 2
    p = pr.take_payload(final=False, now_ns=now)
    assert set(p) == set(empty_payload())
    assert p["recorder"].seconds("delivery") == [S, S + 1]
    assert p["recorder"].count("delivery") == 6
    assert folded(pr).seconds("delivery") == [S + 2]
    assert folded(pr).count("delivery") == 2
    assert [r.subscriber for r in p["subscribers"]] == ["b"]
    assert p["subscribers"][0].windows == [[T0 - NS, None]]  # retire does not close: the adapter does
    assert list(pr.subscribers) == ["a"]
    assert p["fanout"].count == {}  # fan-out only travels at the end
    assert pr.fanout.count == {0: 2, 1: 2, 2: 2, 3: 2}
    assert p["errors"] == {"malformed_event": 1}
    assert p["error_series"] == {(S + 1, "malformed_event"): 1}
    assert p["counters"] == {"echo_sent": 2}
    assert not pr.errors and not pr.error_series and not pr.counters
    # nothing more is ready within the same second
    again = pr.take_payload(final=False, now_ns=now + 1)
    assert not again["recorder"] and again["subscribers"] == [] and not again["errors"]


def test_take_payload_final_closes_open_windows() -> None:
    pr = ProcessRecorder("push")
    fill(pr)
    pr.subscribers["b"].close(T0 + 3 * NS)
    now = T0 + 2 * NS + 1
    p = pr.take_payload(final=True, now_ns=now)
    assert p["recorder"].seconds("delivery") == [S, S + 1, S + 2]
    assert p["recorder"].count("delivery") == 8
    assert not folded(pr)
    windows = {r.subscriber: r.windows for r in p["subscribers"]}
    assert windows == {"a": [[T0 - NS, now]], "b": [[T0 - NS, T0 + 3 * NS]]}
    assert pr.subscribers == {} and pr.finished == []
    assert p["fanout"].count == {0: 2, 1: 2, 2: 2, 3: 2}
    assert pr.fanout.count == {}


def test_process_payloads_aggregate_to_a_balanced_audit() -> None:
    log = PublishedLog()
    for i, sec in enumerate((0, 0, 1, 2)):
        due = T0 + sec * NS + 7 * MS
        log.add(i, due, due + 2 * MS, True)
    aggregator = RunAggregator("push")
    first = ProcessRecorder("push")
    fill(first)
    aggregator.add_wire(payload_to_wire(first.take_payload(final=False, now_ns=T0 + NS + 1)))
    aggregator.add(payload_from_wire(payload_to_wire(first.take_payload(final=True, now_ns=T0 + 4 * NS))))
    result = aggregator.build(log=log, target={}, params={}, started_ns=T0 - NS, stream_start_ns=T0,
                              ended_ns=T0 + 4 * NS, join_grace_ns=0, drain_ns=NS, status="ok", failure=None)
    assert result["audit"]["expected"] == 8 == result["audit"]["delivered_unique"]
    assert result["audit"]["lost"] == 0 and result["audit"]["balanced"] is True
    assert result["summary"]["delivery"]["count"] == 8
    assert result["errors"] == {"malformed_event": 1}
    assert [row[2] for row in result["fanout"]["rows"]] == [4.0, 4.0, 4.0, 4.0]  # due + 3 ms + 1 ms (b)
