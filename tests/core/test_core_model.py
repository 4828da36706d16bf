"""The typed results model: a document is validated once, named field by field, and written back unchanged."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from deliverybench.core.model import (
    MIN_LAG_EVENTS,
    ModeResult,
    ResultsFormatError,
    ResultsVersionError,
    Run,
)
from deliverybench.core.results import dumps, load_run
from tests.fixtures.make_fixture import FIXTURE_PATH


@pytest.fixture()
def doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE_PATH.read_text())
    return data


def test_loading_and_writing_back_changes_nothing(doc: dict[str, Any]) -> None:
    run = Run.from_dict(doc)
    assert run.to_dict() == doc
    assert json.loads(dumps(run.to_dict())) == doc
    assert list(run.modes) == ["push", "callback", "poll"]


def test_the_model_answers_what_readers_ask(doc: dict[str, Any]) -> None:
    run = Run.from_dict(doc)
    push, callback, poll = run.mode("push"), run.mode("callback"), run.mode("poll")
    assert push.headline.count == push.throughput.deliveries == 10_000
    assert push.headline.p99 == doc["modes"]["push"]["summary"]["delivery"]["p99"]
    assert callback.audit.expected == callback.audit.count("delivered_unique") + callback.audit.count("lost")
    assert callback.audit.lost == 10 and callback.audit.refused == 1
    assert poll.harness.saturated and not push.harness.saturated
    # the poller's own counters (poll_empty), which the report once read under another name
    assert poll.poll.empty_polls == doc["modes"]["poll"]["extra"]["poll_empty"] == 80
    assert poll.poll.requests == 800 and poll.poll.gaps == 0
    assert push.runs == (push,)
    target_cpu = doc["modes"]["push"]["resources"]["costs"]["target"]["cpu_s"]
    assert push.cpu_per_1k("target") == pytest.approx(target_cpu / 10)
    assert push.resources.cpu_s("nobody") is None
    with pytest.raises(KeyError, match="no mode 'burst'.*push, callback, poll"):
        run.mode("burst")


def test_a_schedule_lag_needs_enough_events_to_mean_anything() -> None:
    few = ModeResult.from_dict({"mode": "push", "summary": {"schedule_lag": {"count": 10, "p99": 40.0}}})
    many = ModeResult.from_dict({"mode": "push",
                                 "summary": {"schedule_lag": {"count": MIN_LAG_EVENTS, "p99": 40.0}}})
    assert few.schedule_lag_p99 is None and many.schedule_lag_p99 == 40.0


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = bad
    for key in parents:
        node = node[key]
    node[last] = value
    return bad


@pytest.mark.parametrize("path, value, words", [
    ("modes.push.summary.delivery.p99", float("nan"), "modes.push.summary.delivery.p99: must be a finite number"),
    ("modes.push.summary.delivery.p99", float("inf"), "modes.push.summary.delivery.p99: must be a finite number"),
    ("modes.push.summary.delivery.p99", 10**400, "modes.push.summary.delivery.p99: number out of range"),
    ("modes.push.throughput.deliveries_per_s", float("nan"), "throughput.deliveries_per_s: must be a finite"),
    ("modes.callback.audit.lost", 10**400, "modes.callback.audit.lost: must be a whole number >= 0 and < 2**63"),
    ("modes.callback.audit.lost", -3, "modes.callback.audit.lost: must be a whole number >= 0"),
    ("modes.callback.audit.expected", "NaN", "modes.callback.audit.expected: must be a whole number"),
    ("modes.poll.harness.saturated", "yes", "modes.poll.harness.saturated: must be true or false"),
    ("modes.poll.status", "great", "modes.poll.status: must be one of ok, degraded, failed, interrupted"),
    ("modes.push.series.rows", [[1, 2]], "modes.push.series.rows[0]: must be a list of 11 values"),
    ("modes.push.extra.echo_sent", float("inf"), "modes.push.extra.echo_sent: must be a finite number"),
    ("config.rate", float("nan"), "config.rate: must be a finite number"),
    ("modes.poll.extra.poll_empty", -1, "modes.poll.extra.poll_empty: must be a whole number >= 0"),
    ("modes.push.extra.publisher", {"requests": "many"}, "modes.push.extra.publisher.requests: must be a whole"),
    ("run", [], "results document lacks 'run'"),
])
def test_bad_values_are_refused_naming_the_field(doc: dict[str, Any], path: str, value: Any, words: str) -> None:
    with pytest.raises(ResultsFormatError, match=None) as caught:
        Run.from_dict(_set(doc, path, value))
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_cut_histogram_is_refused_at_load(doc: dict[str, Any]) -> None:
    slices = doc["modes"]["push"]["histograms"]["slices"]["delivery"]
    second = next(iter(slices))
    slices[second] = slices[second][:-3]
    with pytest.raises(ResultsFormatError, match=f"slices.delivery.{second}: histogram is not valid base64"):
        Run.from_dict(doc)


def test_nan_in_the_text_of_a_file_is_refused_and_never_written(doc: dict[str, Any]) -> None:
    text = json.dumps(doc).replace('"p99_9": ', '"p99_9": NaN, "was": ', 1)
    with pytest.raises(ResultsFormatError, match="must be a finite number"):
        load_run(text)
    with pytest.raises(ResultsFormatError):
        dumps(_set(doc, "modes.push.summary.delivery.p50", float("inf")))


def test_another_schema_version_names_the_version(doc: dict[str, Any]) -> None:
    with pytest.raises(ResultsVersionError, match="schema_version 3 is not supported.*reads version 2"):
        Run.from_dict({**doc, "schema_version": 3})
    with pytest.raises(ResultsFormatError, match="not a deliverybench results document"):
        Run.from_dict({"tool": "other"})
    with pytest.raises(ResultsFormatError, match="not JSON"):
        load_run('{"tool": ')
    with pytest.raises(ResultsFormatError, match="nested too deeply"):
        load_run("[" * 100_000 + "]" * 100_000)


def test_a_decided_status_is_written_even_when_the_source_had_none() -> None:
    result = ModeResult.from_dict({"mode": "push"})
    decided = result.with_status("degraded", ["lost 1 %"])
    assert decided.to_dict() == {"mode": "push", "status": "degraded", "status_reasons": ["lost 1 %"]}
    with pytest.raises(ValueError, match="unknown status"):
        result.with_status("fine", [])
