"""One ``run_bench.py`` run: check, make its folder, run every mode, write results and report.

Returns what happened (:class:`RunOutcome`); ``run_bench.py`` alone turns it
into an exit code. Whatever was measured is written even when a mode failed
or the run was interrupted.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..adapters import results_file
from .config import ConfigError, RunConfig
from .interrupt import Interrupt
from .limits import open_files_problem
from .orchestrate import run_modes
from .progress import Progress
from .summary import summary_table

__all__ = ["RunOutcome", "run", "make_run_dir", "unique_folder"]

RESULTS_NAME = "results.json"


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
        """Whether ``run_bench.py`` goes on to judge this run: not when it was interrupted or a mode
        measured nothing (no verdict can rest on it)."""
        return self.interrupted_by is None and not self.failed_modes


def make_run_dir(config: RunConfig) -> Path:
    """The run's own folder: unique when named by time, refused when it already holds results.

    Raises:
        ConfigError: the folder cannot be made, or holds a results file and
            ``--overwrite`` was not given.
    """
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if config.run_id:
            run_dir = out / config.run_id
            run_dir.mkdir(exist_ok=True)
            if (run_dir / RESULTS_NAME).exists() and not config.overwrite:
                raise ConfigError(f"{run_dir} already holds a results file; choose another --run-id or pass "
                                  "--overwrite")
            return run_dir
        return unique_folder(out)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder under {out}: {exc.strerror or exc}") from None


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
        stop_when: Callable[[str, dict[str, Any]], str | None] | None = None, quiet: bool = False) -> RunOutcome:
    """Run every mode of ``config``; write results and report.

    Args:
        progress: the live line (default: a new one on stdout).
        stop_when: ``(mode, live) -> reason``: stops a mode early (a sweep's clearly failed point).
        quiet: leave out the summary table (a sweep prints one line per point instead).

    Raises:
        ConfigError: the run cannot start as configured (nothing is written).
    """
    problem = open_files_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    run_dir = make_run_dir(config)
    say(f"deliverybench: modes {', '.join(config.modes)}; results in {run_dir}")
    document = run_modes(config, run_dir, say, interrupt, progress=progress or Progress(), stop_when=stop_when)
    path = results_file.write(document, run_dir / RESULTS_NAME)
    if not quiet:
        say("")
        say(summary_table(document))
        say("")
        say(f"results: {path}")
    outcome = RunOutcome(document, run_dir, path, None,
                         interrupted_by=int(interrupt.signal) if interrupt is not None and interrupt.signal else None)
    # With --baseline the gate renders the report after deciding, with its baseline section: once, there.
    if config.report and not (config.baseline and outcome.reaches_gate):
        try:
            from reports import render_report

            outcome.report_path = render_report([document], run_dir / "report.html")
            if not quiet:
                say(f"report:  {outcome.report_path}")
        except Exception as exc:  # the measurement is written; a report bug must not hide it
            print(f"run_bench.py: warning: report not rendered: {exc}", file=sys.stderr)
    return outcome
