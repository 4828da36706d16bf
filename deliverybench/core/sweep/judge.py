"""What one point says: PASS, FAIL or INVALID, from its mode result and the objectives.

Also the two judgements made on the way: whether p99 still climbs at the end
of the stream (:func:`detect_drift`, a backlog building up) and whether a
point still running has clearly failed (:func:`clearly_failed`, so the runner
may stop it early).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from ..metrics import metric_value
from ..model import ModeResult, Table
from ..slo import SloClause, check_mode, format_number, latency_bound, limits_loss
from ..stats import is_number, median, sen_slope
from ..trust import PUBLISHER_LAG_LIMIT_MS, Distrust, TrustReason, trust

__all__ = [
    "Status",
    "DriftOptions",
    "DriftResult",
    "detect_drift",
    "drift_min_duration_s",
    "JudgeOptions",
    "PointVerdict",
    "judge_point",
    "point_figures",
    "rows_from_series",
    "clearly_failed",
]


class Status(StrEnum):
    """A point's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"
    INVALID = "INVALID"



@dataclass(frozen=True)
class DriftOptions:
    """Thresholds of :func:`detect_drift` (defaults in brackets).

    Attributes:
        window_fraction: the trailing share of the judged seconds examined [0.5].
        min_seconds: fewer seconds in the window is no evidence either way [8].
        confidence: confidence level of the Theil–Sen slope interval [0.95].
        rise_fraction_of_level: the rise must be at least this share of the
            run's median p99 (1.0: p99 roughly doubled) [1.0].
        rise_fraction_of_bound: and at least this share of the SLO latency
            bound (rises negligible against the SLO do not count) [0.1].
        min_rise_ms: and at least this many ms (timer noise) [1.0].
        edge_fraction: leading/trailing seconds with fewer deliveries than this
            share of the median second are partial seconds and dropped [0.5].
    """

    window_fraction: float = 0.5
    min_seconds: int = 8
    confidence: float = 0.95
    rise_fraction_of_level: float = 1.0
    rise_fraction_of_bound: float = 0.1
    min_rise_ms: float = 1.0
    edge_fraction: float = 0.5


@dataclass(frozen=True)
class DriftResult:
    """What :func:`detect_drift` found.

    Attributes:
        drifting: p99 is still climbing at the end of the stream.
        seconds: seconds in the examined window.
        slope_ms_per_s: Theil–Sen slope of p99 over the window (``nan`` when too short).
        slope_low: lower end of the slope's confidence interval.
        slope_high: upper end.
        rise_ms: slope × window span: how much p99 rose across the window.
        threshold_ms: the rise that would have counted.
        reason: one line with the numbers.
    """

    drifting: bool
    seconds: int
    slope_ms_per_s: float
    slope_low: float
    slope_high: float
    rise_ms: float
    threshold_ms: float
    reason: str


def _column_rows(series: Table, *names: str) -> list[list[Any]]:
    columns = series.columns
    index = [columns.index(n) if n in columns else -1 for n in names]
    return [[row[i] if 0 <= i < len(row) else None for i in index] for row in series.rows]


def detect_drift(
    series: Table,
    *,
    bound_ms: float | None = None,
    options: DriftOptions | None = None,
) -> DriftResult:
    """Whether p99 per second is still climbing at the end of the stream.

    A target past its capacity builds a backlog, and a backlog makes every
    second's p99 higher than the last, even while the whole-run p99 still
    looks fine. The rule, chosen to be robust to noisy seconds and outliers:

    1. take the seconds with a p99 (``series`` columns ``second``, ``p99_ms``,
       ``deliveries``), dropping leading and trailing partial seconds (fewer
       deliveries than ``edge_fraction`` of the median second);
    2. keep the last ``window_fraction`` of them (the end of the stream,
       including a backlog draining after it);
    3. fit the Theil–Sen slope (median of pairwise slopes: one wild second
       cannot move it) with its ``confidence`` interval, widened for the
       autocorrelation of consecutive seconds (see :func:`~deliverybench.core.stats.sen_slope`);
    4. drifting iff the interval lies above 0, the rise it implies across the
       window is at least ``max(min_rise_ms, rise_fraction_of_level × median
       p99 of the run, rise_fraction_of_bound × bound_ms)`` -- with the
       defaults: p99 about doubled, by at least a tenth of the SLO bound and
       1 ms -- and the slope over the last half of the window is still
       positive (climbing *at the end*, not a step that has levelled off).

    The interval alone would still call about one flat, autocorrelated
    series in twenty a trend; the effect-size floor is what keeps such noise
    from being called a climb (in simulation: AR(1) seconds with φ = 0.7 and
    15 % noise, under 0.5 % of flat 40-s series flagged), while a real
    backlog clears it easily: an overload of ε grows the queueing delay by
    about 1000·ε ms every second, so 0.1 % over capacity adds 1 ms/s.

    Args:
        series: a mode result's per-second ``series``.
        bound_ms: the SLO's latency bound, if any (see :func:`~deliverybench.core.slo.latency_bound`).
        options: thresholds (defaults: :class:`DriftOptions`).
    """
    opts = options or DriftOptions()
    nan = float("nan")
    rows = [(float(sec), float(p99), float(n) if is_number(n) else 0.0)
            for sec, p99, n in _column_rows(series, "second", "p99_ms", "deliveries")
            if is_number(sec) and is_number(p99)]
    rows.sort()
    if rows and any(n > 0 for _, _, n in rows):
        typical = median([n for _, _, n in rows if n > 0])
        start, stop = 0, len(rows)
        while start < stop and rows[start][2] < opts.edge_fraction * typical:
            start += 1
        while stop > start and rows[stop - 1][2] < opts.edge_fraction * typical:
            stop -= 1
        rows = rows[start:stop]
    window = rows[len(rows) - max(int(math.ceil(len(rows) * opts.window_fraction)), 0):] if rows else []
    if len(window) < opts.min_seconds:
        return DriftResult(False, len(window), nan, nan, nan, 0.0, nan,
                           f"{len(window)} full seconds at the end of the stream; "
                           f"{opts.min_seconds} are needed to judge drift")
    x = np.array([r[0] for r in window], dtype=float)
    y = np.array([r[1] for r in window], dtype=float)
    slope, low, high, _ = sen_slope(x, y, confidence=opts.confidence)
    span = float(x[-1] - x[0])
    rise = slope * span
    level = median([r[1] for r in rows])
    threshold = max(opts.min_rise_ms, opts.rise_fraction_of_level * level,
                    opts.rise_fraction_of_bound * bound_ms if bound_ms is not None else 0.0)
    half = len(window) // 2
    tail_slope = sen_slope(x[half:], y[half:], confidence=opts.confidence)[0] if len(window) - half >= 3 else slope
    drifting = low > 0 and rise >= threshold and tail_slope > 0
    where = f"over the last {len(window)} s"
    if drifting:
        reason = (f"p99 still climbing at the end: +{format_number(rise)} ms {where} "
                  f"({format_number(slope)} ms/s, {opts.confidence:.0%} interval "
                  f"{format_number(low)}..{format_number(high)}): a backlog building up")
    elif low <= 0:
        reason = f"p99 not climbing {where} (slope {format_number(slope)} ms/s, interval includes 0)"
    elif rise < threshold:
        reason = (f"p99 rose only {format_number(rise)} ms {where} "
                  f"(less than the {format_number(threshold)} ms that would count)")
    else:
        reason = f"p99 rose {format_number(rise)} ms {where} but has levelled off"
    return DriftResult(drifting, len(window), slope, low, high, rise, threshold, reason)


def drift_min_duration_s(options: DriftOptions | None = None) -> float:
    """The shortest stream (seconds) whose drift :func:`detect_drift` can judge.

    The window is the last ``window_fraction`` of the full seconds and needs
    ``min_seconds`` of them; a stream of D whole seconds at one event a second
    or more has at least D full seconds (of its two partial edge seconds, one
    holds at least half a second's events and is kept), so D is the smallest
    count whose window is long enough: 15 s with the defaults.
    """
    opts = options or DriftOptions()
    seconds = 1
    while math.ceil(seconds * opts.window_fraction) < opts.min_seconds:
        seconds += 1
    return float(seconds)


@dataclass(frozen=True)
class JudgeOptions:
    """Thresholds of :func:`judge_point` (defaults in brackets).

    Attributes:
        lag_floor_ms: publisher lag p99 above ``max(lag_floor_ms, lag_fraction
            × SLO latency bound)`` makes a point INVALID [the trust decision's
            own limit, 5.0 ms]. Latency counts from the due time, so a lagging
            publisher eats into the SLO itself; a lag a tenth of the bound
            could decide the verdict.
        lag_fraction: see ``lag_floor_ms`` [0.1].
        check_drift: whether a climbing p99 fails a point [True].
        drift: thresholds of :func:`detect_drift`.
    """

    lag_floor_ms: float = PUBLISHER_LAG_LIMIT_MS
    lag_fraction: float = 0.1
    check_drift: bool = True
    drift: DriftOptions = field(default_factory=DriftOptions)


@dataclass(frozen=True)
class PointVerdict:
    """A point's verdict.

    Attributes:
        status: PASS, FAIL or INVALID.
        reasons: one line per thing that decided it (all misses, or why the
            measurement cannot be trusted); for a PASS, the figures that held.
        advice: for INVALID, what to change before re-running.
        headline: the deciding reason in a few words ("p99 212 ms",
            "lost 3.1 %", "harness saturated"), for progress lines and sentences.
        drift_judged: False when a run was too short for :func:`detect_drift`
            to judge, so a PASS rests on the objectives alone (the capacity
            sentence says so).
    """

    status: Status
    reasons: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()
    headline: str = ""
    drift_judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain form for ``sweep.json``."""
        return {"status": str(self.status), "reasons": list(self.reasons), "advice": list(self.advice),
                "headline": self.headline, "drift_judged": self.drift_judged}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointVerdict:
        """Inverse of :meth:`to_dict` (an index written before ``drift_judged`` says it in its reasons)."""
        reasons = tuple(str(r) for r in data.get("reasons") or ())
        judged = data.get("drift_judged")
        if not isinstance(judged, bool):
            judged = not any(_UNJUDGED in r for r in reasons)
        return cls(Status(str(data["status"])), reasons, tuple(data.get("advice") or ()),
                   str(data.get("headline") or ""), judged)


def _per_process_advice(run: ModeResult) -> str:
    subscribers, processes = run.params.subscribers, run.params.processes
    if subscribers is not None and processes is not None and processes >= 1:
        each = subscribers / processes
        return (f"run with more --processes (now {format_number(processes)}, {format_number(round(each))} "
                f"subscribers each; try {format_number(processes * 2)}) or fewer subscribers per process")
    return "run with more --processes / fewer subscribers per process"


def point_figures(result: ModeResult) -> dict[str, float | None]:
    """The key figures of a point for ``sweep.json`` and progress lines.

    Keys: ``p50``, ``p99``, ``p99_9`` (ms), ``lost``, ``refused``,
    ``deliveries_per_s`` and ``expected`` (the audit's expected deliveries).
    With repeats the worst run's figure is given (highest latency and loss,
    lowest rate).
    """
    runs = result.runs
    out: dict[str, float | None] = {}
    for name in ("p50", "p99", "p99_9", "lost", "refused", "deliveries_per_s"):
        values = [v for v in (metric_value(r, name) for r in runs) if v is not None]
        out[name] = None if not values else (min(values) if name == "deliveries_per_s" else max(values))
    expected = [float(r.audit.expected) for r in runs if r.audit.expected is not None]
    out["expected"] = min(expected) if expected else None
    return out


def _short(clause: SloClause, observed: float | None, result: ModeResult) -> str:
    if observed is None:
        return f"{clause.label} unknown"
    text = f"{clause.label} {clause.show(observed)}"
    if clause.metric in ("lost", "refused", "duplicates") and not clause.percent:
        expected = point_figures(result).get("expected")
        if expected:
            text += f" = {format_number(100.0 * observed / expected)} %"
    return text


#: how a PASS's reasons say drift was not judged (an index written before ``drift_judged`` is read from them)
_UNJUDGED = "drift not judged"

#: the kinds of distrust that make a point INVALID. A point the runner stopped early is a FAIL
#: (``stopped_early``), and one interrupted from outside is judged on what it measured, as before
_INVALID = (Distrust.FAILED, Distrust.HARNESS_SATURATED, Distrust.MACHINE_BUSY, Distrust.PUBLISHER_LAG,
            Distrust.AUDIT_UNBALANCED, Distrust.HARNESS_WORKER_LOST, Distrust.CLOCK_UNCERTAIN)


def _invalid(reason: TrustReason, run: ModeResult) -> tuple[str, str, str]:
    """``(reason, advice, headline)`` of one reason the trust decision gave, in the sweep's words."""
    if reason.kind is Distrust.FAILED:
        return (f"the mode failed to run: {reason.detail or 'no reason recorded'}",
                "read the point's log and report: the target or the harness did not start or stream",
                "failed to run")
    if reason.kind is Distrust.HARNESS_SATURATED:
        return (f"harness saturated: {reason.detail or 'no reason recorded'}", _per_process_advice(run),
                "harness saturated")
    if reason.kind is Distrust.MACHINE_BUSY:
        return (f"machine busy: {reason.detail or 'no reason recorded'}",
                "the harness waited for CPU behind the target or other jobs: give the target or the harness a "
                "machine of its own, or run when the machine is quiet", "machine busy")
    if reason.kind is Distrust.PUBLISHER_LAG:
        lag = format_number(reason.observed or 0.0)
        return (f"publisher lagged its schedule: p99 lag {lag} ms > {format_number(reason.limit or 0.0)} ms",
                "give the publisher room: " + _per_process_advice(run)
                + ", or lower the rate × subscribers per harness machine",
                f"publisher lag p99 {lag} ms")
    if reason.kind is Distrust.HARNESS_WORKER_LOST:
        return (reason.words(), "a harness process died: read the point's Locust log (memory, a signal) and run "
                "it again", "harness worker died")
    if reason.kind is Distrust.CLOCK_UNCERTAIN:
        return (reason.words(), "know the workers' clocks more tightly: load machines nearer the master (a shorter "
                "round trip), or measure a larger latency", "clock uncertain")
    return ("the audit does not balance (expected != delivered + lost)",
            "a harness bookkeeping bug: report it with the point's results file", "audit unbalanced")


def judge_point(
    result: ModeResult,
    clauses: Sequence[SloClause],
    *,
    options: JudgeOptions | None = None,
    stopped_early: str | None = None,
) -> PointVerdict:
    """PASS, FAIL or INVALID for one mode result.

    INVALID (checked first: a measurement that cannot be trusted says nothing
    about the target, pass or fail) when :func:`~deliverybench.core.trust.trust`
    finds, in any run: the mode failed to run; the harness was saturated; the
    publisher lagged its schedule (schedule-lag p99 above the threshold of
    :class:`JudgeOptions`; absent = no evidence of lag); or the audit does not
    balance. Otherwise FAIL when any SLO clause misses (in any run), p99
    drifts upward at the end (:func:`detect_drift`), or the runner stopped
    the point early; else PASS.

    Args:
        result: the mode result (``run.modes[mode]``).
        clauses: the objectives (clauses for other modes are ignored).
        options: thresholds (defaults: :class:`JudgeOptions`).
        stopped_early: the runner's reason if it cut the point short
            (:func:`clearly_failed`); makes a valid point a FAIL.
    """
    opts = options or JudgeOptions()
    mode = result.mode
    runs = result.runs
    bound = latency_bound(clauses, mode)
    lag_limit = max(opts.lag_floor_ms, opts.lag_fraction * bound) if bound is not None else opts.lag_floor_ms

    def tag(i: int) -> str:
        return f"run {i + 1}: " if len(runs) > 1 else ""

    distrust = trust(result, lag_limit_ms=lag_limit).of_kind(*_INVALID)
    failed = {r.run for r in distrust if r.kind is Distrust.FAILED}
    invalid: list[str] = []
    advice: list[str] = []
    headline = ""
    for reason in distrust:
        if reason.kind is not Distrust.FAILED and reason.run in failed:
            continue  # a run that did not run has nothing else worth saying
        said, what_to_do, short = _invalid(reason, runs[reason.run - 1] if reason.run is not None else result)
        invalid.append((f"run {reason.run}: " if reason.run is not None else "") + said)
        advice.append(what_to_do)
        headline = headline or short
    if invalid:
        return PointVerdict(Status.INVALID, tuple(invalid), tuple(dict.fromkeys(advice)), headline)

    applicable = [c for c in clauses if c.applies_to(mode)]
    outcomes = check_mode(applicable, mode, result)
    misses = [(c, o) for c, o in zip(applicable, outcomes) if not o.ok]
    reasons = [o.reason for _, o in misses]
    if misses:
        headline = _short(misses[0][0], misses[0][1].observed, result)
    unjudged: list[str] = []
    if opts.check_drift:
        for i, run in enumerate(runs):
            drift = detect_drift(run.series, bound_ms=bound, options=opts.drift)
            if drift.drifting:
                reasons.append(f"{tag(i)}{drift.reason}")
                headline = headline or f"p99 climbing +{format_number(drift.rise_ms)} ms over {drift.seconds} s"
            elif drift.seconds < opts.drift.min_seconds:
                unjudged.append(f"{tag(i)}{_UNJUDGED}: {drift.reason}")
    if stopped_early:
        reasons.append(f"stopped early: {stopped_early}")
        headline = headline or "stopped early"
    if reasons:
        return PointVerdict(Status.FAIL, tuple(reasons), (), headline)
    held = tuple(o.reason for o in outcomes) + tuple(unjudged)
    figures = point_figures(result)
    summary = ", ".join(f"{label} {format_number(v)}{unit}" for label, v, unit in (
        ("p99", figures["p99"], " ms"), ("lost", figures["lost"], "")) if v is not None)
    return PointVerdict(Status.PASS, held, (), summary or "passed", drift_judged=not unjudged)


# -- early stop ------------------------------------------------------------------------


def rows_from_series(series: Table) -> list[dict[str, float | None]]:
    """Per-second rows for :func:`clearly_failed` from a results ``series``.

    ``expected`` is estimated as ``published × connected`` for seconds that
    have both (the deliveries the second's events called for).
    """
    out: list[dict[str, float | None]] = []
    for p99, deliveries, published, connected in _column_rows(series, "p99_ms", "deliveries", "published",
                                                             "connected"):
        expected = float(published) * float(connected) if is_number(published) and is_number(connected) else None
        out.append({"p99_ms": float(p99) if is_number(p99) else None,
                    "deliveries": float(deliveries) if is_number(deliveries) else None,
                    "expected": expected})
    return out


def clearly_failed(
    rows: Sequence[Mapping[str, Any]],
    slo: Sequence[SloClause],
    *,
    mode: str | None = None,
    seconds: int = 3,
    latency_factor: float = 5.0,
    loss_fraction: float = 0.01,
) -> bool:
    """Whether a point still running has clearly failed, so the runner may stop it.

    A second is *bad* when its p99 exceeds ``latency_factor`` × the SLO's
    latency bound, or -- only if the SLO bounds ``lost`` -- when it delivered
    less than ``1 - loss_fraction`` of what it should have. The point has
    clearly failed once ``seconds`` consecutive seconds are bad. Seconds are
    taken in the order given; once true it stays true as rows are appended.

    Args:
        rows: one mapping per second so far, oldest first, with
            ``p99_ms`` (float or None) and, for the loss rule, ``deliveries``
            and ``expected`` (deliveries the second's published events called
            for: events × subscribers connected). Missing keys are no
            evidence. :func:`rows_from_series` builds them from a series.
        slo: the objectives.
        mode: the mode running (clauses for other modes are ignored).
        seconds: consecutive bad seconds needed [3].
        latency_factor: multiple of the latency bound that is clearly failed [5.0].
        loss_fraction: per-second shortfall that is clearly failed [0.01].
    """
    bound = latency_bound(slo, mode)
    check_loss = limits_loss(slo, mode)
    if bound is None and not check_loss:
        return False
    streak = 0
    for row in rows:
        bad = False
        p99 = row.get("p99_ms")
        if bound is not None and is_number(p99) and p99 > latency_factor * bound:
            bad = True
        if check_loss and not bad:
            delivered, expected = row.get("deliveries"), row.get("expected")
            if is_number(expected) and expected > 0:
                got = float(delivered) if is_number(delivered) else 0.0
                bad = 1.0 - got / expected > loss_fraction
        streak = streak + 1 if bad else 0
        if streak >= seconds:
            return True
    return False
