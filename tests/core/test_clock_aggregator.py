"""Each worker's share of the latency and its clock, merged on the master into the mode result's ``clock``;
the document's ``machine.clock`` line says what was done."""

from __future__ import annotations

import pytest

from deliverybench.core.clock import WorkerClock
from deliverybench.core.model import ModeResult, ResultsFormatError
from deliverybench.core.results import new_document
from deliverybench.harness.aggregator import RunAggregator, WorkerClocks, payload_from_wire, payload_to_wire
from tests.core.test_core_aggregator import build, payload


def _two_workers(aggregator: RunAggregator) -> None:
    # worker a's subscribers (s0, s1) receive 1-2 ms after due, worker b's (s2, s3) 3-4 ms after
    aggregator.add_wire(payload_to_wire(payload(["s0", "s1"], [], [], [])), "a")
    aggregator.add(payload_from_wire(payload_to_wire(payload(["s2", "s3"], [], [], []))), "b")


def test_every_worker_gets_its_share_and_its_clock() -> None:
    aggregator = RunAggregator("push")
    _two_workers(aggregator)
    aggregator.worker_clocks = WorkerClocks(
        corrected=True,
        clocks={"a": WorkerClock(250.0, 0.3, 0.0, 0.6, 40, True), "b": WorkerClock(-0.1, 0.2, 100.0, 0.4, 40, True)},
        identity={"a": {"host": "load-a", "address": "10.0.0.2", "process": "load-a:11"}},
        sessions={"a": 2, "b": 2})
    clock = build(aggregator)["clock"]
    assert clock["corrected"] and clock["uncertainty_ms"] == 0.3
    a, b = clock["workers"]
    assert (a["node"], a["host"], a["address"], a["sessions"]) == ("a", "load-a", "10.0.0.2", 2)
    assert (b["node"], b["host"], b["address"]) == ("b", "", "")
    assert a["deliveries"] + b["deliveries"] == build(aggregator)["summary"]["delivery"]["count"]
    assert a["p50_ms"] < b["p50_ms"]  # which machine saw the slow deliveries
    assert a["p50_raw_ms"] == pytest.approx(a["p50_ms"] + 250.0) and b["drift_ms"] == 100.0
    result = ModeResult.from_dict(build(aggregator))
    assert result.clock is not None and [w.node for w in result.clock.workers] == ["a", "b"]


def test_one_process_has_one_clock_and_the_document_says_so() -> None:
    aggregator = RunAggregator("push")
    aggregator.add(payload(["s0"], [], [], []))
    result = build(aggregator)
    assert result["clock"] == {"description": result["clock"]["description"], "corrected": False,
                               "uncertainty_ms": 0.0, "workers": []}
    doc = new_document(run_id="r", config={}, machine={"clock": "assumed"}, packages={}, commit=None,
                       started_ns=0, ended_ns=1, modes={"push": result})
    assert doc["machine"]["clock"].startswith("one process")
    older = {k: v for k, v in result.items() if k != "clock"}  # a mode result from before: the line is kept
    assert new_document(run_id="r", config={}, machine={"clock": "assumed"}, packages={}, commit=None,
                        started_ns=0, ended_ns=1, modes={"push": older})["machine"]["clock"] == "assumed"


@pytest.mark.parametrize(("clock", "words"), [
    ({"workers": {}}, "clock.workers: must be a list"),
    ({"uncertainty_ms": -1}, "clock.uncertainty_ms: must be >= 0"),
    ({"workers": [{"offset_ms": "far"}]}, "clock.workers[0].offset_ms: must be a number"),
    ({"workers": [{"sessions": 1.5}]}, "clock.workers[0].sessions: must be a whole number"),
])
def test_a_bad_clock_section_is_refused_naming_the_field(clock: dict[str, object], words: str) -> None:
    with pytest.raises(ResultsFormatError, match=words.replace("[", r"\[").replace("]", r"\]")):
        ModeResult.from_dict({"mode": "push", "clock": clock})
