"""Whether a measured run can be trusted to say something about the target: decided here, once.

A run whose harness was the bottleneck measured the harness, not the target;
a run that failed or was stopped measured nothing whole. Three readers need
that one answer and used to decide it each their own way: a mode's status
(``core/status.py``: such a run is ``degraded`` with the reason), the CI gate
(its verdicts are held at inconclusive, a failed side makes the comparison
fail) and a capacity sweep (the point is INVALID, never a pass or a fail).
They now all call :func:`trust` and word the reasons they get back.

Loss, refusals and slow deliveries are *findings*, not reasons for distrust:
they are what a user runs the tool to find, and the gate and sweeps judge them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .clock import UNCERTAINTY_FLOOR_MS, UNCERTAINTY_SHARE, too_uncertain, uncertainty_limit_ms
from .model import ModeResult

__all__ = ["PUBLISHER_LAG_LIMIT_MS", "Distrust", "TrustReason", "Trust", "trust"]

#: schedule lag (event handed to the pool - due) p99 above this means the harness itself could
#: not keep to the schedule; waiting for a free connection (the target's back-pressure) is not counted
PUBLISHER_LAG_LIMIT_MS = 5.0


class Distrust(StrEnum):
    """Why a run cannot be trusted, as a value readers can branch on."""

    #: the mode did not run (no measurement)
    FAILED = "failed"
    #: stopped from outside (a signal, Locust's time limit) before the stream and drain ended
    INTERRUPTED = "interrupted"
    #: stopped by a sweep once the point had clearly failed (kept, but not a whole measurement)
    STOPPED_EARLY = "stopped_early"
    #: a harness process was near a full core: its receive stamps queued behind its own work
    HARNESS_SATURATED = "harness_saturated"
    #: the whole machine was busy: every process, the harness's included, waited for a core
    MACHINE_BUSY = "machine_busy"
    #: the publisher could not keep to its own schedule, so latencies include the harness's delay
    PUBLISHER_LAG = "publisher_lag"
    #: the audit's sums do not add up: a bookkeeping fault of the harness
    AUDIT_UNBALANCED = "audit_unbalanced"
    #: a harness process (a Locust worker) died: its subscribers were not measured at all
    HARNESS_WORKER_LOST = "harness_worker_lost"
    #: the workers' clocks are known too loosely for the latencies: their error could be a tenth of the median
    CLOCK_UNCERTAIN = "clock_uncertain"


@dataclass(frozen=True)
class TrustReason:
    """One reason, with the figures behind it.

    Attributes:
        kind: what went wrong.
        run: which run of a repeated mode (1-based), ``None`` for a single run.
        detail: the run's own words (a failure line, the saturation verdict).
        observed: the figure that decided it (lag p99 in ms), if any.
        limit: the threshold it passed (ms), if any.
    """

    kind: Distrust
    run: int | None = None
    detail: str = ""
    observed: float | None = None
    limit: float | None = None

    def words(self) -> str:
        """The reason in a few words, without naming the run (readers add their own context)."""
        if self.kind is Distrust.FAILED:
            return "failed" + (f": {self.detail}" if self.detail else "")
        if self.kind is Distrust.INTERRUPTED:
            return "is interrupted" + (f": {self.detail}" if self.detail else "")
        if self.kind is Distrust.STOPPED_EARLY:
            return "was stopped early" + (f": {self.detail}" if self.detail else "")
        if self.kind is Distrust.HARNESS_SATURATED:
            return "harness saturated" + (f" ({self.detail})" if self.detail else "")
        if self.kind is Distrust.MACHINE_BUSY:  # the harness was not the busy one: it waited for CPU
            return "machine busy" + (f" ({self.detail})" if self.detail else "")
        if self.kind is Distrust.PUBLISHER_LAG:
            return (f"publisher behind its schedule (schedule lag p99 {self.observed or 0:,.1f} ms > "
                    f"{self.limit or 0:g} ms)")
        if self.kind is Distrust.HARNESS_WORKER_LOST:
            return "harness worker died" + (f" ({self.detail})" if self.detail else "")
        if self.kind is Distrust.CLOCK_UNCERTAIN:
            return (f"timing uncertainty ±{self.observed or 0:,.3f} ms > {self.limit or 0:,.3f} ms "
                    f"({UNCERTAINTY_SHARE * 100:g} % of p50, at least {UNCERTAINTY_FLOOR_MS:g} ms)"
                    f"{f': {self.detail}' if self.detail else ''}")
        return "the audit does not balance (expected != delivered + lost)"


@dataclass(frozen=True)
class Trust:
    """The verdict: trusted, or not with every reason."""

    reasons: tuple[TrustReason, ...] = ()
    #: how many runs were judged, and how many of them failed outright
    runs: int = 1
    failed_runs: int = 0

    @property
    def trusted(self) -> bool:
        return not self.reasons

    def has(self, *kinds: Distrust) -> bool:
        return any(r.kind in kinds for r in self.reasons)

    def of_kind(self, *kinds: Distrust) -> tuple[TrustReason, ...]:
        return tuple(r for r in self.reasons if r.kind in kinds)

    @property
    def measured_nothing(self) -> bool:
        """Every run failed: there is no measurement at all."""
        return self.failed_runs >= self.runs


def _run_reasons(run: ModeResult, index: int | None, lag_limit_ms: float) -> list[TrustReason]:
    reasons: list[TrustReason] = []
    if run.status == "failed":
        reasons.append(TrustReason(Distrust.FAILED, index, run.failure or ""))
    elif run.stopped_early:
        reasons.append(TrustReason(Distrust.STOPPED_EARLY, index, run.stopped_early))
    elif run.status == "interrupted":
        reasons.append(TrustReason(Distrust.INTERRUPTED, index, run.failure or ""))
    if run.harness.saturated:
        machine = run.harness.reason.startswith("every core of the machine")
        reasons.append(TrustReason(Distrust.MACHINE_BUSY if machine else Distrust.HARNESS_SATURATED, index,
                                   run.harness.reason))
    lag = run.schedule_lag_p99
    if lag is not None and lag > lag_limit_ms:
        reasons.append(TrustReason(Distrust.PUBLISHER_LAG, index, observed=lag, limit=lag_limit_ms))
    if run.audit.present and not run.audit.balanced:
        reasons.append(TrustReason(Distrust.AUDIT_UNBALANCED, index))
    uncertainty, p50 = run.timing_uncertainty_ms, run.headline.p50
    if uncertainty is not None and too_uncertain(uncertainty, p50):
        corrected = run.clock is not None and run.clock.corrected
        reasons.append(TrustReason(Distrust.CLOCK_UNCERTAIN, index,
                                   "worker clocks" if corrected else "worker clocks not corrected",
                                   observed=uncertainty, limit=uncertainty_limit_ms(p50)))
    if run.errors.get("harness_worker_lost"):
        reasons.append(TrustReason(Distrust.HARNESS_WORKER_LOST, index,
                                   f"{run.audit.count('subscribers_unmeasured'):,} subscribers unmeasured"))
    return reasons


def trust(result: ModeResult, *, lag_limit_ms: float = PUBLISHER_LAG_LIMIT_MS) -> Trust:
    """Whether ``result`` (each of its runs, when repeated) can be trusted to describe the target.

    Args:
        result: a mode result; with repeats every run is judged and each reason names its run.
        lag_limit_ms: schedule-lag p99 above which the publisher counts as behind (a sweep
            passes a limit scaled to its latency objective).
    """
    runs = result.runs
    many = len(runs) > 1
    reasons: list[TrustReason] = []
    for i, run in enumerate(runs, 1):
        reasons += _run_reasons(run, i if many else None, lag_limit_ms)
    failed = sum(1 for r in reasons if r.kind is Distrust.FAILED)
    if result.status == "failed" and not failed:
        reasons.insert(0, TrustReason(Distrust.FAILED, None, result.failure or ""))
        failed = len(runs)
    return Trust(tuple(reasons), runs=len(runs), failed_runs=failed)
