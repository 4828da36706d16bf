"""Socket.IO as a target (``--target socketio``): npm ``socket.io`` 4.8 on Node.

Socket.IO is what many teams' push gateways are built on. Its sessions speak
Engine.IO 4 / Socket.IO 5 over WebSocket (``0{…}`` open, ``40`` connect,
``42["event",…]`` events, ``2``/``3`` ping/pong): the ``socketio`` subscriber
protocol of :mod:`deliverybench.core.protocols`. The server is
``targets/socketio_server/server.js``, a few lines around the real library:
``POST /publish`` emits the body to every client (``io.emit``), WebSocket
transport only, on 127.0.0.1. It binds port 0 and prints one ready line,
``{"ready":true,"pid":…,"port":…}``, which the target reads from the
server's log, so no port is raced for.

Its npm packages are installed into ``targets/socketio_server/node_modules``
(ignored by git) with ``npm ci --prefix targets/socketio_server``; without
them the target says so in one line instead of starting a server that cannot
run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import Dialect
from targets._binary import BinaryProcess
from targets.server_target import ServerTarget

__all__ = ["SERVER_DIR", "SocketIOTarget", "installed_version", "missing", "ready_port"]

#: server.js, its package.json and package-lock.json, and (once installed) node_modules
SERVER_DIR = Path(__file__).resolve().parent / "socketio_server"
_READY_PREFIX = '{"ready":'


def installed_version() -> str:
    """The installed socket.io's version ("" when it is not installed), for the results file."""
    try:
        return str(json.loads((SERVER_DIR / "node_modules" / "socket.io" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return ""


def ready_port(log: str) -> int | None:
    """The port in the server's ready line, if ``log`` (its output so far) holds one."""
    for line in log.splitlines():
        if not line.startswith(_READY_PREFIX):
            continue
        try:
            port = json.loads(line).get("port")
        except ValueError:
            continue  # the line is still being written
        if isinstance(port, int) and 0 < port < 65536:
            return port
    return None


class SocketIOTarget(ServerTarget):
    """A Socket.IO 4.8 server on Node, started from ``targets/socketio_server``: push mode only."""

    name: ClassVar[str] = "socketio"
    offers: ClassVar[tuple[str, ...]] = ("push",)
    binary: ClassVar[tuple[str, str]] = ("node", "nodejs")
    install_hint: ClassVar[str] = "apt-get install nodejs npm"

    def __init__(self) -> None:
        super().__init__()
        self.port: int | None = None

    @classmethod
    def missing(cls) -> str | None:
        """Why the Socket.IO server cannot run here: no Node, or its npm packages not installed."""
        if (problem := super().missing()) is not None:
            return problem
        if not (SERVER_DIR / "node_modules" / "socket.io" / "package.json").is_file():
            return f"the Socket.IO server's npm packages are not installed: run npm ci --prefix {SERVER_DIR}"
        return None

    def launch(self, workdir: Path) -> tuple[list[str], Callable[[BinaryProcess], bool], Path]:
        return [str(SERVER_DIR / "server.js"), "0"], self._read_port, SERVER_DIR

    def _read_port(self, server: BinaryProcess) -> bool:
        if server.log_path is None:
            return False
        self.port = ready_port(server.log_path.read_text(errors="replace"))
        return self.port is not None

    def forget(self) -> None:
        self.port = None

    @property
    def ingress_url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}/publish" if self.port else None

    def egress_url(self, mode: str) -> str | None:
        if mode not in self.offers or not self.port:
            return None
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    @property
    def health_url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}/health" if self.port else None

    def dialect(self, mode: str) -> Dialect:
        """Engine.IO / Socket.IO framing on the WebSocket; the event itself is the POST body."""
        return Dialect(protocol="socketio")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": installed_version(),
                "options": {"transports": ["websocket"], "per_message_deflate": False}}


#: why the Socket.IO server cannot run here, or None (for the tests' skip marks)
missing = SocketIOTarget.missing
