"""benchmarks/_previous.py: the previous designs come from a throw-away git worktree of a named commit."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import _previous from beside themselves
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look it up while making a class; the benchmarks import it
    spec.loader.exec_module(module)
    return module


def _worktrees() -> str:
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout


def _has(commit: str, path: str = "") -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}:{path}" if path else commit],
                          capture_output=True).returncode == 0


previous = _load("_previous")  # the module the benchmarks' own `from _previous import` will find
if subprocess.run(["git", "-C", str(REPO), "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
    pytest.skip("not a git checkout", allow_module_level=True)
HEAD = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_checkout_is_a_detached_worktree_removed_afterwards() -> None:
    before = _worktrees()
    with previous.checkout(previous.Design(HEAD, "this commit")) as root:
        assert (root / "benchmarks" / "push_capacity.py").is_file()
        assert str(root) in _worktrees()
    assert not root.exists() and not root.parent.exists()
    assert _worktrees() == before


def test_a_missing_commit_or_no_git_checkout_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(previous.PreviousUnavailable, match="which this clone lacks") as missing:
        with previous.checkout(previous.Design("0" * 40, "nothing")):
            pass
    with pytest.raises(previous.PreviousUnavailable, match="is not a git checkout") as outside:
        with previous.checkout(previous.Design(HEAD, "this commit"), repo=tmp_path):
            pass
    for exc in (missing.value, outside.value):
        assert isinstance(exc, SystemExit) and "\n" not in str(exc)


def test_import_from_refuses_a_module_from_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="not from the checkout"):
        previous.import_from(tmp_path, "json")


@pytest.mark.parametrize(("bench", "path"), [("push_capacity", "scenarios/ws_push.py"),
                                             ("publisher_rate", "deliverybench/harness/publisher.py"),
                                             ("receiver_cost", "deliverybench/adapters/callback_receiver.py")])
def test_the_named_commits_hold_what_the_benchmarks_run(bench: str, path: str) -> None:
    commit = _load(bench).PREVIOUS.commit
    if not _has(commit):
        pytest.skip(f"{commit} is not in this clone (shallow?)")
    assert _has(commit, path)
