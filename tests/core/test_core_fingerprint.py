"""deliverybench.core.fingerprint: what must match for two runs to be compared."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from deliverybench.core.fingerprint import (
    FINGERPRINT_FIELDS,
    fingerprint_diff,
    fingerprint_key,
    machine_diff,
    workload_fingerprint,
)
from deliverybench.core.model import Run
from deliverybench.core.results import SCHEMA_VERSION, ResultsVersionError, new_document


def fingerprint(doc: dict[str, Any], mode: str) -> dict[str, Any]:
    """The fingerprint of a document built as a dict, read into the model as readers take it."""
    return workload_fingerprint(Run.from_dict(doc), mode)


def machines(a: dict[str, Any], b: dict[str, Any], **options: Any) -> list[tuple[str, Any, Any]]:
    """:func:`machine_diff` of two documents built as dicts."""
    return machine_diff(Run.from_dict(a), Run.from_dict(b), **options)



def _mode(mode: str, port: int) -> dict[str, Any]:
    """The workload part of a mode result, as the fixture in tests/fixtures/ writes it."""
    return {
        "mode": mode, "status": "ok",
        "target": {"name": f"builtin-{mode}", "kind": "builtin",
                   "urls": {"ingress": f"http://127.0.0.1:{port}/publish"}, "port": port},
        "params": {"subscribers": 20, "rate": 25.0, "duration_s": 20, "schedule": {"kind": "constant", "rate": 25.0},
                   "payload_bytes": 256, "processes": 2, "drain_s": 2, "join_grace_s": 0.5},
    }


@pytest.fixture()
def doc() -> dict[str, Any]:
    return new_document(
        run_id="fixture", config={"subscribers": 20, "target_delay_ms": 0.0},
        machine={"hostname": "bench-01", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "3.11.7",
                 "cpu_count": 2, "cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "memory_bytes": 8331264000},
        packages={"deliverybench": "0.1.0", "locust": "2.47.0", "websockets": "14.1", "hdrhistogram": "0.10.3"},
        commit="83e733b5", started_ns=0, ended_ns=1, modes={"push": _mode("push", 8765),
                                                           "callback": _mode("callback", 8080)})


def test_fingerprint_of_the_fixture(doc: dict[str, Any]) -> None:
    fp = fingerprint(doc, "push")
    assert list(fp) == list(FINGERPRINT_FIELDS)
    assert fp == {
        "schema_version": SCHEMA_VERSION,
        "mode": "push",
        "target.name": "builtin-push",
        "target.kind": "builtin",
        "subscribers": 20,
        "rate": 25,
        # defaults filled in; only the fields a constant schedule uses
        "schedule": {"duration_s": 20, "kind": "constant", "max_events": None, "rate": 25},
        "payload_bytes": 256,
        "duration_s": 20,
        "drain_s": 2,
        "join_grace_s": 0.5,
        "processes": 2,
    }
    with pytest.raises(KeyError):
        fingerprint(doc, "burst")


def test_key_is_a_short_stable_hash(doc: dict[str, Any]) -> None:
    fp = fingerprint(doc, "push")
    key = fingerprint_key(fp)
    canonical = json.dumps(fp, sort_keys=True, separators=(",", ":"))
    assert key == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert len(key) == 16 and int(key, 16) >= 0
    assert fingerprint_key(dict(reversed(list(fp.items())))) == key  # order of keys does not matter
    assert fingerprint_key(fingerprint(doc, "callback")) != key  # another mode, another target


def test_equal_workloads_written_differently_match(doc: dict[str, Any]) -> None:
    other = copy.deepcopy(doc)
    params = other["modes"]["push"]["params"]
    params["rate"] = 25  # int instead of 25.0
    params["schedule"] = {"kind": "constant", "rate": 25.0, "duration_s": 20.0, "burst_size": 1,
                          "burst_interval_s": 1.0, "rate_end": None, "seed": 42, "max_events": None}
    # none of these is the workload: URLs, ports, the target's test delay, the commit, the machine
    other["modes"]["push"]["target"]["urls"] = {"ingress": "http://127.0.0.1:9999/publish"}
    other["modes"]["push"]["target"]["options"] = {"delay_ms": 12.0}
    other["config"]["target_delay_ms"] = 12.0
    other["run"]["commit"] = "ffffffff"
    other["machine"]["cpu_model"] = "something else"
    a, b = fingerprint(doc, "push"), fingerprint(other, "push")
    assert fingerprint_diff(a, b) == []
    assert fingerprint_key(a) == fingerprint_key(b)


def test_differences_are_named(doc: dict[str, Any]) -> None:
    other = copy.deepcopy(doc)
    params = other["modes"]["push"]["params"]
    params["subscribers"] = 50
    params["payload_bytes"] = 1024
    a, b = fingerprint(doc, "push"), fingerprint(other, "push")
    assert fingerprint_diff(a, b) == [("subscribers", 20, 50), ("payload_bytes", 256, 1024)]
    assert fingerprint_key(a) != fingerprint_key(b)
    # a document of another schema version is refused when it is read (ResultsVersionError), so
    # fingerprints of two versions only meet when one was stored (a sweep index): still named first
    newer = {**fingerprint(other, "push"), "schema_version": SCHEMA_VERSION + 1}
    assert fingerprint_diff(a, newer)[0] == ("schema_version", SCHEMA_VERSION, SCHEMA_VERSION + 1)
    other["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ResultsVersionError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        fingerprint(other, "push")


def test_schedule_fields_that_matter_depend_on_the_kind(doc: dict[str, Any]) -> None:
    def with_schedule(**schedule: Any) -> dict[str, Any]:
        other = copy.deepcopy(doc)
        other["modes"]["push"]["params"]["schedule"] = schedule
        return fingerprint(other, "push")

    # a seed changes a poisson schedule, not a constant one
    assert fingerprint_diff(with_schedule(kind="constant", rate=5, seed=1), with_schedule(kind="constant", rate=5,
                                                                                            seed=2)) == []
    diff = fingerprint_diff(with_schedule(kind="poisson", rate=5, seed=1), with_schedule(kind="poisson", rate=5,
                                                                                           seed=2))
    assert [f for f, _, _ in diff] == ["schedule"]
    # burst size matters for bursts
    assert fingerprint_diff(with_schedule(kind="burst", burst_size=10), with_schedule(kind="burst", burst_size=20))
    assert with_schedule(kind="ramp", rate=5, rate_end=50)["schedule"]["rate_end"] == 50


def test_params_come_from_the_first_repeat_when_the_mode_result_has_none(doc: dict[str, Any]) -> None:
    other = copy.deepcopy(doc)
    push = other["modes"]["push"]
    run = copy.deepcopy(push)
    other["modes"]["push"] = {"mode": "push", "repeats": [run, run]}
    assert fingerprint(other, "push") == fingerprint(doc, "push")


def test_fingerprint_diff_reports_fields_on_one_side_only() -> None:
    assert fingerprint_diff({"rate": 5}, {"rate": 5.0, "extra": 1}) == [("extra", None, 1)]


def test_machines(doc: dict[str, Any]) -> None:
    assert machines(doc, copy.deepcopy(doc)) == []
    other = copy.deepcopy(doc)
    other["machine"]["hostname"] = "another-runner"  # CI runners change names: not a difference
    other["machine"]["memory_bytes"] = int(doc["machine"]["memory_bytes"] * 1.02)  # within 5 %
    other["packages"]["deliverybench"] = "0.2.0"  # the code under test
    assert machines(doc, other) == []
    other["machine"]["cpu_model"] = "AMD EPYC 7763 64-Core Processor"
    other["machine"]["cpu_count"] = 4
    other["machine"]["memory_bytes"] = 16_000_000_000
    other["machine"]["platform"] = "Linux-6.5.0-x86_64-with-glibc2.38"
    other["machine"]["python"] = "3.12.1"
    other["packages"]["locust"] = "2.48.0"
    other["packages"]["uvloop"] = "0.21.0"
    assert machines(doc, other) == [
        ("machine.cpu_model", "Intel(R) Xeon(R) CPU @ 2.20GHz", "AMD EPYC 7763 64-Core Processor"),
        ("machine.cpu_count", 2, 4),
        ("machine.memory_bytes", 8331264000, 16_000_000_000),
        ("machine.platform", "Linux-6.1.0-x86_64-with-glibc2.36", "Linux-6.5.0-x86_64-with-glibc2.38"),
        ("machine.python", "3.11.7", "3.12.1"),
        ("packages.locust", "2.47.0", "2.48.0"),
        ("packages.uvloop", None, "0.21.0"),
    ]
    assert ("packages.deliverybench", "0.1.0", "0.2.0") in machines(doc, other, ignore_packages=())
