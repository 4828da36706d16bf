"""Marks for the fast subset, and one time scale for every test time limit.

``pytest -m "not e2e"`` is the fast subset: no Locust run, no server started in a subprocess, no
Chromium, no nginx. The marks are given here rather than in each file so that what counts as e2e or
slow is decided in one place, from measurements (``pytest --durations=0`` on the shared 2-core
machine); tests/test_tooling.py checks that every name below still exists.

pytest-timeout's limit (pyproject's ``timeout``, ``--timeout``, ``PYTEST_TIMEOUT`` or a test's own
``timeout`` mark) is multiplied by DELIVERYBENCH_TEST_TIME_SCALE, the factor tests/helpers.py applies
to the subprocess limits.
"""

from __future__ import annotations

import os

import pytest
from helpers import TIME_SCALE

__all__ = ["E2E_MODULES", "E2E_TESTS", "SLOW_MODULES", "SLOW_TESTS"]

#: modules whose every test starts real processes: Locust runs, run_bench.py, the built-in targets
#: or the callback target as subprocesses, nginx + nchan, adnanh/webhook
E2E_MODULES = frozenset({
    "test_callback_target.py",
    "test_gate_e2e.py",
    "test_installed.py",
    "test_locust_direct.py",
    "test_longpoll.py",
    "test_publisher_e2e.py",
    "test_push_e2e.py",
    "test_reliability.py",
    "test_sweep_e2e.py",
    "test_target_streams.py",
    "test_targets.py",
    "test_transports_e2e.py",
    "test_webhook_e2e.py",
    "test_plugin.py",
    "test_protocols_e2e.py",
})

#: single e2e tests in modules that are otherwise in-process
E2E_TESTS = frozenset({
    "test_publish_pools.py::test_real_nats_server_takes_every_pub_and_a_subscriber_sees_each_event",  # nats-server
    "test_options.py::test_web_ui_form_is_checked_with_the_same_line",  # Locust's web UI in a subprocess
    "test_report.py::test_browser_loads_offline_without_errors",  # Chromium
    "test_report.py::test_browser_screenshot",  # Chromium
})

#: modules whose every test took 5 s or more
SLOW_MODULES = frozenset({
    "test_installed.py",
    "test_locust_direct.py",
    "test_publisher_e2e.py",
    "test_webhook_e2e.py",
})

#: single tests that took 2.5 s or more (setup + call + teardown; a parametrized test when most of its cases did)
SLOW_TESTS = frozenset({
    "test_gate_e2e.py::test_a_broken_objective_fails_without_a_baseline_too",
    "test_gate_e2e.py::test_a_slower_target_is_a_regression_named_in_markdown_and_junit",
    "test_gate_e2e.py::test_an_other_workload_is_not_comparable",
    "test_gate_e2e.py::test_identical_settings_pass",
    "test_http_post.py::test_a_consumer_that_does_not_answer_times_out",
    "test_push_e2e.py::test_echo_round_trip_is_recorded",
    "test_push_e2e.py::test_every_subscriber_gets_every_event_exactly_once",
    "test_push_e2e.py::test_external_relay_target",
    "test_push_e2e.py::test_known_target_delay_shows_in_percentiles",
    "test_push_e2e.py::test_processes_merge_exactly",
    "test_push_e2e.py::test_run_bench_end_to_end",
    "test_push_e2e.py::test_run_bench_with_a_relative_out_folder",
    "test_push_e2e.py::test_target_vanishing_mid_run_is_reported_not_hung_on",
    "test_reliability.py::test_a_killed_run_bench_takes_its_children_with_it",
    "test_reliability.py::test_a_signal_stops_the_run_writes_what_was_measured_and_leaves_nothing",
    "test_reliability.py::test_a_subscribe_url_that_can_never_connect_fails_fast_naming_the_error",
    "test_reliability.py::test_every_burst_attempt_ends_in_exactly_one_class",
    "test_reliability.py::test_hostile_frames_are_counted_by_kind_and_never_stop_recording",
    "test_reliability.py::test_the_webhook_secret_is_written_nowhere",
    "test_reliability.py::test_two_runs_never_share_a_folder_and_results_are_never_overwritten_silently",
    "test_report.py::test_fixture_is_what_make_fixture_builds",  # builds the whole fixture document
    "test_sweep_e2e.py::test_a_grid_fails_above_capacity_and_resume_runs_only_what_is_missing",
    "test_sweep_e2e.py::test_a_point_the_harness_cannot_publish_on_time_is_invalid_not_a_pass",
    "test_sweep_e2e.py::test_the_search_brackets_the_known_capacity_and_latency_rises_toward_it",
    "test_sweep_report.py::test_the_index_is_what_a_sweep_writes",
})

_TESTS = os.path.dirname(os.path.abspath(__file__))


def _names(item: pytest.Item) -> tuple[str, str]:
    """``(module, module::function)`` relative to tests/, without parameters, as the lists above spell them."""
    module = os.path.relpath(str(item.path), _TESTS).replace(os.sep, "/")
    function = item.nodeid.split("::", 1)[1].split("[", 1)[0] if "::" in item.nodeid else ""
    return module, f"{module}::{function}"


def _default_timeout(config: pytest.Config) -> float | None:
    """pytest-timeout's own order: ``--timeout``, then PYTEST_TIMEOUT, then the ini value."""
    for raw in (config.getoption("timeout", None), os.environ.get("PYTEST_TIMEOUT"), config.getini("timeout")):
        if raw not in (None, ""):
            return float(raw)
    return None


def _scale_timeout(item: pytest.Item, default: float | None) -> None:
    marker = item.get_closest_marker("timeout")
    args, kwargs = (list(marker.args), dict(marker.kwargs)) if marker is not None else ([], {})
    if args:
        base = args.pop(0)
    else:
        base = kwargs.pop("timeout", default)
    if base is None or float(base) <= 0:  # no limit stays no limit
        return
    item.add_marker(pytest.mark.timeout(float(base) * TIME_SCALE, *args, **kwargs), append=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scale_timeouts = config.pluginmanager.hasplugin("timeout")
    default = _default_timeout(config) if scale_timeouts else None
    for item in items:
        module, test = _names(item)
        if module in E2E_MODULES or test in E2E_TESTS:
            item.add_marker(pytest.mark.e2e)
        if module in SLOW_MODULES or test in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if scale_timeouts:
            _scale_timeout(item, default)
