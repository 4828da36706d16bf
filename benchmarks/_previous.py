"""A previous design of the harness, checked out from git for one benchmark run (asv's way).

A benchmark that measures the current design against the one it replaced
names the last commit where that design was the live one, and runs that
commit's own code: ``checkout(design)`` makes a detached, throw-away git
worktree of ``design.commit`` in a temporary folder and removes it afterwards, and
``python_env(root)`` puts that checkout first on a child process's
``PYTHONPATH``. So no copy of old code lives in the tree, goes stale against
the internals it imported, or needs tests and types of its own; the old
design is exactly what was measured when it was current.

The checkout is only read. Without a git checkout, or in a clone that lacks
the commit (a shallow CI clone), :class:`PreviousUnavailable` says so in one
line; it is a ``SystemExit``, so a benchmark that does not catch it stops
with that line and exit code 1.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["REPO", "Design", "PreviousUnavailable", "checkout", "python_env", "import_from"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Design:
    """A commit where a design was the live one, and what that design was."""

    commit: str
    what: str


class PreviousUnavailable(SystemExit):
    """The previous design cannot be checked out; the message is one line saying why."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@contextmanager
def checkout(design: Design, repo: Path = REPO) -> Iterator[Path]:
    """A detached worktree of ``design.commit`` for the duration of the block; its root is yielded."""
    if shutil.which("git") is None or _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise PreviousUnavailable(f"the previous design ({design.what}) is run from git commit {design.commit}, "
                                  f"but {repo} is not a git checkout")
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{design.commit}^{{commit}}").returncode != 0:
        raise PreviousUnavailable(f"the previous design ({design.what}) is git commit {design.commit}, which this "
                                  f"clone lacks (a shallow clone? git fetch --unshallow)")
    holder = Path(tempfile.mkdtemp(prefix="deliverybench-previous-"))
    root = holder / design.commit[:12]
    try:
        added = _git(repo, "worktree", "add", "--detach", "--quiet", str(root), design.commit)
        if added.returncode != 0:
            last = (added.stderr.strip().splitlines() or ["no message"])[-1]
            raise PreviousUnavailable(f"git worktree add of {design.commit} failed: {last}")
        yield root
    finally:
        if root.exists():
            _git(repo, "worktree", "remove", "--force", str(root))
        shutil.rmtree(holder, ignore_errors=True)
        _git(repo, "worktree", "prune")  # forgets the worktree even if its folder had to be removed by hand


def python_env(root: Path) -> dict[str, str]:
    """This process's environment with ``root`` first on PYTHONPATH (ahead of the editable install too)."""
    inherited = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), inherited) if p)}


def import_from(root: Path, name: str) -> ModuleType:
    """Import ``name`` and make sure it came from ``root``, not from the current tree."""
    module = importlib.import_module(name)
    where = Path(module.__file__ or "").resolve()
    if not where.is_relative_to(root.resolve()):
        raise ImportError(f"{name} was imported from {where}, not from the checkout {root}")
    return module
