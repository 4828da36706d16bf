"""A real server started from its package: what every such target does alike.

NATS, mosquitto and the Socket.IO server differ in their configuration and
in how they say they are ready; starting, stopping and owning them is the
same: one :class:`~targets._binary.BinaryProcess` (its own process group, no
child outliving the run) in a temporary directory of the target's own, gone
when the target stops, and one line when the package is missing. A subclass
names its binary and says how to :meth:`ServerTarget.launch` it.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from targets._binary import BinaryProcess, require_binary
from targets.base import Target, TargetError

__all__ = ["ServerTarget"]


class ServerTarget(Target):
    """One server binary, started in a private temporary directory and sampled as the target.

    Class attributes:
        binary: the executable's name and the Debian package that has it.
        install_hint: what to run when it is missing.
    """

    kind: ClassVar[str] = "server"
    binary: ClassVar[tuple[str, str]]
    install_hint: ClassVar[str] = ""

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self._server: BinaryProcess | None = None

    @classmethod
    def missing(cls) -> str | None:
        """Why the server cannot run here (one line), or None."""
        try:
            require_binary(*cls.binary)
        except TargetError as exc:
            return f"{exc}; {cls.install_hint or 'apt-get install ' + cls.binary[1]}"
        return None

    @abc.abstractmethod
    def launch(self, workdir: Path) -> tuple[list[str], Callable[[BinaryProcess], bool], Path]:
        """Write the configuration into ``workdir``; return the arguments after the binary, the readiness
        check (given the process, whose log it may read) and the directory to run in."""

    def forget(self) -> None:
        """Drop what one start learnt (its ports): the URLs are None again."""

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self._server is not None and self._server.alive:
            return
        problem = self.missing()
        if problem is not None:
            raise TargetError(problem)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"deliverybench-{self.name}-"))
        args, ready, cwd = self.launch(self.workdir)
        server = self._server = BinaryProcess([require_binary(*self.binary), *args], name=self.binary[0], cwd=cwd)
        try:
            server.start(lambda: ready(server), timeout_s)
        except TargetError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.forget()

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def pids(self) -> list[int]:
        return self._server.pids() if self._server is not None else []
