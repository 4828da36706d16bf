"""One decision of whether a run can be trusted, with reasons readers branch on rather than parse."""

from __future__ import annotations

from typing import Any

from deliverybench.core.model import MIN_LAG_EVENTS, ModeResult
from deliverybench.core.trust import PUBLISHER_LAG_LIMIT_MS, Distrust, trust

MACHINE = ("every core of the machine was above 90% busy in 40% of the samples; the harness competed for CPU, so "
           "its latencies are not trustworthy")


def mode(**parts: Any) -> ModeResult:
    return ModeResult.from_dict({"mode": "push", "status": "ok", "audit": {"balanced": True}, **parts})


def lagging(p99: float) -> dict[str, Any]:
    return {"schedule_lag": {"count": MIN_LAG_EVENTS, "p99": p99}}


def test_a_clean_run_is_trusted() -> None:
    verdict = trust(mode())
    assert verdict.trusted and verdict.reasons == () and not verdict.measured_nothing


def test_findings_are_not_distrust() -> None:
    # loss, refusals and slow deliveries are what the run measured, not reasons to disbelieve it
    verdict = trust(mode(status="degraded", audit={"lost": 900, "expected": 1000, "refused": 5},
                         summary={"delivery": {"count": 100, "p99": 5000.0}}))
    assert verdict.trusted


def test_each_kind_of_distrust_is_a_value() -> None:
    cases = [
        (mode(status="failed", failure="target: refused"), Distrust.FAILED),
        (mode(status="interrupted", failure="SIGTERM"), Distrust.INTERRUPTED),
        (mode(status="interrupted", stopped_early="p99 over 10x the bound"), Distrust.STOPPED_EARLY),
        (mode(harness={"saturated": True, "reason": "harness process 7 was above 90% CPU"}),
         Distrust.HARNESS_SATURATED),
        (mode(harness={"saturated": True, "reason": MACHINE}), Distrust.MACHINE_BUSY),
        (mode(summary=lagging(PUBLISHER_LAG_LIMIT_MS + 0.1)), Distrust.PUBLISHER_LAG),
        (mode(audit={"balanced": False}), Distrust.AUDIT_UNBALANCED),
    ]
    for result, kind in cases:
        verdict = trust(result)
        assert [r.kind for r in verdict.reasons] == [kind], result
        assert not verdict.trusted


def test_the_lag_limit_is_the_callers() -> None:
    result = mode(summary=lagging(8.0))
    assert not trust(result).trusted
    assert trust(result, lag_limit_ms=10.0).trusted  # a sweep scales it to its latency objective
    (reason,) = trust(result).reasons
    assert (reason.observed, reason.limit) == (8.0, PUBLISHER_LAG_LIMIT_MS)
    assert reason.words() == "publisher behind its schedule (schedule lag p99 8.0 ms > 5 ms)"


def test_repeats_are_judged_run_by_run() -> None:
    runs = [{"mode": "push", "status": "ok"},
            {"mode": "push", "status": "failed", "failure": "locust exited"},
            {"mode": "push", "status": "ok", "harness": {"saturated": True, "reason": "busy"}}]
    verdict = trust(ModeResult.from_dict({"mode": "push", "status": "degraded", "repeats": runs}))
    assert [(r.kind, r.run) for r in verdict.reasons] == [(Distrust.FAILED, 2), (Distrust.HARNESS_SATURATED, 3)]
    assert (verdict.runs, verdict.failed_runs, verdict.measured_nothing) == (3, 1, False)


def test_a_failed_mode_without_runs_measured_nothing() -> None:
    verdict = trust(mode(status="failed", failure="nothing was delivered"))
    assert verdict.measured_nothing
    assert verdict.reasons[0].words() == "failed: nothing was delivered"


def test_a_dead_harness_worker_is_distrust_naming_the_unmeasured() -> None:
    verdict = trust(mode(status="degraded", errors={"harness_worker_lost": 1},
                         audit={"balanced": True, "subscribers": 50, "subscribers_unmeasured": 50}))
    (reason,) = verdict.reasons
    assert reason.kind is Distrust.HARNESS_WORKER_LOST
    assert reason.words() == "harness worker died (50 subscribers unmeasured)"


def test_a_busy_machine_is_not_called_a_saturated_harness() -> None:
    """The harness was not the busy one: it waited for CPU behind the target or other jobs."""
    (reason,) = trust(mode(harness={"saturated": True, "reason": MACHINE})).reasons
    assert reason.words().startswith("machine busy (every core of the machine")
    (own,) = trust(mode(harness={"saturated": True, "reason": "harness process 7 was above 90% CPU"})).reasons
    assert own.words().startswith("harness saturated")
