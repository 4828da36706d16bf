"""An external push server given by URL: the harness attaches, never starts it.

By default a relay must forward whatever body is POSTed to ``publish_url``
verbatim to every WebSocket session open on ``subscribe_url``. A server that
does not (an envelope, a subscribe message after the handshake, framing of
its own, a publish API of its own shape, publishing over a WebSocket or a TCP
line protocol) is described by the options of a
:class:`~deliverybench.core.dialect.Dialect` (``--event-path``,
``--subscribe-message``, ``--protocol``, ``--publish-template``, ...), which
travel beside the URLs. Its processes are not ours, so none are sampled.
"""

from __future__ import annotations

import urllib.parse
from typing import ClassVar

from targets.base import Target, TargetError, tcp_reachable

__all__ = ["RelayTarget"]

_CONNECT_TIMEOUT_S = 3.0


def _check_url(role: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise TargetError(f"relay {role} URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in schemes or not parts.hostname:
        want = " or ".join(f"{s}://" for s in schemes)
        raise TargetError(f"relay {role} URL must start with {want} and name a host, got {url!r}")


class RelayTarget(Target):
    """An external server that forwards POSTed events to its WebSocket subscribers.

    Args:
        publish_url: ``http(s)://`` URL the harness POSTs events to, or a ``ws(s)://`` or ``tcp://`` one it
            sends them over.
        subscribe_url: ``ws(s)://`` URL subscribers connect to.
        poll_url: optional ``http(s)://`` NDJSON poll endpoint.
        health_url: optional ``http(s)://`` URL answering 2xx when healthy;
            without one, health means the publish port accepts connections.
    """

    name: ClassVar[str] = "relay"
    kind: ClassVar[str] = "external"

    def __init__(
        self,
        *,
        publish_url: str,
        subscribe_url: str,
        poll_url: str | None = None,
        health_url: str | None = None,
    ) -> None:
        self.publish_url = publish_url
        self.subscribe_url = subscribe_url
        self.poll_url = poll_url
        self._health_url = health_url

    def validate(self) -> None:
        """Raise TargetError unless every URL has a usable scheme and host."""
        _check_url("publish", self.publish_url, ("http", "https", "ws", "wss", "tcp"))
        _check_url("subscribe", self.subscribe_url, ("ws", "wss"))
        _check_url("poll", self.poll_url, ("http", "https"))
        _check_url("health", self._health_url, ("http", "https"))

    def start(self, *, timeout_s: float = 15.0) -> None:
        """Check the URLs and that both ports accept TCP connections; starts nothing."""
        self.validate()
        wait = min(_CONNECT_TIMEOUT_S, timeout_s)
        for role, url in (("publish", self.publish_url), ("subscribe", self.subscribe_url)):
            reason = tcp_reachable(url, timeout_s=wait)
            if reason is not None:
                raise TargetError(f"cannot reach relay {role} URL {url}: {reason}")
        if self._health_url is not None and not self.health():
            raise TargetError(f"relay health check failed: {self._health_url} did not answer 2xx")

    def stop(self) -> None:
        """Nothing to stop: the relay is not ours."""

    @property
    def ingress_url(self) -> str | None:
        return self.publish_url

    def egress_url(self, mode: str) -> str | None:
        return {"push": self.subscribe_url, "poll": self.poll_url}.get(mode)

    @property
    def health_url(self) -> str | None:
        return self._health_url

    def health(self) -> bool:
        if self._health_url is not None:
            return super().health()
        return tcp_reachable(self.publish_url, timeout_s=2.0) is None

    def pids(self) -> list[int]:
        return []
