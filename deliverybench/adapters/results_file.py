"""Reading and writing results files: the only I/O around the results schema.

Two kinds of file, both written atomically (temp file + rename, so a crash
never leaves half a file):

* the results document (``results.json``): one per run, versioned by the
  schema (:mod:`deliverybench.core.results`);
* a mode-result file: what one mode's Locust hands to ``run_bench.py``,
  which owns the document -- the mode result with the runner's own status,
  and Locust's options, which only that Locust knows. A tiny wrapper with
  its own :data:`MODE_RESULT_VERSION`, read back only by the run that wrote it::

      {"format": "deliverybench-mode-result", "version": 1, "mode": "push",
       "result": {...}, "locust_options": {...}}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.results import ResultsFormatError, dumps, loads

__all__ = ["write", "read", "ResultsFileError", "ModeResultFile", "MODE_RESULT_FORMAT", "MODE_RESULT_VERSION",
           "write_mode_result", "read_mode_result"]

MODE_RESULT_FORMAT = "deliverybench-mode-result"
MODE_RESULT_VERSION = 1


class ResultsFileError(Exception):
    """A results file cannot be read; the message is one line for the user."""


@dataclass(frozen=True)
class ModeResultFile:
    """One mode's result as its Locust measured it, for the parent that builds the document.

    Attributes:
        mode: the mode.
        result: the mode result, with the runner's status (ok, failed or
            interrupted) and no verdict yet: the parent decides that once.
        locust_options: that Locust's parsed options (plain values, secrets
            redacted), kept in the document's ``config.locust``.
    """

    mode: str
    result: Mapping[str, Any]
    locust_options: Mapping[str, Any] = field(default_factory=dict)


def _write_text(text: str, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot read results file {path}: {exc.strerror or exc}") from None


def write(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a results document atomically."""
    return _write_text(dumps(document), path)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    text = _read_text(path)
    try:
        return loads(text)
    except ResultsFormatError as exc:
        raise ResultsFileError(f"{path}: {exc}") from None


def write_mode_result(found: ModeResultFile, path: str | os.PathLike[str]) -> Path:
    """Write one mode's result atomically, in the versioned wrapper."""
    return _write_text(json.dumps({"format": MODE_RESULT_FORMAT, "version": MODE_RESULT_VERSION, "mode": found.mode,
                                   "result": dict(found.result), "locust_options": dict(found.locust_options)},
                                  separators=(",", ":")), path)


def read_mode_result(path: str | os.PathLike[str]) -> ModeResultFile:
    """A mode-result file, or :class:`ResultsFileError` naming what is wrong with it."""
    try:
        data = json.loads(_read_text(path))
    except ValueError as exc:
        raise ResultsFileError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MODE_RESULT_FORMAT:
        raise ResultsFileError(f"{path}: not a deliverybench mode-result file")
    if data.get("version") != MODE_RESULT_VERSION:
        raise ResultsFileError(f"{path}: mode-result version {data.get('version')!r} is not supported "
                               f"(this deliverybench reads version {MODE_RESULT_VERSION})")
    result, options = data.get("result"), data.get("locust_options")
    if not isinstance(result, dict) or not isinstance(options, dict) or not isinstance(data.get("mode"), str):
        raise ResultsFileError(f"{path}: mode-result file lacks its mode, result or locust_options")
    return ModeResultFile(mode=data["mode"], result=result, locust_options=options)
