"""NATS over WebSocket as a target (``--target nats``): Debian ``nats-server``.

NATS is a real pub/sub server with a protocol of its own: a subscriber sends
``CONNECT`` and ``SUB <subject> <sid>`` once its WebSocket is open and gets
each message as ``MSG <subject> <sid> <bytes>\\r\\n<payload>\\r\\n`` (the
``nats`` subscriber protocol of :mod:`deliverybench.core.protocols`); the
harness publishes with ``PUB <subject> <bytes>`` lines on the plain client
port (a ``tcp://`` ingress), after a ``CONNECT`` greeting. Both are said by
the target's :class:`~deliverybench.core.dialect.Dialect`, so nothing in the
harness knows it is talking to NATS.

The target writes a configuration file into a temporary directory of its
own -- the client port, the ``websocket`` block and the monitoring port (for
the health check, ``/healthz``), each on a free 127.0.0.1 port -- and runs
``nats-server -c`` as a child of the run, so nothing is shared with a NATS the
machine may run and nothing outlives the run. Only push mode is offered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import DEFAULT_CHANNEL, Dialect
from targets._binary import BinaryProcess, free_port
from targets.server_target import ServerTarget

__all__ = ["NatsPorts", "NatsTarget", "PUBLISH_GREETING", "PUBLISH_TEMPLATE", "missing", "render_config"]

#: what the publisher sends once per connection: no ``+OK`` per ``PUB`` (verbose off)
PUBLISH_GREETING = 'CONNECT {"verbose":false,"pedantic":false}\r\n'
#: one event as one NATS ``PUB``: the subject, the payload's size in bytes, the payload
PUBLISH_TEMPLATE = "PUB {channel} {event|length}\r\n{event}\r\n"

CONFIG = """\
# written by deliverybench for one run; every listener on the loopback interface
listen: "127.0.0.1:{client}"
http: "127.0.0.1:{monitor}"
max_connections: {max_connections}
websocket {{
    listen: "127.0.0.1:{websocket}"
    no_tls: true
    compression: false
}}
"""


@dataclass(frozen=True, slots=True)
class NatsPorts:
    """The three loopback ports one nats-server listens on."""

    client: int
    websocket: int
    monitor: int


def render_config(ports: NatsPorts, *, max_connections: int = 65536) -> str:
    """The nats-server configuration serving ``ports`` on 127.0.0.1 (WebSocket without TLS: loopback only)."""
    return CONFIG.format(client=ports.client, websocket=ports.websocket, monitor=ports.monitor,
                         max_connections=max_connections)


class NatsTarget(ServerTarget):
    """nats-server started from the Debian package: subscribers on its WebSocket, the publisher on its client port.

    Args:
        channel: the subject events are published to and subscribed on.
        max_connections: ``max_connections`` (sessions plus publisher connections).
    """

    name: ClassVar[str] = "nats"
    offers: ClassVar[tuple[str, ...]] = ("push",)
    binary: ClassVar[tuple[str, str]] = ("nats-server", "nats-server")

    def __init__(self, *, channel: str = DEFAULT_CHANNEL, max_connections: int = 65536) -> None:
        super().__init__()
        self.channel = channel
        self.max_connections = max_connections
        self.ports: NatsPorts | None = None

    def launch(self, workdir: Path) -> tuple[list[str], Callable[[BinaryProcess], bool], Path]:
        self.ports = NatsPorts(client=free_port(), websocket=free_port(), monitor=free_port())
        conf = workdir / "nats.conf"
        conf.write_text(render_config(self.ports, max_connections=self.max_connections))
        return ["-c", str(conf)], lambda _server: self.health(), workdir

    def forget(self) -> None:
        self.ports = None

    @property
    def ingress_url(self) -> str | None:
        return f"tcp://127.0.0.1:{self.ports.client}" if self.ports else None

    def egress_url(self, mode: str) -> str | None:
        if mode not in self.offers or self.ports is None:
            return None
        return f"ws://127.0.0.1:{self.ports.websocket}/"

    @property
    def health_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ports.monitor}/healthz" if self.ports else None

    def dialect(self, mode: str) -> Dialect:
        """NATS framing both ways: ``CONNECT``/``SUB`` and ``MSG`` on the WebSocket, ``PUB`` on the client port."""
        return Dialect(protocol="nats", channel=self.channel, publish_template=PUBLISH_TEMPLATE,
                       publish_greeting=PUBLISH_GREETING)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {"max_connections": self.max_connections,
                                                  "websocket_compression": False}}


#: why nats-server cannot run here, or None (for the tests' skip marks)
missing = NatsTarget.missing
