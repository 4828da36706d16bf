"""The gate's words: every sentence a comparison carries, from the numbers :mod:`.gate` decided.

A CI verdict is read by someone who did not write the gate, so each metric
says what changed, by how much, how sure the gate is, against which
tolerance, and -- when it cannot decide -- what would decide it. The
decisions live in :mod:`deliverybench.core.gate`; this module only turns
their numbers into those words (and :mod:`.gate_report` lays them out for
CI). Nothing here decides anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import COUNT_METRICS, HIGHER_IS_BETTER, LATENCY_METRICS
from .stats import MAX_REPEATS
from .trust import Distrust, TrustReason

__all__ = [
    "LABELS",
    "UNITS",
    "label",
    "show",
    "signed_percent",
    "count",
    "tolerance_words",
    "change_words",
    "suffix_words",
    "held_back",
    "never_a_pass",
    "no_interval",
    "beyond",
    "within",
    "floor_blocked",
    "undecided",
    "no_value",
    "count_rule",
    "identical",
    "identical_sides",
    "identical_untrusted",
    "one_run_note",
    "missing_mode",
    "not_comparable",
    "workload_differs",
    "machines_refused",
    "machines_differ",
    "untrusted_run",
    "held_inconclusive",
    "one_run_per_side",
    "steal_warning",
    "left_out_of_holm",
    "WARNING_ONLY",
    "NO_MODES",
]

#: how a metric is named in words (others by their own name)
LABELS: Mapping[str, str] = {"p99_9": "p99.9", "deliveries_per_s": "deliveries/s",
                             "target_cpu_per_1k": "target CPU/1k"}
#: the unit each metric is shown in
UNITS: Mapping[str, str] = {**{m: "ms" for m in LATENCY_METRICS}, "deliveries_per_s": "/s",
                            "target_cpu_per_1k": "cpu s/1k", **{m: "events" for m in COUNT_METRICS}}
_COUNT_NOUNS: Mapping[str, str] = {"lost": "lost events", "refused": "refused publishes",
                                   "duplicates": "duplicate deliveries"}

#: appended to a regression downgraded because the machines differ
WARNING_ONLY = "; the machines differ, so this is a warning only"
#: the one warning of a comparison with nothing to compare
NO_MODES = "neither document has a mode to compare"


def label(metric: str) -> str:
    """``p99_9`` -> ``p99.9``: a metric as people write it."""
    return LABELS.get(metric, metric)


def show(value: Any) -> str:
    """A fingerprint value in a sentence (mappings as ``{k: v}``, ``None`` as ``none``)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def signed_percent(value: float) -> str:
    """``+12 %``, ``-3.4 %``: one decimal below 10 %, none above."""
    return f"{value:+.1f} %" if abs(value) < 10 else f"{value:+.0f} %"


def _pct(ratio: float) -> str:
    return "+inf %" if math.isinf(ratio) else signed_percent((ratio - 1.0) * 100.0)


def count(value: float) -> str:
    """A count of events (``3``, ``2.5``, ``inf``)."""
    if math.isinf(value):
        return "inf"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _p_words(name: str, p: float) -> str:
    return f"{name} < 1e-15" if p <= 1e-15 else f"{name} = {p:.2g}"


def _interval_words(scale: str, interval: tuple[float, float] | None, confidence: float) -> str:
    if interval is None:
        return "no interval"
    lo, hi = interval
    level = f"{confidence * 100:g} %"
    if scale == "ratio":
        left = "unbounded" if lo <= 0 else _pct(lo)
        right = "unbounded" if math.isinf(hi) else _pct(hi)
    else:
        left = "unbounded" if math.isinf(lo) else f"{lo:+.3g}"
        right = "unbounded" if math.isinf(hi) else f"{hi:+.3g}"
    return f"{level} interval {left} … {right}"


def tolerance_words(metric: str, *, kind: str, tolerance: float, band: tuple[float, float] | None,
                    latency_floor_ms: float) -> str:
    """``15 %``, ``±0 events`` or ``15 % (raised to 20 % by the 1 ms floor)``."""
    if kind == "absolute":
        return f"±{count(tolerance)} {UNITS.get(metric, '')}".rstrip()
    base = f"{tolerance * 100:g} %"
    if metric in LATENCY_METRICS and band is not None and band[1] - 1.0 > tolerance + 1e-12:
        return f"{base} (raised to {(band[1] - 1.0) * 100:.3g} % by the {latency_floor_ms:g} ms floor)"
    return base


def _direction(metric: str, up: bool) -> str:
    if metric in LATENCY_METRICS:
        return "slower" if up else "faster"
    if metric in HIGHER_IS_BETTER:
        return "higher" if up else "lower"
    if metric in COUNT_METRICS:
        return "more" if up else "fewer"
    return "higher" if up else "lower"


def _size(metric: str, scale: str, estimate: float) -> str:
    if scale == "ratio":
        return f"{abs((estimate - 1.0) * 100):.1f} %"
    return f"{count(abs(estimate))} {UNITS.get(metric, '')}".rstrip()


def change_words(metric: str, *, scale: str, estimate: float, neutral: float,
                 interval: tuple[float, float] | None, confidence: float, p: float | None,
                 p_adjusted: float | None) -> str:
    """``p99 slower by 31.2 % (95 % interval +20 % … +44 %, p = 0.008, Holm-adjusted = 0.016)``.

    Args:
        p_adjusted: the Holm-adjusted p, given only when it is worth showing
            (a gated metric in a family of more than one).
    """
    p_part = ""
    if p is not None:
        p_part = f", {_p_words('p', p)}"
        if p_adjusted is not None:
            p_part += f", {_p_words('Holm-adjusted', p_adjusted)}"
    evidence = f"({_interval_words(scale, interval, confidence)}{p_part})"
    if abs(estimate - neutral) < 1e-12:
        return f"{label(metric)} the same on both sides {evidence}"
    return f"{label(metric)} {_direction(metric, estimate > neutral)} by {_size(metric, scale, estimate)} {evidence}"


def suffix_words(*, one_run: bool, note: str) -> str:
    """What every sentence of a metric ends with: how its interval was had, and that it rests on one run."""
    suffix = "; rests on one run per side" if one_run else ""
    return f" ({note}){suffix}" if note else suffix


def held_back(words: str, untrusted: str) -> str:
    """A rule's verdict held at inconclusive because a run cannot be trusted."""
    return f"{words}; but {untrusted}"


def never_a_pass(untrusted: str) -> str:
    """A tested metric of a run that cannot be trusted."""
    return f"{untrusted}; such a run is never a pass"


def no_interval(note: str, repeats: int | None) -> str:
    """A metric without an interval, and the repeats that would give one."""
    if repeats:
        return f"{note or 'no interval'}; run with --repeats {repeats} or more to compare runs"
    return note or "no interval"


def beyond(change: str, tolerance: str, suffix: str) -> str:
    """A regression or an improvement."""
    return f"{change}: beyond the {tolerance} tolerance{suffix}"


def within(change: str, tolerance: str, suffix: str) -> str:
    """Unchanged: the interval lies inside the tolerance band."""
    return f"{change}: the interval lies within the {tolerance} tolerance{suffix}"


def floor_blocked(change: str, *, n1: int, n2: int, alpha: float, alpha_eff: float, floor: float, family: int,
                  needed: int | None) -> str:
    """Inconclusive because so few runs cannot reach the (Holm-corrected) alpha whatever they show."""
    if floor > alpha:
        why = f"{n1} vs {n2} runs cannot reach p < {alpha:g} (the smallest possible p is {floor:.2g})"
    else:
        why = (f"with Holm over {family} gated metrics, {n1} vs {n2} runs cannot reach "
               f"p < {alpha_eff:.2g} (the smallest possible p is {floor:.2g})")
    if alpha_eff < alpha and floor > alpha:
        why += f"; with Holm over {family} gated metrics the first needs p < {alpha_eff:.2g}"
    advice = f"use --repeats {needed} or more" if needed else "use many more repeats"
    return f"{why}; {advice} ({change})"


def undecided(change: str, tolerance: str, suffix: str, *, metric: str, count_without_tolerance: bool,
              one_run: bool, repeats: int | None) -> str:
    """Inconclusive: neither clearly beyond nor clearly within the tolerance, and what would decide it."""
    if count_without_tolerance:
        noun = _COUNT_NOUNS.get(metric, metric)
        advice = (f"the baseline already has {noun}, so only a clear increase is called a regression "
                  f"(a tolerance for {metric} would allow 'unchanged')")
    elif one_run:
        advice = f"--repeats {repeats} would measure run-to-run variation" if repeats else "use --repeats"
    elif repeats is not None:
        advice = f"about {repeats} runs per side would decide"
    else:
        advice = f"more than {MAX_REPEATS} runs per side would be needed; the change is too close to the tolerance"
    return f"{change} is neither clearly beyond nor clearly within the {tolerance} tolerance; {advice}{suffix}"


def no_value(metric: str, missing: str) -> str:
    """A metric one side did not measure (``missing``: ``baseline``, ``new`` or both)."""
    return f"no {label(metric)} value in the {missing} run(s)"


def count_rule(metric: str, *, worst: float | None, runs: int, tolerance: float, regression: bool) -> str:
    """A count that was zero in every baseline run: what the new runs had (``worst`` None: none on either side)."""
    noun = _COUNT_NOUNS.get(metric, metric)
    if worst is None:
        return f"no {noun} on either side"
    where = "the new run" if runs == 1 else "the worst new run"
    if regression:
        return (f"{noun}: 0 in every baseline run, {count(worst)} in {where} "
                f"(any where the baseline had none is a regression)")
    return f"{noun}: 0 in every baseline run, {count(worst)} in {where}, within the tolerance of {count(tolerance)}"


def _value(metric: str, value: float) -> str:
    unit = UNITS.get(metric, "")
    if metric in COUNT_METRICS:
        text = count(value)
    else:
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text}/s" if unit == "/s" else f"{text} {unit}".rstrip()


def identical(metric: str, values: Sequence[float]) -> str:
    """A metric with the same values on both sides (the same runs): unchanged without a test."""
    if len(values) == 1:
        return f"{label(metric)} identical on both sides ({_value(metric, values[0])} in the one run of each)"
    low, high = min(values), max(values)
    span = _value(metric, low) if low == high else f"{_value(metric, low)} … {_value(metric, high)}"
    return f"{label(metric)} identical on both sides (the same {len(values)} run values, {span})"


def identical_sides(mode: str) -> str:
    """A mode whose two sides are the same runs (a file compared with itself)."""
    return f"{mode}: both sides hold the same runs (every metric equal)"


def identical_untrusted(mode: str, untrusted: Sequence[str]) -> str:
    """The warning of identical sides whose runs cannot be trusted: unchanged, but not a measurement to rely on."""
    return f"{mode}: unchanged because both sides are the same runs, but not a trustworthy measurement: " + \
        "; ".join(untrusted)


def one_run_note(metric: str, method: str, *, base_samples: int = 0, new_samples: int = 0, counted: str = "",
                 whole_seconds: bool = False) -> str:
    """How a one-run-per-side interval was had (``method``: ``order_statistic``, ``poisson``, ``counts``,
    ``no_histogram`` or ``none``)."""
    if method == "order_statistic":
        return f"order-statistic interval from {base_samples} vs {new_samples} {counted}"
    if method == "no_histogram":
        return "no histogram to read an interval from"
    if method == "poisson":
        return ("Poisson interval of the delivery counts, widened for whole-second windows" if whole_seconds
                else "Poisson interval of the delivery counts")
    if method == "counts":
        return "Poisson interval of the counts"
    return f"one run per side gives no interval for {label(metric)}"


def missing_mode(mode: str, where: str) -> str:
    """Why a mode is not comparable: one side lacks it (``where``: ``the baseline``, ``the new results``)."""
    return f"mode {mode} is missing from {where}"


def not_comparable(reasons: Sequence[str]) -> str:
    """The words of every metric of a mode that cannot be compared."""
    return "not comparable: " + "; ".join(reasons)


def workload_differs(diff: Sequence[tuple[str, Any, Any]]) -> str:
    """Why two runs are not comparable: the fingerprint fields that differ."""
    return "workload differs: " + "; ".join(f"{name} {show(a)} → {show(b)}" for name, a, b in diff)


def machines_refused(fields: Sequence[str]) -> str:
    """Why a mode is not comparable under ``strict_machine``."""
    return "machines differ: " + ", ".join(fields)


def machines_differ(fields: Sequence[str], *, refused: bool) -> str:
    """The warning of a comparison across machines."""
    return f"the machines differ ({', '.join(fields)}): " + (
        "refused because strict_machine is set" if refused else
        "regressions are reported as warnings, not failures; re-record the baseline on this machine")


def untrusted_run(side: str, reason: TrustReason) -> str:
    """Why one side's run cannot be trusted (``side``: ``baseline`` or ``new``), from the trust decision."""
    which = f"{side} run" if reason.run is None else f"{side} run {reason.run}"
    if reason.kind in (Distrust.HARNESS_SATURATED, Distrust.MACHINE_BUSY):
        return f"{which}'s harness was saturated ({reason.detail or 'no reason given'})"
    if reason.kind is Distrust.PUBLISHER_LAG:
        return (f"{which}'s publisher was behind schedule (lag p99 {reason.observed or 0.0:.1f} ms > "
                f"{reason.limit or 0.0:g} ms), so its latencies include the harness's own delay")
    if reason.kind is Distrust.HARNESS_WORKER_LOST:
        return f"{which}'s {reason.words()}: a fault of the harness, not the target"
    if reason.kind is Distrust.AUDIT_UNBALANCED:
        return f"{which}'s audit does not balance (expected != delivered + lost): a fault of the harness"
    if reason.kind is Distrust.CLOCK_UNCERTAIN:
        return f"{which}'s worker clocks were known too loosely ({reason.words()})"
    return f"{which} {reason.words()}"  # failed / is interrupted / was stopped early, with the run's own words


def held_inconclusive(mode: str, untrusted: Sequence[str]) -> str:
    """The warning of a mode whose runs cannot be trusted."""
    return f"{mode}: verdicts held at inconclusive because " + "; ".join(untrusted)


def one_run_per_side(mode: str) -> str:
    """The warning of a mode compared on one run per side."""
    return f"{mode}: one run per side; verdicts rest on one run (use --repeats 5 for a comparison of runs)"


def _span(values: Sequence[float]) -> str:
    if not values:
        return "not sampled"
    lo, hi = min(values) * 100, max(values) * 100
    return f"{lo:.1f} %" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f} %"


def steal_warning(mode: str, base: Sequence[float], new: Sequence[float]) -> str:
    """The warning of runs that lost CPU to the hypervisor (``base``/``new``: the runs' steal shares)."""
    return (f"{mode}: the hypervisor took CPU from this machine while it measured (steal {_span(base)} of CPU time "
            f"in the baseline runs, {_span(new)} in the new ones); latencies move with it on a shared VM, so "
            f"expect inconclusive verdicts -- a dedicated runner or more repeats decide them")


def left_out_of_holm(alpha: float, p_min: float) -> str:
    """Appended to a metric no split of its runs could make significant (ties, not the number of runs)."""
    return (f"; no split of these runs could reach p < {alpha:g} (smallest possible "
            f"{p_min:.2g}), so it is left out of the Holm correction")
