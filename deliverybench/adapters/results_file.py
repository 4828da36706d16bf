"""Reading and writing results files: the only I/O around the results schema."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..core.results import ResultsFormatError, dumps, loads

__all__ = ["write", "read", "ResultsFileError"]


class ResultsFileError(Exception):
    """A results file cannot be read; the message is one line for the user."""


def write(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = dumps(document)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    try:
        return loads(text)
    except ResultsFormatError as exc:
        raise ResultsFileError(f"{path}: {exc}") from None
