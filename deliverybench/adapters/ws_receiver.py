"""A push subscriber's WebSocket session as a bare asyncio Protocol: no task, no queue, no copies.

Measured on the development machine (10,000 sessions, 1 event/s, 256 B
frames), websockets' asyncio ``ClientConnection`` with a task per session
cost ~10 KB and 1-3 µs per message more than a bare uvloop
``asyncio.Protocol``, and picows (Cython) ~7.5 µs and ~9 KB; the bare
protocol is the floor (~5.5 µs, 2.5 KB). So a session here is:

* :class:`PushReceiver` -- one ``asyncio.Protocol`` per connection. Bytes are
  stamped the moment they arrive (``data_received``), before any parsing.
  Whole, final, unmasked text/binary frames -- every frame a target sends
  when nothing is wrong -- are cut out of the chunk right here and their
  event head (id, due, sent) appended to the process's
  :class:`~deliverybench.core.intake.Intake` columns; a frame split across
  chunks waits in a small buffer.
* Everything else goes to websockets' own sans-I/O
  :class:`~websockets.client.ClientProtocol`, one whole frame at a time so it
  is always at a frame boundary: the opening handshake, pings (a whole,
  valid ping is answered with a pong the library's ``Frame`` serialises; any other control
  frame goes through its parser), close frames (it completes the closing handshake), fragmented
  messages (it checks the sequence; the fragments are joined here), masked or
  RSV frames and frames over ``max_size`` (it fails the connection with the
  right close code). Protocol correctness stays in the library.
* An idle session holds no library object. The handshake's protocol is
  dropped once the connection is open: its parser generators keep the whole
  HTTP response alive (headers, strings), and with them it was ~2.5 KB of
  the ~7.3 KB an idle session cost (RSS, 5,000 sessions, no Locust). Whole data frames and whole pings never change
  a ``ClientProtocol``'s state, so until the first other frame (or our own
  close) a fresh one in state OPEN is exactly the one that was dropped; it
  is made then, and kept for the rest of the connection.
* Once the connection is failing or closing (the library refused a frame,
  the server or the session started the closing handshake) nothing more is
  cut into frames here: every byte goes to the library, which discards it
  or reads only the close frame. The payload of a refused oversized frame
  can never be taken for events.
* A target that speaks a protocol of its own (an envelope, NATS, Socket.IO,
  graphql-transport-ws; :mod:`~deliverybench.core.protocols`) is offered its
  subprotocols in the handshake and sent its greeting once open; every
  message that is not a canonical event goes through the connection's
  :class:`~deliverybench.core.protocols.Reader` (one per process, or one per
  connection when the protocol keeps state), and its replies are sent back.
  A chunk that is one whole frame whose reading stands alone and holds one
  plain event is remembered as the raw path's chunks are -- in a cache of
  that protocol's own, so the same bytes never mean two things -- and read
  once per process. A message that does not decode is counted by its kind
  and the first one kept as a sample (:mod:`.undecodable`).
* :class:`PushSession` -- the subscriber: connects, reconnects after a
  failed handshake or a drop (with jittered, capped exponential backoff),
  keeps its subscription windows, sends echo probes, closes politely.

Nothing here knows about Locust; it runs in whatever loop it is started in.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from ..core.event import EVENT_PREFIX, WARMUP_MARK, MalformedEvent, read_head
from ..core.process_recorder import ProcessRecorder
from ..core.protocols import EVENT_SHAPE, MalformedMessage, Reader, Reading, SubscriberProtocol
from . import undecodable, worker_clock
from .dial import dial

__all__ = ["PushSessionOptions", "PushSession", "PushReceiver", "reconnect_delay", "first_head"]

#: one logger for every session's protocol (websockets makes one per connection otherwise)
_LOGGER = logging.getLogger("deliverybench.ws")
_ECHO = b'{"echo":'
_DUE = b'"due_ns":'
_SENT = b'"sent_ns":'
_HEADERS_END = b"\r\n\r\n"
_MAX_HANDSHAKE = 64 * 1024
_CLOSE_WAIT_S = 2.0
_MIN64, _MAX64 = -(2**63), 2**63 - 1
#: handshake answers that say "not now" rather than "not here": each is counted by its code
_RETRY_LATER = frozenset({408, 429})
#: whole-frame chunks already read, and their (id, due, sent): the same event reaches every
#: session of the process as the same bytes, so each is read once, not once per session.
#: Bounded (cleared when full), so no input can make it grow; the loop thread alone uses it.
_HEADS: dict[bytes, tuple[int, int, int]] = {}
_HEADS_KEPT = 4096
#: what the cache holds for a warm-up event: delivered, dropped
_WARMUP = (-1, -1, -1)
#: the cache a connection looks in while its reader holds part of an operation: always empty, so every
#: chunk goes to the reader (never written: writes go to the protocol's own cache)
_NO_HEADS: dict[bytes, tuple[int, int, int]] = {}


@dataclass(frozen=True, slots=True)
class PushSessionOptions:
    url: str
    open_timeout_s: float = 10.0
    local_addr: str | None = None
    echo_interval_s: float = 0.0
    #: the first wait before connecting again; it doubles with every failure in a row, up to
    #: ``reconnect_max_delay_s`` (see :func:`reconnect_delay`)
    reconnect_delay_s: float = 1.0
    reconnect_max_delay_s: float = 5.0
    #: failed attempts in a row before the session gives up (about 30 s of trying with the defaults,
    #: inside the 60 s the controller waits for subscribers)
    max_reconnects: int = 10
    #: largest message accepted (websockets' default); a larger frame fails the connection (1009)
    max_size: int = 2**20
    #: client keepalive pings (off: servers ping their clients, and a ping per session is a large
    #: share of the harness's CPU at low event rates)
    ping_interval_s: float | None = None
    #: how the target speaks (subprotocols, greeting, where events are); None: the relay contract
    protocol: SubscriberProtocol | None = None


class PushReceiver(asyncio.Protocol):
    """One WebSocket connection of a :class:`PushSession` (see the module docstring).

    ``proto`` is the library's protocol while it has a part to play: the
    handshake, then from the first frame that is not a whole data frame or
    ping (or our own close) to the end; ``None`` while the connection is open
    and only whole data frames and pings have come.
    """

    __slots__ = ("session", "transport", "proto", "buf", "opened", "live", "fragments", "_close_timer",
                 "appenders", "index", "heads", "reader")

    def __init__(self, session: PushSession) -> None:
        self.session = session
        self.appenders = session.recorder.intake.appenders
        self.index = session.index
        self.transport: asyncio.Transport | None = None
        protocol = session.options.protocol
        offered = [Subprotocol(name) for name in protocol.subprotocols] if protocol is not None else []
        self.proto: ClientProtocol | None = ClientProtocol(session.uri, max_size=session.options.max_size,
                                                           subprotocols=offered or None, logger=_LOGGER)
        #: the chunks already read, by what they hold: the relay contract's, or the protocol's own
        self.heads = _heads_of(protocol)
        #: None: each message is the event itself (the relay contract)
        self.reader: Reader | None = None
        if protocol is not None and not protocol.verbatim:
            self.reader = protocol.reader() if protocol.stateful else _shared_reader(protocol)
        self.buf = b""
        self.opened = False
        #: open and not failing or closing: only then are frames cut out here
        self.live = False
        self.fragments: list[bytes] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        proto = self._protocol()
        proto.send_request(proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        rx_ns = worker_clock.now_ns()
        # The hot path. Every session receives the same bytes for the same event, so a chunk seen
        # before (the same whole frame, byte for byte) is not read again: its head is looked up.
        heads = self.heads
        head = heads.get(data)
        if head is not None and not self.buf and self.live:
            if head is _WARMUP:
                return
            add_sub, add_id, add_due, add_sent, add_rx = self.appenders
            add_id(head[0])
            add_due(head[1])
            add_sent(head[2])
            add_sub(self.index)
            add_rx(rx_ns)
            return
        # First sight: is the chunk exactly one whole, final, unmasked text frame holding one
        # canonical event? (What every message is when nothing is wrong.)
        at = _whole_frame(data) if not self.buf and self.live else 0
        if at:
            if data[0] == 0x81 and len(data) > 4 and heads is not _NO_HEADS:
                parts = data.split(b",", 3)
                if (len(parts) == 4 and parts[0][at:at + 6] == EVENT_PREFIX and parts[1][:9] == _DUE
                        and parts[2][:10] == _SENT and data[-1] == 125 and b"\n" not in parts[3]):
                    try:
                        head = (int(parts[0][at + 6:]), int(parts[1][9:]), int(parts[2][10:]))
                    except ValueError:  # not plain digits after all: the careful path decides
                        self.session.message(data[at:], rx_ns)
                        return
                    if all(_MIN64 <= v <= _MAX64 for v in head):
                        if len(heads) >= _HEADS_KEPT:
                            heads.clear()
                        if parts[3].startswith(WARMUP_MARK):
                            heads[data] = _WARMUP
                            return
                        heads[data] = head
                        self.data_received_known(head, rx_ns)
                        return
                    self.session.message(data[at:], rx_ns)  # beyond 64 bits: counted by field there
                    return
            if self.reader is not None:
                self._first_sight(data, data[at:], rx_ns)
                return
        self._walk(data, rx_ns)

    def _first_sight(self, chunk: bytes, message: bytes, rx_ns: int) -> None:
        """A chunk that is one whole frame, through the reader; remembered when it holds one plain event alone."""
        reading = self._read(message, rx_ns)
        if reading is None:
            return
        if reading.whole and len(reading.events) == 1 and not reading.replies:
            head = first_head(reading.events[0])
            if head is not None:
                heads = self.heads  # the protocol's own: a whole reading means nothing was pending
                if len(heads) >= _HEADS_KEPT:
                    heads.clear()
                heads[chunk] = head
                if head is not _WARMUP:
                    self.data_received_known(head, rx_ns)
                return
        self._act(reading, rx_ns)

    def message(self, data: bytes, rx_ns: int) -> None:
        """One whole message off the hot path: the event itself, or what the protocol's reader finds in it."""
        if self.reader is None:
            self.session.message(data, rx_ns)
            return
        reading = self._read(data, rx_ns)
        if reading is not None:
            self._act(reading, rx_ns)

    def _read(self, message: bytes, rx_ns: int) -> Reading | None:
        """The reader's reading of ``message``, or None when it was not for the reader or did not decode."""
        reader = self.reader
        assert reader is not None
        if message.startswith(_ECHO):  # our own probe, echoed by the server
            self.session.message(message, rx_ns)
            return None
        try:
            reading = reader.read(message)
        except MalformedMessage as exc:
            self.session.undecodable(message, exc, rx_ns)
            reading = None
        if reader.pending:  # part of an operation waits: no chunk may be taken for what it held alone
            self.heads = _NO_HEADS
        elif self.heads is _NO_HEADS:
            self.heads = _heads_of(self.session.options.protocol)
        return reading

    def _act(self, reading: Reading, rx_ns: int) -> None:
        for reply in reading.replies:
            self.send_protocol(reply)
        for event in reading.events:
            self.session.message(event, rx_ns)

    def data_received_known(self, head: tuple[int, int, int], rx_ns: int) -> None:
        add_sub, add_id, add_due, add_sent, add_rx = self.appenders
        add_id(head[0])
        add_due(head[1])
        add_sent(head[2])
        add_sub(self.index)
        add_rx(rx_ns)

    def _walk(self, data: bytes, rx_ns: int) -> None:
        """Any other chunk: several frames, part of one, control frames, the handshake."""
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not self.live:
            if self.opened:  # failing or closing: the library discards it, or reads the close frame
                self._slow(data, rx_ns)
                return
            data = self._handshake(data, rx_ns)
            if not data:
                return
        max_size = self.session.options.max_size
        n, i = len(data), 0
        while i < n:
            if n - i < 2:
                break
            b0, b1 = data[i], data[i + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - i < 4:
                    break
                length, head = (data[i + 2] << 8) | data[i + 3], 4
            elif length == 127:
                if n - i < 10:
                    break
                length, head = int.from_bytes(data[i + 2:i + 10], "big"), 10
            if b0 == 0x89 and length <= 125 and not b1 & 0x80:
                # a whole, unmasked ping (the server's keepalive, every ~20 s per session): the
                # library builds the pong; reading the frame through its parser costs 2.5x as much
                end = i + head + length
                if end > n:
                    break
                self._send(Opcode.PONG, data[i + head:end])
                i = end
                continue
            if b1 & 0x80 or length > max_size or (b0 != 0x81 and b0 != 0x82):
                # masked, too big, control, fragment or RSV: the library's job, one frame at a time
                end = i + head + (length + 4 if b1 & 0x80 else length)
                if length > max_size:
                    end = i + head  # the header is enough for it to refuse
                if end > n:
                    break
                self._slow(data[i:end], rx_ns)
                if not self.live:
                    return  # the rest of the chunk belongs to a connection that is over
                i = end
                continue
            end = i + head + length
            if end > n:
                break
            self.message(data[i + head:end], rx_ns)
            i = end
        if i < n:
            self.buf = data[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        transport, self.transport = self.transport, None
        if transport is not None:
            self.session.lost(self, exc)

    # -- everything that is not a whole data frame --------------------------------------------
    def _handshake(self, data: bytes, rx_ns: int) -> bytes:
        end = data.find(_HEADERS_END)
        if end < 0:
            if len(data) > _MAX_HANDSHAKE:
                self.session.refused(self, "handshake", "no end of the HTTP response headers")
                self.abort()
            else:
                self.buf = data
            return b""
        proto = self._protocol()
        proto.receive_data(data[:end + 4])  # the response alone: the protocol stays at a frame boundary
        for event in proto.events_received():
            if isinstance(event, Response):
                break
        self._flush()
        if proto.state is not State.OPEN:
            exc = proto.handshake_exc
            if exc is not None:
                kind, reason = _error_kind(exc), str(exc)
            else:  # a refusal with a body: the library waits for the body; the status line is the reason
                status = _status_code(data[:end])
                kind = "handshake" if status is None else _status_kind(status)
                reason = "the handshake did not complete" if status is None else f"HTTP {status}"
            self.session.refused(self, kind, reason)
            self.abort()
            return b""
        self.opened = self.live = True
        self.proto = None  # its parser holds the response; a fresh one is made if a frame needs it
        self.session.opened(self, rx_ns)
        protocol = self.session.options.protocol
        if protocol is not None and self.live:
            for frame in protocol.greeting:
                self.send_protocol(frame)
        return data[end + 4:]

    def _slow(self, frame_bytes: bytes, rx_ns: int) -> None:
        proto = self._protocol()
        proto.receive_data(frame_bytes)
        for event in proto.events_received():
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.CLOSE:
                self.session.close_received(proto.close_rcvd.code if proto.close_rcvd is not None else None)
            elif not self.live:
                continue  # after our own close frame: the server's last messages are not read
            elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self.message(bytes(event.data), rx_ns)
                else:
                    self.fragments = [bytes(event.data)]
            elif opcode is Opcode.CONT and self.fragments is not None:
                self.fragments.append(bytes(event.data))
                if event.fin:
                    message, self.fragments = b"".join(self.fragments), None
                    self.message(message, rx_ns)
        self._flush()
        if self.live and proto.state is not State.OPEN:
            self.live = False
            if isinstance(proto.parser_exc, PayloadTooBig):
                self.session.oversized(rx_ns)
        if proto.close_expected():
            self._expect_close()

    def _protocol(self) -> ClientProtocol:
        """The library's protocol of this connection, made (open, at a frame boundary) if it was dropped."""
        proto = self.proto
        if proto is None:
            proto = self.proto = ClientProtocol(self.session.uri, state=State.OPEN,
                                                max_size=self.session.options.max_size, logger=_LOGGER)
        return proto

    def _send(self, opcode: Opcode, data: bytes) -> None:
        """Send one frame of an open connection: through its protocol if it has one, else as the library frames it.

        With no protocol kept the connection is open with no extensions, so
        the frame is what ``send_pong`` / ``send_text`` would write (masked).
        """
        proto = self.proto
        if proto is None:
            if self.transport is not None:
                self.transport.write(Frame(opcode, data).serialize(mask=True))
            return
        if opcode is Opcode.PONG:
            proto.send_pong(data)
        elif opcode is Opcode.BINARY:
            proto.send_binary(data)
        else:
            proto.send_text(data)
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self.proto is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    def _expect_close(self) -> None:
        if self._close_timer is None and self.transport is not None:
            self._close_timer = asyncio.get_running_loop().call_later(_CLOSE_WAIT_S, self.abort)

    # -- sending ---------------------------------------------------------------------------------
    def send_text(self, data: bytes) -> None:
        self._send_if_open(Opcode.TEXT, data)

    def send_protocol(self, data: bytes) -> None:
        """A frame the protocol says (greeting, reply): binary where it must be (MQTT), else text."""
        protocol = self.session.options.protocol
        self._send_if_open(Opcode.BINARY if protocol is not None and protocol.binary else Opcode.TEXT, data)

    def _send_if_open(self, opcode: Opcode, data: bytes) -> None:
        if self.transport is not None and (self.live if self.proto is None else self.proto.state is State.OPEN):
            self._send(opcode, data)

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; the connection is aborted if the server does not finish it."""
        if self.transport is None:
            return
        if self.opened and (self.proto is None or self.proto.state is State.OPEN):
            self.live = False
            proto = self._protocol()
            proto.send_close(code)
            self._flush()
            self._expect_close()
        else:
            self.abort()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()


class PushSession:
    """One subscriber: connect, receive until stopped, reconnect if dropped.

    ``notify(ok, error)`` is called (in the loop thread) once, after the
    first connection attempt, so the Locust side knows whether it connected.
    All methods run in the loop thread.
    """

    __slots__ = ("name", "recorder", "options", "uri", "index", "_notify", "_stopping", "_receiver",
                 "_attempts", "_echo", "_timer", "_host", "_port", "_closed_by_server", "_started")

    def __init__(self, name: str, recorder: ProcessRecorder, options: PushSessionOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self.recorder = recorder
        self.options = options
        self.uri, self._host, self._port = _endpoint(options.url)
        self.index = recorder.intake.add(name)
        self._notify: Callable[[bool, str | None], None] | None = notify
        self._stopping = False
        self._receiver: PushReceiver | None = None
        self._attempts = 0
        self._echo: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed_by_server: int | None = None
        self._started = 0

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._connect()

    def stop(self, at_ns: int) -> None:
        """Unsubscribe as of ``at_ns`` (when the user asked), then close."""
        self._stopping = True
        self.recorder.intake.close(self.index, at_ns)
        for timer in (self._timer, self._echo):
            if timer is not None:
                timer.cancel()
        self._timer = self._echo = None
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            if receiver.opened:
                self.recorder.connected -= 1
            receiver.close()
        self.recorder.retire_index(self.index)
        self._tell(False, "stopped before connecting")

    def _connect(self) -> None:
        if self._stopping:
            return
        self._attempts += 1
        self._closed_by_server = None
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if self.uri.secure:
            kwargs["ssl"] = True
            kwargs["server_hostname"] = self.uri.host
        self._started = worker_clock.now_ns()
        receiver = self._receiver = PushReceiver(self)
        if self.options.local_addr:  # the source port is picked at connect(), not scanned for at bind()
            opening = dial(loop, lambda: receiver, self._host, self._port, self.options.local_addr, **kwargs)
        else:
            opening = loop.create_connection(lambda: receiver, self._host, self._port, **kwargs)
        connecting = asyncio.ensure_future(opening)
        self._timer = loop.call_later(self.options.open_timeout_s, self._open_timed_out, receiver, connecting)
        connecting.add_done_callback(partial(self._connected, receiver))

    def _connected(self, receiver: PushReceiver, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or receiver is not self._receiver:
            return
        exc = fut.exception()
        if exc is not None:
            self._cancel_timer()
            self._failed(_error_kind(exc), str(exc) or type(exc).__name__)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _open_timed_out(self, receiver: PushReceiver, connecting: asyncio.Future[Any]) -> None:
        if receiver.opened:
            return
        connecting.cancel()
        receiver.abort()
        self._failed("timeout", f"not open within {self.options.open_timeout_s:g} s")

    # -- called by the receiver -----------------------------------------------------------------------
    def opened(self, receiver: PushReceiver, at_ns: int) -> None:
        self._cancel_timer()
        if self._stopping:
            receiver.close()
            return
        recorder = self.recorder
        recorder.recorder.record("connect", at_ns - self._started, at_ns)
        recorder.intake.open(self.index, at_ns)
        recorder.connected += 1
        self._attempts = 0
        if self.options.echo_interval_s > 0:
            self._schedule_echo()
        self._tell(True, None)

    def refused(self, receiver: PushReceiver, kind: str, reason: str) -> None:
        if receiver is not self._receiver:
            return
        self._cancel_timer()
        self._failed(kind, reason)

    def lost(self, receiver: PushReceiver, exc: Exception | None) -> None:
        if receiver is not self._receiver:
            return
        self._receiver = None
        if self._stopping:
            return
        if not receiver.opened:
            self._cancel_timer()
            self._failed("handshake" if exc is None else _error_kind(exc), "connection closed during the handshake")
            return
        now = worker_clock.now_ns()
        self.recorder.connected -= 1
        self.recorder.intake.close(self.index, now)
        # the server's close code; else the one this side failed the connection with (1002, 1009, ...)
        code: int | str | None = self._closed_by_server
        if code is None and receiver.proto is not None and receiver.proto.close_sent is not None:
            code = receiver.proto.close_sent.code
        if code is None:
            code = "abnormal"
        self.recorder.error(f"closed_{code}", now)
        if self._echo is not None:
            self._echo.cancel()
            self._echo = None
        self._retry()

    def close_received(self, code: int | None) -> None:
        self._closed_by_server = code

    def message(self, data: bytes, rx_ns: int) -> None:
        """A message off the hot path: echo replies, batches, non-canonical events."""
        if data.startswith(_ECHO):
            self.recorder.on_echo(data, rx_ns)
            return
        lines = data.split(b"\n") if b"\n" in data else [data]
        intake = self.recorder.intake
        for line in lines:
            if not line.strip() or WARMUP_MARK in line:
                continue
            try:
                event_id, due, sent = read_head(line)
            except MalformedEvent:
                self.malformed(rx_ns)
                undecodable.note(line, EVENT_SHAPE)
                continue
            try:
                intake.ids.append(event_id)
                intake.due.append(due)
                intake.sent.append(-1 if sent is None else sent)
            except OverflowError:
                self.realign(rx_ns)
                continue
            intake.sub.append(self.index)
            intake.rx.append(rx_ns)

    def malformed(self, rx_ns: int) -> None:
        self.recorder.error("malformed_event", rx_ns)

    def undecodable(self, message: bytes, exc: MalformedMessage, rx_ns: int) -> None:
        """A message not of the protocol's shape (or the server refusing us): counted by kind, the first kept."""
        self.recorder.error(exc.kind, rx_ns)
        undecodable.note(message, exc.expected)

    def oversized(self, rx_ns: int) -> None:
        """A frame (or message) over ``max_size``: the connection was failed with 1009 and read no further."""
        self.recorder.error("malformed_oversized", rx_ns)

    def realign(self, rx_ns: int, kind: str | None = None, *, count: bool = True) -> None:
        """A value was not a 64-bit integer: drop this delivery's partial columns, count it by field."""
        intake = self.recorder.intake
        n = len(intake.sub)
        # appended in the order id, due, sent: the first column not grown is the one that failed
        kind = kind or ("unexpected_id" if len(intake.ids) == n else "malformed_due" if len(intake.due) == n
                        else "malformed_sent")
        for column in (intake.ids, intake.due, intake.sent):
            del column[n:]
        if count:
            self.recorder.error(kind, rx_ns)

    # -- internals -----------------------------------------------------------------------------------
    def _failed(self, kind: str, reason: str) -> None:
        now = worker_clock.now_ns()
        self.recorder.error(f"connect_{kind}", now)
        self._receiver = None
        self._retry()  # first: whatever the listener does, the session tries again
        self._tell(False, f"{kind}: {reason}")

    def _retry(self) -> None:
        options = self.options
        if self._stopping or self._attempts > options.max_reconnects:
            return
        delay = reconnect_delay(self._attempts, options.reconnect_delay_s, options.reconnect_max_delay_s,
                                random.random())
        self._timer = asyncio.get_running_loop().call_later(delay, self._connect)

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)

    def _schedule_echo(self) -> None:
        self._echo = asyncio.get_running_loop().call_later(self.options.echo_interval_s, self._send_echo)

    def _send_echo(self) -> None:
        receiver = self._receiver
        if receiver is None or self._stopping:
            return
        self.recorder.counters["echo_sent"] += 1
        receiver.send_text(b'{"echo":%d}' % worker_clock.now_ns())
        self._schedule_echo()


def first_head(data: bytes) -> tuple[int, int, int] | None:
    """The head (id, due, sent or -1) of one plain event, to be remembered; None: take the careful path.

    A warm-up event's head is :data:`_WARMUP` (delivered, dropped). None for
    anything else -- a batch, an echo reply, not an event, a value beyond 64
    bits -- which the careful path reads and counts.
    """
    if b"\n" in data or data.startswith(_ECHO):
        return None
    if WARMUP_MARK in data:
        return _WARMUP
    try:
        event_id, due, sent = read_head(data)
    except MalformedEvent:
        return None
    head = (event_id, due, -1 if sent is None else sent)
    return head if all(_MIN64 <= v <= _MAX64 for v in head) else None


def _whole_frame(data: bytes) -> int:
    """The header length when ``data`` is exactly one whole, final, unmasked text or binary frame; else 0."""
    n = len(data)
    if n < 2 or (data[0] != 0x81 and data[0] != 0x82):
        return 0
    b1 = data[1]
    if b1 < 126:
        return 2 if b1 == n - 2 else 0
    return 4 if b1 == 126 and n >= 4 and ((data[2] << 8) | data[3]) == n - 4 else 0


@lru_cache(maxsize=16)
def _heads_of(protocol: SubscriberProtocol | None) -> dict[bytes, tuple[int, int, int]]:
    """The chunks-read cache for ``protocol``: the relay contract's shared one, or one of its own."""
    return _HEADS if protocol is None or protocol.verbatim else {}


@lru_cache(maxsize=16)
def _shared_reader(protocol: SubscriberProtocol) -> Reader:
    """The one reader of a stateless protocol that every connection of the process uses."""
    return protocol.reader()


def reconnect_delay(attempts: int, first_s: float, cap_s: float, draw: float) -> float:
    """Seconds to wait before the next attempt, after ``attempts`` failed ones in a row (0: after a drop).

    ``first_s`` doubled per failure, at most ``cap_s``; then its upper half
    chosen by ``draw`` (in [0, 1)) -- so sessions refused together do not
    all come back at the same instant, and none comes back sooner than half
    the nominal wait.
    """
    nominal = min(cap_s, first_s * 2.0 ** min(max(attempts - 1, 0), 32))
    return nominal * (0.5 + 0.5 * draw)


@lru_cache(maxsize=64)
def _endpoint(url: str) -> tuple[WebSocketURI, str, int]:
    """The parsed URI, host and port of ``url``: one copy shared by every session of the process."""
    parts = urlsplit(url)
    return parse_uri(url), parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)


def _status_code(head: bytes) -> int | None:
    """The status of an HTTP response head (``HTTP/1.1 503 Service Unavailable``), if it has one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and len(parts[1]) == 3 and parts[1].isdigit():
        return int(parts[1])
    return None


def _status_kind(status: int) -> str:
    """The kind of a refused upgrade: ``http_503`` for "not now" (5xx, 408, 429), else ``handshake``.

    Any other answer (200, 404, 405, ...) says the URL is no WebSocket
    endpoint at all, which the operator fixes, not the target.
    """
    return f"http_{status}" if status >= 500 or status in _RETRY_LATER else "handshake"


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, InvalidStatus):
        return _status_kind(exc.response.status_code)
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, InvalidURI):
        return "bad_uri"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    if isinstance(exc, OSError):
        if exc.errno == errno.EMFILE:
            return "emfile"  # the open-files limit: the one cause worth its own name
        return f"oserror_{exc.errno}" if exc.errno else "oserror"
    return type(exc).__name__
