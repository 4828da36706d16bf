"""One run (``deliverybench run``, ``run_bench.py``): check, make its folder, run every mode, write results
and report.

Returns what happened (:class:`RunOutcome`); :mod:`deliverybench.cli.main`
alone turns it into an exit code. Whatever was measured is written even when a mode failed
or the run was interrupted. A run named by ``--run-id`` holds its folder for
as long as it runs, so a second run of that name is refused instead of
overwriting it; a full disk is one :class:`~deliverybench.adapters.results_file.ResultsWriteError`.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import results_file
from .config import ConfigError, RunConfig
from .interrupt import Interrupt
from .limits import open_files_problem, source_ports_warning
from .orchestrate import run_modes
from .progress import Progress
from .summary import summary_table

__all__ = ["RunOutcome", "run", "claim_run_dir", "unique_folder"]

RESULTS_NAME = "results.json"
REPORT_NAME = "report.html"


@dataclass
class RunOutcome:
    document: dict[str, Any]
    run_dir: Path
    results_path: Path
    report_path: Path | None
    #: the signal that interrupted the run, if one did
    interrupted_by: int | None = None

    @property
    def failed_modes(self) -> list[str]:
        return [name for name, mode in self.document["modes"].items() if mode.get("status") == "failed"]

    @property
    def reaches_gate(self) -> bool:
        """Whether the command goes on to judge this run: not when it was interrupted or a mode
        measured nothing (no verdict can rest on it)."""
        return self.interrupted_by is None and not self.failed_modes


@contextmanager
def claim_run_dir(config: RunConfig) -> Iterator[Path]:
    """The run's own folder, held until the block ends: unique when named by time; named by ``--run-id``,
    refused while another run holds it, or when it already holds results.

    The claim is an exclusive ``flock`` on the folder, taken before the
    results check: of two runs started together exactly one gets it, and
    the kernel drops it when its run ends or dies, so a killed run leaves
    no stale claim behind (an ``O_EXCL`` marker file would).

    Raises:
        ConfigError: the folder cannot be made, another run holds it, or it
            holds a results file and ``--overwrite`` was not given.
    """
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not config.run_id:
            run_dir = unique_folder(out)  # a new name is this run's alone
            holder = None
        else:
            run_dir = out / config.run_id
            run_dir.mkdir(exist_ok=True)
            holder = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder under {out}: {exc.strerror or exc}") from None
    try:
        if holder is not None:
            try:
                fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"{run_dir} is in use by another run; choose another --run-id or wait for "
                                  "that run to end") from None
            if (run_dir / RESULTS_NAME).exists() and not config.overwrite:
                raise ConfigError(f"{run_dir} already holds a results file; choose another --run-id or pass "
                                  "--overwrite")
        yield run_dir
    finally:
        if holder is not None:
            # unlocked first: a process gevent has patched (a test importing Locust) defers os.close
            fcntl.flock(holder, fcntl.LOCK_UN)
            os.close(holder)


def unique_folder(out: Path, prefix: str = "") -> Path:
    """A new folder ``out/<prefix><time>-<random>``: two runs started in the same second get two.

    Raises:
        OSError: ``out`` cannot be written.
        ConfigError: no free name was found.
    """
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = out / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"cannot find a free folder name under {out}")


def run(config: RunConfig, say: Callable[[str], None], interrupt: Interrupt | None = None, *,
        progress: Progress | None = None,
        stop_when: Callable[[str, dict[str, Any]], str | None] | None = None, quiet: bool = False,
        prog: str = "run_bench.py", command: Sequence[str] = ("run_bench.py",)) -> RunOutcome:
    """Run every mode of ``config``; write results and report.

    Args:
        progress: the live line (default: a new one on stdout).
        stop_when: ``(mode, live) -> reason``: stops a mode early (a sweep's clearly failed point).
        quiet: leave out the summary table (a sweep prints one line per point instead).
        prog: the command's name, for the warning of a report not rendered.
        command: how the user started us (``deliverybench``, ``python -m deliverybench``...), recorded with
            the arguments so that the results file says what to type to repeat the run.

    Raises:
        ConfigError: the run cannot start as configured (nothing is written), or its folder is taken.
        ResultsWriteError: a results file (a mode's, the document) or the report could not be written, a
            full disk above all; the message names the first that failed. Whatever fit is written whole.
    """
    problem = open_files_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    crowded = source_ports_warning(config)
    if crowded is not None:
        print(f"{prog}: warning: {crowded}", file=sys.stderr)
    with claim_run_dir(config) as run_dir:
        say(f"deliverybench: modes {', '.join(config.modes)}; results in {run_dir}")
        measured = run_modes(config, run_dir, say, interrupt, progress=progress or Progress(), stop_when=stop_when,
                              command=command)
        document = measured.document
        try:
            path = results_file.write(document, run_dir / RESULTS_NAME)
        except results_file.ResultsWriteError as exc:
            raise measured.write_error or exc from None  # the first write that failed is the cause
        if measured.write_error is not None:
            lost = measured.write_error
            raise results_file.ResultsWriteError(lost.path, f"{lost.reason}; the run is recorded without it in "
                                                            f"{path}")
        if not quiet:
            say("")
            say(summary_table(document))
            say("")
            say(f"results: {path}")
        outcome = RunOutcome(document, run_dir, path, None, interrupted_by=int(interrupt.signal)
                             if interrupt is not None and interrupt.signal else None)
        # With --baseline the gate renders the report after deciding, with its baseline section: once, there.
        if config.report and not (config.baseline and outcome.reaches_gate):
            outcome.report_path = _report(document, run_dir, prog)
            if outcome.report_path is not None and not quiet:
                say(f"report:  {outcome.report_path}")
        return outcome


def _report(document: dict[str, Any], run_dir: Path, prog: str) -> Path | None:
    """report.html and its exports, each renamed into place (a full disk leaves none half-written).

    Raises:
        ResultsWriteError: the disk is full: that is the run's failure, like any other write's.
    """
    try:
        from reports import render_report

        with results_file.staged(run_dir / REPORT_NAME, prefix=".report-") as staged_path:
            render_report([document], staged_path)
        return run_dir / REPORT_NAME
    except Exception as exc:  # the measurement is written; a report bug must not hide it ...
        if isinstance(exc, results_file.ResultsWriteError) and exc.no_space:
            raise  # ... but a full disk fails the run, as it does for every other file
        print(f"{prog}: warning: report not rendered: {exc}", file=sys.stderr)
        return None
