"""The measurement core stays fully typed: ``mypy --strict`` over deliverybench/core."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO


def test_core_passes_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is in the [test] extra")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
                           "--no-error-summary", "deliverybench/core"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
