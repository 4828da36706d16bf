"""An installed deliverybench works without the checkout: what a team's CI does to gate its own server.

The repository is installed (not editable) into a fresh venv in a temporary
folder outside the checkout, and ``deliverybench`` is run from another one,
with no PYTHONPATH: every import, locustfile and template must come from the
venv's site-packages. The sources are copied first, as an sdist would carry
them, so that pip's build writes nothing into the checkout others work in.
pip's cache makes the dependencies quick; an install that cannot reach an
index is skipped with pip's reason, not failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, assert_ok, scaled

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

#: what `pip install .` must not need of the checkout (and must not find: the venv would not see it either)
_NOT_SOURCES = shutil.ignore_patterns(".git", "tests", "benchmarks", "build", "dist", "*.egg-info", "__pycache__",
                                      ".*_cache", ".hypothesis", ".benchmarks", "bench-out", ".venv")
#: pip's words for an index it could not reach: a machine without network, not a packaging fault (a bad pin
#: lists the versions it found; an unreachable index found none)
_OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
            "Max retries exceeded", "(from versions: none)")


def _clean_env() -> dict[str, str]:
    """Ours without anything that would let the venv see the checkout or change the run's options."""
    return {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith(("DELIVERYBENCH_", "LOCUST_", "PIP_REQUIRE_VIRTUALENV"))}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with the repository installed into it (not editable)."""
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(REPO.resolve())
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=scaled(120))
    python = root / "venv" / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-input", str(source)], cwd=root,
                          env=_clean_env(), capture_output=True, text=True, timeout=scaled(600))
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        reason = next((line.strip() for line in output.splitlines() if any(w in line for w in _OFFLINE)), None)
        if reason is not None:
            pytest.skip(f"pip install could not reach a package index: {reason}")
        pytest.fail(f"pip install {source} failed:\n{output[-4000:]}", pytrace=False)
    return root / "venv"


def _site_packages(venv: Path) -> Path:
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", where], env=_clean_env(), capture_output=True,
                          text=True, check=True, timeout=scaled(60))
    return Path(proc.stdout.strip()).resolve()


def test_the_installed_command_runs_a_mode_from_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    proc = subprocess.run([str(venv / "bin" / "deliverybench"), "--modes", "push", "--duration", "5", "-u", "20",
                           "--out", str(out), "--run-id", "run"],
                          cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=scaled(240))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = out / "run"
    assert (run_dir / "report.html").is_file() and f"report:  {run_dir / 'report.html'}" in proc.stdout
    doc = json.loads((run_dir / "results.json").read_text())
    assert_ok(doc["modes"]["push"])
    # what to type to repeat it is what was typed, not the checkout's script
    assert doc["run"]["command"][:3] == ["deliverybench", "--modes", "push"], doc["run"]["command"]
    # the locustfile Locust ran is the venv's: nothing came from the checkout
    site = _site_packages(venv)
    assert Path(doc["config"]["locust"]["locustfile"]).resolve() == site / "scenarios" / "ws_push.py"


def test_the_installed_command_names_its_locustfiles_and_answers_help(venv: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(venv / "bin" / "deliverybench"), "locustfile", "push"], cwd=tmp_path,
                          env=_clean_env(), capture_output=True, text=True, timeout=scaled(60))
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.is_absolute() and path.is_file()
    assert path.resolve().is_relative_to(_site_packages(venv)), path
    help_ = subprocess.run([str(venv / "bin" / "python"), "-m", "deliverybench", "--help"], cwd=tmp_path,
                           env=_clean_env(), capture_output=True, text=True, timeout=scaled(60))
    assert help_.returncode == 0 and help_.stdout.startswith("usage:"), help_.stdout + help_.stderr
    assert "--subscribers" in help_.stdout


def test_every_package_and_template_of_the_checkout_is_installed(venv: Path) -> None:
    """A subpackage or data file left out of pyproject's lists fails here, not in a user's first sweep."""
    site = _site_packages(venv)
    wanted = [p.relative_to(REPO) for folder in ("deliverybench", "targets", "reports", "scenarios")
              for p in sorted((REPO / folder).rglob("*")) if p.is_file() and p.suffix in (".py", ".html", ".css")
              and "__pycache__" not in p.parts]
    assert wanted and not [str(p) for p in wanted if not (site / p).is_file()]
