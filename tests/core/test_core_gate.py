"""deliverybench.core.gate: the regression decision, on synthetic results documents.

Every document here is built the way a run builds one -- latencies recorded
into real HDR histograms by ``Recorder``, then ``build_mode_result`` and
``new_document`` -- from seeded random numbers, so every verdict is
deterministic and every assertion can fail.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deliverybench.core.audit import AuditTotals
from deliverybench.core.gate import COMPARISON_VERSION, DEFAULT_GATE, GateOptions, Side, compare, parse_gate_spec
from deliverybench.core.gate_report import to_markdown
from deliverybench.core.model import Run
from deliverybench.core.recording import Recorder
from deliverybench.core.results import build_mode_result, new_document
from deliverybench.core.stats import smallest_possible_p

NS = 1_000_000_000
S = 1_795_000_000
T0 = S * NS
MACHINE = {"hostname": "runner-1", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "3.11.7",
           "cpu_count": 2, "cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "memory_bytes": 8_000_000_000}
PACKAGES = {"deliverybench": "0.1.0", "locust": "2.47.0", "hdrhistogram": "0.10.3"}


def params(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"subscribers": 1, "rate": 200.0, "duration_s": 10,
                           "schedule": {"kind": "constant", "rate": 200.0, "duration_s": 10, "burst_size": 1,
                                        "burst_interval_s": 1.0, "rate_end": None, "seed": 0, "max_events": None},
                           "payload_bytes": 256, "processes": 1, "drain_s": 2, "join_grace_s": 0.5}
    out.update(overrides)
    return out


def make_run(latencies_ms: np.ndarray, *, mode: str = "push", seconds: int = 10, lost: int = 0,
             subscribers: int = 1, status: str = "ok", saturated: bool = False, delay_ms: float = 0.0,
             exact_span: bool = False, **param_overrides: Any) -> dict[str, Any]:
    """One run's mode result with real HDR histograms of ``latencies_ms`` spread over ``seconds``.

    ``exact_span``: deliveries/s over the schedule's span (as runs measure it) instead of whole seconds.
    """
    recorder = Recorder()
    us = np.maximum(np.rint(np.asarray(latencies_ms) * 1000.0), 1).astype(np.int64)
    for i, chunk in enumerate(np.array_split(us, seconds)):
        recorder.record_many_us("delivery", S + i, chunk.tolist())
    n = len(us)
    events = max(n // subscribers, 1)
    due = [T0 + i * seconds * NS // events for i in range(events)]
    totals = AuditTotals(scheduled=events, published=events, accepted=events, subscribers=subscribers,
                         subscribers_full=subscribers, expected=n + lost, delivered_unique=n, lost=lost, arrivals=n)
    result = build_mode_result(
        mode=mode, target={"name": mode, "kind": "builtin", "urls": {"ingress": "http://127.0.0.1:1/publish"},
                           "options": {"host": "127.0.0.1", "delay_ms": delay_ms}},
        params=params(subscribers=subscribers, **param_overrides), recorder=recorder, audit_totals=totals,
        published_due_ns=due, published_ok=[True] * events, stream_start_ns=T0, started_ns=T0 - NS,
        ended_ns=T0 + seconds * NS, status=status, failure="it broke" if status == "failed" else None,
        span_ns=seconds * NS if exact_span else None)
    result["harness"] = {"saturated": saturated, "reason": "harness process 7 was above 90% CPU" if saturated
                         else "fine", "busiest_pid": 7, "busy_fraction": 1.0 if saturated else 0.0}
    return result


def mode_result(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A mode result holding ``runs`` as repeats (or the single run itself)."""
    if len(runs) == 1:
        return runs[0]
    return {**runs[0], "repeats": list(runs)}


def make_doc(modes: dict[str, Sequence[dict[str, Any]]], *, machine: dict[str, Any] | None = None,
             packages: dict[str, str] | None = None, run_id: str = "run", config: dict[str, Any] | None = None
             ) -> Run:
    """A results document of ``modes`` (each mode's runs, built as dicts), read into the model as the gate takes it."""
    return Run.from_dict(new_document(run_id=run_id, config=config or {"target_delay_ms": 0.0},
                                      machine=machine or dict(MACHINE), packages=packages or dict(PACKAGES),
                                      commit="abc123def456", started_ns=T0 - NS, ended_ns=T0 + 20 * NS,
                                      modes={name: mode_result(runs) for name, runs in modes.items()},
                                      command=["run_bench.py", "--modes", ",".join(modes)]))


def lognormal(rng: np.random.Generator, n: int, factor: float = 1.0, median_ms: float = 10.0) -> np.ndarray:
    return rng.lognormal(math.log(median_ms), 0.5, n) * factor


#: per-run factors: run-to-run variation of about 2 %
RUN_FACTORS = (0.97, 0.99, 1.0, 1.01, 1.03)


def runs(rng: np.random.Generator, k: int, factor: float = 1.0, n: int = 3000, median_ms: float = 10.0,
         **kwargs: Any) -> list[dict[str, Any]]:
    return [make_run(lognormal(rng, n, factor * RUN_FACTORS[i % len(RUN_FACTORS)], median_ms), **kwargs)
            for i in range(k)]


def metric(comparison: Any, mode: str, name: str) -> Any:
    for mode_cmp in comparison.modes:
        if mode_cmp.mode == mode:
            for m in mode_cmp.metrics:
                if m.metric == name:
                    return m
    raise AssertionError(f"{mode}.{name} not in the comparison")


def test_parse_gate_spec_and_options() -> None:
    assert parse_gate_spec("push.p99") == ("push", "p99")
    assert parse_gate_spec("*.p50") == ("*", "p50")
    assert parse_gate_spec("lost") == ("*", "lost")
    assert parse_gate_spec("p99.9") == ("*", "p99_9")
    assert parse_gate_spec("callback.p99.9") == ("callback", "p99_9")
    assert parse_gate_spec("deliveries/s") == ("*", "deliveries_per_s")
    with pytest.raises(ValueError, match="p98"):
        parse_gate_spec("push.p98")
    with pytest.raises(ValueError):
        GateOptions(gate=("nonsense",))
    with pytest.raises(ValueError):
        GateOptions(alpha=0.0)
    with pytest.raises(ValueError):
        GateOptions(holm_scope="everything")
    options = GateOptions(tolerances={"p99": 0.3, "push.p99": 0.05, "p99.9": 0.5})
    assert options.tolerance("push", "p99") == 0.05
    assert options.tolerance("poll", "p99") == 0.3
    assert options.tolerance("poll", "p99_9") == 0.5
    assert options.tolerance("poll", "p50") == 0.10
    assert GateOptions().tolerance("push", "p99") == 0.15
    assert DEFAULT_GATE == ("*.p99", "*.lost", "*.deliveries_per_s")
    gated = GateOptions()
    assert gated.is_gated("push", "p99") and gated.is_gated("poll", "lost")
    assert not gated.is_gated("push", "p50")
    assert GateOptions(gate=("push.p50",)).is_gated("push", "p50")
    assert not GateOptions(gate=("push.p50",)).is_gated("poll", "p50")


# ---------------------------------------------------------------- K vs K runs


def test_known_shift_five_vs_five_is_a_regression() -> None:
    rng = np.random.default_rng(11)
    base = make_doc({"push": runs(rng, 5)})
    new = make_doc({"push": runs(rng, 5, factor=1.4)})
    c = compare(base, new)
    p99 = metric(c, "push", "p99")
    assert p99.method == "rank_test" and p99.gated
    assert p99.verdict == "regression"
    assert 1.3 < p99.ratio < 1.5
    assert p99.interval[0] > 1.15  # the whole interval lies beyond the tolerance here
    assert p99.p_value == pytest.approx(2 / 252)  # complete separation: the 5 vs 5 floor
    # Holm over the gated metrics that could pass a test: deliveries/s is 300.0 in every run, so p99 alone
    # (lost is decided by rule)
    assert p99.p_adjusted == pytest.approx(2 / 252)
    assert len(p99.baseline_values) == len(p99.new_values) == 5
    assert "slower by" in p99.words and "beyond the 15 % tolerance" in p99.words
    assert c.outcome == "regression"
    assert [m.label for m in c.regressions] == ["push.p99"]
    # the same shift the other way round is an improvement, and passes
    back = compare(new, base)
    assert metric(back, "push", "p99").verdict == "improvement"
    assert back.outcome == "pass"


def test_identical_distributions_are_unchanged() -> None:
    rng = np.random.default_rng(5)
    c = compare(make_doc({"push": runs(rng, 5)}), make_doc({"push": runs(rng, 5)}))
    p99 = metric(c, "push", "p99")
    assert p99.verdict == "unchanged"
    lo, hi = p99.interval
    assert 0.85 <= lo <= 1.0 <= hi <= 1.15
    assert metric(c, "push", "deliveries_per_s").verdict == "unchanged"
    assert metric(c, "push", "lost").verdict == "unchanged"
    assert c.outcome == "pass"
    assert not c.regressions


def test_three_vs_three_is_inconclusive_and_says_why() -> None:
    rng = np.random.default_rng(3)
    base, new = make_doc({"push": runs(rng, 3)}), make_doc({"push": runs(rng, 3, factor=1.5)})
    only_p99 = compare(base, new, options=GateOptions(gate=("push.p99",)))
    p99 = metric(only_p99, "push", "p99")
    assert p99.verdict == "inconclusive"
    assert p99.ratio > 1.3  # clearly shifted, but 3 runs a side cannot show it
    assert "3 vs 3 runs cannot reach p < 0.05" in p99.words
    assert "use --repeats 4 or more" in p99.words
    assert p99.repeats_needed == 4
    assert p99.interval == (0.0, math.inf)
    assert only_p99.outcome == "pass" and [m.label for m in only_p99.inconclusive] == ["push.p99"]
    # the default gate adds deliveries/s, which no 3 vs 3 split can make significant either: the same advice
    default = compare(base, new)
    assert metric(default, "push", "p99").words == p99.words
    assert "3 vs 3 runs cannot reach p < 0.05" in metric(default, "push", "deliveries_per_s").words


def test_two_vs_two_is_inconclusive() -> None:
    rng = np.random.default_rng(4)
    c = compare(make_doc({"push": runs(rng, 2)}), make_doc({"push": runs(rng, 2)}))
    p99 = metric(c, "push", "p99")
    assert p99.verdict == "inconclusive"
    assert "2 vs 2 runs cannot reach p < 0.05" in p99.words
    assert "smallest possible p is 0.33" in p99.words


def test_throughput_drop_is_a_regression() -> None:
    rng = np.random.default_rng(8)
    base = make_doc({"push": [make_run(lognormal(rng, n)) for n in (3000, 2990, 3010, 3000, 2980)]})
    new = make_doc({"push": [make_run(lognormal(rng, n)) for n in (2000, 2010, 1990, 2000, 2005)]})
    dps = metric(compare(base, new), "push", "deliveries_per_s")
    assert dps.verdict == "regression"
    assert dps.ratio == pytest.approx(2 / 3, rel=0.02)
    assert "lower by" in dps.words


def test_holm_is_applied_across_gated_metrics() -> None:
    rng = np.random.default_rng(21)
    gate = ("*.p50", "*.p90", "*.p99")
    modes = ("push", "callback", "poll")
    base = make_doc({m: runs(rng, 5, mode=m) for m in modes})
    new = make_doc({m: runs(rng, 5, factor=1.5, mode=m) for m in modes})
    raw = [metric(compare(base, new, options=GateOptions(gate=gate)), m, q) for m in modes for q in
           ("p50", "p90", "p99")]
    assert all(m.p_value == pytest.approx(2 / 252) for m in raw)  # each alone would pass p < 0.05
    # nine tests: the smallest needs p <= 0.05/9 < 2/252, so nothing may be called a regression
    assert all(m.p_adjusted == pytest.approx(min(1.0, 9 * 2 / 252)) for m in raw)
    assert all(m.verdict == "inconclusive" for m in raw)
    assert "with Holm over 9 gated metrics, 5 vs 5 runs cannot reach p < 0.0056" in raw[0].words
    assert raw[0].repeats_needed == 6
    # correcting within each mode (three tests) lets them through
    per_mode = compare(base, new, options=GateOptions(gate=gate, holm_scope="mode"))
    for m in modes:
        p99 = metric(per_mode, m, "p99")
        assert p99.p_adjusted == pytest.approx(3 * 2 / 252)
        assert p99.verdict == "regression"
    # ungated metrics are shown with their raw p and no adjustment
    p99_9 = metric(per_mode, "push", "p99_9")
    assert not p99_9.gated and p99_9.p_adjusted is None


def test_a_metric_that_no_split_of_runs_could_pass_is_left_out_of_holm() -> None:
    """Exact deliveries/s (the offered rate in every run) must not halve the alpha p99 is tested at."""
    latencies = lognormal(np.random.default_rng(22), 3000)
    base = make_doc({"push": [make_run(latencies * f, exact_span=True) for f in RUN_FACTORS]})
    # +35 % in three runs, +2 % in two: U = 2 of 25, p = 4/252 * 2 = 0.032
    new = make_doc({"push": [make_run(latencies * f, exact_span=True) for f in (1.02, 1.025, 1.35, 1.4, 1.45)]})
    comparison = compare(base, new)
    dps = metric(comparison, "push", "deliveries_per_s")
    assert set(dps.baseline_values) | set(dps.new_values) == {300.0}
    assert dps.p_adjusted is None and "left out of the Holm correction" in dps.words
    p99 = metric(comparison, "push", "p99")
    assert p99.p_value == pytest.approx(8 / 252)
    assert p99.p_adjusted == pytest.approx(8 / 252)  # a family of one: p99 alone could be rejected
    assert p99.verdict == "regression"
    # one run's rate off by one delivery is still a tie-bound metric that cannot reach p < 0.05 ...
    assert smallest_possible_p([1.0] * 5, [1.0] * 4 + [1.1]) == pytest.approx(1.0)
    # ... while untied values reach the rank test's floor
    assert smallest_possible_p([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]) == pytest.approx(2 / 252)


def test_latency_differences_below_the_floor_never_fail() -> None:
    """+50 % of a p99 near 1 ms is half a millisecond: below the 1 ms floor."""
    rng = np.random.default_rng(19)
    base = make_doc({"push": runs(rng, 5, median_ms=0.3)})
    new = make_doc({"push": runs(rng, 5, factor=1.5, median_ms=0.3)})
    p99 = metric(compare(base, new), "push", "p99")
    assert p99.ratio > 1.4 and p99.p_value == pytest.approx(2 / 252)  # real, and large in relative terms
    assert p99.delta < 1.0
    assert p99.verdict == "unchanged"
    assert "by the 1 ms floor" in p99.words
    # without the floor the same numbers are a regression
    strict = metric(compare(base, new, options=GateOptions(latency_floor_ms=0.0)), "push", "p99")
    assert strict.verdict == "regression"


# ---------------------------------------------------------------- one run per side


def test_single_run_clear_shift_is_a_regression() -> None:
    rng = np.random.default_rng(1)
    base = make_doc({"push": [make_run(lognormal(rng, 20000))]})
    new = make_doc({"push": [make_run(lognormal(rng, 20000, 1.3))]})
    c = compare(base, new)
    p99 = metric(c, "push", "p99")
    assert p99.method == "order_statistic" and p99.one_run
    assert p99.verdict == "regression"
    assert p99.interval[0] > 1.15
    assert p99.p_value < 1e-6
    assert "rests on one run per side" in p99.words
    assert "20000 vs 20000" in p99.words
    assert c.outcome == "regression"
    assert any("one run per side" in w for w in c.warnings)
    # max has no interval from one run
    assert metric(c, "push", "max").verdict == "inconclusive"


def test_single_run_small_shift_is_not_a_regression() -> None:
    rng = np.random.default_rng(2)
    base = make_doc({"push": [make_run(lognormal(rng, 20000))]})
    new = make_doc({"push": [make_run(lognormal(rng, 20000, 1.03))]})
    c = compare(base, new)
    p99 = metric(c, "push", "p99")
    assert p99.verdict in ("unchanged", "inconclusive")
    assert p99.interval[0] < 1.15
    assert c.outcome == "pass"


def test_single_run_interval_counts_events_not_deliveries() -> None:
    """20 subscribers share each event's fate: the interval is read as if from 1 000 samples, not 20 000."""
    rng = np.random.default_rng(6)
    base = make_doc({"push": [make_run(lognormal(rng, 20000), subscribers=20)]})
    new = make_doc({"push": [make_run(lognormal(rng, 20000, 1.1), subscribers=20)]})
    by_events = metric(compare(base, new), "push", "p99")
    by_deliveries = metric(compare(base, new, options=GateOptions(effective_samples="deliveries")), "push", "p99")
    assert "1000 vs 1000 events" in by_events.words
    width_events = by_events.interval[1] / by_events.interval[0]
    width_deliveries = by_deliveries.interval[1] / by_deliveries.interval[0]
    assert width_events > 1.5 * width_deliveries
    assert by_events.p_value > by_deliveries.p_value


def test_single_run_throughput_within_counting_noise_is_not_a_regression() -> None:
    rng = np.random.default_rng(7)
    base = make_doc({"push": [make_run(lognormal(rng, 20000))]})
    new = make_doc({"push": [make_run(lognormal(rng, 19500))]})  # 2.5 % fewer
    dps = metric(compare(base, new), "push", "deliveries_per_s")
    assert dps.method == "poisson"
    assert dps.verdict == "inconclusive"  # whole-second windows of a 10 s run cannot tell 2.5 %
    # 12 % fewer is beyond the tolerance, but one 10 s run's whole-second window could explain it
    fewer = metric(compare(base, make_doc({"push": [make_run(lognormal(rng, 17600))]})), "push",
                   "deliveries_per_s")
    assert fewer.ratio == pytest.approx(0.88)
    assert fewer.verdict == "inconclusive" and "whole-second" in fewer.words
    assert fewer.interval[1] > 1.0
    # but a collapse is called, even from one run
    worse = make_doc({"push": [make_run(lognormal(rng, 8000))]})
    collapsed = metric(compare(base, worse), "push", "deliveries_per_s")
    assert collapsed.verdict == "regression"
    assert collapsed.interval[1] < 0.9


def test_single_run_throughput_over_the_schedules_span_needs_no_whole_second_slack() -> None:
    """Divided by the schedule's own span, one run's rate is as exact as its Poisson count allows."""
    rng = np.random.default_rng(7)
    base = make_doc({"push": [make_run(lognormal(rng, 20000), exact_span=True)]})
    assert base.modes["push"].throughput.deliveries_per_s == 2000.0
    slightly = metric(compare(base, make_doc({"push": [make_run(lognormal(rng, 19500), exact_span=True)]})),
                      "push", "deliveries_per_s")
    assert slightly.verdict == "unchanged" and "whole-second" not in slightly.words
    assert 0.9 < slightly.interval[0] < slightly.interval[1] < 1.0
    fewer = metric(compare(base, make_doc({"push": [make_run(lognormal(rng, 17600), exact_span=True)]})),
                   "push", "deliveries_per_s")
    assert fewer.verdict == "regression" and fewer.interval[1] < 0.9


# ---------------------------------------------------------------- counts


def test_lost_from_zero_to_five_is_a_regression() -> None:
    rng = np.random.default_rng(9)
    base = make_doc({"push": [make_run(lognormal(rng, 5000))]})
    new = make_doc({"push": [make_run(lognormal(rng, 5000), lost=5)]})
    c = compare(base, new)
    assert c.modes[0].untrusted == ()  # a lossy run is "degraded": a finding, not a reason to doubt it
    lost = metric(c, "push", "lost")
    assert lost.verdict == "regression" and lost.method == "rule"
    assert lost.baseline_values == (0.0,) and lost.new_values == (5.0,)
    assert lost.delta == 5.0
    assert "0 in every baseline run, 5 in the new run" in lost.words
    assert c.outcome == "regression"
    # the same with repeats: one lossy run out of five is enough
    base_k = make_doc({"push": runs(rng, 5)})
    new_runs = runs(rng, 5)
    new_runs[3] = make_run(lognormal(rng, 3000), lost=1)
    lost_k = metric(compare(base_k, make_doc({"push": new_runs})), "push", "lost")
    assert lost_k.verdict == "regression"
    assert "1 in the worst new run" in lost_k.words


def test_lost_when_the_baseline_already_loses_needs_evidence() -> None:
    rng = np.random.default_rng(10)
    base = make_doc({"push": [make_run(lognormal(rng, 5000), lost=3)]})
    new = make_doc({"push": [make_run(lognormal(rng, 5000), lost=4)]})
    lost = metric(compare(base, new), "push", "lost")
    assert lost.method == "poisson"
    assert lost.verdict == "inconclusive"  # 3 -> 4 is well within counting noise
    much_worse = make_doc({"push": [make_run(lognormal(rng, 5000), lost=60)]})
    assert metric(compare(base, much_worse), "push", "lost").verdict == "regression"


def test_lost_with_repeats_uses_the_rank_test_on_counts() -> None:
    rng = np.random.default_rng(20)
    base = make_doc({"push": [make_run(lognormal(rng, 3000), lost=n) for n in (2, 3, 1, 2, 3)]})
    worse = make_doc({"push": [make_run(lognormal(rng, 3000), lost=n) for n in (20, 25, 22, 30, 21)]})
    lost = metric(compare(base, worse), "push", "lost")
    assert lost.method == "rank_test" and lost.scale == "difference"
    assert lost.verdict == "regression"
    assert lost.estimate == 20.0  # median of the 25 pairwise differences, in events
    assert lost.interval[0] > 0
    same = make_doc({"push": [make_run(lognormal(rng, 3000), lost=n) for n in (2, 2, 3, 1, 3)]})
    lost_same = metric(compare(base, same), "push", "lost")
    assert lost_same.verdict == "inconclusive"
    assert "only a clear increase is called a regression" in lost_same.words


def test_repeats_on_one_side_only() -> None:
    rng = np.random.default_rng(22)
    c = compare(make_doc({"push": runs(rng, 5)}), make_doc({"push": runs(rng, 1, factor=1.5)}))
    p99 = metric(c, "push", "p99")
    assert p99.method == "rank_test"
    assert p99.verdict == "inconclusive"
    assert "5 vs 1 runs cannot reach p < 0.05 (the smallest possible p is 0.33)" in p99.words


# ---------------------------------------------------------------- comparability


def test_different_workload_is_not_comparable_and_names_the_field() -> None:
    rng = np.random.default_rng(12)
    base = make_doc({"push": runs(rng, 3)})
    new = make_doc({"push": runs(rng, 3, subscribers=2, factor=2.0)})
    c = compare(base, new)
    assert c.outcome == "not_comparable"
    push = c.modes[0]
    assert not push.comparable
    assert [f for f, _, _ in push.fingerprint_diff] == ["subscribers"]
    assert push.fingerprint_diff[0][1:] == (1, 2)
    assert "subscribers 1 → 2" in push.reasons[0]
    assert all(m.verdict == "not_comparable" for m in push.metrics)
    assert not c.regressions  # a doubled latency under another workload is not a regression


def test_target_delay_knob_is_a_regression_not_a_different_workload() -> None:
    rng = np.random.default_rng(13)
    base = make_doc({"push": runs(rng, 5)}, config={"target_delay_ms": 0.0})
    new = make_doc({"push": runs(rng, 5, factor=1.5, delay_ms=5.0)}, config={"target_delay_ms": 5.0})
    c = compare(base, new)
    assert c.modes[0].comparable and c.modes[0].fingerprint_diff == ()
    assert c.outcome == "regression"


def test_missing_mode_is_not_comparable_for_that_mode() -> None:
    rng = np.random.default_rng(14)
    base = make_doc({"push": runs(rng, 5), "poll": runs(rng, 5, mode="poll")})
    new = make_doc({"push": runs(rng, 5)})
    c = compare(base, new)
    by_mode = {m.mode: m for m in c.modes}
    assert by_mode["push"].comparable
    assert not by_mode["poll"].comparable
    assert by_mode["poll"].reasons == ("mode poll is missing from the new results",)
    assert c.outcome == "not_comparable"
    # restricting the comparison to the modes that ran
    assert compare(base, new, options=GateOptions(modes=("push",))).outcome == "pass"


def test_different_machine_downgrades_to_a_warning_or_refuses() -> None:
    rng = np.random.default_rng(15)
    base = make_doc({"push": runs(rng, 5)})
    other = {**MACHINE, "cpu_model": "AMD EPYC 7763", "hostname": "runner-2"}
    new = make_doc({"push": runs(rng, 5, factor=1.5)}, machine=other, packages={**PACKAGES, "locust": "2.48.0"})
    c = compare(base, new)
    assert [f for f, _, _ in c.machine_diff] == ["machine.cpu_model", "packages.locust"]  # not the hostname
    p99 = metric(c, "push", "p99")
    assert p99.verdict == "regression" and p99.warning_only and not p99.fails
    assert "warning only" in p99.words
    assert c.outcome == "pass"
    assert any("machine.cpu_model" in w for w in c.warnings)
    strict = compare(base, new, options=GateOptions(strict_machine=True))
    assert strict.outcome == "not_comparable"
    assert "machines differ: machine.cpu_model, packages.locust" in strict.modes[0].reasons


def test_cpu_steal_is_named_in_a_warning() -> None:
    """Runs that lost CPU to the hypervisor get a warning naming the steal on each side; calm runs none."""
    rng = np.random.default_rng(23)
    base_runs, new_runs = runs(rng, 5), runs(rng, 5)
    for run in base_runs:
        run["harness"]["steal_fraction"] = 0.001
    assert not [w for w in compare(make_doc({"push": base_runs}), make_doc({"push": new_runs})).warnings
                if "steal" in w]  # 0.1 % and never sampled: nothing to say
    new_runs[1]["harness"]["steal_fraction"], new_runs[3]["harness"]["steal_fraction"] = 0.014, 0.002
    c = compare(make_doc({"push": base_runs}), make_doc({"push": new_runs}))
    steal = [w for w in c.warnings if "steal" in w]
    assert steal == [w for w in steal if w.startswith("push: the hypervisor took CPU")]
    assert "steal 0.1 % of CPU time in the baseline runs, 0.2-1.4 % in the new ones" in steal[0]
    markdown = to_markdown(c)
    assert "### Warnings" in markdown and "0.2-1.4 %" in markdown


def test_saturated_harness_is_never_a_pass() -> None:
    rng = np.random.default_rng(16)
    base = make_doc({"push": runs(rng, 5)})
    new_runs = runs(rng, 5, factor=1.5)
    new_runs[2]["harness"]["saturated"] = True
    c = compare(base, make_doc({"push": new_runs}))
    push = c.modes[0]
    assert push.comparable and push.untrusted
    assert "new run 3's harness was saturated" in push.untrusted[0]
    for m in push.metrics:
        assert m.verdict == "inconclusive", m.label
    assert "harness was saturated" in metric(c, "push", "p99").words
    assert metric(c, "push", "p99").p_adjusted is None  # not part of the Holm family
    assert c.outcome == "pass" and not c.regressions and c.inconclusive


def test_publisher_behind_schedule_or_interrupted_is_inconclusive() -> None:
    rng = np.random.default_rng(23)
    base = make_doc({"push": runs(rng, 5)})
    lagging = runs(rng, 5, factor=1.5)
    lagging[0]["summary"]["schedule_lag"] = {"p99": 40.0, "count": 5000}
    c = compare(base, make_doc({"push": lagging}))
    assert "new run 1's publisher was behind schedule (lag p99 40.0 ms" in c.modes[0].untrusted[0]
    assert metric(c, "push", "p99").verdict == "inconclusive" and c.outcome == "pass"
    stopped = runs(rng, 5, factor=1.5)
    stopped[4]["status"] = "interrupted"
    c = compare(base, make_doc({"push": stopped}))
    assert c.modes[0].untrusted == ("new run 5 is interrupted",)
    assert metric(c, "push", "p99").verdict == "inconclusive"
    # the trust decision the gate shares with status and sweeps: a harness bookkeeping fault is no evidence
    unbalanced = runs(rng, 5, factor=1.5)
    unbalanced[1]["audit"]["balanced"] = False
    c = compare(base, make_doc({"push": unbalanced}))
    assert c.modes[0].untrusted == ("new run 2's audit does not balance (expected != delivered + lost): "
                                    "a fault of the harness",)
    assert metric(c, "push", "p99").verdict == "inconclusive" and not c.regressions


def test_failed_run_is_inconclusive_and_reported() -> None:
    rng = np.random.default_rng(17)
    base = make_doc({"push": [make_run(lognormal(rng, 2000))]})
    new = make_doc({"push": [make_run(lognormal(rng, 2000), status="failed")]})
    c = compare(base, new)
    assert c.failed_runs == ["new run failed: it broke"]
    assert all(m.verdict == "inconclusive" for m in c.metrics)
    assert c.outcome == "pass"
    # which side failed is a value, in the comparison and in its JSON, not something to parse from the words
    assert c.failed_sides == {Side.NEW} and c.modes[0].failed_sides == (Side.NEW,)
    assert c.to_dict()["modes"]["push"]["failed_sides"] == ["new"]
    back = compare(new, base)
    assert back.failed_runs == ["baseline run failed: it broke"] and back.failed_sides == {Side.BASELINE}
    # a run that merely held the new side back is not a failed side
    saturated = make_doc({"push": [make_run(lognormal(rng, 2000), saturated=True)]})
    assert compare(base, saturated).failed_sides == frozenset()


# ---------------------------------------------------------------- the record


def test_to_dict_is_json_and_complete() -> None:
    rng = np.random.default_rng(18)
    c = compare(make_doc({"push": runs(rng, 3)}, run_id="base"), make_doc({"push": runs(rng, 3)}, run_id="new"))
    data = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert data["comparison_version"] == COMPARISON_VERSION == 1
    assert data["outcome"] == "pass"
    assert data["baseline"]["id"] == "base" and data["new"]["commit"] == "abc123def456"
    assert data["options"]["tolerances"]["p99"] == 0.15
    p99 = data["modes"]["push"]["metrics"]["p99"]
    assert len(p99["baseline"]["values"]) == 3 and len(p99["new"]["values"]) == 3
    for key in ("estimate", "ratio", "delta_pct", "interval", "p_value", "p_adjusted", "tolerance", "verdict",
                "words", "repeats_needed"):
        assert key in p99
    assert p99["interval"] == [0.0, None]  # 3 vs 3: no bound (a ratio cannot go below 0)
    assert data["modes"]["push"]["fingerprint"]["baseline_key"] == data["modes"]["push"]["fingerprint"]["new_key"]
    assert data["summary"]["inconclusive"] == ["push.p99", "push.deliveries/s"]


# ---------------------------------------------------------------- identical sides (issue 24)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "small_results.json"


def test_a_file_compared_with_itself_is_unchanged_on_every_measured_metric() -> None:
    doc = Run.from_dict(json.loads(FIXTURE.read_text()))
    c = compare(doc, doc)
    assert c.outcome == "pass" and not c.regressions and not c.inconclusive
    for mode in c.modes:
        assert mode.identical and mode.to_dict()["identical"] is True
        for m in mode.metrics:  # one run per side, p99.9 of 500 events: no interval could have said this
            measured = any(v is not None for v in m.new_values)
            assert m.verdict == ("unchanged" if measured else "inconclusive"), (m.label, m.words)
    p99 = metric(c, "push", "p99")
    assert p99.words == "p99 identical on both sides (5.09 ms in the one run of each)"
    assert p99.interval == (1.0, 1.0) and p99.method == "identical" and p99.p_value is None
    assert "unbounded" not in to_markdown(c) and "inconclusive" not in to_markdown(c)
    # the fixture's poll runs had a saturated harness: unchanged, but the warning says what they are worth
    assert any(w.startswith("poll: unchanged because both sides are the same runs, but not a trustworthy")
               for w in c.warnings)
    assert not any("one run per side" in w for w in c.warnings)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_identical_runs_are_unchanged_whatever_their_number(k: int) -> None:
    rng = np.random.default_rng(40 + k)
    same = runs(rng, k, n=300)
    c = compare(make_doc({"push": same}), make_doc({"push": list(reversed(same))}))
    measured = [m for m in c.metrics if any(v is not None for v in m.new_values)]  # target CPU is not
    assert len(measured) == 9
    assert all(m.verdict == "unchanged" for m in measured), [(m.label, m.words) for m in c.metrics]
    assert c.modes[0].identical
    # one value apart is no longer identical: the test decides again
    other = runs(np.random.default_rng(40 + k), k, n=300)
    other[0] = make_run(lognormal(np.random.default_rng(99), 300))
    assert not compare(make_doc({"push": same}), make_doc({"push": other})).modes[0].identical


def test_a_failed_run_compared_with_itself_is_not_called_identical() -> None:
    failed = make_doc({"push": [make_run(lognormal(np.random.default_rng(3), 100), status="failed")]})
    c = compare(failed, failed)
    assert not c.modes[0].identical and c.failed_sides == {Side.BASELINE, Side.NEW}
    assert all(m.verdict == "inconclusive" for m in c.metrics)
