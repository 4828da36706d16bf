"""deliverybench.core.plan: the values derived from a run's options, worked out once."""

from __future__ import annotations

from typing import Any

import pytest

from deliverybench.core.options import OPTIONS, PROFILES
from deliverybench.core.plan import MAX_BATCH, RunPlan, plan_run
from deliverybench.core.schedule import Schedule

DEFAULTS: dict[str, Any] = {o.dest: o.default for o in OPTIONS}


def plan(accepts_batches: bool = True, **changes: Any) -> RunPlan:
    return plan_run({**DEFAULTS, **changes}, accepts_batches=accepts_batches)


def test_defaults_give_the_documented_stream_and_bounds() -> None:
    p = plan()  # 500 subscribers at 250/s, 5 events/s for 20 s, settle 1, drain 3
    assert p.schedule == Schedule(kind="constant", rate=5.0, duration_s=20.0, burst_size=100, burst_interval_s=1.0,
                                  rate_end=None, seed=0, max_events=None)
    assert p.warmup is None
    assert p.id_limit == 100
    assert p.spawn_s == 2.0
    assert p.locust_bound_s == 1 + 20 + 3 + 2 + 120 == 146
    assert p.parent_timeout_s == 1 + 20 + 3 + 2 + 240 == 266
    assert p.publish_wait_s == 20 + 0 + 10 + 30 == 60


def test_the_ci_profile() -> None:
    p = plan(**{k: v for k, v in PROFILES["ci"].items() if k != "modes"})
    assert p.warmup == Schedule(kind="constant", rate=5.0, duration_s=2.0, burst_size=100, burst_interval_s=1.0)
    assert p.schedule.duration_s == 5.0 and p.schedule.expected_count == 25
    assert p.id_limit == 35  # the warm-up's 10 events come first, then the measured 25
    assert p.spawn_s == 1.0
    assert p.locust_bound_s == 0.5 + 5 + 2 + 1 + 120
    assert p.parent_timeout_s == 0.5 + 5 + 2 + 1 + 240
    assert p.publish_wait_s == 5 + 2 + 10 + 30


def test_the_warmup_ignores_the_event_cap_and_the_id_limit_counts_both_streams() -> None:
    p = plan(rate=10.0, duration=3.0, warmup=1.5, max_events=7)
    assert p.schedule.max_events == 7 and p.schedule.expected_count == 7
    assert p.warmup is not None and p.warmup.max_events is None and p.warmup.expected_count == 15
    assert p.id_limit == 45  # 4.5 s at 10/s: the cap does not shorten the range of ids


def test_without_warmup_the_id_limit_is_the_capped_stream() -> None:
    assert plan(rate=10.0, duration=3.0, max_events=7).id_limit == 7


def test_the_id_limit_is_never_zero() -> None:
    assert plan(rate=0.1, duration=1.0).id_limit == 1  # one event at offset 0
    assert plan(max_events=0, rate=5.0, duration=0.1).id_limit == 1


def test_bursts_count_every_event_of_every_burst() -> None:
    p = plan(schedule="burst", burst_size=5000, burst_interval=1.0, duration=5.0)
    assert p.id_limit == 25_000


@pytest.mark.parametrize("given, accepts, batch", [(0, True, MAX_BATCH), (0, False, 1), (50, True, 50),
                                                    (50, False, 50), (1, True, 1)])
def test_batch_size_follows_the_option_then_the_target(given: int, accepts: bool, batch: int) -> None:
    assert plan(accepts, publish_batch=given).batch == batch


def test_a_locustfile_s_values_count_no_spawning() -> None:
    # Locust's own -u is num_users, not subscribers; a burst has no warmup, batch or publish timeout
    values = {k: v for k, v in DEFAULTS.items() if k not in ("subscribers", "warmup", "publish_batch",
                                                              "publish_timeout")}
    values["spawn_rate"] = 10.0
    p = plan_run(values, accepts_batches=False)
    assert p.spawn_s == 0.0 and p.batch == 1 and p.warmup is None
    assert p.locust_bound_s == 1 + 20 + 3 + 120
    assert p.publish_wait_s == 20 + 30


def test_bad_values_raise() -> None:
    with pytest.raises(ValueError):
        plan(rate=-1.0)
    with pytest.raises(KeyError):
        plan_run({"rate": 5.0}, accepts_batches=False)


def test_the_plan_is_frozen() -> None:
    with pytest.raises(AttributeError):
        plan().batch = 3  # type: ignore[misc]
