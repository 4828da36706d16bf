"""deliverybench.core.recording: per-second HDR slices, fed synthetic samples."""

from __future__ import annotations

import random

import pytest

from deliverybench.core.recording import (
    HIGHEST_US,
    METRICS,
    Recorder,
    decode_histogram,
    encode_histogram,
    new_histogram,
    summarize,
)

NS = 1_000_000_000
T0 = 1_764_245_000 * NS  # a unix second boundary
MS = 1_000_000


def ms_samples() -> Recorder:
    """100 deliveries of 1, 2, ..., 100 ms, one per 10 ms from T0."""
    r = Recorder()
    for k in range(1, 101):
        r.record("delivery", k * MS, T0 + k * 10 * MS)
    return r


def random_samples(seed: int, n: int = 3000) -> list[tuple[str, int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        metric = rng.choice(["delivery", "service", "connect"])
        roll = rng.random()
        if roll < 0.01:
            value = -rng.randint(1, 10**6)  # clock skew
        elif roll < 0.015:
            value = rng.randint(HIGHEST_US * 1000 + 1000, 10**14)  # beyond one hour
        else:
            value = int(rng.lognormvariate(15, 1.5))
        out.append((metric, value, T0 + rng.randrange(0, 3 * NS)))
    return out


# -- record -------------------------------------------------------------------


def test_record_converts_ns_to_us() -> None:
    r = Recorder()
    r.record("delivery", 1_234_567, T0)
    h = r.slices[("delivery", T0 // NS)]
    assert h.get_total_count() == 1
    assert h.get_count_at_value(1234) == 1
    assert h.get_min_value() == 1234 and h.get_max_value() == 1234


def test_sub_microsecond_values_store_as_zero_without_counting_negative() -> None:
    r = Recorder()
    r.record("delivery", 999, T0)
    r.record("delivery", 0, T0)
    assert r.slices[("delivery", T0 // NS)].get_count_at_value(0) == 2
    assert not r.negative


def test_slices_by_second_of_the_sample() -> None:
    r = Recorder()
    r.record("delivery", MS, T0 - 1)
    r.record("delivery", MS, T0)
    r.record("delivery", MS, T0 + NS - 1)
    r.record("delivery", MS, T0 + NS)
    r.record("service", MS, T0 + 5 * NS)
    sec = T0 // NS
    assert r.seconds("delivery") == [sec - 1, sec, sec + 1]
    assert [h.get_total_count() for _, h in r.per_second("delivery")] == [1, 2, 1]
    assert r.seconds("service") == [sec + 5]
    assert r.metrics() == ["delivery", "service"]
    assert r.count("delivery") == 4
    assert r.count("missing") == 0


def test_negative_counted_and_stored_at_zero() -> None:
    r = Recorder()
    r.record("delivery", -1, T0)
    r.record("delivery", -5 * MS, T0, count=4)
    r.record("service", -1000, T0)
    r.record("delivery", 2 * MS, T0)
    assert r.negative == {"delivery": 5, "service": 1}
    assert not r.clamped
    h = r.slices[("delivery", T0 // NS)]
    assert h.get_count_at_value(0) == 5
    assert h.get_total_count() == 6
    assert summarize(h)["min"] == 0.0


def test_clamped_counted_and_stored_at_max() -> None:
    r = Recorder()
    top_ns = HIGHEST_US * 1000
    r.record("delivery", top_ns + 999, T0)  # still HIGHEST_US: in range
    r.record("delivery", top_ns + 1000, T0)  # one µs too many
    r.record("delivery", 10 * top_ns, T0, count=3)
    assert r.clamped == {"delivery": 4}
    assert not r.negative
    h = r.slices[("delivery", T0 // NS)]
    assert h.get_total_count() == 5
    assert h.get_count_at_value(HIGHEST_US) == 5
    assert h.get_max_value() == h.get_highest_equivalent_value(HIGHEST_US)


def test_record_with_count() -> None:
    r = Recorder()
    r.record("delivery", 3 * MS, T0, count=7)
    assert r.count("delivery") == 7
    assert r.slices[("delivery", T0 // NS)].get_count_at_value(3000) == 7


def test_bool() -> None:
    r = Recorder()
    assert not r
    r.negative["x"] += 1
    assert r
    assert Recorder.decode({"slices": {"delivery": {"5": encode_histogram(new_histogram())}}})


# -- summarize ---------------------------------------------------------------------


def test_summarize_known_values() -> None:
    s = summarize(ms_samples().total("delivery"))
    # 3 significant digits: 50_000 µs sits in a bucket of width 32 (49_984..50_015) etc.
    assert s == {
        "count": 100,
        "p50": 50.015,
        "p90": 90.047,
        "p99": 99.007,
        "p99_9": 100.031,
        "p99_99": 100.031,
        "min": 1.0,
        "max": 100.031,
        "mean": s["mean"],
    }
    assert s["mean"] == pytest.approx(50.5, abs=0.02)


def test_summarize_agrees_with_hdrh() -> None:
    r = Recorder()
    for metric, value, at in random_samples(1):
        r.record(metric, value, at)
    h = r.total("delivery")
    s = summarize(h)
    assert s["count"] == h.get_total_count()
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9), ("p99_99", 99.99)):
        assert s[name] == h.get_value_at_percentile(pct) / 1000.0
    assert s["max"] == h.get_max_value() / 1000.0
    assert s["min"] == h.get_min_value() / 1000.0
    assert s["mean"] == round(h.get_mean_value() / 1000.0, 6)


def test_summarize_empty_is_none() -> None:
    s = summarize(new_histogram())
    assert s == {k: None for k in ("p50", "p90", "p99", "p99_9", "p99_99", "min", "max", "mean")} | {"count": 0}
    assert s["count"] == 0
    assert summarize(Recorder().total("delivery"))["p99"] is None


# -- take ----------------------------------------------------------------------


def test_take_moves_only_older_slices() -> None:
    r = Recorder()
    sec = T0 // NS
    for k in range(5):
        r.record("delivery", MS, T0 + k * NS, count=k + 1)
        r.record("service", MS, T0 + k * NS)
    r.record("delivery", -1, T0 + 4 * NS)
    r.record("delivery", 10**20, T0 + 4 * NS)
    taken = r.take(sec + 3)
    assert taken.seconds("delivery") == [sec, sec + 1, sec + 2]
    assert taken.count("delivery") == 1 + 2 + 3
    assert taken.count("service") == 3
    assert r.seconds("delivery") == [sec + 3, sec + 4]
    assert r.count("delivery") == 4 + 5 + 2
    # Range counters are not per second: they all travel with the take.
    assert taken.negative == {"delivery": 1} and taken.clamped == {"delivery": 1}
    assert not r.negative and not r.clamped
    # Nothing older is left behind; taking again moves nothing.
    assert not r.take(sec + 3)


def test_take_all() -> None:
    r = ms_samples()
    before = r.encode()
    taken = r.take()
    assert not r
    assert r.slices == {}
    assert taken.encode() == before


# -- merge ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_merge_of_two_recorders_equals_one(seed: int) -> None:
    samples = random_samples(seed)
    one, a, b = Recorder(), Recorder(), Recorder()
    for i, (metric, value, at) in enumerate(samples):
        one.record(metric, value, at)
        (a if i % 3 else b).record(metric, value, at)
    merged = Recorder()
    merged.merge(a)
    merged.merge(b)
    assert merged.encode() == one.encode()
    assert merged.negative == one.negative and sum(one.negative.values()) > 0
    assert merged.clamped == one.clamped and sum(one.clamped.values()) > 0
    for metric in ("delivery", "service", "connect"):
        assert merged.count(metric) == one.count(metric)
        assert summarize(merged.total(metric)) == summarize(one.total(metric))
        for (sec, h1), (sec2, h2) in zip(one.per_second(metric), merged.per_second(metric)):
            assert sec == sec2
            assert summarize(h1) == summarize(h2)
    assert Recorder.merged([a, b]).encode() == one.encode()
    assert sum(one.count(m) for m in one.metrics()) == len(samples)


def test_merge_does_not_alias_the_other_recorder() -> None:
    a, b = Recorder(), Recorder()
    b.record("delivery", MS, T0)
    a.merge(b)
    b.record("delivery", MS, T0)
    assert a.count("delivery") == 1
    assert b.count("delivery") == 2


# -- encode / decode --------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    r = Recorder()
    for metric, value, at in random_samples(4):
        r.record(metric, value, at)
    data = r.encode()
    assert set(data) == {"slices", "negative", "clamped"}
    assert all(isinstance(sec, str) for by_sec in data["slices"].values() for sec in by_sec)  # type: ignore[union-attr]
    back = Recorder.decode(data)
    assert back.slices.keys() == r.slices.keys()
    assert back.negative == r.negative and sum(r.negative.values()) > 0
    assert back.clamped == r.clamped and sum(r.clamped.values()) > 0
    for key, h in r.slices.items():
        assert summarize(back.slices[key]) == summarize(h)
    for metric in r.metrics():
        assert summarize(back.total(metric)) == summarize(r.total(metric))
    assert back.encode() == data


def test_decode_tolerates_missing_counters() -> None:
    h = new_histogram()
    h.record_value(5)
    back = Recorder.decode({"slices": {"delivery": {"12": encode_histogram(h)}}, "negative": None})
    assert back.seconds("delivery") == [12]
    assert back.count("delivery") == 1
    assert not back.negative and not back.clamped
    assert not Recorder.decode({})


def test_encode_histogram_round_trip_is_hdr_v2_base64() -> None:
    h = new_histogram()
    for v in (1, 10, 100, 1000, 10_000, 100_000, HIGHEST_US):
        h.record_value(v, 3)
    text = encode_histogram(h)
    assert isinstance(text, str)
    text.encode("ascii")
    back = decode_histogram(text)
    assert back.get_total_count() == 21
    assert summarize(back) == summarize(h)


def test_total_across_slices() -> None:
    r = ms_samples()
    assert len(r.seconds("delivery")) == 2  # 10 ms .. 1000 ms after T0
    total = r.total("delivery")
    assert total.get_total_count() == 100
    assert sum(h.get_total_count() for _, h in r.per_second("delivery")) == 100
    assert r.total("nothing").get_total_count() == 0


def test_metric_names_are_documented() -> None:
    assert {"delivery", "service", "echo_rtt", "fanout", "connect"} <= set(METRICS)
