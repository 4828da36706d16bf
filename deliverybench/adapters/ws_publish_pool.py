"""Publishing over WebSocket: each event one text frame on one of a few publisher connections (``ws://``, ``wss://``).

Servers whose publishers are WebSocket clients themselves (a Node ``ws``
fan-out, a chat server, a GraphQL gateway with mutations over the socket)
take events this way. Each connection is websockets' own sans-I/O
:class:`~websockets.client.ClientProtocol` driven by a bare asyncio protocol
-- the library does the opening handshake, masking, answering pings and the
closing handshake; no task or queue per connection. After the handshake the
greeting (if any) is sent as one text frame; then the connection carries
events. What the server sends back is read by the library (frames over
``max_size`` fail the connection) and dropped.

A frame is accepted when it is written (see :mod:`.frame_publish_pool`).
A failed handshake (``ws_handshake``), a close from the server
(``ws_closed``) or a protocol error (``ws_protocol``) ends the connection;
the pool opens another and, after several such in a row, gives up.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from .frame_publish_pool import FrameConnection, FramePool
from .http_post import ResultCallback

__all__ = ["WsPublishPool"]

_LOGGER = logging.getLogger("deliverybench.ws_publish")
#: the largest frame read from the server (it has no reason to send big ones to a publisher)
MAX_READ = 2**20


class _WsPublisher(FrameConnection):
    def __init__(self, pool: WsPublishPool) -> None:
        super().__init__(pool)
        self.proto = ClientProtocol(pool.uri, max_size=MAX_READ, logger=_LOGGER)

    def begin(self) -> None:
        self.proto.send_request(self.proto.connect())
        self._flush()

    def frame(self, body: bytes) -> None:
        self.proto.send_text(body)
        self._flush()

    def receive(self, data: bytes) -> None:
        self.proto.receive_data(data)
        self._read()

    def receive_eof(self) -> None:
        self.proto.receive_eof()  # completes a refusal whose body runs to the end of the stream
        self._read()

    def _read(self) -> None:
        proto = self.proto
        proto.events_received()  # the handshake response and any frames: nothing here wants them
        self._flush()
        if proto.handshake_exc is not None:
            self.fail("ws_handshake", f"the WebSocket handshake failed: {proto.handshake_exc}")
        elif proto.state is not State.OPEN and proto.state is not State.CONNECTING:
            if proto.parser_exc is not None:
                self.fail("ws_protocol", f"the server broke the protocol: {proto.parser_exc}", flush=True)
            else:
                self.fail("ws_closed", f"the server closed the publisher connection ({proto.close_rcvd})",
                          flush=True)
        elif not self.ready_ns and proto.state is State.OPEN:
            greeting = self.pool.greeting
            if greeting:
                self.frame(greeting)
            self.ready()

    def goodbye(self) -> bytes:
        if self.proto.state is not State.OPEN:
            return b""
        self.proto.send_close(1000)
        return b"".join(self.proto.data_to_send())

    def _flush(self) -> None:
        transport = self.transport
        for data in self.proto.data_to_send():
            if data and transport is not None:
                transport.write(data)


class WsPublishPool(FramePool):
    """A few publisher WebSockets to ``url``; ``greeting`` (already filled in) is sent once on each."""

    def __init__(self, url: str, *, size: int, timeout_s: float, on_result: ResultCallback, greeting: bytes = b"",
                 max_connect_failures: int = 5, healthy_after_s: float = 1.0,
                 on_failure: Callable[[str], None] | None = None) -> None:
        try:
            self.uri = parse_uri(url)
        except Exception as exc:
            raise ValueError(f"not a ws(s) URL: {url!r} ({exc})") from None
        super().__init__(self.uri.host, self.uri.port,
                         ssl_context=ssl.create_default_context() if self.uri.secure else None, size=size,
                         timeout_s=timeout_s, on_result=on_result, greeting=greeting,
                         max_connect_failures=max_connect_failures, healthy_after_s=healthy_after_s,
                         on_failure=on_failure)

    def connection(self) -> FrameConnection:
        return _WsPublisher(self)
