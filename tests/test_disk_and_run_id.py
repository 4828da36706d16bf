"""A full disk and a contested run folder: one line, the right exit code, nothing half-written.

The full disk is real: a tmpfs of a few hundred KB (``mount -t tmpfs``, so
these tests need root; they are skipped, saying so, where mounting is
impossible), filled with a filler file to leave exactly as much room as a
case needs. The run-id race is two real ``run_bench.py`` processes started
0.3 s apart on one ``--run-id``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, env, run_bench, scaled

from deliverybench.adapters import results_file
from deliverybench.cli.config import ConfigError, resolve
from deliverybench.cli.run import claim_run_dir

DISK_KB = 300
#: names of temp files and folders the writers use; none may outlive a run
TEMP_PREFIXES = (".results-", ".live-", ".report-", ".staged-")
PUSH_RUN = ("--modes", "push", "-u", "50", "--duration", "5")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs(options)``: a new tmpfs mounted with ``options``; every one is unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        try:
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
                                  capture_output=True, text=True, timeout=30)
        except OSError as exc:
            pytest.skip(f"cannot mount a small tmpfs to fill: {exc}")
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {proc.stderr.strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A tmpfs of :data:`DISK_KB` KB."""
    return tmpfs(f"size={DISK_KB}k")


def _leave_free(disk: Path, kb: int) -> None:
    """Fill ``disk`` until about ``kb`` KB are free (tmpfs counts whole 4 KB pages)."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "ab") as handle:
        handle.write(b"\0" * max(0, free - kb * 1024))


def _leftovers(folder: Path) -> list[str]:
    """Temp files and folders of the writers (``.tmp`` was the live file's, before it wrote atomically)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(TEMP_PREFIXES) or p.name.endswith(".tmp"))


def _assert_every_json_parses(folder: Path) -> None:
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())  # a truncated file would raise here


# -- the writers, in-process ---------------------------------------------------------------------

def test_a_results_file_that_does_not_fit_leaves_the_old_one_whole_and_no_temp_file(small_disk: Path) -> None:
    path = small_disk / "results.json"
    results_file.write_atomically('{"old": true}', path)
    _leave_free(small_disk, 8)
    with pytest.raises(results_file.ResultsWriteError) as raised:
        results_file.write_atomically(json.dumps({"pad": "x" * 64 * 1024}), path)
    assert str(raised.value) == f"cannot write {path}: no space left on device"
    assert raised.value.no_space
    assert json.loads(path.read_text()) == {"old": True}
    assert _leftovers(small_disk) == []


def test_a_report_that_does_not_fit_leaves_no_file_half_written(small_disk: Path) -> None:
    html = small_disk / "report.html"
    _leave_free(small_disk, 8)
    with pytest.raises(results_file.ResultsWriteError) as raised:
        with results_file.staged(html, prefix=".report-") as staged_path:
            (staged_path.parent / "series.csv").write_text("small\n")
            staged_path.write_text("x" * 64 * 1024)  # the way the report writes: in place, no file named
    assert str(raised.value) == f"cannot write {html}: no space left on device"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# -- a full disk under a real run ----------------------------------------------------------------

def _run_on_full_disk(disk: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = run_bench(disk, *PUSH_RUN, *args, timeout=120)
    return proc, time.monotonic() - started


def _assert_one_line(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"run_bench.py: error: cannot write {path}: no space left on device"]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_seconds_with_one_line_and_exit_3(small_disk: Path) -> None:
    # Not a byte free: the Locust cannot write its mode result, nor its live file, nor its log; it says why in
    # its exit code, quits at once (it idled until its -t bound), and the parent names the file.
    _leave_free(small_disk, 0)
    proc, took = _run_on_full_disk(small_disk, "--no-report")
    _assert_one_line(proc, small_disk / "run" / "push.results.json")
    assert took < scaled(30)
    assert _leftovers(small_disk) == []
    _assert_every_json_parses(small_disk)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_report_that_does_not_fit_fails_the_run_after_the_results_are_written(small_disk: Path) -> None:
    _leave_free(small_disk, 120)  # the results (~40 KB) fit, the report with its images does not
    proc, took = _run_on_full_disk(small_disk)
    _assert_one_line(proc, small_disk / "run" / "report.html")
    assert took < scaled(30)
    assert _leftovers(small_disk) == []
    assert json.loads((small_disk / "run" / "results.json").read_text())["modes"]["push"]["audit"]["lost"] == 0
    assert not (small_disk / "run" / "report.html").exists()


@pytest.mark.e2e
def test_a_folder_that_cannot_take_even_the_log_fails_the_mode_before_locust_starts(
        tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs(f"size={DISK_KB}k,nr_inodes=8")  # no inode left: even an empty file cannot be created
    (disk / "run").mkdir()
    with pytest.raises(OSError):
        for n in range(100):
            (disk / f"inode{n}").touch()
    proc, took = _run_on_full_disk(disk, "--no-report")
    _assert_one_line(proc, disk / "run" / "push.locust.log")
    assert took < scaled(30)
    assert list((disk / "run").iterdir()) == []


# -- one run per --run-id ------------------------------------------------------------------------

def test_a_run_folder_is_held_while_its_run_lasts_and_free_after(tmp_path: Path) -> None:
    config = resolve(["--out", str(tmp_path), "--run-id", "same"], env={})
    with claim_run_dir(config) as held:
        with pytest.raises(ConfigError) as raised, claim_run_dir(config.replace(overwrite=True)):
            pass
        assert str(raised.value) == f"{held} is in use by another run; choose another --run-id or wait for " \
                                    "that run to end"
    with claim_run_dir(config) as again:  # released, and no marker left behind
        assert again == held and list(again.iterdir()) == []


def test_a_killed_run_leaves_no_stale_claim(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom deliverybench.cli.config import resolve\n"
         "from deliverybench.cli.run import claim_run_dir\n"
         f"with claim_run_dir(resolve(['--out', {str(tmp_path)!r}, '--run-id', 'same'], env={{}})):\n"
         "    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is in use by another run"), \
                claim_run_dir(resolve(["--out", str(tmp_path), "--run-id", "same"], env={})):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=scaled(10))
        with claim_run_dir(resolve(["--out", str(tmp_path), "--run-id", "same"], env={})) as held:
            assert held == tmp_path / "same"
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.e2e
@pytest.mark.slow
def test_two_runs_racing_on_one_run_id_one_runs_the_other_exits_2_naming_the_folder(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp_path), "--run-id", "same", "--modes", "push",
           "-u", "3", "--rate", "5", "--duration", "1", "--drain", "0.5", "--no-report"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    second = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    outputs = [p.communicate(timeout=scaled(120)) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert sorted(codes) == [0, 2], outputs
    (won_out, _), (lost_out, lost_err) = outputs[codes.index(0)], outputs[codes.index(2)]
    folder = tmp_path / "same"
    assert lost_err.strip().splitlines() == [
        f"run_bench.py: error: {folder} is in use by another run; choose another --run-id or wait for that run "
        "to end"]
    assert "results in" not in lost_out and f"results: {folder / 'results.json'}" in won_out
    assert json.loads((folder / "results.json").read_text())["modes"]["push"]["status"] in ("ok", "degraded")
    assert sorted(p.name for p in folder.glob("*.locust.log")) == ["push.locust.log"]
