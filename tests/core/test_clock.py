"""The clock estimator: offsets and round trips from four stamps, the best of a window, drift, uncertainty,
and what a run says of its clocks -- synthetic exchanges, no clock read."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliverybench.core.clock import (
    ClockEstimator,
    Exchange,
    WorkerClock,
    best,
    clock_section,
    describe,
    master_time_ns,
    timing_uncertainty_ms,
    too_uncertain,
    uncertainty_limit_ms,
    worker_entry,
)
from deliverybench.core.model import ClockInfo, ModeResult
from deliverybench.core.status import assess
from deliverybench.core.trust import Distrust, trust

MS = 1_000_000


def exchange(t1: int, *, offset: int, out: int, back: int, hold: int = 0, wall_minus_mono: int = 0) -> Exchange:
    """A probe sent at master time ``t1`` to a worker whose monotonic clock reads master + ``offset``,
    ``out`` ns on the way there, ``hold`` ns at the worker, ``back`` ns on the way back."""
    t2 = t1 + out + offset
    t3 = t2 + hold
    t4 = t1 + out + hold + back
    return Exchange(t1, t2, t3, t4, t2 + wall_minus_mono, t3 + wall_minus_mono)


def test_symmetric_paths_give_the_offset_exactly() -> None:
    e = exchange(1_000 * MS, offset=250 * MS, out=300_000, back=300_000, hold=50_000)
    assert e.offset_ns == 250 * MS and e.rtt_ns == 600_000


@given(st.integers(-10**12, 10**12), st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**7))
def test_the_offset_is_within_half_the_round_trip(offset: int, out: int, back: int, hold: int) -> None:
    e = exchange(10**18, offset=offset, out=out, back=back, hold=hold)
    assert e.rtt_ns == out + back
    assert abs(e.offset_ns - offset) <= (e.rtt_ns + 1) // 2


@given(st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), min_size=1, max_size=50),
       st.integers(-10**10, 10**10))
def test_the_estimate_is_the_shortest_round_trip_of_the_window(paths: list[tuple[int, int]], offset: int) -> None:
    estimator = ClockEstimator(window=8)
    exchanges = [exchange(10**15 + i * 300 * MS, offset=offset, out=o, back=b) for i, (o, b) in enumerate(paths)]
    for e in exchanges:
        assert estimator.add(e) is not None
    estimate = estimator.latest
    assert estimate is not None
    window = exchanges[-8:]
    chosen = best(window)
    assert chosen is not None and estimate.rtt_ns == chosen.rtt_ns == min(e.rtt_ns for e in window)
    assert estimate.offset_ns == chosen.offset_ns and estimate.samples == len(window)
    assert estimate.uncertainty_ns == (chosen.rtt_ns + 1) // 2
    assert abs(estimate.offset_ns - offset) <= estimate.uncertainty_ns


def test_a_queued_exchange_does_not_move_the_estimate() -> None:
    estimator = ClockEstimator()
    estimator.add(exchange(0, offset=5 * MS, out=100_000, back=100_000))
    # 40 ms stuck in a queue on the way back: a 20 ms error, if it were believed
    estimate = estimator.add(exchange(300 * MS, offset=5 * MS, out=100_000, back=40 * MS))
    assert estimate is not None and estimate.offset_ns == 5 * MS and estimate.rtt_ns == 200_000


def test_an_exchange_running_backwards_is_ignored() -> None:
    estimator = ClockEstimator()
    assert estimator.add(Exchange(t1=10, t2=5, t3=6, t4=9, w2=5, w3=6)) is None
    assert estimator.latest is None and estimator.summary(corrected=True) is None


def test_the_window_must_hold_something() -> None:
    with pytest.raises(ValueError):
        ClockEstimator(window=0)


def test_monotonic_time_maps_onto_the_master_clock() -> None:
    e = exchange(7 * MS, offset=-40 * MS, out=1000, back=1000)
    assert master_time_ns(e.t2, e.offset_ns) == 7 * MS + 1000


def test_a_stepped_wall_clock_is_drift_and_the_offset_holds() -> None:
    """The worker's wall clock jumps 100 ms mid-run; its monotonic clock (what it stamps by) does not."""
    estimator = ClockEstimator()
    for i in range(20):
        step = 100 * MS if i >= 10 else 0
        estimator.add(exchange(i * 300 * MS, offset=3 * MS, out=200_000, back=200_000, wall_minus_mono=step))
    summary = estimator.summary(corrected=True)
    assert summary is not None
    assert summary.drift_ms == pytest.approx(100.0) and summary.offset_ms == pytest.approx(3.0, abs=0.2)
    assert summary.uncertainty_ms == pytest.approx(0.2) and summary.timing_error_ms == pytest.approx(0.2)
    assert estimator.latest is not None and estimator.latest.offset_ns == 3 * MS
    uncorrected = estimator.summary(corrected=False)
    assert uncorrected is not None and uncorrected.timing_error_ms == pytest.approx(3.0 + 100.0 + 0.2)


def test_the_summary_covers_the_estimates_in_force_since_the_stream_began() -> None:
    estimator = ClockEstimator(window=1)
    estimator.add(exchange(0, offset=0, out=5 * MS, back=5 * MS))  # a cold first probe: 5 ms uncertainty
    estimator.add(exchange(100 * MS, offset=0, out=100_000, back=100_000, wall_minus_mono=2 * MS))
    estimator.add(exchange(200 * MS, offset=0, out=100_000, back=100_000, wall_minus_mono=2 * MS))
    since = estimator.summary(corrected=True, since_ns=150 * MS)
    whole = estimator.summary(corrected=True)
    assert since is not None and whole is not None
    assert since.uncertainty_ms == pytest.approx(0.1) and whole.uncertainty_ms == pytest.approx(5.0)
    assert since.drift_ms == 0 and whole.drift_ms == pytest.approx(2.0)
    estimator.forget_before(150 * MS)
    assert [e.at_ns for e in estimator.history] == [100 * MS + 200_000, 200 * MS + 200_000]


def clock(offset: float = 0.0, uncertainty: float = 0.2, drift: float = 0.0, corrected: bool = True) -> WorkerClock:
    return WorkerClock(offset_ms=offset, uncertainty_ms=uncertainty, drift_ms=drift, rtt_ms=2 * uncertainty,
                       exchanges=30, corrected=corrected)


def test_the_run_uncertainty_is_the_worst_worker() -> None:
    assert timing_uncertainty_ms([]) == 0.0
    assert timing_uncertainty_ms([clock(250, 0.3), clock(0, 0.5)]) == 0.5
    assert timing_uncertainty_ms([clock(-40, 0.3, corrected=False), clock(0, 0.5, corrected=False)]) == 40.3


@pytest.mark.parametrize(("uncertainty", "p50", "too"), [
    (0.9, 5.0, False), (1.1, 5.0, True), (4.9, 50.0, False), (5.1, 50.0, True), (1.1, None, True), (0.5, None, False)])
def test_too_uncertain_past_a_tenth_of_the_median_or_1_ms(uncertainty: float, p50: float | None, too: bool) -> None:
    assert too_uncertain(uncertainty, p50) is too
    assert uncertainty_limit_ms(p50) == max(1.0, 0.1 * (p50 or 0))


def test_the_clock_line_says_what_was_done() -> None:
    assert describe([], corrected=True).startswith("one process")
    assert "mapped onto the master's wall clock" in describe([clock(250)], corrected=True)
    assert "not corrected" in describe([clock(250, corrected=False)], corrected=False)


def test_a_worker_row_keeps_both_medians() -> None:
    row = worker_entry(node="n", host="h", address="10.0.0.2", process="h:1", sessions=10, clock=clock(250),
                       deliveries=600, p50_ms=50.5, p99_ms=52.0)
    assert (row["p50_corrected_ms"], row["p50_raw_ms"]) == (50.5, 300.5)
    raw = worker_entry(node="n", host="h", address="", process="h:1", sessions=10,
                       clock=clock(250, corrected=False), deliveries=600, p50_ms=300.5, p99_ms=302.0)
    assert (raw["p50_corrected_ms"], raw["p50_raw_ms"]) == (50.5, 300.5)
    bare = worker_entry(node="n", host="h", address="", process="h:1", sessions=0, clock=None, deliveries=0,
                        p50_ms=None, p99_ms=None)
    assert "offset_ms" not in bare


def _mode(section: dict[str, Any], p50: float) -> ModeResult:
    return ModeResult.from_dict({"mode": "push", "status": "ok", "audit": {"balanced": True},
                                 "summary": {"delivery": {"count": 100, "p50": p50, "p99": p50 * 1.2}},
                                 "clock": section})


def test_a_run_timed_too_loosely_is_degraded_with_that_reason() -> None:
    rows = [worker_entry(node="a", host="a", address="10.0.0.2", process="a:1", sessions=5, clock=clock(250.0),
                         deliveries=100, p50_ms=20.0, p99_ms=24.0)]
    tight = _mode(clock_section(rows, [clock(250.0)], corrected=True), 20.0)
    assert trust(tight).trusted and assess(tight) == ("ok", [])
    loose_clock = clock(250.0, corrected=False)
    loose = _mode(clock_section(rows, [loose_clock], corrected=False), 270.0)
    verdict = trust(loose)
    assert verdict.has(Distrust.CLOCK_UNCERTAIN)
    status, reasons = assess(loose)
    assert status == "degraded"
    assert reasons == ["timing uncertainty ±250.200 ms > 27.000 ms (10 % of p50, at least 1 ms): "
                       "worker clocks not corrected"]
    # a 1.5 ms uncertainty on a 5 ms median: corrected, but the clocks are known too loosely
    assert trust(_mode(clock_section([], [clock(0, 1.5)], corrected=True), 5.0)).has(Distrust.CLOCK_UNCERTAIN)


def test_the_clock_section_round_trips_through_the_model() -> None:
    rows = [worker_entry(node="a", host="a", address="10.0.0.2", process="a:1", sessions=5, clock=clock(-40.0),
                         deliveries=100, p50_ms=20.0, p99_ms=24.0),
            worker_entry(node="b", host="b", address="", process="b:1", sessions=5, clock=None, deliveries=0,
                         p50_ms=None, p99_ms=None)]
    section = {**clock_section(rows, [clock(-40.0)], corrected=True), "later": {"x": 1}}
    result = _mode(section, 20.0)
    assert isinstance(result.clock, ClockInfo) and result.clock.workers[0].offset_ms == -40.0
    assert result.to_dict()["clock"] == section
    assert result.timing_uncertainty_ms == 0.2
    assert ModeResult.from_dict({"mode": "push"}).timing_uncertainty_ms is None


def test_a_sweep_point_and_a_gate_side_timed_too_loosely_are_not_judged() -> None:
    """A capacity found, or a regression called, on stamps of unknown clocks would be a guess."""
    from deliverybench.core.gate_words import untrusted_run
    from deliverybench.core.slo import parse_slo
    from deliverybench.core.sweep.judge import judge_point

    loose = _mode(clock_section([], [clock(250.0, corrected=False)], corrected=False), 270.0)
    verdict = judge_point(loose, parse_slo("p99<=1000ms"))
    assert verdict.status == "INVALID" and verdict.headline == "clock uncertain", verdict
    assert "load machines nearer the master" in " ".join(verdict.advice)
    reason = next(r for r in trust(loose).reasons if r.kind is Distrust.CLOCK_UNCERTAIN)
    assert untrusted_run("new", reason).startswith("new run's worker clocks were known too loosely (timing uncertainty")
    tight = _mode(clock_section([], [clock(250.0)], corrected=True), 20.0)
    assert judge_point(tight, parse_slo("p99<=1000ms")).status == "PASS"
