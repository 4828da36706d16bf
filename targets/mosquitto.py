"""MQTT over WebSocket as a target (``--target mosquitto``): Debian ``mosquitto``.

Subscribers open mosquitto's WebSocket listener (subprotocol ``mqtt``) and
speak MQTT 3.1.1 in binary frames: ``CONNECT`` and ``SUBSCRIBE`` at QoS 0
once open, then a ``PUBLISH`` per event (the ``mqtt`` subscriber protocol,
:mod:`deliverybench.core.mqtt`). The harness publishes on the plain MQTT port
(a ``tcp://`` ingress): a ``CONNECT`` greeting, then one QoS 0 ``PUBLISH``
per event (the ``{event|mqtt}`` placeholder).

Held to loopback on purpose: mosquitto 2.0's WebSocket listener binds every
interface even when told ``listener <port> 127.0.0.1`` (measured with ``ss
-ltnp``; ``bind_interface lo`` does not change it) unless the listener also
says ``socket_domain ipv4`` -- then it binds 127.0.0.1 alone. A WebSocket
listener alone does not start (``Unable to start any listening sockets``),
so the plain MQTT listener is the first one, on 127.0.0.1 too. The
configuration, persistence off and the log go into a temporary directory of
the target's own; nothing outlives the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import DEFAULT_CHANNEL, Dialect
from deliverybench.core.mqtt import connect_packet
from targets._binary import BinaryProcess, free_port
from targets.base import tcp_reachable
from targets.server_target import ServerTarget

__all__ = ["MosquittoTarget", "PUBLISH_GREETING", "PUBLISH_TEMPLATE", "render_config", "missing"]

#: the publisher's ``CONNECT`` (MQTT 3.1.1, clean session, keep-alive off, the broker names the client):
#: :func:`deliverybench.core.mqtt.connect_packet`, written as the ``\\xHH`` escapes a greeting is given in
PUBLISH_GREETING = "".join(f"\\x{byte:02x}" for byte in connect_packet())
#: one event as one QoS 0 ``PUBLISH`` to the channel
PUBLISH_TEMPLATE = "{event|mqtt}"

CONFIG = """\
# written by deliverybench for one run; both listeners on 127.0.0.1 only
per_listener_settings false
allow_anonymous true
persistence false
log_dest file {log}
max_queued_messages 100000
listener {mqtt} 127.0.0.1
socket_domain ipv4
listener {websocket} 127.0.0.1
socket_domain ipv4
protocol websockets
"""


def render_config(mqtt_port: int, websocket_port: int, log: Path) -> str:
    """The mosquitto configuration: plain MQTT and MQTT over WebSocket, both on 127.0.0.1 alone."""
    return CONFIG.format(mqtt=mqtt_port, websocket=websocket_port, log=log)


class MosquittoTarget(ServerTarget):
    """mosquitto started from the Debian package: subscribers over WebSocket, the publisher on the MQTT port.

    Args:
        channel: the topic events are published to and subscribed on.
    """

    name: ClassVar[str] = "mosquitto"
    offers: ClassVar[tuple[str, ...]] = ("push",)
    binary: ClassVar[tuple[str, str]] = ("mosquitto", "mosquitto")

    def __init__(self, *, channel: str = DEFAULT_CHANNEL) -> None:
        super().__init__()
        self.channel = channel
        self.ports: tuple[int, int] | None = None

    def launch(self, workdir: Path) -> tuple[list[str], Callable[[BinaryProcess], bool], Path]:
        self.ports = (free_port(), free_port())
        conf = workdir / "mosquitto.conf"
        conf.write_text(render_config(*self.ports, log=workdir / "mosquitto.log"))
        return ["-c", str(conf)], lambda _server: self.health(), workdir

    def forget(self) -> None:
        self.ports = None

    def health(self) -> bool:
        """Both listeners accept connections."""
        if self.ports is None:
            return False
        return all(tcp_reachable(f"tcp://127.0.0.1:{port}", timeout_s=1.0) is None for port in self.ports)

    @property
    def ingress_url(self) -> str | None:
        return f"tcp://127.0.0.1:{self.ports[0]}" if self.ports else None

    def egress_url(self, mode: str) -> str | None:
        if mode not in self.offers or self.ports is None:
            return None
        return f"ws://127.0.0.1:{self.ports[1]}/"

    def dialect(self, mode: str) -> Dialect:
        """MQTT both ways: CONNECT/SUBSCRIBE and PUBLISH in binary frames; CONNECT and PUBLISH on the MQTT port."""
        return Dialect(protocol="mqtt", channel=self.channel, publish_template=PUBLISH_TEMPLATE,
                       publish_greeting=PUBLISH_GREETING)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {"socket_domain": "ipv4 (holds the WebSocket listener to "
                                                                   "127.0.0.1)"}}


#: why mosquitto cannot run here, or None (for the tests' skip marks)
missing = MosquittoTarget.missing
