"""A mode's status, with its reasons: nothing hides behind ``ok``.

``ok`` means the stream was measured and nothing went wrong: nothing lost or
refused, every subscriber connected and stayed, no malformed input, no
warning, and neither the harness nor its publisher was the bottleneck.
Anything else is ``degraded`` with reasons in plain words (``lost 73 %``,
``refused 16 %``, ``40 sessions dropped``, ``harness saturated``) -- still a
finding, not a failure: loss is what a user runs the tool to find. ``failed``
(nothing measured) and ``interrupted`` (stopped from outside) are decided by
whoever ran the mode and are kept, with the same reasons added.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["STATUSES", "PUBLISHER_LAG_LIMIT_MS", "SCHEDULE_LAG_METRIC", "MIN_LAG_EVENTS", "schedule_lag_p99",
           "assess", "document_status"]

#: every status a mode can have
STATUSES = ("ok", "degraded", "failed", "interrupted")
#: schedule lag (event handed to the pool - due) p99 above this means the harness itself could
#: not keep to the schedule; waiting for a free connection (the target's back-pressure) is not counted
PUBLISHER_LAG_LIMIT_MS = 5.0
#: the summary metric that limit applies to
SCHEDULE_LAG_METRIC = "schedule_lag"
#: a lag p99 says the publisher could not keep up only when it rests on this many events (ten of
#: them beyond it). Over the 160 events of the CI profile it is the second-worst event: a few ms of
#: scheduler jitter on a shared machine, which a saturated harness shows as CPU saturation anyway.
MIN_LAG_EVENTS = 1000


def schedule_lag_p99(result: Mapping[str, Any]) -> float | None:
    """The run's schedule-lag p99 in ms, when it rests on enough events to mean anything."""
    lag = (result.get("summary") or {}).get(SCHEDULE_LAG_METRIC) or {}
    p99, count = lag.get("p99"), lag.get("count") or 0
    if isinstance(p99, (int, float)) and not isinstance(p99, bool) and count >= MIN_LAG_EVENTS:
        return float(p99)
    return None

#: error kinds, by prefix, and how to say how many there were
_ERROR_FAMILIES: tuple[tuple[str, str], ...] = (
    ("closed_", "{n:,} sessions dropped"),
    ("connect_emfile", "{n:,} connections refused by the open-files limit (EMFILE: raise ulimit -n or use "
                       "--processes)"),
    ("connect_", "{n:,} connection attempts failed"),
    ("subscribe_failed", "{n:,} subscriptions failed"),
    ("poll_start_failed", "{n:,} pollers could not start"),
    ("malformed_", "{n:,} malformed messages"),
    ("unexpected_id", "{n:,} events with ids outside the stream"),
    ("rejected_", "{n:,} deliveries with a bad signature or timestamp"),
)


def _pct(part: float, whole: float) -> str:
    share = 100.0 * part / whole if whole else 0.0
    if share >= 10 or share == 0:
        return f"{share:.0f} %"
    return f"{share:.2g} %" if share >= 0.01 else "<0.01 %"


def _error_reasons(errors: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    families: dict[str, int] = {}
    others: dict[str, int] = {}
    for kind, count in errors.items():
        n = int(count)
        if n <= 0 or str(kind).startswith("publish_"):
            continue  # the publisher's errors are the refused events, said once
        for prefix, _ in _ERROR_FAMILIES:
            if str(kind).startswith(prefix):
                families[prefix] = families.get(prefix, 0) + n
                break
        else:
            others[str(kind)] = n
    for prefix, phrase in _ERROR_FAMILIES:
        if prefix in families:
            reasons.append(phrase.format(n=families[prefix]))
    if others:
        listed = ", ".join(f"{kind} ×{n:,}" for kind, n in sorted(others.items(), key=lambda kv: -kv[1]))
        reasons.append(f"{sum(others.values()):,} errors ({listed})")
    return reasons


def assess(result: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The status and reasons of one mode result (see the module docstring).

    Reads ``status`` (as decided by whoever ran the mode), ``audit``,
    ``errors``, ``harness``, ``summary`` (publisher lag), ``params`` and
    ``warnings``; returns a new ``(status, reasons)`` pair.
    """
    given = str(result.get("status", "ok"))
    reasons: list[str] = []
    audit = result.get("audit") or {}
    expected = int(audit.get("expected", 0) or 0)
    lost = int(audit.get("lost", 0) or 0)
    if lost:
        reasons.append(f"lost {_pct(lost, expected)} ({lost:,} of {expected:,} expected deliveries)")
    published = int(audit.get("published", 0) or 0)
    refused = int(audit.get("refused", 0) or 0)
    if refused:
        reasons.append(f"refused {_pct(refused, published)} ({refused:,} of {published:,} published events)")
    unpublished = int(audit.get("scheduled", 0) or 0) - published
    if unpublished > 0 and given != "failed":
        reasons.append(f"{unpublished:,} scheduled events never published")
    never = int(audit.get("subscribers_never_connected", 0) or 0)
    wanted = int((result.get("params") or {}).get("subscribers", 0) or 0)
    if never:
        reasons.append(f"{never:,} of {wanted or audit.get('subscribers', 0):,} subscribers never connected")
    elif wanted and audit and int(audit.get("subscribers", 0) or 0) < wanted and result.get("mode") != "burst":
        reasons.append(f"only {int(audit.get('subscribers', 0)):,} of {wanted:,} subscribers took part")
    reasons += _error_reasons(result.get("errors") or {})
    if audit and not audit.get("balanced", True):
        reasons.append("the audit does not balance")
    if audit and not audit.get("recorded_matches", True):
        reasons.append("recorded deliveries do not match the audit")
    harness = result.get("harness") or {}
    if harness.get("saturated"):
        reasons.append("harness saturated")
    lag = schedule_lag_p99(result)
    if lag is not None and lag > PUBLISHER_LAG_LIMIT_MS:
        reasons.append(f"publisher behind its schedule (schedule lag p99 {lag:,.1f} ms)")
    for warning in result.get("warnings") or ():
        reasons.append(str(warning))
    if given in ("failed", "interrupted"):
        return given, reasons
    return ("degraded" if reasons else "ok"), reasons


def document_status(statuses: list[str]) -> str:
    """A run's status from its modes': the worst one, ``incomplete`` when only some failed."""
    if not statuses:
        return "failed"
    if "interrupted" in statuses:
        return "interrupted"
    if all(s == "failed" for s in statuses):
        return "failed"
    if "failed" in statuses:
        return "incomplete"
    return "degraded" if "degraded" in statuses else "ok"
