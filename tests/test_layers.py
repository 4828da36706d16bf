"""The package's layers hold: no module imports against the rules in ``deliverybench/__init__.py``.

Each source file is parsed (never imported) and every import in it --
top-level or inside a function, absolute or relative -- is checked against
the layer it belongs to. The core must also stay free of I/O and clocks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

#: what each layer may import of ours (top-level package or ``deliverybench.<layer>``)
ALLOWED: dict[str, set[str]] = {
    "deliverybench.core": {"deliverybench.core"},
    "deliverybench.adapters": {"deliverybench.core", "deliverybench.adapters"},
    "deliverybench.harness": {"deliverybench.core", "deliverybench.adapters", "deliverybench.harness", "targets"},
    "deliverybench.cli": {"deliverybench.core", "deliverybench.adapters", "deliverybench.harness",
                          "deliverybench.cli", "targets", "reports", "scenarios"},
    "targets": {"deliverybench.core", "deliverybench.adapters", "targets"},
    "reports": {"deliverybench.core", "reports"},
    "scenarios": {"deliverybench.core", "deliverybench.adapters", "deliverybench.harness", "targets"},
}
OURS = ("deliverybench", "targets", "reports", "scenarios")
#: modules whose use would mean I/O or a clock read in the measurement core
CORE_FORBIDDEN = ("time", "datetime", "socket", "asyncio", "os", "subprocess", "threading", "selectors", "select",
                  "signal", "pathlib", "tempfile", "shutil", "urllib.request", "http", "gevent", "locust",
                  "aiohttp", "websockets", "uvloop", "psutil", "requests")


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "deliverybench":
        return ".".join(parts[:2]) if len(parts) > 1 else "deliverybench"
    return parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module ``source`` imports, as (line, absolute dotted name)."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from deliverybench import adapters` imports the subpackage itself
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names
                      if name in ("deliverybench",)]
    return found


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    layer = _layer(module)
    allowed = ALLOWED.get(layer)
    problems = []
    for line, name in imports_of(source, module, is_package=is_package):
        top = name.split(".")[0]
        if top in OURS and allowed is not None and name != "deliverybench":
            if _layer(name) not in allowed:
                problems.append(f"{module}:{line} imports {name} ({layer} may import {', '.join(sorted(allowed))})")
        if layer == "deliverybench.core" and any(name == f or name.startswith(f + ".") for f in CORE_FORBIDDEN):
            problems.append(f"{module}:{line} imports {name}: the core does no I/O and reads no clock")
    return problems


def _sources() -> list[Path]:
    files = []
    for folder in ("deliverybench", "targets", "reports", "scenarios"):
        files += sorted((REPO / folder).rglob("*.py"))
    return files


def test_every_layer_imports_only_what_it_may() -> None:
    problems = []
    for path in _sources():
        problems += violations(path.read_text(encoding="utf-8"), _module_name(path),
                               is_package=path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_every_layer_folder_says_what_belongs_there() -> None:
    for layer in ("core", "adapters", "harness", "cli"):
        init = REPO / "deliverybench" / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init} needs a docstring saying what it may import"


@pytest.mark.parametrize("module, source, expected", [
    ("deliverybench.core.x", "from ..adapters import http_post\n", "imports deliverybench.adapters"),
    ("deliverybench.core.x", "import time\n", "reads no clock"),
    ("deliverybench.core.x", "def f():\n    import socket\n", "reads no clock"),
    ("deliverybench.adapters.x", "from deliverybench.harness.loop_thread import LoopThread\n",
     "imports deliverybench.harness"),
    ("deliverybench.harness.x", "from ..cli.config import resolve\n", "imports deliverybench.cli"),
    ("reports.x", "from deliverybench.adapters import machine\n", "imports deliverybench.adapters"),
    ("targets.x", "from deliverybench.harness import locust_plugin\n", "imports deliverybench.harness"),
])
def test_the_checker_catches_a_bad_import(module: str, source: str, expected: str) -> None:
    found = violations(source, module)
    assert found and expected in found[0], found


def test_the_checker_accepts_allowed_imports() -> None:
    assert violations("from ..core.audit import PublishedLog\nimport numpy\n", "deliverybench.adapters.x") == []
    assert violations("from . import hdr_fast\nimport math\n", "deliverybench.core.x") == []
