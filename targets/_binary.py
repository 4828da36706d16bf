"""Run a real server binary (nginx, pushpin, nats-server, ...) as a target.

Unlike the built-in servers (:mod:`targets._process`), a third-party binary
cannot announce its ports on stdout, so the target picks a free port first
and polls a ``ready`` check. The child gets the same guarantees as every
other child of a run (:func:`deliverybench.adapters.children.child_options`:
its own process group, ``SIGTERM`` if the harness dies) and is stopped at
exit, so that no server outlives the run that started it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import psutil

from deliverybench.adapters.children import child_options, stop_group
from targets._process import TAIL_LINES, tail_lines
from targets.base import TargetError

__all__ = ["BinaryProcess", "free_port", "http_ok", "loopback_egress", "require_binary"]

_STOP_GRACE_S = 5.0
_POLL_S = 0.05
_live: weakref.WeakSet[BinaryProcess] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the binary binds it a moment later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, package: str) -> str:
    """The path of executable ``name`` (PATH, then /usr/sbin), or a TargetError naming its package."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise TargetError(f"{name} is not installed (Debian package {package})")
    return found


def http_ok(url: str, *, data: bytes | None = None, timeout_s: float = 1.0) -> bool:
    """Whether ``url`` answers 2xx to a GET (a POST of ``data`` when given): a binary's ready check."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - our own loopback server
            return bool(200 <= response.status < 300)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def loopback_egress(host_port: str, mode: str, paths: Mapping[str, str]) -> str | None:
    """The URL of ``mode`` at ``host_port`` (``ws://`` for push, ``http://`` otherwise), or None if not offered."""
    path = paths.get(mode)
    if not host_port or path is None:
        return None
    return f"{'ws' if mode == 'push' else 'http'}://{host_port}{path}"


class BinaryProcess:
    """One server binary in its own process group, with its output in a log file.

    Args:
        argv: the command line, binary first.
        name: what error messages call it.
        cwd: its working directory.
        env: its whole environment (default: the harness's).
    """

    def __init__(self, argv: list[str], *, name: str, cwd: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.name = name
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ready = False

    def start(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Launch the binary and poll ``ready`` until it is true; stop it and raise TargetError if it
        exits first or is not ready within ``timeout_s``."""
        if self._proc is not None:
            raise TargetError(f"{self.name} was already started")
        fd, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        # A file, not a pipe: nobody reads it during the run, and a full pipe would stall the server.
        self._log = open(self.log_path, "ab", buffering=0)
        try:
            self._proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=self._log, stderr=subprocess.STDOUT, **child_options())
        except OSError as exc:
            self._close_log()
            raise TargetError(f"cannot run {self.name}: {exc}") from None
        _live.add(self)
        try:
            self._await(ready, timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL it. Idempotent."""
        proc = self._proc
        crashed = proc is None or proc.poll() is not None
        if proc is not None:
            stop_group(proc, grace_s=_STOP_GRACE_S)  # the group: workers and helpers it forked too
        _live.discard(self)
        self._close_log()
        if not crashed and self._ready and self.log_path is not None:
            # A server that ran until it was told to stop leaves nothing worth reading; a crash keeps its log.
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pids(self) -> list[int]:
        """The binary and every descendant (nginx workers, pushpin's condure/zurl/proxy/handler)."""
        if not self.alive or self.pid is None:
            return []
        try:
            root = psutil.Process(self.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines the binary wrote (stdout and stderr together)."""
        return tail_lines(self.log_path, lines)

    def _await(self, ready: Callable[[], bool], timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise TargetError(self._failure(f"exited with code {code} before it was ready"))
            if ready():
                self._ready = True
                return
            if time.monotonic() >= deadline:
                raise TargetError(self._failure(f"not ready after {timeout_s:g} s"))
            time.sleep(_POLL_S)

    def _failure(self, why: str) -> str:
        tail = self.log_tail()
        where = f" (log: {self.log_path})" if self.log_path else ""
        msg = f"{self.name} {why}{where}"
        return f"{msg}; last log lines:\n{tail}" if tail else f"{msg}; it wrote nothing"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __repr__(self) -> str:
        return f"<BinaryProcess {self.name} pid={self.pid} {'alive' if self.alive else 'stopped'}>"


@atexit.register
def _stop_all() -> None:
    # A harness that dies on an exception must not leave servers holding ports.
    for proc in list(_live):
        proc.stop()
