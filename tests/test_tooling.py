"""The type checker and the linter pass over the code they are configured for in pyproject.toml.

Both read their settings from pyproject.toml, so `mypy` and `ruff check` run by hand give the same
answer as these tests; the paths checked are mypy's ``files`` list, named once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections import Counter

import conftest
import pytest
from helpers import REPO, scaled

#: "path/to/file.py:12: error: ..." (mypy) and "path/to/file.py:12:5: E501 ..." (ruff --output-format concise)
_LOCATION = re.compile(r"^(?P<path>[^:\s]+\.py):\d+:")


def checked_paths() -> list[str]:
    """mypy's ``files`` from pyproject.toml: the package, targets/, reports/, scenarios/ and run_bench.py."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        return list(tomllib.load(handle)["tool"]["mypy"]["files"])


def by_folder(output: str) -> str:
    """Error counts per folder (deliverybench/<sub>/ or the top-level folder), so a failure shows where to look."""
    counts: Counter[str] = Counter()
    for line in output.splitlines():
        match = _LOCATION.match(line)
        if match:
            parts = match["path"].split("/")
            counts["/".join(parts[:2]) if parts[0] == "deliverybench" and len(parts) > 2 else parts[0]] += 1
    return ", ".join(f"{folder} {n}" for folder, n in sorted(counts.items()))


def run_tool(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=scaled(timeout))


@pytest.mark.slow
def test_mypy_strict() -> None:
    proc = run_tool("mypy", timeout=240)
    if proc.returncode != 0:
        pytest.fail(f"mypy --strict: {by_folder(proc.stdout)}\n{proc.stdout}{proc.stderr}", pytrace=False)


def test_ruff() -> None:
    proc = run_tool("ruff", "check", "--output-format", "concise", *checked_paths(), timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"ruff check: {by_folder(proc.stdout)}\n{proc.stdout}{proc.stderr}", pytrace=False)


def test_marker_lists_name_existing_tests() -> None:
    """A renamed or moved test file must not silently drop out of the e2e/slow lists in conftest.py."""
    tests = REPO / "tests"
    missing = [name for name in sorted(conftest.E2E_MODULES | conftest.SLOW_MODULES) if not (tests / name).is_file()]
    for node in sorted(conftest.E2E_TESTS | conftest.SLOW_TESTS):
        path, _, name = node.partition("::")
        source = tests / path
        defined = source.is_file() and name.split("::")[-1] in {
            fn.name for fn in ast.walk(ast.parse(source.read_text()))
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)}
        if not defined:
            missing.append(node)
    assert not missing, f"conftest.py names tests that no longer exist: {missing}"
