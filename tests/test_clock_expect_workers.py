"""``run_bench.py --expect-workers N``: the master is started for workers on other machines, and the command
to run on each is the one that joins it."""

from __future__ import annotations

from pathlib import Path

from deliverybench.cli.config import resolve
from deliverybench.cli.orchestrate import SCENARIOS, _locust_command, this_machine_address, worker_command
from targets.start import TargetUrls


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_the_master_waits_for_workers_and_says_how_to_start_them(tmp_path: Path) -> None:
    config = resolve(["--out", str(tmp_path), "--expect-workers", "3", "--processes", "4"], env={})
    cmd = _locust_command(config, "push", TargetUrls("push", ingress="http://127.0.0.1:1/publish",
                                                       egress="ws://127.0.0.1:2/"), tmp_path / "r.json",
                          tmp_path / "live.json")
    assert "--master" in cmd and _flag(cmd, "--expect-workers") == "3" and "--processes" not in cmd
    assert _flag(cmd, "--master-bind-host") == "*" and int(_flag(cmd, "--expect-workers-max-wait")) > 0
    port = _flag(cmd, "--master-bind-port")
    assert worker_command(cmd, "push") == (f"locust -f {SCENARIOS['push']} --worker --master-host "
                                           f"{this_machine_address()} --master-port {port}")


def test_without_expect_workers_nothing_is_printed(tmp_path: Path) -> None:
    config = resolve(["--out", str(tmp_path), "--processes", "2"], env={})
    cmd = _locust_command(config, "push", TargetUrls("push"), tmp_path / "r.json", tmp_path / "live.json")
    assert "--processes" in cmd and "--master" not in cmd and worker_command(cmd, "push") is None
