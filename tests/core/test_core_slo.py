"""deliverybench.core.slo: parsing and checking absolute objectives on synthetic mode results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from deliverybench.core.model import ModeResult, Run, RunInfo
from deliverybench.core.slo import (
    SloClause,
    SloError,
    SloOutcome,
    check,
    check_mode,
    describe,
    format_number,
    latency_bound,
    limits_loss,
    parse_slo,
)


def mode_result(
    mode: str = "push",
    *,
    p50: float | None = 2.0,
    p90: float | None = 5.0,
    p99: float | None = 10.0,
    p99_9: float | None = 20.0,
    max_ms: float | None = 40.0,
    lost: int = 0,
    duplicates: int = 0,
    expected: int = 10_000,
    rate: float | None = 1000.0,
    status: str = "ok",
    failure: str | None = None,
    audit: bool = True,
) -> ModeResult:
    """A minimal mode result: only what metric_value and the SLO checks read."""
    headline = "ack" if mode == "burst" else "delivery"
    summary = {} if p99 is None else {headline: {"count": 100, "p50": p50, "p90": p90, "p99": p99,
                                                 "p99_9": p99_9, "max": max_ms}}
    return ModeResult.from_dict({
        "mode": mode,
        "status": status,
        "failure": failure,
        "summary": summary,
        "throughput": {} if rate is None else {"deliveries_per_s": rate, "deliveries": expected - lost},
        "audit": {"expected": expected, "lost": lost, "duplicates": duplicates,
                  "delivered_unique": expected - lost, "balanced": True} if audit else {},
        "harness": {"saturated": False, "reason": "fine"},
        "series": {"columns": ["second", "p99_ms"], "rows": []},
    })


def repeated(result: ModeResult, runs: Sequence[ModeResult]) -> ModeResult:
    """``result`` holding ``runs`` as its repeats."""
    return replace(result, repeats=tuple(runs))


# -- parsing -----------------------------------------------------------------------------


def test_parse_the_documented_examples() -> None:
    p99, lost = parse_slo("p99<=50ms,lost==0")
    assert p99 == SloClause(text="p99<=50ms", mode=None, metric="p99", op="<=", limit=50.0, unit="ms")
    assert (lost.metric, lost.op, lost.limit, lost.mode, lost.percent) == ("lost", "==", 0.0, None, False)

    push, star = parse_slo("push.p99<=50ms, *.lost==0")
    assert push.mode == "push" and push.applies_to("push") and not push.applies_to("callback")
    assert star.mode is None and star.applies_to("callback")
    assert star.text == "*.lost==0"

    (refused,) = parse_slo("refused==0")
    assert refused.metric == "refused"
    (rate,) = parse_slo("rate>=1000")
    assert (rate.metric, rate.op, rate.limit) == ("deliveries_per_s", ">=", 1000.0)


@pytest.mark.parametrize(
    ("text", "metric", "limit_ms"),
    [
        ("p99<=50", "p99", 50.0),  # ms is the default
        ("p99<=0.05s", "p99", 50.0),
        ("p99<=500us", "p99", 0.5),
        ("P99 <= 50 MS", "p99", 50.0),
        ("p99.9<1s", "p99_9", 1000.0),
        ("p99_9<1s", "p99_9", 1000.0),
        ("callback.p99.9<=200ms", "p99_9", 200.0),
        ("max<2_000ms", "max", 2000.0),
        ("p50<=1e1ms", "p50", 10.0),
    ],
)
def test_latency_units_and_spellings(text: str, metric: str, limit_ms: float) -> None:
    (clause,) = parse_slo(text)
    assert clause.metric == metric
    assert clause.limit == pytest.approx(limit_ms)
    assert clause.is_latency and clause.is_upper_bound


def test_counts_may_be_a_percentage_of_expected() -> None:
    (clause,) = parse_slo("lost<=0.1%")
    assert clause.percent and clause.limit == 0.1 and clause.unit == "%"
    (absolute,) = parse_slo("duplicates<5")
    assert not absolute.percent and absolute.limit == 5


@pytest.mark.parametrize(
    ("text", "bad_clause", "words"),
    [
        ("p99<=fast", "p99<=fast", "value 'fast' is not a number"),
        ("p99<=50ms,lost=>0", "lost=>0", "unknown comparison '=>'"),
        ("p99=50", "p99=50", "unknown comparison '='"),
        ("p99!=50", "p99!=50", "unknown comparison '!='"),
        ("p99<==5", "p99<==5", "unknown comparison"),
        ("pish.p99<=5", "pish.p99<=5", "unknown mode 'pish'"),
        ("p98<=4", "p98<=4", "unknown metric 'p98'"),
        ("<=4", "<=4", "unknown metric"),
        ("lost<=5ms", "lost<=5ms", "unit 'ms' does not apply to lost"),
        ("p99<=5kb", "p99<=5kb", "unit 'kb' is not a latency unit"),
        ("p99<=5%", "p99<=5%", "unit '%' is not a latency unit"),
        ("rate>=10ms", "rate>=10ms", "does not apply to a rate"),
        ("p99", "p99", "no comparison"),
        ("p99<=", "p99<=", "no value"),
        ("p99<=-3", "p99<=-3", "negative"),
        ("p99<=inf", "p99<=inf", "not a number"),
    ],
)
def test_bad_clauses_are_named_in_one_line(text: str, bad_clause: str, words: str) -> None:
    with pytest.raises(SloError) as info:
        parse_slo(text)
    message = str(info.value)
    assert message.startswith(f"--slo: clause {bad_clause!r}: ")
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "   ", "p99<=50ms,", "p99<=50ms,,lost==0"])
def test_empty_texts_and_clauses_are_errors(text: str) -> None:
    with pytest.raises(SloError, match=r"^--slo: "):
        parse_slo(text)


def test_error_option_name_is_configurable() -> None:
    with pytest.raises(SloError, match=r"^--gate-slo: clause 'x<1'"):
        parse_slo("x<1", option="--gate-slo")


def test_example_error_message_exactly() -> None:
    with pytest.raises(SloError) as info:
        parse_slo("p99<=fast")
    assert str(info.value) == "--slo: clause 'p99<=fast': value 'fast' is not a number"


# -- checking -----------------------------------------------------------------------------


def test_check_mode_pass_and_fail_with_numbers() -> None:
    clauses = parse_slo("p99<=50ms,lost==0,rate>=500")
    good = check_mode(clauses, "push", mode_result(p99=41.2))
    assert [o.ok for o in good] == [True, True, True]
    assert good[0].observed == 41.2 and good[0].limit == 50.0
    assert "41.2 ms" in good[0].reason and "p99 ≤ 50 ms" in good[0].reason

    bad = check_mode(clauses, "push", mode_result(p99=212.0, lost=3, rate=400.0))
    assert [o.ok for o in bad] == [False, False, False]
    assert "212 ms" in bad[0].reason and "misses" in bad[0].reason
    assert bad[1].observed == 3.0
    assert bad[2].observed == 400.0 and "400/s" in bad[2].reason


def test_latency_is_shown_in_the_unit_written() -> None:
    (outcome,) = check_mode(parse_slo("p99<=0.05s"), "push", mode_result(p99=62.0))
    assert not outcome.ok
    assert outcome.observed == 62.0 and outcome.limit == 50.0  # canonical ms
    assert "0.062 s" in outcome.reason and "0.05 s" in outcome.reason


def test_strict_and_equality_operators() -> None:
    result = mode_result(p99=50.0, lost=0)
    ok = {c.text: o.ok for c, o in zip(parse_slo("p99<50,p99<=50,p99>=50,p99>50,p99==50,lost<1"),
                                        check_mode(parse_slo("p99<50,p99<=50,p99>=50,p99>50,p99==50,lost<1"),
                                                   "push", result))}
    assert ok == {"p99<50": False, "p99<=50": True, "p99>=50": True, "p99>50": False, "p99==50": True,
                  "lost<1": True}


def test_percentage_of_expected_deliveries() -> None:
    clauses = parse_slo("lost<=0.1%")
    (fine,) = check_mode(clauses, "push", mode_result(lost=10, expected=10_000))
    assert fine.ok and fine.observed == pytest.approx(0.1)
    (bad,) = check_mode(clauses, "push", mode_result(lost=300, expected=10_000))
    assert not bad.ok and bad.observed == pytest.approx(3.0) and "3 %" in bad.reason
    (unknown,) = check_mode(clauses, "push", mode_result(lost=0, expected=0))
    assert not unknown.ok and unknown.observed is None and "expected" in unknown.reason


def test_a_metric_the_run_cannot_provide_is_not_ok() -> None:
    (latency,) = check_mode(parse_slo("p99<=50"), "push", mode_result(p99=None))
    assert not latency.ok and latency.observed is None and "no latencies" in latency.reason
    (lost,) = check_mode(parse_slo("lost==0"), "push", mode_result(audit=False))
    assert not lost.ok and lost.observed is None and "audit" in lost.reason
    (rate,) = check_mode(parse_slo("rate>=1"), "push", mode_result(rate=None))
    assert not rate.ok and rate.observed is None


def test_a_failed_mode_meets_nothing() -> None:
    result = mode_result(status="failed", failure="target did not start")
    outcomes = check_mode(parse_slo("p99<=50,lost==0"), "push", result)
    assert not any(o.ok for o in outcomes)
    assert all("target did not start" in o.reason for o in outcomes)


def test_burst_reads_the_ack_latency() -> None:
    (outcome,) = check_mode(parse_slo("burst.p99<=20"), "burst", mode_result("burst", p99=12.0))
    assert outcome.ok and outcome.observed == 12.0


def test_repeats_must_all_hold_and_the_failing_run_is_named() -> None:
    runs = [mode_result(p99=30.0), mode_result(p99=62.5), mode_result(p99=45.0)]
    result = repeated(mode_result(p99=40.0), runs)
    (outcome,) = check_mode(parse_slo("p99<=50"), "push", result)
    assert not outcome.ok
    assert outcome.observed == 62.5  # the deciding (worst) run
    assert "1 of 3 runs" in outcome.reason and "run 2" in outcome.reason and "62.5" in outcome.reason

    good = repeated(mode_result(), [mode_result(p99=30.0), mode_result(p99=45.0)])
    (held,) = check_mode(parse_slo("p99<=50"), "push", good)
    assert held.ok and held.observed == 45.0 and "all 2 runs" in held.reason

    # a lower bound's worst run is the lowest
    rates = repeated(mode_result(), [mode_result(rate=900.0), mode_result(rate=700.0)])
    (rate,) = check_mode(parse_slo("rate>=800"), "push", rates)
    assert not rate.ok and rate.observed == 700.0 and "run 2" in rate.reason


def test_one_repeat_without_the_metric_fails_the_clause() -> None:
    result = repeated(mode_result(), [mode_result(p99=30.0), mode_result(p99=None)])
    (outcome,) = check_mode(parse_slo("p99<=50"), "push", result)
    assert not outcome.ok and "run 2" in outcome.reason and "unknown" in outcome.reason


def test_check_document_per_mode_and_absent_modes() -> None:
    document = Run(RunInfo("slo", "ok"), modes={"push": mode_result("push", p99=20.0),
                                                "callback": mode_result("callback", p99=80.0, lost=2)})
    outcomes = check(parse_slo("push.p99<=50ms,*.lost==0,callback.p99<=100,poll.p99<=500"), document)
    table = {(o.mode, o.clause): o.ok for o in outcomes}
    assert table == {
        ("push", "push.p99<=50ms"): True,
        ("push", "*.lost==0"): True,
        ("callback", "*.lost==0"): False,
        ("callback", "callback.p99<=100"): True,
        ("poll", "poll.p99<=500"): False,
    }
    absent = outcomes[-1]
    assert absent.observed is None and "not in the results" in absent.reason


def test_outcome_dict_shape_is_exact() -> None:
    (outcome,) = check_mode(parse_slo("p99<=50"), "push", mode_result(p99=10.0))
    assert isinstance(outcome, SloOutcome)
    data = outcome.to_dict()
    assert set(data) == {"mode", "clause", "metric", "observed", "limit", "ok", "reason"}
    assert data["mode"] == "push" and data["clause"] == "p99<=50" and data["metric"] == "p99"
    assert data["ok"] is True and data["observed"] == 10.0 and data["limit"] == 50.0
    with pytest.raises(AttributeError):
        outcome.ok = False  # type: ignore[misc]


# -- helpers used by sweeps and reports ---------------------------------------------------------


def test_latency_bound_prefers_p99_and_respects_the_mode() -> None:
    clauses = parse_slo("p99.9<=200,push.p99<=50,p99<=80,lost==0,p50>=1")
    assert latency_bound(clauses, "push") == 50.0
    assert latency_bound(clauses, "callback") == 80.0
    assert latency_bound(parse_slo("p99.9<=200,max<1s"), "poll") == 200.0
    assert latency_bound(parse_slo("lost==0"), "push") is None
    assert limits_loss(parse_slo("lost<=0.1%"), "push") and not limits_loss(parse_slo("p99<=5"), "push")
    assert not limits_loss(parse_slo("callback.lost==0"), "push")


def test_describe_in_words() -> None:
    assert describe(parse_slo("p99<=50ms,lost==0")) == "p99 ≤ 50 ms and no loss"
    assert describe(parse_slo("push.p99<=50ms,*.lost==0,refused==0"), "callback") == "no loss and nothing refused"
    assert describe(parse_slo("lost<=0.1%,rate>=1000,p99.9<1s")) == \
        "loss ≤ 0.1 %, ≥ 1,000 deliveries/s and p99.9 < 1 s"


@pytest.mark.parametrize(("value", "text"), [(4000, "4,000"), (212.4, "212"), (41.23, "41.2"), (4.123, "4.12"),
                                            (0.4123, "0.412"), (1234.5, "1,234"), (0.0, "0")])
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text
