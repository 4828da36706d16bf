"""A mode's status and its reasons, from synthetic mode results: nothing hides behind ``ok``."""

from __future__ import annotations

from typing import Any

import pytest

from deliverybench.core.status import PUBLISHER_LAG_LIMIT_MS, assess, document_status


def result(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "mode": "push", "status": "ok", "params": {"subscribers": 10},
        "audit": {"scheduled": 100, "published": 100, "accepted": 100, "refused": 0, "subscribers": 10,
                  "subscribers_never_connected": 0, "expected": 1000, "delivered_unique": 1000, "lost": 0,
                  "balanced": True, "recorded_matches": True},
        "errors": {}, "harness": {"saturated": False}, "summary": {}, "warnings": [],
    }
    for key, value in parts.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def test_a_clean_run_is_ok_with_no_reasons() -> None:
    assert assess(result()) == ("ok", [])


@pytest.mark.parametrize("parts, reason", [
    ({"audit": {"lost": 730, "delivered_unique": 270}}, "lost 73 % (730 of 1,000 expected deliveries)"),
    ({"audit": {"accepted": 84, "refused": 16}}, "refused 16 % (16 of 100 published events)"),
    ({"audit": {"published": 90, "accepted": 90}}, "10 scheduled events never published"),
    ({"audit": {"subscribers_never_connected": 3}}, "3 of 10 subscribers never connected"),
    ({"audit": {"subscribers": 7}}, "only 7 of 10 subscribers took part"),
    ({"errors": {"closed_1006": 40}}, "40 sessions dropped"),
    ({"errors": {"malformed_event": 2000}}, "2,000 malformed messages"),
    ({"errors": {"poll_timeout": 3, "weird": 1}}, "4 errors (poll_timeout ×3, weird ×1)"),
    ({"harness": {"saturated": True}}, "harness saturated"),
    ({"summary": {"schedule_lag": {"p99": PUBLISHER_LAG_LIMIT_MS * 3, "count": 5000}}},
     "publisher behind its schedule (schedule lag p99 15.0 ms)"),
    ({"warnings": ["target was not healthy after the run"]}, "target was not healthy after the run"),
    ({"audit": {"balanced": False}}, "the audit does not balance"),
])
def test_each_problem_degrades_the_run_and_says_why(parts: dict[str, Any], reason: str) -> None:
    status, reasons = assess(result(**parts))
    assert status == "degraded"
    assert reasons == [reason]


def test_publisher_errors_are_said_once_as_refusals() -> None:
    status, reasons = assess(result(audit={"accepted": 95, "refused": 5}, errors={"publish_http_503": 5}))
    assert (status, reasons) == ("degraded", ["refused 5 % (5 of 100 published events)"])


def test_waiting_for_the_target_is_not_the_publishers_fault() -> None:
    # send - due includes waiting for a free connection (back-pressure): a finding, shown, not a harness fault
    assert assess(result(summary={"publish_lag": {"p99": 900.0}, "schedule_lag": {"p99": 0.4}})) == ("ok", [])


def test_failed_and_interrupted_are_kept_with_their_reasons() -> None:
    assert assess(result(status="failed", audit={"lost": 10, "delivered_unique": 990})) == (
        "failed", ["lost 1 % (10 of 1,000 expected deliveries)"])
    assert assess(result(status="interrupted")) == ("interrupted", [])


def test_bursts_are_not_short_of_subscribers() -> None:
    burst = result(mode="burst", params={"subscribers": 100}, audit={"subscribers": 1})
    assert assess(burst) == ("ok", [])


@pytest.mark.parametrize("statuses, expected", [
    (["ok", "ok"], "ok"), (["ok", "degraded"], "degraded"), (["ok", "failed"], "incomplete"),
    (["failed"], "failed"), (["degraded", "interrupted"], "interrupted"), ([], "failed"),
])
def test_a_runs_status_is_its_worst_modes(statuses: list[str], expected: str) -> None:
    assert document_status(statuses) == expected
