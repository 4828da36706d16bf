"""deliverybench.core.sweep: the plan, the verdicts and the answer of capacity sweeps, on synthetic results."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverybench.core.model import ModeResult, Table
from deliverybench.core.slo import parse_slo
from deliverybench.core.sweep import (
    SWEEP_VERSION,
    CapacityAnswer,
    CapacitySearch,
    DriftOptions,
    JudgeOptions,
    Point,
    PointVerdict,
    Status,
    SweepIndexError,
    SweepPlan,
    SweepSpecError,
    SweepStateError,
    add_point,
    analyse,
    capacity_sentence,
    capacity_sentences,
    clearly_failed,
    detect_drift,
    drift_min_duration_s,
    finished_points,
    judge_point,
    knee,
    new_index,
    parse_confirm,
    parse_modes,
    parse_precision,
    parse_rates,
    parse_require,
    parse_subscribers,
    parse_sweep_spec,
    point_figures,
    point_key,
    require_met,
    resume_plan,
    rows_from_series,
    spec_of,
    usl_fit,
    with_answers,
)
from deliverybench.core.trust import PUBLISHER_LAG_LIMIT_MS

SLO = parse_slo("p99<=50ms,lost==0")
T0 = 1_764_245_000

Oracle = Callable[[int, int], str]


def series(p99s: list[float], *, deliveries: int = 1000) -> Table:
    return Table(("second", "deliveries", "p50_ms", "p99_ms", "published", "connected"),
                 tuple((T0 + i, deliveries, v / 3, v, 10, deliveries // 10) for i, v in enumerate(p99s)))


def mode_result(
    mode: str = "push",
    *,
    p99: float | None = 10.0,
    lost: int = 0,
    expected: int = 40_000,
    rate: float = 1000.0,
    saturated: bool = False,
    status: str = "ok",
    p99s: list[float] | None = None,
    publish_lag_p99: float | None = None,
    subscribers: int = 1000,
    processes: int = 1,
) -> ModeResult:
    """A minimal mode result: what the verdict reads."""
    summary: dict[str, Any] = {}
    if p99 is not None:
        summary["delivery"] = {"count": expected - lost, "p50": p99 / 4, "p90": p99 / 2, "p99": p99,
                               "p99_9": p99 * 1.5, "max": p99 * 2}
    if publish_lag_p99 is not None:
        summary["schedule_lag"] = {"count": 4000, "p50": publish_lag_p99 / 10, "p99": publish_lag_p99}
    return ModeResult.from_dict({
        "mode": mode,
        "status": status,
        "failure": "target did not start" if status == "failed" else None,
        "params": {"subscribers": subscribers, "rate": 10, "processes": processes},
        "summary": summary,
        "throughput": {"deliveries": expected - lost, "deliveries_per_s": rate},
        "audit": {"expected": expected, "delivered_unique": expected - lost, "lost": lost, "balanced": True},
        "harness": {"saturated": saturated,
                    "reason": "harness process 42 was above 90% CPU in 60% of its samples" if saturated else "ok",
                    "busiest_pid": 42, "busy_fraction": 0.6 if saturated else 0.0},
        "series": series(p99s if p99s is not None else [p99 or 0.0] * 40).to_dict(),
    })


def repeated(result: ModeResult, runs: Sequence[ModeResult]) -> ModeResult:
    """``result`` holding ``runs`` as its repeats."""
    return replace(result, repeats=tuple(runs))


def run_search(search: CapacitySearch, oracle: Oracle, limit: int = 10_000) -> list[tuple[int, int]]:
    """Drive a search to the end with ``oracle(N, repeat) -> status``; returns the points run."""
    ran: list[tuple[int, int]] = []
    while (point := search.next_point()) is not None:
        search.record(point, oracle(*point))
        ran.append(point)
        assert len(ran) < limit, "search did not terminate"
    return ran


def cliff(n_star: int) -> Oracle:
    """A target that holds up to n_star subscribers and fails above."""
    return lambda n, _repeat: "PASS" if n <= n_star else "FAIL"


# -- options ----------------------------------------------------------------------------


def test_parse_subscribers_grid_and_range() -> None:
    assert parse_subscribers("100,500,1000").grid == (100, 500, 1000)
    assert parse_subscribers("1000, 100,500,100").grid == (100, 500, 1000)
    assert parse_subscribers("2k,20_000").grid == (2000, 20000)
    rng = parse_subscribers("100:20000")
    assert (rng.grid, rng.lo, rng.hi) == (None, 100, 20000)


@pytest.mark.parametrize(
    ("parse", "text", "words"),
    [
        (parse_subscribers, "100:abc", "'abc' in '100:abc' is not a whole number"),
        (parse_subscribers, "500:100", "range '500:100' must go up"),
        (parse_subscribers, "100:100", "must go up"),
        (parse_subscribers, "1:2:3", "must be LOW:HIGH"),
        (parse_subscribers, "100,,500", "item 2 of '100,,500' is empty"),
        (parse_subscribers, "100,500:900", "mixes a list and a range"),
        (parse_subscribers, "0,10", "'0' in '0,10' must be at least 1"),
        (parse_subscribers, "1.5", "'1.5' in '1.5' is not a whole number"),
        (parse_subscribers, "", "give a list"),
        (parse_rates, "1,x", "'x' in '1,x' is not a number"),
        (parse_rates, "0", "must be a positive number"),
        (parse_rates, "1:10", "ranges are searched for --subscribers only"),
        (parse_modes, "push,pish", "'pish' is not a mode"),
        (parse_modes, "push,", "item 2 of 'push,' is empty"),
        (parse_require, "push=>2000", "clause 'push=>2000' must be MODE>=SUBSCRIBERS"),
        (parse_require, "pish>=2000", "'pish' is not a mode"),
        (parse_require, "push>=lots", "'lots' is not a whole number"),
    ],
)
def test_bad_options_name_the_bad_part_in_one_line(parse: Callable[[str], Any], text: str, words: str) -> None:
    with pytest.raises(SweepSpecError) as info:
        parse(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("--")


def test_precision_confirm_and_require() -> None:
    assert parse_precision("0.1") == 0.1 and parse_precision(0.25) == 0.25
    for bad in ("0", "1.5", "ten", -0.1):
        with pytest.raises(SweepSpecError, match=r"^--precision: "):
            parse_precision(bad)
    assert parse_confirm("2") == 2 and parse_confirm(3) == 3
    for bad_confirm in ("0", "1.5", "-1", "x"):
        with pytest.raises(SweepSpecError, match=r"^--confirm: "):
            parse_confirm(bad_confirm)
    push, star = parse_require("push>=2000, *>500")
    assert (push.mode, push.op, push.subscribers) == ("push", ">=", 2000)
    assert (star.mode, star.op, star.subscribers) == (None, ">", 500)
    assert push.holds(2000) and not star.holds(500)


def test_parse_sweep_spec_and_slo_errors_keep_their_wording() -> None:
    spec = parse_sweep_spec(modes="push,callback", subscribers="100:20000", rates="1,10",
                            slo="p99<=50ms, lost==0", precision="0.1", confirm="2")
    assert spec.is_search and (spec.lo, spec.hi) == (100, 20000) and spec.slo == "p99<=50ms,lost==0"
    assert spec.modes == ("push", "callback") and spec.rates == (1.0, 10.0)
    grid = parse_sweep_spec(modes="poll", subscribers="100,500", rates="10", slo="p99<=50")
    assert not grid.is_search and grid.grid == (100, 500) and grid.confirm == 2 and grid.precision == 0.1
    with pytest.raises(SweepSpecError) as info:
        parse_sweep_spec(modes="push", subscribers="100:200", rates="1", slo="p99<=fast")
    assert str(info.value) == "--slo: clause 'p99<=fast': value 'fast' is not a number"


# -- the search state machine ------------------------------------------------------------


@pytest.mark.parametrize("n_star", [150, 777, 3000, 4321, 12_345, 19_999])
@pytest.mark.parametrize("precision", [0.1, 0.05])
def test_search_brackets_a_known_capacity_within_precision(n_star: int, precision: float) -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000, precision=precision, confirm=2)
    ran = run_search(search, cliff(n_star))
    answer = search.answer()
    low, high = answer.bracket
    assert answer.status == "found"
    assert low is not None and high is not None
    assert low <= n_star < high
    assert (high - low) / low <= precision or high - low <= 1
    assert answer.capacity == low
    # the capacity point ran `confirm` times and passed them all; nothing else was repeated
    assert sorted(r for n, r in ran if n == low) == [0, 1]
    assert all(r == 0 for n, r in ran if n != low)
    # double first: lo, 2lo, 4lo ... up to the first fail
    first_fail = next(i for i, (n, _) in enumerate(ran) if n > n_star)
    assert [n for n, _ in ran[:first_fail + 1]] == [min(100 * 2**i, 20_000) for i in range(first_fail + 1)]
    assert len(ran) <= 20


def test_search_uses_round_bisection_points() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    ran = run_search(search, cliff(3000))
    assert [n for n, _ in ran] == [100, 200, 400, 800, 1600, 3200, 2400, 2800, 3000, 3000]
    assert search.answer().bracket == (3000, 3200)


def test_even_the_low_end_failing_is_below_range() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    assert run_search(search, cliff(50)) == [(100, 0)]
    answer = search.answer()
    assert (answer.status, answer.capacity, answer.bracket) == ("below-range", None, (None, 100))


def test_the_high_end_passing_is_above_range() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=1000)
    ran = run_search(search, cliff(10**9))
    assert [n for n, _ in ran] == [100, 200, 400, 800, 1000, 1000]  # hi is reached, then confirmed
    answer = search.answer()
    assert (answer.status, answer.capacity, answer.bracket) == ("above-range", 1000, (1000, None))


def test_a_flaky_repeat_at_the_boundary_puts_the_capacity_below_it() -> None:
    def flaky(n: int, repeat: int) -> str:
        if n == 3000 and repeat == 1:
            return "FAIL"  # passes once, fails its confirmation
        return "PASS" if n <= 3000 else "FAIL"

    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    ran = run_search(search, flaky)
    answer = search.answer()
    assert answer.capacity is not None and answer.capacity < 3000
    assert answer.bracket == (answer.capacity, 3000)  # the flaky N is now the first fail
    assert answer.status == "found"
    assert (3000, 1) in ran and (answer.capacity, 1) in ran  # the new candidate was confirmed in turn
    statuses = [r.status for r in answer.points if r.subscribers == answer.capacity]
    assert statuses == [Status.PASS, Status.PASS]


def test_confirm_one_runs_nothing_twice_and_confirm_three_thrice() -> None:
    once = CapacitySearch.search(mode="push", rate=1, lo=100, hi=20_000, confirm=1)
    ran = run_search(once, cliff(3000))
    assert len(ran) == len(set(ran)) and all(r == 0 for _, r in ran)
    thrice = CapacitySearch.search(mode="push", rate=1, lo=100, hi=20_000, confirm=3)
    ran3 = run_search(thrice, cliff(3000))
    assert [r for n, r in ran3 if n == thrice.answer().capacity] == [0, 1, 2]


def test_an_invalid_point_is_bisected_below_and_the_answer_says_at_least() -> None:
    """Nothing is explored above an INVALID point; below it the search bisects (the points there can still
    be trusted) and, finding no fail, rests "at least" on the largest pass within the precision."""
    def harness_limited(n: int, _repeat: int) -> str:
        return "INVALID" if n >= 4000 else "PASS"

    search = CapacitySearch.search(mode="poll", rate=10, lo=500, hi=20_000)
    ran = run_search(search, harness_limited)
    assert [n for n, _ in ran] == [500, 1000, 2000, 4000, 3000, 3500, 3800, 3800]
    assert max(n for n, _ in ran) == 4000
    answer = search.answer()
    assert (answer.status, answer.capacity, answer.harness_limit) == ("harness-limited", 3800, 4000)
    assert answer.bracket == (3800, None)  # never counted as a fail
    sentence = capacity_sentence("poll", [answer], SLO)
    assert "poll holds at least 3,800 subscribers" in sentence
    assert "harness limit at 4,000" in sentence


def test_an_invalid_point_during_bisection_becomes_the_ceiling() -> None:
    def oracle(n: int, _repeat: int) -> str:
        if n == 2400:
            return "INVALID"
        return "PASS" if n <= 3000 else "FAIL"

    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    ran = run_search(search, oracle)
    assert [n for n, _ in ran] == [100, 200, 400, 800, 1600, 3200, 2400, 2000, 2200, 2200]
    answer = search.answer()
    assert (answer.status, answer.capacity, answer.harness_limit, answer.bracket) == (
        "harness-limited", 2200, 2400, (2200, 3200))


def test_invalid_at_the_low_end_measures_nothing() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    assert run_search(search, lambda n, r: "INVALID") == [(100, 0)]
    answer = search.answer()
    assert (answer.status, answer.capacity) == ("harness-limited", None)
    assert "no capacity measured" in capacity_sentence("push", [answer], SLO)


def test_a_fail_below_the_harness_limit_is_a_real_answer() -> None:
    # INVALID from 1600 (the machine is busy there), the target fails from 1200: the bisection below the
    # limit finds the fail, and that is the answer -- the target's limit, found before the harness's
    def oracle(n: int, repeat: int) -> str:
        if n >= 1600:
            return "INVALID"
        return "FAIL" if n >= 1200 else "PASS"

    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    ran = run_search(search, oracle)
    assert [n for n, _ in ran] == [100, 200, 400, 800, 1600, 1200, 1000, 1100, 1100]
    answer = search.answer()
    assert answer.status == "found"
    assert (answer.capacity, answer.bracket, answer.harness_limit) == (1100, (1100, 1200), 1600)


def test_a_flaky_confirmation_below_the_harness_limit_is_a_fail() -> None:
    # the candidate's confirmation fails: a real fail below the limit wins over "at least"
    def oracle(n: int, repeat: int) -> str:
        if n >= 1600:
            return "INVALID"
        return "FAIL" if (n == 1500 and repeat == 1) else "PASS"

    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=20_000)
    run_search(search, oracle)
    answer = search.answer()
    assert answer.status == "found"
    assert answer.capacity is not None and answer.capacity < 1500 and answer.bracket[1] == 1500


def test_record_refuses_a_point_it_did_not_ask_for() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=1000)
    with pytest.raises(SweepStateError, match="expects N=100 repeat 0"):
        search.record((200, 0), "PASS")
    search.record((100, 0), "PASS")
    with pytest.raises(SweepStateError):
        search.record((100, 0), "PASS")
    with pytest.raises(SweepStateError, match="unknown verdict"):
        search.record((200, 0), "MAYBE")


def test_answer_is_pending_until_done() -> None:
    search = CapacitySearch.search(mode="push", rate=10, lo=100, hi=1000)
    search.record((100, 0), "PASS")
    assert search.answer().status == "pending" and not search.done


# -- grids ---------------------------------------------------------------------------------


def test_grid_runs_every_point_and_confirms_the_boundary() -> None:
    spec = parse_sweep_spec(modes="push,callback", subscribers="100,500,1000,5000", rates="1,10", slo="p99<=50")
    plan = SweepPlan(spec)
    ran: list[Point] = []
    while (point := plan.next_point()) is not None:
        n_star = 1000 if point.mode == "push" else 400
        plan.record(point, "PASS" if point.subscribers * point.rate <= n_star * 10 else "FAIL")
        ran.append(point)
    first_runs = {(p.mode, p.subscribers, p.rate) for p in ran if p.repeat == 0}
    assert first_runs == {(m, n, r) for m in ("push", "callback") for n in (100, 500, 1000, 5000) for r in (1.0, 10.0)}
    answers = {(a.mode, a.rate): a for a in plan.answers()}
    assert answers[("push", 10.0)].capacity == 1000 and answers[("push", 10.0)].bracket == (1000, 5000)
    assert answers[("push", 1.0)].status == "above-range" and answers[("push", 1.0)].capacity == 5000
    assert answers[("callback", 10.0)].capacity == 100 and answers[("callback", 10.0)].bracket == (100, 500)
    # FAIL above the capacity is in the evidence
    assert [r.status for r in answers[("push", 10.0)].points if r.subscribers == 5000] == [Status.FAIL]
    # order: mode by mode, rate by rate, N ascending, boundary confirmation last
    assert [(p.subscribers, p.repeat) for p in ran if p.mode == "push" and p.rate == 10.0] == [
        (100, 0), (500, 0), (1000, 0), (5000, 0), (1000, 1)]


def test_grid_pass_above_a_fail_is_noted_not_counted() -> None:
    search = CapacitySearch.grid([100, 500, 1000], mode="push", rate=10, confirm=1)
    run_search(search, lambda n, r: "FAIL" if n == 500 else "PASS")
    answer = search.answer()
    assert answer.capacity == 100 and answer.bracket == (100, 500)
    assert answer.notes and "1,000 passed above the first fail at 500" in answer.notes[0]


# -- resume ---------------------------------------------------------------------------------


def _drive(plan: SweepPlan, oracle: Callable[[Point], str]) -> list[Point]:
    ran = []
    while (point := plan.next_point()) is not None:
        plan.record(point, PointVerdict(Status(oracle(point)), (f"reason for {point.subscribers}",), (),
                                        f"headline {point.subscribers}"))
        ran.append(point)
    return ran


def _oracle(point: Point) -> str:
    if point.mode == "poll" and point.subscribers >= 4000:
        return "INVALID"
    if point.subscribers == 2800 and point.repeat == 1:
        return "FAIL"  # one flaky confirmation
    return "PASS" if point.subscribers * point.rate <= {"push": 30_000, "callback": 8000, "poll": 50_000}[point.mode] \
        else "FAIL"


def test_resume_from_any_prefix_reaches_the_same_points_and_answer() -> None:
    spec = parse_sweep_spec(modes="push,callback,poll", subscribers="100:20000", rates="1,10", slo="p99<=50,lost==0")
    full = SweepPlan(spec)
    ran = _drive(full, _oracle)
    final = [a.to_dict() for a in full.answers()]
    assert len(ran) > 20
    verdicts = {p: v for p, v in full.finished}
    assert set(verdicts) == set(ran)
    for cut in range(len(ran) + 1):
        # what sweep.json would hold after `cut` points
        index = new_index(spec)
        for k, point in enumerate(ran[:cut]):
            status = str(verdicts[point])
            index = add_point(index, point_key(f"{point.mode}-{point.subscribers}-{point.rate:g}", point.repeat),
                              point=point, verdict=PointVerdict(Status(status), (f"reason for {point.subscribers}",),
                                                                (), f"headline {point.subscribers}"),
                              figures={"p99": 10.0 + k}, results_path=f"points/{k:03d}/results.json")
        index = json.loads(json.dumps(index))  # as read back from disk
        resumed = resume_plan(index, spec)
        rest = _drive(resumed, _oracle)
        assert ran[:cut] + rest == ran
        assert [a.to_dict() for a in resumed.answers()] == final


def test_resume_refuses_another_spec_or_version() -> None:
    spec = parse_sweep_spec(modes="push", subscribers="100:20000", rates="10", slo="p99<=50")
    index = new_index(spec)
    other = parse_sweep_spec(modes="push", subscribers="100:10000", rates="10", slo="p99<=40")
    with pytest.raises(SweepIndexError) as info:
        resume_plan(index, other)
    assert "--subscribers" in str(info.value) and "--slo" in str(info.value) and "--modes" not in str(info.value)
    with pytest.raises(SweepIndexError, match="sweep_version 7"):
        resume_plan({**index, "sweep_version": 7})
    # points that do not follow from the spec
    bad = add_point(index, "k", point=Point("push", 5000, 10.0), verdict=PointVerdict(Status.PASS), figures={},
                    results_path="p/results.json")
    with pytest.raises(SweepIndexError, match="do not follow"):
        resume_plan(bad)


# -- the index ------------------------------------------------------------------------------


def test_index_is_plain_versioned_and_not_mutated() -> None:
    spec = parse_sweep_spec(modes="push", subscribers="100,200", rates="10", slo="p99<=50,lost==0")
    index = new_index(spec, extra={"command": ["run_bench.py", "sweep"]})
    assert index["sweep_version"] == SWEEP_VERSION == 1
    assert spec_of(index) == spec
    point = Point("push", 100, 10.0)
    verdict = judge_point(mode_result(p99=12.0), SLO)
    figures = point_figures(mode_result(p99=12.0))
    added = add_point(index, "fp-abc", point=point, verdict=verdict, figures=figures, results_path="p1/results.json")
    assert index["points"] == {}  # the input is untouched
    entry = added["points"]["fp-abc"]
    assert entry["mode"] == "push" and entry["subscribers"] == 100 and entry["rate"] == 10.0 and entry["repeat"] == 0
    assert entry["verdict"]["status"] == "PASS" and entry["results"] == "p1/results.json"
    assert entry["figures"]["p99"] == 12.0 and entry["figures"]["p99_9"] == 18.0
    assert set(entry["figures"]) >= {"p50", "p99", "p99_9", "lost", "refused", "deliveries_per_s"}
    assert json.loads(json.dumps(added)) == added
    assert finished_points(added) == [(point, verdict)]
    # same key, same point: replaced in place; same key, other point: refused
    again = add_point(added, "fp-abc", point=point, verdict=verdict, figures=figures, results_path="p1/results.json")
    assert len(again["points"]) == 1
    with pytest.raises(SweepIndexError, match="already holds"):
        add_point(added, "fp-abc", point=Point("push", 200, 10.0), verdict=verdict, figures=figures,
                  results_path="p2/results.json")
    with pytest.raises(SweepIndexError, match="relative"):
        add_point(index, "k", point=point, verdict=verdict, figures=figures, results_path="/tmp/x.json")
    assert point_key("fp", 0) == "fp" and point_key("fp", 2) == "fp#r2"


def test_with_answers_adds_sentences_computed_from_points() -> None:
    spec = parse_sweep_spec(modes="push", subscribers="100:20000", rates="10", slo="p99<=50ms,lost==0")
    plan = SweepPlan(spec)
    _drive(plan, lambda p: "PASS" if p.subscribers <= 3000 else "FAIL")
    index = with_answers(new_index(spec), plan.answers())
    assert index["answers"][0]["capacity"] == 3000 and "points" not in index["answers"][0]
    assert index["sentences"] == [
        "push holds 3,000 subscribers at 10 events/s within p99 ≤ 50 ms and no loss (3,200 fails: headline 3200)"]


# -- a point's verdict --------------------------------------------------------------------------


def test_pass_when_every_clause_holds_and_no_drift() -> None:
    verdict = judge_point(mode_result(p99=41.0), SLO)
    assert verdict.status == Status.PASS and verdict.advice == ()
    assert "p99 41" in verdict.headline


def test_fail_names_the_missed_clause_with_numbers() -> None:
    verdict = judge_point(mode_result(p99=212.0), SLO)
    assert verdict.status == Status.FAIL
    assert verdict.headline == "p99 212 ms"
    assert "212 ms" in verdict.reasons[0]
    lossy = judge_point(mode_result(p99=20.0, lost=1200, expected=40_000), SLO)
    assert lossy.status == Status.FAIL and lossy.headline == "lost 1,200 = 3 %"


def test_fail_when_p99_is_still_climbing_even_if_the_run_p99_looks_fine() -> None:
    climbing = [8.0] * 20 + [8.0 + 2.0 * i for i in range(20)]  # a backlog in the last half
    verdict = judge_point(mode_result(p99=30.0, p99s=climbing), SLO)
    assert verdict.status == Status.FAIL
    assert "still climbing" in verdict.reasons[0]
    assert verdict.headline.startswith("p99 climbing +")
    off = judge_point(mode_result(p99=30.0, p99s=climbing), SLO, options=JudgeOptions(check_drift=False))
    assert off.status == Status.PASS


def test_invalid_when_the_harness_saturated_with_advice() -> None:
    verdict = judge_point(mode_result(p99=400.0, saturated=True, subscribers=4000, processes=2), SLO)
    assert verdict.status == Status.INVALID  # never counted as the fail its p99 would make it
    assert verdict.headline == "harness saturated"
    assert "90% CPU" in verdict.reasons[0]
    assert any("--processes" in a and "2,000 subscribers each" in a and "try 4" in a for a in verdict.advice)


def test_invalid_when_the_publisher_lagged_its_schedule() -> None:
    # default threshold: max(5 ms, 10 % of the 50 ms bound) = 5 ms, the trust decision's own limit
    assert JudgeOptions().lag_floor_ms == PUBLISHER_LAG_LIMIT_MS == 5.0
    lagging = judge_point(mode_result(p99=20.0, publish_lag_p99=12.0), SLO)
    assert lagging.status == Status.INVALID and "publisher lagged" in lagging.reasons[0]
    assert "12 ms > 5 ms" in lagging.reasons[0] and lagging.advice
    assert judge_point(mode_result(p99=20.0, publish_lag_p99=4.0), SLO).status == Status.PASS
    # absent: no evidence of lag
    assert judge_point(mode_result(p99=20.0), SLO).status == Status.PASS
    # a loose SLO loosens the threshold: 10 % of 1 s
    loose = parse_slo("p99<=1s")
    assert judge_point(mode_result(p99=200.0, publish_lag_p99=60.0), loose).status == Status.PASS
    assert judge_point(mode_result(p99=200.0, publish_lag_p99=120.0), loose).status == Status.INVALID
    strict = JudgeOptions(lag_floor_ms=1.0, lag_fraction=0.0)
    assert judge_point(mode_result(p99=20.0, publish_lag_p99=4.0), SLO, options=strict).status == Status.INVALID


def test_invalid_when_the_mode_failed_to_run() -> None:
    verdict = judge_point(mode_result(status="failed", p99=None), SLO)
    assert verdict.status == Status.INVALID and "target did not start" in verdict.reasons[0]
    assert verdict.headline == "failed to run"


def test_repeats_inside_a_result_are_all_judged() -> None:
    result = repeated(mode_result(), [mode_result(p99=20.0), mode_result(p99=80.0)])
    verdict = judge_point(result, SLO)
    assert verdict.status == Status.FAIL and "run 2" in verdict.reasons[0]
    saturated = repeated(mode_result(), [mode_result(), mode_result(saturated=True)])
    assert judge_point(saturated, SLO).status == Status.INVALID
    figures = point_figures(result)
    assert figures["p99"] == 80.0  # the worst run


def test_stopped_early_is_a_fail() -> None:
    verdict = judge_point(mode_result(p99=10.0), SLO, stopped_early="p99 above 250 ms for 3 s")
    assert verdict.status == Status.FAIL and verdict.reasons[-1].startswith("stopped early")


def test_verdict_round_trips_through_json() -> None:
    verdict = judge_point(mode_result(saturated=True), SLO)
    assert PointVerdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict


# -- drift ---------------------------------------------------------------------------------


def ar1_noise(seed: int, n: int, *, level: float = 10.0, phi: float = 0.7, sigma: float = 0.15) -> list[float]:
    """Flat, noisy, autocorrelated p99 seconds, with an occasional wild second."""
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + rng.normal(0.0, 1.0)
    y = level * np.exp(sigma * e)
    if seed % 5 == 0:
        y[int(rng.integers(n))] *= 8
    return [float(v) for v in y]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("seconds", [20, 60])
def test_flat_noisy_series_is_not_drift(seed: int, seconds: int) -> None:
    result = detect_drift(series(ar1_noise(seed, seconds)), bound_ms=50.0)
    assert not result.drifting, result.reason


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("slope", [1.0, 5.0])
def test_steady_climb_is_drift(seed: int, slope: float) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    y = [10.0 + max(0.0, i - n / 2) * slope * 2 + float(rng.normal(0.0, 1.5)) for i in range(n)]
    result = detect_drift(series(y), bound_ms=50.0)
    assert result.drifting, result.reason
    assert result.slope_low > 0 and result.rise_ms >= result.threshold_ms
    assert "still climbing" in result.reason


def test_drift_needs_enough_seconds_and_ignores_partial_edge_seconds() -> None:
    short = detect_drift(series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert not short.drifting and "needed" in short.reason
    # a flat run whose last, partial second (few deliveries, drained stragglers) is slow
    flat = series([10.0] * 30)
    rows = Table(flat.columns, (*flat.rows, (T0 + 30, 3, 100.0, 300.0, 0, 100)))
    assert not detect_drift(rows, bound_ms=50.0).drifting


def test_a_step_that_levelled_off_is_not_still_climbing() -> None:
    y = [10.0] * 24 + [10.0 + 3 * i for i in range(8)] + [34.0 + 0.2 * ((-1) ** i) for i in range(12)]
    result = detect_drift(series(y), bound_ms=50.0)
    assert not result.drifting, result.reason


def test_small_rises_against_a_loose_slo_do_not_count() -> None:
    y = [10.0] * 20 + [10.0 + 0.6 * i for i in range(20)]  # +12 ms, p99 about doubles
    assert detect_drift(series(y), bound_ms=50.0).drifting
    assert not detect_drift(series(y), bound_ms=500.0).drifting  # less than a tenth of 500 ms
    assert not detect_drift(series(y), options=DriftOptions(rise_fraction_of_level=3.0)).drifting


# -- early stop ------------------------------------------------------------------------------


def test_clearly_failed_on_latency_for_consecutive_seconds() -> None:
    fine = [{"p99_ms": 20.0}] * 10
    assert not clearly_failed(fine, SLO)
    spike = fine + [{"p99_ms": 400.0}] * 2 + [{"p99_ms": 20.0}]
    assert not clearly_failed(spike, SLO)  # two bad seconds are not three
    assert clearly_failed(fine + [{"p99_ms": 260.0}] * 3, SLO)  # > 5 × 50 ms
    assert not clearly_failed(fine + [{"p99_ms": 240.0}] * 3, SLO)
    assert clearly_failed(fine + [{"p99_ms": 400.0}] * 2, SLO, seconds=2)


def test_clearly_failed_on_loss_only_when_the_slo_bounds_loss() -> None:
    lossy = [{"p99_ms": 5.0, "deliveries": 950, "expected": 1000}] * 4
    assert clearly_failed(lossy, SLO)
    assert not clearly_failed(lossy, parse_slo("p99<=50ms"))
    stalled = [{"p99_ms": None, "deliveries": 0, "expected": 1000}] * 3
    assert clearly_failed(stalled, parse_slo("lost<=1%"))
    slight = [{"p99_ms": 5.0, "deliveries": 995, "expected": 1000}] * 10  # 0.5 %: not clearly failed
    assert not clearly_failed(slight, SLO)
    assert not clearly_failed([{"p99_ms": 900.0}] * 5, parse_slo("rate>=10"))  # nothing to judge by


def test_rows_from_series_feed_clearly_failed() -> None:
    rows = rows_from_series(series([300.0] * 5))
    assert rows[0] == {"p99_ms": 300.0, "deliveries": 1000.0, "expected": 1000.0}
    assert clearly_failed(rows, SLO)


# -- knee and USL (information only) ------------------------------------------------------------


def mm1_latency(n: np.ndarray, n_max: float = 5000.0, base: float = 5.0) -> np.ndarray:
    rho = np.minimum(n / n_max, 0.99)
    return np.where(n / n_max < 0.99, base / (1.0 - rho), 5000.0)


def test_knee_is_stable_when_the_point_count_or_range_changes() -> None:
    # true knee of N/N_ref - L/50 for L = 5/(1 - N/5000): N_ref = 4500, knee at 3500
    samplings = [np.linspace(100, 4900, 10), np.linspace(100, 4900, 25), np.linspace(100, 8000, 12),
                 np.linspace(100, 20000, 20), np.linspace(50, 4900, 40),
                 np.array([100, 200, 400, 800, 1600, 3200, 6400, 4800, 4000, 4400, 4600], dtype=float)]
    knees = []
    for ns in samplings:
        found = knee(list(ns), list(mm1_latency(ns)), y_ref_ms=50.0)
        assert found is not None
        knees.append(found.subscribers)
    assert all(abs(k - 3500) / 3500 <= 0.15 for k in knees), knees
    assert (max(knees) - min(knees)) / 3500 <= 0.2, knees


def test_knee_needs_points_and_a_bend() -> None:
    assert knee([100, 200, 300], [1.0, 2.0, 50.0], y_ref_ms=50.0) is None
    assert knee([100, 200, 300, 400, 500], [60.0, 70.0, 80.0, 90.0, 100.0], y_ref_ms=50.0) is None
    linear = knee([100, 200, 300, 400, 500], [10.0, 20.0, 30.0, 40.0, 50.0], y_ref_ms=50.0)
    assert linear is None or linear.score < 0.05


def test_usl_fit_recovers_known_parameters() -> None:
    lam, sigma, kappa = 10.0, 0.02, 1e-5
    n = np.array([1, 5, 10, 25, 50, 100, 200, 400, 800, 1600], dtype=float)
    rng = np.random.default_rng(7)
    x = lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) * (1 + rng.normal(0, 0.005, len(n)))
    fit = usl_fit(list(n), list(x))
    assert fit is not None
    assert fit.lam == pytest.approx(lam, rel=0.05)
    assert fit.sigma == pytest.approx(sigma, rel=0.1)
    assert fit.kappa == pytest.approx(kappa, rel=0.1)
    assert fit.r2 > 0.99 and fit.points == 10
    assert fit.peak_subscribers == pytest.approx(math.sqrt((1 - sigma) / kappa), rel=0.1)


def test_usl_fit_at_thousands_of_subscribers_and_too_few_points() -> None:
    n = np.array([100, 200, 400, 800, 1600, 3200, 6400], dtype=float)
    fit = usl_fit(list(n), list(10 * n / (1 + 1e-4 * (n - 1) + 1e-8 * n * (n - 1))))
    assert fit is not None and fit.kappa == pytest.approx(1e-8, rel=0.05) and fit.r2 > 0.999
    assert usl_fit([1, 2, 3], [1.0, 2.0, 3.0]) is None
    assert usl_fit([1, 1, 1, 1, 2], [1.0, 1.0, 1.0, 1.0, 2.0]) is None  # repeats collapse to two N


def test_analyse_reads_the_index_and_skips_invalid_points() -> None:
    spec = parse_sweep_spec(modes="push", subscribers="100:5000", rates="10", slo="p99<=50ms")
    index = new_index(spec)
    for k, n in enumerate([100, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 4800]):
        latency = float(mm1_latency(np.array([float(n)]))[0])
        figures = {"p99": latency, "deliveries_per_s": 10.0 * n / (1 + 1e-5 * n)}
        index = add_point(index, f"k{k}", point=Point("push", n, 10.0),
                          verdict=PointVerdict(Status.PASS if latency <= 50 else Status.FAIL), figures=figures,
                          results_path=f"{k}/results.json")
    index = add_point(index, "bad", point=Point("push", 600, 10.0), verdict=PointVerdict(Status.INVALID),
                      figures={"p99": 5000.0, "deliveries_per_s": 1.0}, results_path="bad/results.json")
    result = analyse(index, mode="push", rate=10.0)
    assert result["knee"] is not None and abs(result["knee"]["subscribers"] - 3500) <= 600
    assert result["usl"] is not None and result["usl"]["r2"] > 0.99
    assert analyse(index, mode="callback", rate=10.0) == {"knee": None, "usl": None}


# -- sentences and --require -----------------------------------------------------------------


def _answer(mode: str, capacity: int | None, fail: int | None, status: str, *, rate: float = 10.0,
            reason: str = "", limit: int | None = None, limit_reason: str = "") -> CapacityAnswer:
    return CapacityAnswer(mode=mode, rate=rate, capacity=capacity, bracket=(capacity, fail), status=status,
                          harness_limit=limit, fail_reason=reason, limit_reason=limit_reason)


def test_capacity_sentences_contain_the_numbers() -> None:
    answers = [
        _answer("push", 4000, 8000, "found", reason="p99 212 ms"),
        _answer("callback", 1000, 2000, "found", reason="lost 3 %"),
        _answer("poll", 2000, None, "harness-limited", limit=4000, limit_reason="harness saturated"),
    ]
    assert capacity_sentences(answers, SLO) == [
        "push holds 4,000 subscribers at 10 events/s within p99 ≤ 50 ms and no loss (8,000 fails: p99 212 ms)",
        "callback holds 1,000 subscribers at 10 events/s within p99 ≤ 50 ms and no loss (2,000 fails: lost 3 %)",
        "poll holds at least 2,000 subscribers at 10 events/s within p99 ≤ 50 ms and no loss "
        "(harness limit at 4,000: harness saturated)",
    ]


def test_capacity_sentence_variants() -> None:
    below = capacity_sentence("push", [_answer("push", None, 100, "below-range", reason="p99 90 ms")], SLO)
    assert below == ("push holds fewer than 100 subscribers at 10 events/s within p99 ≤ 50 ms and no loss "
                     "(100, the lowest tried, fails: p99 90 ms)")
    above = capacity_sentence("push", [_answer("push", 20000, None, "above-range", rate=1.0)], SLO)
    assert above == ("push holds 20,000 subscribers at 1 event/s within p99 ≤ 50 ms and no loss "
                     "(the most tried; nothing failed)")
    two = capacity_sentence("push", [_answer("push", 20000, None, "above-range", rate=1.0),
                                     _answer("push", 4000, 4400, "found", reason="p99 61 ms")], SLO)
    assert two == ("push, within p99 ≤ 50 ms and no loss, holds 20,000 subscribers at 1 event/s "
                   "(the most tried; nothing failed) and 4,000 at 10 events/s (4,400 fails: p99 61 ms)")
    assert capacity_sentence("poll", [], SLO) == "poll was not swept"


def test_require_met() -> None:
    answers = [_answer("push", 4000, 8000, "found", rate=10.0), _answer("push", 20000, None, "above-range", rate=1.0),
               _answer("callback", 400, 500, "found"), _answer("poll", 2000, None, "harness-limited", limit=4000)]
    ok = require_met(answers, "push>=2000,poll>=2000")
    assert ok.ok and len(ok.lines) == 3 and all(line.endswith(": met") for line in ok.lines)
    assert any("at least 2,000" in line for line in ok.lines)
    short = require_met(answers, "push>=2000,callback>=500")
    assert not short.ok
    assert "callback at 10 events/s: 400 subscribers, >= 500 required: not met" in short.lines
    assert not require_met(answers, "burst>=1").ok
    assert not require_met(answers, "*>=1000").ok  # callback holds only 400
    assert not require_met([_answer("push", None, 100, "below-range")], "push>=1").ok


# -- properties ------------------------------------------------------------------------------


def _run_bound(lo: int, hi: int, precision: float, confirm: int) -> int:
    """Distinct N: the doubling steps plus bisection points, each splitting a gap of relative width > precision."""
    doubling = math.ceil(math.log2(hi / lo)) + 1
    bisect = min(hi - lo + 1, 2 * (math.log(hi / lo) / math.log(1 + 3 * precision / 8) + doubling))
    return int(confirm * (doubling + bisect))


@settings(max_examples=300, deadline=None)
@given(
    lo=st.integers(1, 2000),
    span=st.integers(1, 100_000),
    precision=st.sampled_from([0.02, 0.05, 0.1, 0.25, 1.0]),
    confirm=st.integers(1, 3),
    n_star=st.integers(0, 110_000),
    invalid_from=st.one_of(st.none(), st.integers(1, 110_000)),
    flaky=st.frozensets(st.tuples(st.integers(1, 110_000), st.integers(0, 2)), max_size=4),
)
def test_search_terminates_and_its_bracket_is_consistent(
    lo: int, span: int, precision: float, confirm: int, n_star: int, invalid_from: int | None,
    flaky: frozenset[tuple[int, int]],
) -> None:
    hi = lo + span

    def oracle(n: int, repeat: int) -> str:
        if invalid_from is not None and n >= invalid_from:
            return "INVALID"
        if (n, repeat) in flaky:
            return "FAIL"
        return "PASS" if n <= n_star else "FAIL"

    search = CapacitySearch.search(mode="push", rate=1, lo=lo, hi=hi, precision=precision, confirm=confirm)
    ran = run_search(search, oracle, limit=_run_bound(lo, hi, precision, confirm) + 1)
    assert len(ran) == len(set(ran))  # no run twice
    assert all(lo <= n <= hi for n, _ in ran)
    answer = search.answer()
    cap, fail = answer.bracket
    runs: dict[int, list[str]] = {}
    for rec in answer.points:
        runs.setdefault(rec.subscribers, []).append(str(rec.status))
    if cap is not None:
        assert runs[cap] == ["PASS"] * confirm  # passed every repeat
        assert cap == answer.capacity
    if fail is not None:
        assert "FAIL" in runs[fail]
    if cap is not None and fail is not None:
        assert cap < fail
    if answer.harness_limit is not None and cap is not None:
        assert cap < answer.harness_limit
    if answer.status == "found":
        assert cap is not None and fail is not None
        assert (fail - cap) / cap <= precision or fail - cap <= 1
    elif answer.status == "above-range":
        assert cap == hi
    elif answer.status == "below-range":
        assert cap is None and fail is not None
    else:
        assert answer.status == "harness-limited" and answer.harness_limit is not None
    # with no flakes and no harness limit, the bracket holds the true capacity
    if not flaky and invalid_from is None:
        if lo <= n_star < hi:
            assert cap is not None and fail is not None and cap <= n_star < fail
        elif n_star >= hi:
            assert answer.status == "above-range"
        else:
            assert answer.status == "below-range"
    # replaying any prefix reaches the same remaining sequence
    cut = len(ran) // 2
    replayed = CapacitySearch.search(mode="push", rate=1, lo=lo, hi=hi, precision=precision, confirm=confirm)
    replayed.replay([(p, oracle(*p)) for p in ran[:cut]])
    assert ran[:cut] + run_search(replayed, oracle) == ran
    assert replayed.answer() == answer


# -- guard rails (issue 24): no knee, drift or answer the data does not show -------------------------


def test_a_flat_curve_has_no_knee_even_though_kneedle_finds_a_point() -> None:
    ns, flat = [25, 50, 100, 200, 200], [3.1, 3.2, 3.3, 3.9, 3.7]  # 6-8 % of the 50 ms bound, no point failed
    assert knee(ns, flat, y_ref_ms=50.0) is None  # Kneedle's pick would be the largest N: nothing turns above it
    # a point above that failed (its p99 past the bound) shows where the curve turns
    turned = knee([*ns, 400], [*flat, 80.0], y_ref_ms=50.0, failed_at=[400])
    assert turned is not None and turned.subscribers == 200
    # so does one whose latency more than doubled, by more than the noise
    assert knee([*ns, 400], [*flat, 45.0], y_ref_ms=50.0) is not None
    # but not a doubling within the spread of one N's repeats (0.2 and 4.2 ms at N = 400)
    assert knee([100, 200, 400, 800], [2.0, 2.1, 2.2, 5.5], y_ref_ms=6.0) is not None
    assert knee([100, 200, 400, 400, 800], [2.0, 2.1, 0.2, 4.2, 5.5], y_ref_ms=6.0) is None


def test_analyse_passes_failed_points_to_the_knee() -> None:
    spec = parse_sweep_spec(modes="push", subscribers="100,200,400,800,1600", rates="10", slo="p99<=50ms",
                            confirm=1)
    index, plan = new_index(spec), SweepPlan(spec)
    while (point := plan.next_point()) is not None:
        status = Status.FAIL if point.subscribers == 1600 else Status.PASS
        p99 = {100: 3.0, 200: 3.1, 400: 3.2, 800: 3.6, 1600: 60.0}[point.subscribers]
        plan.record(point, PointVerdict(status))
        index = add_point(index, f"k{point.subscribers}", point=point, verdict=PointVerdict(status),
                          figures={"p99": p99, "deliveries_per_s": point.subscribers * 10.0},
                          results_path=f"p{point.subscribers}/results.json")
    found = analyse(index, mode="push", rate=10.0)["knee"]
    assert found is not None and found["subscribers"] == 800
    below = {k: v for k, v in index["points"].items() if v["subscribers"] < 1600}
    assert analyse({**index, "points": below}, mode="push", rate=10.0)["knee"] is None  # flat without the FAIL


def test_drift_needs_fifteen_seconds_of_stream_with_the_defaults() -> None:
    assert drift_min_duration_s() == 15.0
    assert drift_min_duration_s(DriftOptions(min_seconds=4, window_fraction=1.0)) == 4.0
    # at 15 s of one row a second the window holds the 8 seconds the default asks for; at 14 it does not
    assert detect_drift(series([10.0] * 15)).seconds == 8
    assert "8 are needed" in detect_drift(series([10.0] * 14)).reason


def test_a_pass_too_short_for_drift_says_so_in_its_verdict_and_its_round_trip() -> None:
    short = judge_point(mode_result(p99=10.0, p99s=[10.0] * 6), SLO)
    assert short.status == Status.PASS and not short.drift_judged
    assert PointVerdict.from_dict(json.loads(json.dumps(short.to_dict()))) == short
    legacy = {k: v for k, v in short.to_dict().items() if k != "drift_judged"}  # an index of an older writer
    assert PointVerdict.from_dict(legacy).drift_judged is False
    assert judge_point(mode_result(p99=10.0, p99s=[10.0] * 30), SLO).drift_judged


def test_the_capacity_sentence_says_when_drift_was_not_judged() -> None:
    plan = SweepPlan(parse_sweep_spec(modes="push", subscribers="100,200", rates="10", slo="p99<=50ms,lost==0",
                                      confirm=1))
    while (point := plan.next_point()) is not None:
        plan.record(point, PointVerdict(Status.PASS, ("drift not judged: ...",), (), "p99 3 ms", drift_judged=False))
    (answer,) = plan.answers()
    assert answer.drift_judged is False and answer.to_dict()["drift_judged"] is False
    assert capacity_sentence("push", [answer], SLO) == (
        "push holds 200 subscribers at 10 events/s within p99 ≤ 50 ms and no loss (the most tried; nothing "
        "failed); drift (p99 still climbing at the end) not judged: points need 15 s of stream for it")


def test_an_interrupted_search_says_what_it_found_so_far() -> None:
    search = CapacitySearch.search(mode="push", rate=10.0, lo=100, hi=1600, confirm=2)
    search.record((100, 0), Status.PASS)
    search.record((200, 0), Status.PASS)
    search.record((400, 0), PointVerdict(Status.FAIL, ("p99 212 ms > 50 ms",), (), "p99 212 ms"))
    answer = search.answer()
    assert answer.status == "pending" and answer.capacity is None and answer.largest_pass == 200
    assert capacity_sentence("push", [answer], SLO) == (
        "push, within p99 ≤ 50 ms and no loss, was interrupted before it finished: so far 200 subscribers passed "
        "at 10 events/s (400 fails: p99 212 ms)")
    done = _answer("push", 4000, 8000, "found", rate=1.0, reason="p99 90 ms")
    fresh = CapacitySearch.search(mode="push", rate=10.0, lo=100, hi=1600).answer()
    assert capacity_sentence("push", [done, fresh], SLO) == (
        "push holds 4,000 subscribers at 1 event/s within p99 ≤ 50 ms and no loss (8,000 fails: p99 90 ms); "
        "interrupted before it finished: so far no point finished at 10 events/s")


def test_a_point_whose_harness_worker_died_is_invalid() -> None:
    from deliverybench.core.model import ModeResult
    from deliverybench.core.sweep import Status, judge_point
    result = ModeResult.from_dict({"mode": "push", "status": "degraded", "errors": {"harness_worker_lost": 1},
                                   "audit": {"balanced": True, "subscribers": 50, "subscribers_unmeasured": 50},
                                   "summary": {"delivery": {"count": 100, "p99": 1.0}}})
    verdict = judge_point(result, ())
    assert verdict.status is Status.INVALID and verdict.headline == "harness worker died"
    assert verdict.reasons == ("harness worker died (50 subscribers unmeasured)",)
