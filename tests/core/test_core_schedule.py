"""deliverybench.core.schedule: open-model due times, decided before the run."""

from __future__ import annotations

import math

import pytest

from deliverybench.core.schedule import SCHEDULE_KINDS, Schedule, due_times_ns, offsets_ns

NS = 1_000_000_000


def offs(**kwargs: object) -> list[int]:
    return list(offsets_ns(Schedule(**kwargs)))  # type: ignore[arg-type]


# -- constant ---------------------------------------------------------------


def test_constant_rate_10_for_2s_gives_20_events_100ms_apart() -> None:
    assert offs(kind="constant", rate=10, duration_s=2) == [k * 100_000_000 for k in range(20)]


@pytest.mark.parametrize(
    ("rate", "duration", "expected"),
    [
        (3, 1, [0, 333_333_333, 666_666_667]),
        (0.5, 5, [0, 2 * NS, 4 * NS]),
        (1, 3, [0, NS, 2 * NS]),
        (4, 0.3, [0, 250_000_000]),
    ],
)
def test_constant_exact_offsets(rate: float, duration: float, expected: list[int]) -> None:
    assert offs(kind="constant", rate=rate, duration_s=duration) == expected


@pytest.mark.parametrize(("rate", "duration", "count"), [(1000, 1, 1000), (7, 1, 7), (250, 4, 1000), (0.3, 10, 3)])
def test_constant_count(rate: float, duration: float, count: int) -> None:
    schedule = Schedule(kind="constant", rate=rate, duration_s=duration)
    assert schedule.expected_count == count
    assert len(list(offsets_ns(schedule))) == count


def test_constant_spacing_is_even_to_the_nanosecond() -> None:
    got = offs(kind="constant", rate=3, duration_s=10)
    gaps = {b - a for a, b in zip(got, got[1:])}
    assert gaps <= {333_333_333, 333_333_334}
    assert len(got) == 30


# -- burst ---------------------------------------------------------------------


def test_burst_k_every_t() -> None:
    got = offs(kind="burst", burst_size=5, burst_interval_s=0.25, duration_s=1)
    assert got == [t for t in (0, 250_000_000, 500_000_000, 750_000_000) for _ in range(5)]


def test_burst_interval_not_dividing_duration() -> None:
    got = offs(kind="burst", burst_size=3, burst_interval_s=0.4, duration_s=1)
    assert got == [0] * 3 + [400_000_000] * 3 + [800_000_000] * 3


def test_burst_of_5000_in_one_second_all_due_together() -> None:
    got = offs(kind="burst", burst_size=5000, burst_interval_s=1, duration_s=1)
    assert len(got) == 5000
    assert set(got) == {0}


def test_burst_ignores_rate() -> None:
    # rate is meaningless for bursts, so 0 is accepted there.
    assert Schedule(kind="burst", rate=0, burst_size=2, burst_interval_s=1, duration_s=3).expected_count == 6


# -- poisson ---------------------------------------------------------------------


def test_poisson_same_seed_same_offsets_other_seed_differs() -> None:
    a = offs(kind="poisson", rate=50, duration_s=10, seed=7)
    b = offs(kind="poisson", rate=50, duration_s=10, seed=7)
    c = offs(kind="poisson", rate=50, duration_s=10, seed=8)
    assert a == b
    assert a != c
    assert a == sorted(a)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_poisson_mean_rate_within_statistical_bounds(seed: int) -> None:
    rate, duration = 200.0, 500.0
    got = offs(kind="poisson", rate=rate, duration_s=duration, seed=seed)
    mean_count = rate * duration  # 100_000, sd = sqrt(100_000) ~ 316
    assert abs(len(got) - mean_count) < 5 * math.sqrt(mean_count)
    # Gaps are exponential: P(gap > mean gap) = 1/e, sd of the fraction ~ 0.0015.
    gaps = [b - a for a, b in zip(got, got[1:])]
    above = sum(1 for g in gaps if g > NS / rate) / len(gaps)
    assert abs(above - math.exp(-1)) < 0.01
    assert got[0] > 0  # the first gap is drawn too


@pytest.mark.parametrize("seed", range(20))
def test_poisson_strictly_bounded_by_duration(seed: int) -> None:
    got = offs(kind="poisson", rate=1000, duration_s=0.5, seed=seed)
    assert got
    assert max(got) < NS // 2
    assert all(b >= a for a, b in zip(got, got[1:]))


# -- ramp --------------------------------------------------------------------


def ramp_expected_count(r0: float, r1: float, d: float) -> int:
    n = d * (r0 + r1) / 2  # integral of the rate over [0, d)
    return math.ceil(n)  # events k = 0 .. ceil(n) - 1 are due before d


@pytest.mark.parametrize(
    ("r0", "r1", "d", "count"),
    [(10, 30, 2, 40), (100, 300, 10, 2000), (1, 2, 3, 5), (5, 12, 3, 26), (30, 10, 2, 40), (50, 5, 4, 110)],
)
def test_ramp_count_is_the_integral_of_the_rate(r0: float, r1: float, d: float, count: int) -> None:
    assert ramp_expected_count(r0, r1, d) == count
    schedule = Schedule(kind="ramp", rate=r0, rate_end=r1, duration_s=d)
    got = list(offsets_ns(schedule))
    assert len(got) == count == schedule.expected_count
    slope = (r1 - r0) / d
    for k, off in enumerate(got):
        t = off / NS
        assert r0 * t + slope * t * t / 2 == pytest.approx(k, abs=1e-6)  # N(t_k) == k
    assert all(b > a for a, b in zip(got, got[1:]))
    assert got[0] == 0
    assert got[-1] < d * NS


def test_ramp_rate_rises_between_halves() -> None:
    got = offs(kind="ramp", rate=10, rate_end=30, duration_s=2)
    # N(1 s) = 10 * 1 + 10 * 1 / 2 = 15
    assert sum(1 for o in got if o < NS) == 15
    assert sum(1 for o in got if o >= NS) == 25


def test_flat_ramp_equals_constant() -> None:
    ramp = offs(kind="ramp", rate=8, rate_end=8, duration_s=3)
    constant = offs(kind="constant", rate=8, duration_s=3)
    assert len(ramp) == len(constant) == 24
    assert all(abs(a - b) <= 1 for a, b in zip(ramp, constant))


# -- caps, bounds and validation ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "constant", "rate": 10, "duration_s": 2},
        {"kind": "burst", "burst_size": 5, "burst_interval_s": 0.5, "duration_s": 2},
        {"kind": "poisson", "rate": 10, "duration_s": 2, "seed": 3},
        {"kind": "ramp", "rate": 5, "rate_end": 15, "duration_s": 2},
    ],
)
def test_max_events_cap_keeps_the_first_events(kwargs: dict[str, object]) -> None:
    full = offs(**kwargs)
    assert len(full) > 7
    capped = offs(**kwargs, max_events=7)
    assert capped == full[:7]
    assert Schedule(**kwargs, max_events=7).expected_count == 7  # type: ignore[arg-type]
    assert offs(**kwargs, max_events=0) == []
    assert offs(**kwargs, max_events=10_000) == full


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
@pytest.mark.parametrize("duration", [0.01, 0.7, 1.0, 2.5])
def test_offsets_never_reach_duration(kind: str, duration: float) -> None:
    got = offs(kind=kind, rate=997, rate_end=13, duration_s=duration, burst_size=3, burst_interval_s=0.1)
    assert got
    assert max(got) < round(duration * NS)
    assert got == sorted(got)
    assert got[0] >= 0


def test_due_times_add_start() -> None:
    start = 1_700_000_000_123_456_789
    schedule = Schedule(kind="constant", rate=4, duration_s=1)
    assert due_times_ns(schedule, start) == [start + k * 250_000_000 for k in range(4)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "linear"},
        {"duration_s": 0},
        {"duration_s": -1},
        {"kind": "constant", "rate": 0},
        {"kind": "constant", "rate": -5},
        {"kind": "poisson", "rate": 0},
        {"kind": "burst", "burst_size": 0},
        {"kind": "burst", "burst_interval_s": 0},
        {"kind": "burst", "burst_interval_s": -1},
        {"kind": "ramp", "rate": 5},
        {"kind": "ramp", "rate": 5, "rate_end": 0},
        {"kind": "ramp", "rate": 5, "rate_end": -1},
        {"kind": "ramp", "rate": 0, "rate_end": 5},
        {"max_events": -1},
    ],
)
def test_invalid_parameters_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_unknown_kind_message_lists_kinds() -> None:
    with pytest.raises(ValueError, match="constant, burst, poisson, ramp"):
        Schedule(kind="zigzag")  # type: ignore[arg-type]


def test_schedule_is_frozen() -> None:
    schedule = Schedule()
    with pytest.raises(AttributeError):
        schedule.rate = 1.0  # type: ignore[misc]
    assert schedule.expected_count == 100  # defaults: 5/s for 20 s


# -- quiet moments: where once-a-second book-keeping delays nothing ---------------------------

from deliverybench.core.schedule import quiet_moment_ns  # noqa: E402

MS = 1_000_000


def test_quiet_moment_is_the_middle_of_the_next_wide_gap() -> None:
    due = [0, 50 * MS, 100 * MS, 150 * MS]
    assert quiet_moment_ns(due, 1 * MS, min_gap_ns=20 * MS) == 25 * MS
    assert quiet_moment_ns(due, 30 * MS, min_gap_ns=20 * MS) == 30 * MS  # already in the middle half
    assert quiet_moment_ns(due, 45 * MS, min_gap_ns=20 * MS) == 75 * MS  # too close to the next event


def test_no_quiet_moment_in_a_dense_stream_or_outside_it() -> None:
    dense = list(range(0, 1000 * MS, MS))  # 1,000 events/s
    assert quiet_moment_ns(dense, 10 * MS, min_gap_ns=20 * MS) is None
    due = [100 * MS, 200 * MS]
    assert quiet_moment_ns(due, 50 * MS, min_gap_ns=20 * MS) is None  # before the first event
    assert quiet_moment_ns(due, 250 * MS, min_gap_ns=20 * MS) is None  # after the last
    assert quiet_moment_ns([], 0, min_gap_ns=20 * MS) is None


def test_quiet_moment_skips_narrow_gaps_to_a_wide_one() -> None:
    due = [0, 5 * MS, 10 * MS, 60 * MS]
    assert quiet_moment_ns(due, 1 * MS, min_gap_ns=20 * MS) == 35 * MS
