"""Publishing over a TCP line protocol: each event the rendered template, written on one of a few connections.

NATS takes ``PUB <subject> <bytes>\\r\\n<payload>\\r\\n`` on its client port
(so do Redis's ``PUBLISH`` and many in-house gateways, give or take the
syntax): ``tcp://host:port`` with ``--publish-template`` saying what one
event's lines are and ``--publish-greeting`` what opens a connection
(NATS: ``CONNECT {"verbose":false}\\r\\n``). Each connection is a bare
asyncio protocol that writes the greeting once connected, then events.

What the server sends is read line by line, within bounds (a line longer
than :data:`MAX_LINE` fails the connection): ``PING`` is answered ``PONG``
(NATS drops a client that does not), ``-ERR …`` fails the connection
(``tcp_err``, the line kept for the failure line), anything else (``INFO``,
``+OK``, ``PONG``) is ignored. A frame is accepted when it is written (see
:mod:`.frame_publish_pool`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..core.protocols import sample
from .frame_publish_pool import FrameConnection, FramePool
from .http_post import ResultCallback

__all__ = ["LinePublishPool", "MAX_LINE"]

#: the longest line read from the server (NATS's INFO is well under 2 KB)
MAX_LINE = 64 * 1024
_PING, _PONG, _ERR = b"PING", b"PONG\r\n", b"-ERR"


class _LinePublisher(FrameConnection):
    def __init__(self, pool: FramePool) -> None:
        super().__init__(pool)
        self.buf = b""

    def begin(self) -> None:
        if self.pool.greeting:
            self.frame(self.pool.greeting)
        self.ready()

    def frame(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(body)

    def receive(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        at = 0
        while (end := buf.find(b"\n", at)) >= 0:
            line = buf[at:end].rstrip(b"\r")
            at = end + 1
            if line == _PING:
                self.frame(_PONG)
            elif line.startswith(_ERR):
                self.fail("tcp_err", f"the server said {sample(line)}")
                return
        self.buf = buf[at:]
        if len(self.buf) > MAX_LINE:
            self.fail("tcp_protocol", f"the server sent a line over {MAX_LINE:,} bytes: {sample(self.buf)}")


class LinePublishPool(FramePool):
    """A few TCP connections to ``tcp://host:port``; ``greeting`` (already filled in) is written once on each."""

    def __init__(self, url: str, *, size: int, timeout_s: float, on_result: ResultCallback, greeting: bytes = b"",
                 max_connect_failures: int = 5, healthy_after_s: float = 1.0,
                 on_failure: Callable[[str], None] | None = None) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "tcp" or not parts.hostname or port is None:
            raise ValueError(f"not a tcp://host:port URL: {url!r}")
        super().__init__(parts.hostname, port, ssl_context=None, size=size, timeout_s=timeout_s,
                         on_result=on_result, greeting=greeting, max_connect_failures=max_connect_failures,
                         healthy_after_s=healthy_after_s, on_failure=on_failure)

    def connection(self) -> FrameConnection:
        return _LinePublisher(self)
