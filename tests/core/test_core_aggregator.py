"""deliverybench.harness.aggregator: merging per-process payloads exactly, as the master does."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgpack
import pytest

from deliverybench.harness.aggregator import RunAggregator, payload_from_wire, payload_to_wire
from deliverybench.core.audit import FanoutTracker, PublishedLog, SubscriberRecord
from deliverybench.core.recording import Recorder
from deliverybench.core.resources import Sample

NS = 1_000_000_000
MS = 1_000_000
S = 1_764_245_000
T0 = S * NS
N = 10
FAILED = 6  # publish of id 6 was not confirmed
MISSED = ("s3", 2)  # s3 never got id 2
END = T0 + 3 * NS
GRACE = 10 * MS
DRAIN = 100 * MS


def due(i: int) -> int:
    return T0 + i * 100 * MS


def make_log() -> PublishedLog:
    log = PublishedLog()
    for i in range(N):
        log.add(i, due(i), due(i) + 50_000, i != FAILED)
    return log


def payload(subscribers: list[str], gauges: list[tuple[int, int, str]], samples: list[Sample],
            errors: list[tuple[int, str]]) -> dict[str, Any]:
    """What one harness process would hand over for these subscribers."""
    recorder, fanout = Recorder(), FanoutTracker()
    records = []
    for name in subscribers:
        k = int(name[1:])
        record = SubscriberRecord(name)
        record.open(T0 - NS)
        for i in range(N):
            if (name, i) == MISSED or (i == FAILED and name != "s0"):
                continue
            receive = due(i) + (k + 1) * MS
            if record.received.mark(i):
                recorder.record("delivery", receive - due(i), receive)
                recorder.record("service", receive - due(i) - 50_000, receive)
                fanout.mark(i, receive)
        if name == "s1":
            record.received.mark(3)  # a duplicate arrival
        records.append(record)
    error_series: Counter[tuple[int, str]] = Counter()
    errors_total: Counter[str] = Counter()
    for at_ns, kind in errors:
        error_series[(at_ns // NS, kind)] += 1
        errors_total[kind] += 1
    return {
        "recorder": recorder,
        "fanout": fanout,
        "subscribers": records,
        "errors": errors_total,
        "error_series": error_series,
        "counters": Counter({"echo_sent": len(subscribers)}),
        "gauges": gauges,
        "samples": samples,
    }


SAMPLES_A = [Sample(S + 0.0, "harness", 100, 1.0, 0.0, 10 * MS, 2), Sample(S + 1.0, "harness", 100, 1.5, 50.0, 11 * MS, 2)]
SAMPLES_B = [Sample(S + 0.0, "harness", 200, 2.0, 0.0, 20 * MS, 2), Sample(S + 1.0, "harness", 200, 2.2, 20.0, 21 * MS, 2)]
ERRORS_A = [(T0 + 5, "closed_1006")]
ERRORS_B = [(T0 + NS, "closed_1006"), (T0 + NS + 1, "connect_refused")]


def two_payloads() -> list[dict[str, Any]]:
    return [
        payload(["s0", "s1"], [(S, 2, "host:1"), (S + 1, 2, "host:1")], SAMPLES_A, ERRORS_A),
        payload(["s2", "s3"], [(S, 2, "host:2"), (S + 1, 1, "host:2")], SAMPLES_B, ERRORS_B),
    ]


def one_payload() -> dict[str, Any]:
    return payload(["s0", "s1", "s2", "s3"], [(S, 4, "host:1"), (S + 1, 3, "host:1")], SAMPLES_A + SAMPLES_B,
                   ERRORS_A + ERRORS_B)


def build(aggregator: RunAggregator) -> dict[str, Any]:
    return aggregator.build(
        log=make_log(), target={"name": "t"}, params={"subscribers": 4}, started_ns=T0 - 2 * NS,
        stream_start_ns=T0, ended_ns=END, join_grace_ns=GRACE, drain_ns=DRAIN, status="ok", failure=None,
        extra={"note": "x"},
    )


# -- wire form --------------------------------------------------------------------


def through_msgpack(data: Any, strict_map_key: bool = True) -> Any:
    raw = msgpack.packb(data, use_bin_type=True)
    return msgpack.unpackb(raw, raw=False, strict_map_key=strict_map_key)


def test_msgpack_keeps_bytes_as_bytes_and_str_as_str() -> None:
    back = through_msgpack({"bits": b"\x00\xff", "name": "s1", "n": [1, None]})
    assert back == {"bits": b"\x00\xff", "name": "s1", "n": [1, None]}
    assert isinstance(back["bits"], bytes) and isinstance(back["name"], str)


@pytest.mark.parametrize("strict_map_key", [True, False])  # Locust's own loads uses strict_map_key=False
def test_payload_wire_round_trip_through_msgpack(strict_map_key: bool) -> None:
    original = two_payloads()[0]
    wire = payload_to_wire(original)
    back = payload_from_wire(through_msgpack(wire, strict_map_key))
    assert back["recorder"].encode() == original["recorder"].encode()
    assert back["recorder"].count("delivery") == 19  # s0: 10 incl. the failed id, s1: 9
    assert back["fanout"].to_wire() == original["fanout"].to_wire()
    assert [r.subscriber for r in back["subscribers"]] == ["s0", "s1"]
    for mine, theirs in zip(back["subscribers"], original["subscribers"]):
        assert mine.windows == theirs.windows == [[T0 - NS, None]]
        assert mine.received.as_int() == theirs.received.as_int()
        assert (mine.received.duplicates, mine.received.arrivals) == (theirs.received.duplicates,
                                                                      theirs.received.arrivals)
    assert back["errors"] == Counter({"closed_1006": 1})
    assert back["error_series"] == Counter({(S, "closed_1006"): 1})
    assert back["counters"] == Counter({"echo_sent": 2})
    assert back["gauges"] == [(S, 2, "host:1"), (S + 1, 2, "host:1")]
    assert back["samples"] == [Sample.from_row(s.to_row()) for s in SAMPLES_A]
    # and the wire form is stable
    assert payload_to_wire(back) == through_msgpack(wire, strict_map_key)


def test_payload_from_wire_defaults() -> None:
    back = payload_from_wire({})
    assert not back["recorder"] and back["subscribers"] == [] and back["gauges"] == [] and back["samples"] == []
    assert back["fanout"].count == {}
    assert back["errors"] == Counter() and back["counters"] == Counter()


# -- merging ------------------------------------------------------------------------


def test_two_processes_equal_one_process() -> None:
    merged = RunAggregator("push")
    for p in two_payloads():
        merged.add_wire(through_msgpack(payload_to_wire(p)))
    single = RunAggregator("push")
    single.add(one_payload())
    assert merged.payloads == 2 and single.payloads == 1
    assert merged.recorder.encode() == single.recorder.encode()
    assert merged.errors == single.errors
    assert merged.error_series == single.error_series
    assert merged.counters == single.counters == Counter({"echo_sent": 4})
    assert merged.gauges == single.gauges == {S: 4, S + 1: 3}
    a, b = build(merged), build(single)
    assert a["summary"]["delivery"]["count"] == 10 + 9 + 9 + 8
    assert a == b


def test_build_audit_and_fanout() -> None:
    aggregator = RunAggregator("push")
    for p in two_payloads():
        aggregator.add(p)
    result = build(aggregator)
    audit = result["audit"]
    assert audit == {
        "scheduled": 10, "published": 10, "accepted": 9, "refused": 1, "subscribers": 4, "subscribers_full": 4,
        "expected": 36, "delivered_unique": 35, "lost": 1, "duplicates": 1, "out_of_order": 0,
        "unexpected": 1, "arrivals": 37, "subscribers_with_loss": 1, "subscribers_never_connected": 0,
        "balanced": True, "recorded": 36, "recorded_matches": True,
    }
    assert audit["expected"] == audit["accepted"] * audit["subscribers"]
    assert audit["published"] == audit["accepted"] + audit["refused"]
    # fan-out: last subscriber (s3) is 4 ms late; id 2 was missed by s3 and id 6 expected by nobody
    fanout = [row[2] for row in result["fanout"]["rows"]]
    assert fanout == [4.0, 4.0, None, 4.0, 4.0, 4.0, None, 4.0, 4.0, 4.0]
    rows = result["fanout"]["rows"]
    assert [row[3] for row in rows] == [4, 4, 4, 4, 4, 4, 0, 4, 4, 4]  # id 6: publish refused
    assert [row[4] for row in rows] == [4, 4, 3, 4, 4, 4, 1, 4, 4, 4]  # id 2 missed by s3; id 6 reached s0
    assert result["summary"]["fanout"]["count"] == 8
    assert result["summary"]["fanout"]["max"] == 4.001  # 4000 µs: HDR bucket 4000..4001
    assert result["throughput"]["published"] == 10 and result["throughput"]["accepted"] == 9
    assert result["errors"] == {"closed_1006": 2, "connect_refused": 1}
    assert result["errors_series"]["rows"] == [[S, "closed_1006", 1], [S + 1, "closed_1006", 1],
                                               [S + 1, "connect_refused", 1]]
    assert result["extra"] == {"echo_sent": 4, "note": "x"}
    rows = {row[0]: row for row in result["series"]["rows"]}
    assert rows[S][9] == 4 and rows[S + 1][9] == 3  # connected, summed over processes
    assert result["resources"]["costs"]["harness"]["cpu_s"] == 0.7
    assert result["resources"]["costs"]["harness"]["peak_rss_bytes"] == 32 * MS


def test_same_subscriber_from_two_payloads_is_unioned() -> None:
    first, second = SubscriberRecord("u"), SubscriberRecord("u")
    first.open(T0)
    first.close(T0 + NS)
    second.open(T0 + 2 * NS)
    for i in (0, 1, 2, 3):
        first.received.mark(i)
    first.received.mark(3)  # one duplicate in the first session
    for i in (3, 4, 100):
        second.received.mark(i)  # 3 arrives again after the reconnect
    aggregator = RunAggregator("push")
    empty = {"recorder": Recorder(), "fanout": FanoutTracker(), "errors": {}, "error_series": {}, "counters": {}}
    aggregator.add({**empty, "subscribers": [first]})
    aggregator.add({**empty, "subscribers": [second]})
    assert list(aggregator.subscribers) == ["u"]
    record = aggregator.subscribers["u"]
    assert record.windows == [[T0, T0 + NS], [T0 + 2 * NS, None]]
    assert [i for i in range(101) if i in record.received] == [0, 1, 2, 3, 4, 100]
    assert record.received.unique == 6
    assert record.received.duplicates == 2  # the in-session one and the cross-session 3
    assert record.received.arrivals == 8
    assert record.received.arrivals == record.received.unique + record.received.duplicates


def test_error_helper() -> None:
    aggregator = RunAggregator("callback")
    aggregator.error("register_failed", T0 + 1, 3)
    aggregator.error("register_failed", T0 + NS)
    assert aggregator.errors == Counter({"register_failed": 4})
    assert aggregator.error_series == Counter({(S, "register_failed"): 3, (S + 1, "register_failed"): 1})


def test_two_readings_of_one_process_in_one_second_are_not_added() -> None:
    aggregator = RunAggregator("push")
    p = payload(["s0"], [(S + 2, 5, "host:1"), (S + 2, 5, "host:1")], [], [])
    aggregator.add(p)
    assert aggregator.gauges[S + 2] == 5


def test_the_first_undecodable_message_travels_and_the_first_one_is_kept() -> None:
    """A worker's sample of what did not decode reaches the master; junk in its place is dropped, bounded."""
    first, later = two_payloads()
    first["undecodable"] = ("'<html>'", "an event")
    later["undecodable"] = ("'nope'", "an event")
    aggregator = RunAggregator("push")
    for payload in (payload_from_wire(through_msgpack(payload_to_wire(p))) for p in (first, later)):
        aggregator.add(payload)
    assert aggregator.undecodable == ("'<html>'", "an event")
    assert payload_from_wire({"undecodable": [1, 2]})["undecodable"] is None
    assert payload_from_wire({"undecodable": ["x" * 1000, "y"]})["undecodable"] == ("x" * 400, "y")
    assert RunAggregator("push").undecodable is None
