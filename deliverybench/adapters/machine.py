"""Facts about the machine, packages and source tree, for the results file.

A figure without its context cannot be compared: two runs are only
comparable on the same kind of machine, with the same package versions, and
the commit says what code produced them.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

__all__ = ["machine_facts", "package_versions", "git_commit", "PACKAGES", "route_address"]

PACKAGES = ("deliverybench", "locust", "websockets", "aiohttp", "uvloop", "gevent", "pandas", "matplotlib",
            "hdrhistogram", "jinja2", "psutil", "standardwebhooks", "scipy")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, object]:
    try:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError):
        nofile = -1
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": psutil.virtual_memory().total,
        "open_files_limit": nofile,
        "clock": "all processes on one machine share the wall clock (time.time_ns)",
    }


def package_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the source tree (with ``-dirty`` if modified), or None."""
    cwd = path or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def route_address(host: str, port: int) -> str:
    """This machine's address on its route towards ``host:port`` (what that host sees it as); "" if none.

    A connected UDP socket sends nothing: the kernel only picks the route and the source address.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(host), port))
            return str(probe.getsockname()[0])
    except OSError:
        return ""
