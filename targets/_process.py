"""Run a built-in server as a process of its own, and the ready-line protocol.

A target runs in its own process so that its CPU and memory can be sampled
apart from the harness, and so that a slow harness cannot steal the target's
event loop (or the other way round). The child binds port 0, then prints one
JSON line on stdout::

    {"ready": true, "pid": 1234, "urls": {"ingress": "http://127.0.0.1:40123/publish", ...}}

which is how the parent learns the real ports without racing for a free one.
Both halves of that contract live here: :class:`ServerProcess` for the parent,
:func:`announce_ready` and friends for the servers.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from deliverybench.adapters.children import child_options
from targets.base import TargetError

if TYPE_CHECKING:  # the parent side never imports aiohttp
    from aiohttp import web

__all__ = [
    "REPO_ROOT",
    "ServerProcess",
    "announce_ready",
    "url_for",
    "wait_for_signal",
    "serve_http",
    "tail_lines",
    "TAIL_LINES",
]

#: The directory holding the ``targets`` package; children run from here so
#: ``python -m targets.x`` works from a checkout that was never pip-installed.
REPO_ROOT = Path(__file__).resolve().parent.parent

_STOP_GRACE_S = 5.0
#: lines of a child's log shown when it fails
TAIL_LINES = 20
_live: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


class ServerProcess:
    """One ``python -m <module> <args>`` child that announces itself when ready.

    Args:
        module: dotted module name to run with ``-m``.
        args: its command-line arguments.
        ready_timeout_s: how long :meth:`start` waits for the ready line
            before killing the child.
    """

    def __init__(self, module: str, args: list[str], *, ready_timeout_s: float = 15.0,
                 env: dict[str, str] | None = None) -> None:
        self.module = module
        self.args = list(args)
        self.extra_env = dict(env or {})  # e.g. secrets, which must not show in the process list
        self.ready_timeout_s = ready_timeout_s
        self.urls: dict[str, str] = {}
        #: further processes of the server (workers it started), announced in its ready line
        self.extra_pids: list[int] = []
        self.log_path: Path | None = None
        self._pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._drain: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Launch the child and block until its ready line (or fail)."""
        if self._proc is not None:
            raise TargetError(f"{self.module} was already started")
        fd, name = tempfile.mkstemp(prefix=f"{self.module.rsplit('.', 1)[-1]}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        # A file, not a pipe: nobody reads stderr while the run goes on, and a
        # full pipe would stall the server mid-benchmark.
        self._log = open(self.log_path, "ab", buffering=0)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                **child_options(),  # its own group, and SIGTERM if the harness dies without stopping it
            )
        except OSError as exc:
            self._close_log()
            raise TargetError(f"cannot run {self.module}: {exc}") from None
        _live.add(self)
        try:
            self._await_ready()
        except BaseException:
            # A child that never became ready gets no grace period.
            if self._proc.poll() is None:
                self._proc.kill()
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL. Safe to call at any time."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        if proc is not None and self._drain is not None:
            self._drain.join(timeout=1.0)
        if proc is not None and proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()
        _live.discard(self)
        clean = proc is None or proc.returncode == 0
        self._close_log()
        if clean and self.log_path is not None:
            # A clean exit leaves nothing worth reading; a crash keeps its log.
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid the server reported (that is the one to sample)."""
        if self._pid is not None:
            return self._pid
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def stderr_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines the child wrote to stderr."""
        return tail_lines(self.log_path, lines)

    # -- internals ---------------------------------------------------------

    def _await_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        deadline = time.monotonic() + self.ready_timeout_s
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while True:
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if self._accept(line):
                        self._start_drain(buf)
                        return
                    self._log_write(b"[stdout] " + line + b"\n")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TargetError(self._failure(f"not ready after {self.ready_timeout_s:g} s"))
                if not sel.select(remaining):
                    continue
                chunk = os.read(out.fileno(), 65536)
                if not chunk:  # stdout closed: the child is gone or going
                    try:
                        self._proc.wait(1.0)
                    except subprocess.TimeoutExpired:
                        pass
                    code = self._proc.poll()
                    why = f"exited with code {code}" if code is not None else "closed stdout"
                    raise TargetError(self._failure(f"{why} before it was ready"))
                buf += chunk

    def _accept(self, line: bytes) -> bool:
        try:
            msg = json.loads(line)
        except ValueError:
            return False
        if not isinstance(msg, dict) or msg.get("ready") is not True:
            return False
        urls = msg.get("urls")
        if not isinstance(urls, dict) or not all(isinstance(v, str) for v in urls.values()):
            raise TargetError(f"{self.module} sent a ready line without a urls object: {line[:200]!r}")
        pid = msg.get("pid")
        self._pid = pid if isinstance(pid, int) else None
        pids = msg.get("pids")
        self.extra_pids = [p for p in pids if isinstance(p, int) and p != self._pid] if isinstance(pids, list) else []
        self.urls = dict(urls)
        return True

    def _start_drain(self, pending: bytes) -> None:
        """Keep reading stdout after ready so a chatty child never blocks on it."""
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        if pending:
            self._log_write(b"[stdout] " + pending)

        def drain() -> None:
            try:
                while chunk := os.read(out.fileno(), 65536):
                    self._log_write(chunk)
            except (OSError, ValueError):
                pass

        self._drain = threading.Thread(target=drain, name=f"drain-{self.module}", daemon=True)
        self._drain.start()

    def _log_write(self, data: bytes) -> None:
        log = self._log
        if log is not None and not log.closed:
            try:
                log.write(data)
            except (OSError, ValueError):
                pass

    def _failure(self, why: str) -> str:
        tail = self.stderr_tail()
        where = f" (log: {self.log_path})" if self.log_path else ""
        msg = f"{self.module} {why}{where}"
        return f"{msg}; last stderr lines:\n{tail}" if tail else f"{msg}; it wrote nothing to stderr"

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ServerProcess {self.module} pid={self.pid} {state}>"


@atexit.register
def _stop_all() -> None:
    # A harness that dies on an exception must not leave servers holding ports.
    for proc in list(_live):
        proc.stop()


def tail_lines(path: Path | None, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a child's log file (its last 16 KiB read); "" when there is none."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 16_384))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


# -- the server side of the contract ----------------------------------------


def url_for(scheme: str, host: str, port: int, path: str = "/") -> str:
    """A URL for a bound socket; IPv6 literals get their brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


def announce_ready(urls: Mapping[str, str], *, pids: list[int] | None = None) -> None:
    """Print the one ready line on stdout and flush it; logs belong on stderr.

    ``pids`` are every process of the server (its own first), when it has workers.
    """
    msg: dict[str, object] = {"ready": True, "pid": os.getpid(), "urls": dict(urls)}
    if pids:
        msg["pids"] = list(pids)
    line = json.dumps(msg, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def wait_for_signal() -> signal.Signals:
    """Return when SIGTERM or SIGINT arrives, so a server can shut down and exit 0."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[signal.Signals] = loop.create_future()
    sigs = (signal.SIGTERM, signal.SIGINT)

    def arrived(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig)

    for sig in sigs:
        loop.add_signal_handler(sig, arrived, sig)
    try:
        return await got
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


async def serve_http(app: web.Application, host: str, port: int, paths: Mapping[str, str], *,
                     backlog: int = 128, bound: Callable[[int], None] | None = None,
                     more: Mapping[str, str] | None = None) -> signal.Signals:
    """Bind ``app``, announce ``paths`` (role -> path) as http URLs of the bound port, run until a signal.

    ``bound(port)`` runs once bound, before the ready line (settle the GC, log); ``more`` are whole URLs
    announced beside (a WebSocket server's). Returns the signal.
    """
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=backlog)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        if bound is not None:
            bound(bound_port)
        announce_ready({**{role: url_for("http", host, bound_port, path) for role, path in paths.items()},
                        **(more or {})})
        return await wait_for_signal()
    finally:
        await runner.cleanup()
