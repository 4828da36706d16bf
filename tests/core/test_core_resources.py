"""deliverybench.core.resources: interpreting synthetic psutil samples."""

from __future__ import annotations

import pytest

from deliverybench.core.resources import (
    MACHINE_ROLE,
    STEAL_ROLE,
    one_per_second,
    SAMPLE_COLUMNS,
    RoleCost,
    Sample,
    costs_to_dict,
    harness_saturation,
    role_costs,
    samples_from_rows,
    steal_fraction,
)

MB = 1 << 20


def s(t: float, pid: int, cpu_s: float, pct: float, rss: int, role: str = "harness", conns: int = -1) -> Sample:
    return Sample(t, role, pid, cpu_s, pct, rss, conns)


# -- Sample ---------------------------------------------------------------------


def test_sample_row_round_trip() -> None:
    sample = Sample(1764245000.123456, "target", 4242, 12.345678, 87.654, 123 * MB, 17)
    row = sample.to_row()
    assert len(row) == len(SAMPLE_COLUMNS)
    assert row == [1764245000.123, "target", 4242, 12.3457, 87.7, 123 * MB, 17]
    back = Sample.from_row(row)
    assert back == Sample(1764245000.123, "target", 4242, 12.3457, 87.7, 123 * MB, 17)
    assert samples_from_rows([row, row[:6]]) == [back, Sample(1764245000.123, "target", 4242, 12.3457, 87.7, 123 * MB)]
    assert Sample.from_row(row[:6]).connections == -1


# -- role_costs ---------------------------------------------------------------------


def test_role_costs_cpu_is_last_minus_first_per_pid_summed() -> None:
    samples = [
        # given out of order: costs must sort by time per pid
        s(2.0, 1, 12.5, 80, 120 * MB),
        s(0.0, 1, 10.0, 0, 100 * MB),
        s(1.0, 1, 11.0, 100, 150 * MB),
        s(0.0, 2, 3.0, 0, 50 * MB),
        s(1.0, 2, 3.25, 25, 40 * MB),
        s(2.0, 2, 4.0, 75, 90 * MB),
        s(0.0, 9, 100.0, 0, 500 * MB, role="target"),
        s(2.0, 9, 101.5, 75, 700 * MB, role="target"),
    ]
    costs = role_costs(samples)
    assert sorted(costs) == ["harness", "target"]
    harness = costs["harness"]
    assert harness.processes == 2
    assert harness.cpu_s == pytest.approx(2.5 + 1.0)
    # RSS summed per timestamp: 150, 190, 210 MB -- not max(pid1) + max(pid2) = 240 MB.
    assert harness.peak_rss_bytes == 210 * MB
    # cpu_percent of each pid's first sample covers no interval and is ignored.
    assert harness.max_cpu_percent == 100
    assert harness.mean_cpu_percent == pytest.approx((100 + 80 + 25 + 75) / 4)
    target = costs["target"]
    assert (target.processes, target.cpu_s, target.peak_rss_bytes) == (1, 1.5, 700 * MB)
    assert target.max_cpu_percent == 75 and target.mean_cpu_percent == 75


def test_role_costs_single_sample_and_empty() -> None:
    costs = role_costs([s(5.0, 1, 7.0, 50, 10 * MB)])
    assert costs["harness"] == RoleCost("harness", 1, 0.0, 10 * MB, 0.0, 0.0)
    assert role_costs([]) == {}


def test_role_costs_cpu_never_negative() -> None:
    # A pid whose counter went backwards (reused pid) cannot make the cost negative.
    costs = role_costs([s(0.0, 1, 10.0, 0, MB), s(1.0, 1, 2.0, 0, MB)])
    assert costs["harness"].cpu_s == 0.0


def test_costs_to_dict_rounds() -> None:
    cost = RoleCost("target", 2, 1.23456, 5 * MB, 99.96, 12.345)
    assert costs_to_dict({"target": cost}) == {
        "target": {"role": "target", "processes": 2, "cpu_s": 1.235, "peak_rss_bytes": 5 * MB,
                   "max_cpu_percent": 100.0, "mean_cpu_percent": 12.3}
    }


def test_peak_rss_not_doubled_by_two_samples_of_one_process_in_one_rounded_second() -> None:
    # The periodic flush at 99.8 s and the final flush at 100.2 s both round to 100.
    samples = [s(98.8, 1, 1.0, 0, 100 * MB), s(99.8, 1, 1.5, 50, 100 * MB), s(100.2, 1, 1.7, 50, 100 * MB)]
    assert role_costs(samples)["harness"].peak_rss_bytes == 100 * MB


# -- harness_saturation ---------------------------------------------------------------


def series(pid: int, percents: list[float], start: float = 0.0, role: str = "harness") -> list[Sample]:
    return [s(start + i, pid, float(i), p, MB, role=role) for i, p in enumerate(percents)]


def test_saturated_when_busy_fraction_above_limit() -> None:
    # first reading ignored; then 2 of 5 readings >= 90 % -> 0.4 > 0.2
    samples = series(11, [100, 95, 90, 50, 50, 50]) + series(12, [0, 10, 10, 10, 10, 10])
    verdict = harness_saturation(samples)
    assert verdict.saturated
    assert verdict.busiest_pid == 11
    assert verdict.busy_fraction == pytest.approx(0.4)
    assert "11" in verdict.reason and "40%" in verdict.reason and "not trustworthy" in verdict.reason
    assert verdict.to_dict() == {"saturated": True, "reason": verdict.reason, "busiest_pid": 11, "busy_fraction": 0.4,
                                 "machine_busy_fraction": None, "steal_fraction": None}


def test_a_full_machine_saturates_the_harness_even_at_half_a_core() -> None:
    # two harness processes at 50 % each, but the machine (all cores) above 90 % most of the time
    samples = [Sample(t, "harness", pid, t * 0.5, 50.0, 1) for t in range(10) for pid in (1, 2)]
    samples += [Sample(t, MACHINE_ROLE, 0, t * 2.0, 97.0 if t % 4 else 60.0, 1) for t in range(10)]
    verdict = harness_saturation(samples)
    assert verdict.saturated and "every core of the machine" in verdict.reason
    assert verdict.machine_busy_fraction == pytest.approx(7 / 9)  # t = 4 and 8 of 1..9 were calm
    calm = [s for s in samples if s.role != MACHINE_ROLE] + [
        Sample(t, MACHINE_ROLE, 0, t * 1.0, 55.0, 1) for t in range(10)]
    assert not harness_saturation(calm).saturated


def test_one_sample_per_process_and_second() -> None:
    samples = [Sample(10.1, "harness", 1, 1.0, 10.0, 5), Sample(10.9, "harness", 1, 1.5, 20.0, 6),
               Sample(10.5, "target", 1, 3.0, 30.0, 7), Sample(11.2, "harness", 1, 2.0, 30.0, 8)]
    kept = one_per_second(samples)
    assert [(s.role, s.t_s) for s in kept] == [("target", 10.5), ("harness", 10.9), ("harness", 11.2)]


def test_threshold_is_inclusive_and_fraction_limit_exclusive() -> None:
    # 1 of 5 readings at exactly 90 % -> busy 0.2, not more than 0.2
    verdict = harness_saturation(series(1, [0, 90, 89.9, 10, 10, 10]))
    assert not verdict.saturated
    assert verdict.busy_fraction == pytest.approx(0.2)
    assert verdict.busiest_pid == 1
    assert harness_saturation(series(1, [0, 90, 89.9, 10, 10, 10]), max_busy_fraction=0.19).saturated
    assert not harness_saturation(series(1, [0, 90, 90, 90]), threshold_percent=95).saturated


def test_window_limits_the_readings() -> None:
    # busy only in the warm-up (t = 1, 2); the window [3, 10] sees an idle harness
    samples = series(1, [0, 100, 100, 20, 20, 20, 20])
    assert harness_saturation(samples).saturated
    verdict = harness_saturation(samples, window=(3.0, 10.0))
    assert not verdict.saturated and verdict.busy_fraction == 0.0
    # window bounds are inclusive: [2, 3] holds one busy and one idle reading
    assert harness_saturation(samples, window=(2.0, 3.0)).busy_fraction == pytest.approx(0.5)


def test_no_harness_samples() -> None:
    verdict = harness_saturation(series(1, [100, 100, 100], role="target"))
    assert verdict.saturated is False
    assert verdict.reason == "no harness samples"
    assert verdict.busiest_pid is None
    assert harness_saturation([]).reason == "no harness samples"
    # a single sample per pid has no interval to judge
    assert harness_saturation(series(1, [100])).busiest_pid is None
    # a window that excludes everything
    assert harness_saturation(series(1, [0, 100, 100]), window=(50.0, 60.0)).busiest_pid is None


def test_custom_role() -> None:
    samples = series(5, [0, 100, 100], role="publisher")
    assert harness_saturation(samples, role="publisher").saturated
    assert not harness_saturation(samples).saturated


def test_steal_fraction_is_the_mean_share_inside_the_window() -> None:
    # cumulative steal seconds; cpu_percent is each interval's steal over all cores
    samples = [Sample(float(t), STEAL_ROLE, 0, 0.01 * t, pct, 0) for t, pct in enumerate([0.0, 1.0, 1.0, 3.0, 0.0])]
    assert steal_fraction(samples) == pytest.approx(0.0125)  # (1 + 1 + 3 + 0) / 4 %
    assert steal_fraction(samples, window=(2.0, 3.0)) == pytest.approx(0.03)  # the first reading in it only opens it
    assert steal_fraction(samples, window=(2.5, 3.5)) is None
    assert steal_fraction([Sample(1.0, "harness", 1, 1.0, 10.0, 1)]) is None  # never sampled: unknown, not zero
    verdict = harness_saturation(samples + series(11, [10, 10, 10]))
    assert not verdict.saturated and verdict.to_dict()["steal_fraction"] == 0.0125
