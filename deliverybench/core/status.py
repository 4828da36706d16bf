"""A mode's status, with its reasons: nothing hides behind ``ok``.

``ok`` means the stream was measured and nothing went wrong: nothing lost or
refused, every subscriber connected and stayed, no malformed input, no
warning, and neither the harness nor its publisher was the bottleneck.
Anything else is ``degraded`` with reasons in plain words (``lost 73 %``,
``refused 16 %``, ``40 sessions dropped``, ``harness saturated``, ``harness
worker died, 50 subscribers unmeasured``) -- still a finding, not a
failure: loss is what a user runs the tool to find. ``failed``
(nothing measured) and ``interrupted`` (stopped from outside) are decided by
whoever ran the mode and are kept, with the same reasons added.

Whether the harness could be trusted is not decided here but by
:func:`~deliverybench.core.trust.trust`, which the gate and sweeps ask too;
this module only words its reasons among the findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import MIN_LAG_EVENTS, SCHEDULE_LAG_METRIC, STATUSES, ModeResult
from .trust import PUBLISHER_LAG_LIMIT_MS, Distrust, trust

__all__ = ["STATUSES", "PUBLISHER_LAG_LIMIT_MS", "SCHEDULE_LAG_METRIC", "MIN_LAG_EVENTS", "as_mode_result",
           "assess", "decide", "document_status"]

#: error kinds, by prefix, and how to say how many there were
_ERROR_FAMILIES: tuple[tuple[str, str], ...] = (
    ("closed_", "{n:,} sessions dropped"),
    ("connect_emfile", "{n:,} connections refused by the open-files limit (EMFILE: raise ulimit -n or use "
                       "--processes)"),
    ("connect_fd_budget", "{n:,} sessions not opened: a harness process held all its open-files limit allows "
                          "(use more --processes)"),
    ("connect_", "{n:,} connection attempts failed"),
    ("sse_not_event_stream", "{n:,} event-stream requests answered with something other than text/event-stream"),
    ("sse_", "{n:,} event streams cut off: malformed or over their bounds"),
    ("longpoll_timeout", "{n:,} long-poll requests not answered within their hold and --open-timeout"),
    ("longpoll_http_", "{n:,} long-poll requests answered with an error status"),
    ("longpoll_", "{n:,} long-poll request errors (closed, refused, malformed or untrusted answers)"),
    ("subscribe_failed", "{n:,} subscriptions failed"),
    ("poll_start_failed", "{n:,} pollers could not start"),
    ("malformed_request", "{n:,} callback requests that were not valid HTTP (400)"),
    ("malformed_", "{n:,} malformed messages"),
    ("unexpected_id", "{n:,} events with ids outside the stream"),
    ("rejected_", "{n:,} deliveries with a bad signature or timestamp"),
    ("oversized_body", "{n:,} callback requests over the body cap refused (413)"),
    ("receiver_busy", "{n:,} callback requests refused: the harness receiver's body budget was full (503)"),
    ("truncated_body", "{n:,} callback bodies cut off by their sender"),
    ("oversized_headers", "{n:,} callback requests with headers over the cap refused (431)"),
    ("too_many_headers", "{n:,} callback requests with too many headers refused (431)"),
    ("request_timeout", "{n:,} callback requests too slow to arrive, closed (408)"),
    ("not_found", "{n:,} callback requests to an unknown path (404)"),
    ("method_not_allowed", "{n:,} callback requests with a method other than POST (405)"),
    ("receiver_internal", "{n:,} callback requests the harness receiver failed on (500: a harness bug)"),
    # the harness's own failure, never the target's: what the dead process measured is not in the audit
    ("harness_worker_lost", "{harness_workers} died, {unmeasured:,} subscribers unmeasured"),
)


def as_mode_result(result: ModeResult | Mapping[str, Any]) -> ModeResult:
    """A mode result as the typed model (validated here when it arrives as a plain mapping)."""
    return result if isinstance(result, ModeResult) else ModeResult.from_dict(result)


def _pct(part: float, whole: float) -> str:
    share = 100.0 * part / whole if whole else 0.0
    if share >= 10 or share == 0:
        return f"{share:.0f} %"
    return f"{share:.2g} %" if share >= 0.01 else "<0.01 %"


def _error_reasons(errors: Mapping[str, int], *, unmeasured: int = 0) -> list[str]:
    reasons: list[str] = []
    families: dict[str, int] = {}
    others: dict[str, int] = {}
    for kind, n in errors.items():
        if n <= 0 or kind.startswith("publish_"):
            continue  # the publisher's errors are the refused events, said once
        for prefix, _ in _ERROR_FAMILIES:
            if kind.startswith(prefix):
                families[prefix] = families.get(prefix, 0) + n
                break
        else:
            others[kind] = n
    for prefix, phrase in _ERROR_FAMILIES:
        if prefix in families:
            n = families[prefix]
            reasons.append(phrase.format(n=n, unmeasured=unmeasured,
                                         harness_workers="harness worker" if n == 1 else f"{n:,} harness workers"))
    if others:
        listed = ", ".join(f"{kind} ×{n:,}" for kind, n in sorted(others.items(), key=lambda kv: -kv[1]))
        reasons.append(f"{sum(others.values()):,} errors ({listed})")
    return reasons


def _findings(result: ModeResult) -> list[str]:
    """What the run found wrong with the delivery itself: loss, refusals, absent subscribers, errors."""
    reasons: list[str] = []
    audit = result.audit
    expected, lost = audit.count("expected"), audit.count("lost")
    if lost:
        reasons.append(f"lost {_pct(lost, expected)} ({lost:,} of {expected:,} expected deliveries)")
    published, refused = audit.count("published"), audit.count("refused")
    if refused:
        reasons.append(f"refused {_pct(refused, published)} ({refused:,} of {published:,} published events)")
    unpublished = audit.count("scheduled") - published
    if unpublished > 0 and result.status != "failed":
        reasons.append(f"{unpublished:,} scheduled events never published")
    never = audit.count("subscribers_never_connected")
    wanted = result.params.subscribers or 0
    unmeasured = audit.count("subscribers_unmeasured")  # they took part: a dead harness process lost their records
    if never:
        reasons.append(f"{never:,} of {wanted or audit.count('subscribers'):,} subscribers never connected")
    elif (wanted and audit.present and audit.count("subscribers") + unmeasured < wanted
          and result.mode != "burst"):
        reasons.append(f"only {audit.count('subscribers'):,} of {wanted:,} subscribers took part")
    return reasons + _error_reasons(result.errors, unmeasured=unmeasured)


def decide(result: ModeResult) -> ModeResult:
    """``result`` with its status and reasons decided (the one place a mode's status is set)."""
    reasons = _findings(result)
    verdict = trust(result)
    if verdict.has(Distrust.AUDIT_UNBALANCED):
        reasons.append("the audit does not balance")
    if result.audit.present and not result.audit.recorded_matches:
        reasons.append("recorded deliveries do not match the audit")
    if verdict.has(Distrust.HARNESS_SATURATED):
        reasons.append("harness saturated")
    if verdict.has(Distrust.MACHINE_BUSY):
        reasons.append("machine busy: the harness waited for CPU")
    for lag in verdict.of_kind(Distrust.PUBLISHER_LAG):
        reasons.append(f"publisher behind its schedule (schedule lag p99 {lag.observed or 0:,.1f} ms)")
    reasons += [clock.words() for clock in verdict.of_kind(Distrust.CLOCK_UNCERTAIN)]
    reasons += result.warnings
    if result.status in ("failed", "interrupted"):
        return result.with_status(result.status, reasons)
    return result.with_status("degraded" if reasons else "ok", reasons)


def assess(result: ModeResult | Mapping[str, Any]) -> tuple[str, list[str]]:
    """The status and reasons of one mode result (see the module docstring and :func:`decide`).

    Reads the status as decided by whoever ran the mode (kept when ``failed``
    or ``interrupted``), the audit, errors, harness check, publisher lag,
    params and warnings.
    """
    decided = decide(as_mode_result(result))
    return decided.status, list(decided.status_reasons)


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
