"""run_bench.py sweep's guard rails, in process: the run of each point is replaced by a refusal, so no target
or Locust starts, and what the sweep says around its points is what is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import deliverybench.cli.sweep as sweep_cli
from deliverybench.cli.config import ConfigError


def refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise ConfigError("more sessions than the open-files limit")  # the point becomes INVALID: "not run"


def run_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    monkeypatch.setattr(sweep_cli, "run", refuse)
    monkeypatch.setattr(sweep_cli, "_render", lambda *_a: None)  # the page is tests/test_sweep_report.py's
    said: list[str] = []
    outcome = sweep_cli.run_sweep(["--modes", "push", "--subscribers", "10:40", "--rate", "10", *args,
                                   "--out", str(tmp_path)], say=said.append)
    assert outcome.kind == "all_failed"
    return said


def test_points_too_short_to_judge_drift_are_warned_about_once_at_the_start(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    said = run_sweep(tmp_path, monkeypatch, "--duration", "5")
    warnings = [line for line in said if line.startswith("warning:")]
    assert warnings == ["warning: points of 5 s are too short to judge drift (p99 still climbing at the end, a "
                        "backlog building up), which needs 15 s of stream: points are judged on the objectives "
                        "alone (use --duration 15 or more)"]
    assert said.index(warnings[0]) == 1  # right after the sweep's first line, before any point
    assert said[0].startswith("deliverybench sweep: push at 10 events/s")


def test_the_default_point_is_long_enough_to_judge_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said = run_sweep(tmp_path, monkeypatch)
    assert not any(line.startswith("warning:") for line in said)
    assert sweep_cli.POINT_DEFAULTS["duration"] == 15.0
    (folder,) = tmp_path.glob("sweep-*")
    assert json.loads((folder / "sweep.json").read_text())["points"]  # the point was recorded as not run


def test_a_named_target_sweeps_the_modes_it_offers_and_refuses_others_before_any_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_cli, "run", refuse)
    monkeypatch.setattr(sweep_cli, "_render", lambda *_a: None)
    said: list[str] = []
    sweep_cli.run_sweep(["--target", "nats", "--subscribers", "10:40", "--rate", "10", "--out", str(tmp_path)],
                        say=said.append)
    assert said[0].startswith("deliverybench sweep: push at 10 events/s")  # not every default mode
    (folder,) = tmp_path.glob("sweep-*")
    assert json.loads((folder / "sweep.json").read_text())["spec"]["modes"] == ["push"]
    with pytest.raises(ConfigError, match=r"^the nats target offers push, not callback$"):
        sweep_cli.run_sweep(["--target", "nats", "--modes", "push,callback", "--subscribers", "10:40",
                             "--out", str(tmp_path / "other")], say=said.append)
    assert not (tmp_path / "other").exists()
