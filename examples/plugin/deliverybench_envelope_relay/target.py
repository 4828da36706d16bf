"""The envelope relay as a deliverybench target: the whole adapter a plugin has to write."""
from deliverybench.core.dialect import Dialect
from targets._process import ServerProcess
from targets.base import Target

__all__ = ["EnvelopeRelayTarget"]


class EnvelopeRelayTarget(Target):
    """Starts the relay as a child process, whose messages are ``{"type":"event","data":<event>}``."""
    name = "envelope-relay"
    kind = "server"  # started here, its CPU and memory sampled as the target's

    def __init__(self) -> None:
        self.server = ServerProcess("deliverybench_envelope_relay.server", ["--host", "127.0.0.1"])

    def start(self, *, timeout_s: float = 15.0) -> None:
        self.server.ready_timeout_s = timeout_s
        self.server.start()  # returns once the child has printed its ready line with its URLs

    def stop(self) -> None:
        self.server.stop()

    @property
    def ingress_url(self) -> str | None:
        return self.server.urls.get("ingress")

    def egress_url(self, mode: str) -> str | None:
        return self.server.urls.get(mode)  # the ready line names a "push" URL only

    @property
    def health_url(self) -> str | None:
        return self.server.urls.get("health")

    def pids(self) -> list[int]:
        return [self.server.pid] if self.server.alive and self.server.pid else []

    def dialect(self, mode: str) -> Dialect:
        return Dialect(event_path="/data")  # the harness finds each event at this JSON pointer
