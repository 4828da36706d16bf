"""Where a plain ``locust -f`` test writes its results: a new place for every test, never over old results.

``run_bench.py`` holds its run folder and names the file its Locust writes
(``--mode-result-only``), so that path is taken as given. A plain
``locust -f`` has no parent: each test it runs -- the headless run, or every
test started from the web UI -- claims a new folder
``bench-out/<mode>-<time>[-n]/``, made with ``mkdir``, which of two
processes racing for one name only one wins. An explicit ``--results FILE``
that already exists is refused unless ``--overwrite`` is given, as
``run_bench.py`` refuses a ``--run-id`` folder that holds results.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..adapters import results_file

__all__ = ["RESULTS_NAME", "DEFAULT_OUT", "ResultsTaken", "taken", "claim_results_path", "new_folder"]

RESULTS_NAME = "results.json"
#: where the per-test folders go, relative to the working directory (as run_bench.py's ``--out``)
DEFAULT_OUT = Path("bench-out")
#: most numbered siblings tried for one second's folder name
_MOST_SIBLINGS = 1000


class ResultsTaken(Exception):
    """The results path is taken; the message is one line that says how to go on."""


def taken(results: str, *, overwrite: bool) -> str | None:
    """Why an explicit ``--results`` path cannot be written, as one line, or None (free, or ``--overwrite``)."""
    if results and not overwrite and Path(results).exists():
        return f"--results {results} already exists; choose another path or pass --overwrite"
    return None


def claim_results_path(mode: str, *, results: str, overwrite: bool, given_by_parent: bool,
                       out: Path = DEFAULT_OUT) -> Path:
    """The results path of a test that starts now.

    Args:
        results: ``--results`` (empty: a new folder under ``out``).
        given_by_parent: ``--mode-result-only``: the parent owns the path and its folder.

    Raises:
        ResultsTaken: ``results`` exists and ``overwrite`` is false, or no folder name is free.
        ResultsWriteError: the folder cannot be made (one line, naming it).
    """
    if given_by_parent and results:
        return Path(results)
    if results:
        problem = taken(results, overwrite=overwrite)
        if problem is not None:
            raise ResultsTaken(problem)
        return Path(results)
    return new_folder(out, f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}") / RESULTS_NAME


def new_folder(out: Path, name: str) -> Path:
    """A folder ``out/name`` made now, or ``out/name-2``, ``-3`` ... when that exists: this caller's alone.

    Raises:
        ResultsTaken: every name up to ``-1000`` is taken.
        ResultsWriteError: ``out`` cannot be written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        for n in range(1, _MOST_SIBLINGS + 1):
            path = out / (name if n == 1 else f"{name}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    except OSError as exc:
        raise results_file.write_error(exc, out) from None
    raise ResultsTaken(f"no free folder name {name}[-n] under {out}")
