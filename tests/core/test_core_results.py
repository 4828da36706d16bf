"""deliverybench.core.results: the versioned results document, built from synthetic data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deliverybench.core.audit import AuditTotals
from deliverybench.core.recording import Recorder, decode_histogram, summarize
from deliverybench.core.resources import Sample
from deliverybench.core.results import (
    SCHEMA_VERSION,
    SERIES_COLUMNS,
    ResultsFormatError,
    ResultsVersionError,
    build_mode_result,
    finalize_mode,
    delivery_span_ns,
    dumps,
    loads,
    merge_documents,
    new_document,
    per_second_series,
)

NS = 1_000_000_000
MS = 1_000_000
S = 1_764_245_000  # a unix second
T0 = S * NS

DUE = [T0, T0 + 100 * MS, T0 + 200 * MS, T0 + 900 * MS, T0 + NS, T0 + NS + 5, T0 + 2 * NS - 1, T0 + 2 * NS]
OK = [True, False, True, True, True, True, True, True]


def make_recorder() -> Recorder:
    r = Recorder()
    for i in range(10):
        r.record("delivery", 5 * MS, T0 + i * MS)
        r.record("service", 1 * MS, T0 + i * MS)
    for k in range(1, 21):
        r.record("delivery", k * MS, T0 + NS + k * MS)
    return r


GAUGES = {S: 3, S + 1: 5, S + 3: 2}
ERRORS_SERIES = [(S + 1, "closed_1006", 2), (S + 1, "connect_refused", 1), (S + 4, "timeout", 1)]


def test_series_columns() -> None:
    assert SERIES_COLUMNS == ("second", "deliveries", "p50_ms", "p90_ms", "p99_ms", "max_ms", "service_p50_ms",
                              "service_p99_ms", "published", "connected", "errors")


def test_per_second_series_rows() -> None:
    rows = per_second_series(
        make_recorder(), published_due_ns=DUE, published_ok=OK, gauges=GAUGES,
        errors_per_second={S + 1: 3, S + 4: 1},
    )
    assert rows == [
        # 5 ms sits in a bucket of width 4 µs; 10, 18, 20 ms in buckets of 8, 16, 16 µs.
        [S, 10, 5.003, 5.003, 5.003, 5.003, 1.0, 1.0, 3, 3, 0],
        [S + 1, 20, 10.007, 18.015, 20.015, 20.015, None, None, 3, 5, 3],
        [S + 2, 0, None, None, None, None, None, None, 1, None, 0],
        [S + 3, 0, None, None, None, None, None, None, 0, 2, 0],
        [S + 4, 0, None, None, None, None, None, None, 0, None, 1],
    ]
    assert all(len(row) == len(SERIES_COLUMNS) for row in rows)


def test_per_second_series_empty() -> None:
    assert per_second_series(Recorder()) == []
    # published events without confirmation do not open a second
    assert per_second_series(Recorder(), published_due_ns=[T0], published_ok=[False]) == []


def make_mode(mode: str = "push", status: str = "ok", **overrides: Any) -> dict[str, Any]:
    totals = AuditTotals(scheduled=8, published=8, accepted=7, refused=1, subscribers=2, subscribers_full=2, expected=14,
                         delivered_unique=13, lost=1, arrivals=30)
    samples = [
        Sample(S - 1.0, "harness", 10, 1.0, 0.0, 50 * MS, 0),
        Sample(S + 1.0, "harness", 10, 2.5, 95.0, 60 * MS, 2),
        Sample(S + 2.0, "harness", 10, 3.0, 50.0, 55 * MS, 2),
        Sample(S + 0.0, "target", 20, 5.0, 0.0, 80 * MS),
        Sample(S + 2.0, "target", 20, 6.0, 50.0, 90 * MS),
    ]
    kwargs: dict[str, Any] = dict(
        mode=mode, target={"name": "builtin", "url": "ws://127.0.0.1:1"}, params={"subscribers": 2, "rate": 5.0},
        recorder=make_recorder(), audit_totals=totals, published_due_ns=DUE, published_ok=OK,
        stream_start_ns=T0, started_ns=T0 - NS, ended_ns=T0 + 4 * NS,
        fanout_ns=[5 * MS + 123_456, None, 7 * MS], gauges=GAUGES,
        errors={"timeout": 1, "closed_1006": 2, "connect_refused": 1}, errors_series=ERRORS_SERIES,
        samples=samples, status=status, extra={"echo_sent": 4},
    )
    kwargs.update(overrides)
    return finalize_mode(build_mode_result(**kwargs))  # as the document's owner does, once


def test_build_mode_result_fields() -> None:
    result = make_mode()
    assert result["mode"] == "push" and result["failure"] is None
    # one expected delivery was lost and one published event refused: a finding, said in words
    assert result["status"] == "degraded"
    assert result["status_reasons"][:2] == ["lost 7.1 % (1 of 14 expected deliveries)",
                                            "refused 12 % (1 of 8 published events)"]
    assert (result["started_ns"], result["stream_start_ns"], result["ended_ns"]) == (T0 - NS, T0, T0 + 4 * NS)
    assert result["throughput"] == {"deliveries": 30, "deliveries_per_s": 15.0, "published": 7,
                                    "accepted": 7, "stream_seconds": 4.0, "span_seconds": 2.0,
                                    "span_from": "whole_seconds"}
    assert sorted(result["summary"]) == ["delivery", "service"]
    assert result["summary"]["delivery"]["count"] == 30
    assert result["summary"]["service"] == summarize(make_recorder().total("service"))
    hist = decode_histogram(result["histograms"]["slices"]["delivery"][str(S + 1)])
    assert hist.get_total_count() == 20
    assert result["series"]["columns"] == list(SERIES_COLUMNS)
    assert [row[0] for row in result["series"]["rows"]] == [S, S + 1, S + 2, S + 3, S + 4]
    assert [row[-1] for row in result["series"]["rows"]] == [0, 3, 0, 0, 1]  # errors per second summed
    assert result["audit"]["expected"] == 14 and result["audit"]["balanced"] is True
    assert result["fanout"]["columns"] == ["id", "due_ns", "fanout_ms", "expected", "received"]
    # no per-event expected/received counts were given to this build: None and 0
    assert result["fanout"]["rows"] == [[0, DUE[0], 5.123, None, 0], [1, DUE[1], None, None, 0],
                                        [2, DUE[2], 7.0, None, 0]] + [
        [i, DUE[i], None, None, 0] for i in range(3, 8)
    ]
    assert list(result["errors"]) == ["closed_1006", "connect_refused", "timeout"]
    assert result["errors_series"] == {"columns": ["second", "kind", "count"],
                                       "rows": [[S + 1, "closed_1006", 2], [S + 1, "connect_refused", 1],
                                                [S + 4, "timeout", 1]]}
    resources = result["resources"]
    assert len(resources["rows"]) == 5
    assert resources["costs"]["harness"]["cpu_s"] == 2.0
    assert resources["costs"]["target"]["peak_rss_bytes"] == 90 * MS
    # window = [stream start, end]: harness readings at S+1 (95 %) and S+2 (50 %) -> busy 0.5
    assert result["harness"]["saturated"] is True
    assert result["harness"]["busy_fraction"] == 0.5
    assert result["extra"] == {"echo_sent": 4}


def test_build_mode_result_without_deliveries() -> None:
    result = make_mode(recorder=Recorder(), samples=(), fanout_ns=(), gauges=None, errors=None, errors_series=(),
                       status="failed", failure="nothing was delivered", extra=None)
    assert result["summary"] == {}
    assert result["throughput"]["deliveries"] == 0 and result["throughput"]["deliveries_per_s"] == 0.0
    assert result["failure"] == "nothing was delivered"
    assert result["harness"]["reason"] == "no harness samples"
    assert [row[8] for row in result["series"]["rows"]] == [3, 3, 1]  # published only
    assert result["errors"] == {} and result["extra"] == {}


def document(modes: dict[str, dict[str, Any]], run_id: str = "r1", started: int = T0 - NS,
             ended: int = T0 + 4 * NS) -> dict[str, Any]:
    return new_document(run_id=run_id, config={"rate": 5.0, "subscribers": 2}, machine={"cpus": 8},
                        packages={"locust": "2.47.0"}, commit="abc123", started_ns=started, ended_ns=ended,
                        modes=modes, command=["locust", "-f", "x.py"])


def test_new_document_and_round_trip() -> None:
    doc = document({"push": make_mode()})
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert doc["tool"] == "deliverybench"
    assert doc["run"] == {"id": "r1", "status": "degraded", "started_ns": T0 - NS, "ended_ns": T0 + 4 * NS,
                          "commit": "abc123", "command": ["locust", "-f", "x.py"]}
    text = dumps(doc)
    assert text == json.dumps(doc, separators=(",", ":"))
    back = loads(text)
    assert back == json.loads(json.dumps(doc))
    assert back == doc  # everything in the document is already JSON-shaped
    assert dumps(back) == text


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(["ok"], "ok"), (["ok", "ok"], "ok"), (["ok", "failed"], "incomplete"), (["failed", "failed"], "failed"),
     (["interrupted", "ok"], "interrupted"), (["ok", "degraded"], "degraded"), ([], "failed")],
)
def test_document_status(statuses: list[str], expected: str) -> None:
    modes = {f"m{i}": {"status": s} for i, s in enumerate(statuses)}
    assert document(modes)["run"]["status"] == expected


@pytest.mark.parametrize("version", [0, 1, 3, "2", None])
def test_other_schema_version_is_refused_clearly(version: object) -> None:
    doc = document({"push": make_mode()})
    doc["schema_version"] = version
    text = json.dumps(doc)
    with pytest.raises(ResultsVersionError) as info:
        loads(text)
    message = str(info.value)
    assert f"schema_version {version!r}" in message
    assert f"reads version {SCHEMA_VERSION}" in message
    with pytest.raises(ResultsVersionError):
        dumps(doc)


def test_version_error_is_a_format_error() -> None:
    assert issubclass(ResultsVersionError, ResultsFormatError)
    assert issubclass(ResultsFormatError, ValueError)


@pytest.mark.parametrize(
    "text",
    ["not json {", "[]", "null", "42", '{"schema_version": 1}', '{"tool": "locust", "schema_version": 1}',
     '{"tool": "deliverybench", "schema_version": 2, "run": {}, "config": {}}',
     '{"tool": "deliverybench", "schema_version": 2, "run": [], "config": {}, "modes": {}}'],
)
def test_not_a_document(text: str) -> None:
    with pytest.raises(ResultsFormatError) as info:
        loads(text)
    assert not isinstance(info.value, ResultsVersionError)


def test_not_json_message() -> None:
    with pytest.raises(ResultsFormatError, match="not JSON"):
        loads("{")
    with pytest.raises(ResultsFormatError, match="not a deliverybench results document"):
        loads("[1]")
    with pytest.raises(ResultsFormatError, match="lacks 'modes'"):
        loads('{"tool": "deliverybench", "schema_version": 2, "run": {}, "config": {}}')


def test_merge_documents_combines_modes() -> None:
    push = document({"push": make_mode("push")}, run_id="a", started=T0, ended=T0 + 10)
    callback = document({"callback": make_mode("callback", status="failed")}, run_id="b", started=T0 - 5,
                        ended=T0 + 3)
    callback["config"] = {"other": True}
    merged = merge_documents([push, callback], run_id="both")
    assert list(merged["modes"]) == ["push", "callback"]
    assert merged["modes"]["push"] == push["modes"]["push"]
    assert merged["run"]["id"] == "both"
    assert merged["run"]["status"] == "incomplete"
    assert (merged["run"]["started_ns"], merged["run"]["ended_ns"]) == (T0 - 5, T0 + 10)
    assert merged["config"] == push["config"]
    assert merged["run"]["commit"] == "abc123" and merged["run"]["command"] == ["locust", "-f", "x.py"]
    assert loads(dumps(merged)) == merged


def test_merge_documents_rejects_duplicates_empty_and_invalid() -> None:
    a = document({"push": make_mode()})
    with pytest.raises(ResultsFormatError, match="'push' appears in more than one document"):
        merge_documents([a, document({"push": make_mode()})], run_id="x")
    with pytest.raises(ResultsFormatError, match="nothing to merge"):
        merge_documents([], run_id="x")
    old = dict(a, schema_version=0)
    with pytest.raises(ResultsVersionError):
        merge_documents([a, old], run_id="x")


def test_delivery_span_is_the_schedules_own_span_unless_arrivals_run_past_it() -> None:
    """20 events at 5/s span exactly 4 s wherever the stream starts within a wall-clock second."""
    for offset in (0, 300 * MS, 999 * MS):
        due = [T0 + offset + i * 200 * MS for i in range(20)]
        kept_up = [d + 15 * MS for d in due]
        assert delivery_span_ns(due, kept_up) == 4 * NS
        behind = [d + 15 * MS for d in due[:-1]] + [due[-1] + 1800 * MS]
        assert delivery_span_ns(due, behind) == 3800 * MS + 1800 * MS
    assert delivery_span_ns([T0], [T0 + 40 * MS]) == 40 * MS  # one event (a burst): due -> its last arrival
    assert delivery_span_ns([], [T0]) is None and delivery_span_ns([T0], []) is None


def test_deliveries_per_s_over_the_span_when_given() -> None:
    result = make_mode(span_ns=3 * NS // 2)
    assert result["throughput"]["deliveries_per_s"] == 20.0  # 30 deliveries in 1.5 s
    assert (result["throughput"]["span_seconds"], result["throughput"]["span_from"]) == (1.5, "schedule")
