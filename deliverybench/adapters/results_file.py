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

Every other file of a run (live file, comparison outputs) goes through the
same :func:`write_atomically`, and a write that fails -- a full disk above
all -- is one :class:`ResultsWriteError` naming the file, never a traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.results import ResultsFormatError, dumps, loads

__all__ = ["write", "read", "ResultsFileError", "ResultsWriteError", "ModeResultFile", "MODE_RESULT_FORMAT",
           "MODE_RESULT_VERSION", "write_mode_result", "read_mode_result", "write_atomically", "write_error", "staged",
           "EXIT_NO_SPACE", "EXIT_NOT_WRITTEN", "NO_SPACE", "strict_json"]

MODE_RESULT_FORMAT = "deliverybench-mode-result"
MODE_RESULT_VERSION = 1

#: the exit code of a Locust that could not write its results for want of space, and for any other reason:
#: its log may sit on the same full disk, so the exit code is how ``run_bench.py`` learns the cause
EXIT_NO_SPACE, EXIT_NOT_WRITTEN = 74, 73
#: what a full disk (or quota) is called in every message
NO_SPACE = "no space left on device"


class ResultsFileError(Exception):
    """A results file cannot be read; the message is one line for the user."""


class ResultsWriteError(Exception):
    """A file of the run cannot be written; the message is one line naming the path and the cause.

    Attributes:
        path: the file (or, when the system did not say which, the folder) that could not be written.
        reason: why, in words: :data:`NO_SPACE` for a full disk.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")

    @property
    def no_space(self) -> bool:
        return self.reason.startswith(NO_SPACE)


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NO_SPACE
    words = exc.strerror or str(exc)
    return words[:1].lower() + words[1:]


def write_error(exc: OSError, path: str | os.PathLike[str]) -> ResultsWriteError:
    """A failed write of code that raised a bare :class:`OSError`, in one line: the file ``exc`` names,
    else ``path`` (a failed ``write()`` names none); a full disk or quota is :data:`NO_SPACE`."""
    return ResultsWriteError(exc.filename or path, _reason(exc))


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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # "unbounded" has no JSON number: null, as the schema documents for unknown figures
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def strict_json(data: Any, *, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): a non-finite float becomes null instead of a bare ``Infinity``/``NaN``."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False, default=str)


def write_atomically(text: str, path: str | os.PathLike[str], *, prefix: str = ".results-") -> Path:
    """Write ``text`` to a temp file beside ``path``, then rename it over ``path``.

    A crash or a full disk leaves the old file (or none), never half of one,
    and no temp file.

    Raises:
        ResultsWriteError: the file cannot be written (one line, naming ``path``).
    """
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # named by the file the caller asked for, not the temp file
            raise ResultsWriteError(target, _reason(exc)) from None
        raise
    return target


@contextmanager
def staged(path: str | os.PathLike[str], *, prefix: str = ".staged-") -> Iterator[Path]:
    """Where to write ``path`` with code that writes in place (the report, and the exports it writes beside
    it): a private temp folder beside ``path``. When the block ends without error each file in it is renamed
    into ``path``'s folder; either way the temp folder is removed, so a full disk leaves no half-written file.

    Raises:
        ResultsWriteError: a file cannot be written (an ``OSError`` inside the block included; one that
            names no file, as a failed ``write()`` does not, is charged to ``path``).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as exc:
        raise write_error(exc, target) from None
    try:
        yield temp / target.name
        for written in sorted(temp.iterdir()):
            os.replace(written, target.parent / written.name)
    except OSError as exc:  # named by where the file was going, not by the temp folder
        name = Path(os.fsdecode(exc.filename)).name if exc.filename else target.name
        raise ResultsWriteError(target.parent / name, _reason(exc)) from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot read results file {path}: {exc.strerror or exc}") from None


def write(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a results document atomically (or :class:`ResultsWriteError`)."""
    return write_atomically(dumps(document), path)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    text = _read_text(path)
    try:
        return loads(text)
    except ResultsFormatError as exc:
        raise ResultsFileError(f"{path}: {exc}") from None


def write_mode_result(found: ModeResultFile, path: str | os.PathLike[str]) -> Path:
    """Write one mode's result atomically, in the versioned wrapper (or :class:`ResultsWriteError`)."""
    wrapper = {"format": MODE_RESULT_FORMAT, "version": MODE_RESULT_VERSION, "mode": found.mode,
               "result": dict(found.result), "locust_options": dict(found.locust_options)}
    return write_atomically(json.dumps(wrapper, separators=(",", ":")), path)


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
