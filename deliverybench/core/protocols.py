"""Subscriber protocols, sans-I/O: what a subscriber says after its handshake, and where events are in what arrives.

A receiver (WebSocket, SSE) hands each whole message to its connection's
:class:`Reader` and gets a :class:`Reading` back: the events' encodings
(bytes the harness's own :func:`~deliverybench.core.event.read_head` then
reads, with every bound it applies), and frames to send back (pongs,
the subscribe message that must wait for an acknowledgement). No Python
object is made per message where bytes suffice, and a reader keeps no state
but a partial NATS operation, so a message read once by one session can be
remembered for every other session of the process (:attr:`Reading.whole`).

The protocols (:data:`~deliverybench.core.dialect.PROTOCOLS`):

* ``raw`` -- each message is one event (or an NDJSON batch), or, with an
  event path, a JSON envelope holding one or more at that path.
* ``nats`` -- the NATS text protocol over WebSocket: ``CONNECT`` and ``SUB``
  after open; ``MSG <subject> <sid> [reply] <bytes>\\r\\n<payload>\\r\\n``
  carries an event; ``PING`` is answered ``PONG``; ``-ERR`` is the server
  refusing us.
* ``socketio`` -- Engine.IO 4 / Socket.IO 5: ``0{…}`` open is answered
  ``40`` (connect to ``/``), ``2`` ping ``3`` pong, ``42["name",arg]`` an
  event in ``arg``; ``44`` a refused connect.
* ``graphql-ws`` -- the ``graphql-transport-ws`` subprotocol:
  ``connection_init``; on ``connection_ack`` the ``subscribe``; ``next``
  carries the event at ``/payload/data/*`` unless an event path says where;
  ``ping`` → ``pong``; ``error`` is a refusal.
* ``mqtt`` -- MQTT 3.1.1 over WebSocket (subprotocol ``mqtt``, binary
  frames both ways): ``CONNECT`` and ``SUBSCRIBE`` at QoS 0 after open, a
  ``PUBLISH`` per event (:mod:`deliverybench.core.mqtt`).

Everything a target sends is untrusted: a message that does not have the
expected shape raises :class:`MalformedMessage`, whose ``expected`` names the
shape, so the failure line can show a sample of what came and what was wanted
(:func:`sample`). Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .dialect import Dialect

__all__ = ["MalformedMessage", "Reading", "Reader", "StreamReader", "SubscriberProtocol", "parse_event_path",
           "events_at", "subscriber_protocol", "sample", "NOTHING", "EVENT_SHAPE", "envelope_reader"]

#: what a message holding our event as it is must look like (for the sample of one that did not)
EVENT_SHAPE = 'an event: {"id":…,"due_ns":…,…}'
#: a path token standing for every element of an array (or every value of an object)
_EVERY = None
_SAMPLE_CHARS = 120
#: a NATS operation line longer than this is not NATS (its own max_control_line is 4 KB)
_MAX_NATS_LINE = 4096
#: a MSG payload larger than this is not NATS (its max_payload is at most 64 MB): never buffered for
_MAX_NATS_PAYLOAD = 64 * 2**20
#: control characters as escapes, so a sample stays on one line
_ESCAPES = {**{i: f"\\x{i:02x}" for i in range(32)}, ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
            127: "\\x7f"}


class MalformedMessage(ValueError):
    """A message that is not of the protocol's shape.

    Attributes:
        expected: the shape that was expected, in words (for the failure line).
        kind: the error kind counted (``malformed_event``, or ``refused_by_server`` when the
            protocol says the server refused the subscription).
    """

    def __init__(self, reason: str, *, expected: str, kind: str = "malformed_event") -> None:
        super().__init__(reason)
        self.expected = expected
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message held.

    Attributes:
        events: each event's encoding, to be read by ``read_head``.
        replies: frames to send back on the same connection.
        whole: the reading depends on the message's bytes alone (no partial operation before or
            after it), so it may be remembered and reused for the same bytes on another session.
    """

    events: tuple[bytes, ...] = ()
    replies: tuple[bytes, ...] = ()
    whole: bool = True


#: a message with nothing for us (a keep-alive answered elsewhere, an acknowledgement)
NOTHING = Reading()


def parse_event_path(text: str) -> tuple[str | None, ...]:
    """An RFC 6901 JSON pointer as tokens; ``*`` is the wildcard (None). Empty: the message itself.

    Raises:
        ValueError: one line naming what is wrong.
    """
    if not text:
        return ()
    if not text.startswith("/"):
        raise ValueError(f"event path {text!r} must be a JSON pointer starting with '/' (e.g. /data)")
    tokens: list[str | None] = []
    for raw in text[1:].split("/"):
        if "~" in raw.replace("~0", "").replace("~1", ""):
            raise ValueError(f"event path {text!r}: '~' must be written ~0 (and '/' inside a name ~1)")
        tokens.append(_EVERY if raw == "*" else raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def events_at(document: Any, path: tuple[str | None, ...]) -> list[Any]:
    """Every value at ``path`` in ``document`` (the wildcard fans out); [] where the path leads nowhere."""
    found = [document]
    for token in path:
        following: list[Any] = []
        for node in found:
            if token is _EVERY:
                following.extend(node if isinstance(node, list) else node.values() if isinstance(node, dict)
                                 else ())
            elif isinstance(node, dict):
                if token in node:
                    following.append(node[token])
            elif isinstance(node, list) and token is not None and token.isdigit():
                index = int(token)
                if index < len(node):
                    following.append(node[index])
        found = following
    return found


def _encoding(value: Any, expected: str) -> bytes:
    """An event found in an envelope as bytes: an object re-encoded compactly, a string as its UTF-8."""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")).encode()
    if isinstance(value, str):
        return value.encode()
    raise MalformedMessage(f"the event is a JSON {type(value).__name__}, not an object or a string",
                           expected=expected)


def _loads(message: bytes, expected: str) -> Any:
    try:
        return json.loads(message)
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("not JSON", expected=expected) from None


class _Envelope:
    """The events of one decoded JSON document at one path."""

    def __init__(self, text: str, expected: str) -> None:
        self.path = parse_event_path(text)
        self.text = text
        self.expected = expected

    def events(self, document: Any) -> tuple[bytes, ...]:
        found = events_at(document, self.path)
        if not found:
            raise MalformedMessage(f"nothing at {self.text}", expected=self.expected)
        return tuple(_encoding(value, self.expected) for value in found)


class Reader:
    """Reads the messages of one connection. The stateless protocols share one reader per process."""

    expected = "an event"

    @property
    def pending(self) -> bool:
        """Whether part of an operation is held for the next message (only a stateful reader's can be)."""
        return False

    def read(self, message: bytes) -> Reading:
        """What ``message`` holds.

        Raises:
            MalformedMessage: it is not of the protocol's shape.
        """
        raise NotImplementedError


class _RawReader(Reader):
    def __init__(self, event_path: str) -> None:
        self.expected = f"a JSON message with the event at {event_path}" if event_path else EVENT_SHAPE
        self.envelope = _Envelope(event_path, self.expected) if event_path else None

    def read(self, message: bytes) -> Reading:
        if self.envelope is None:
            return Reading((message,))
        return Reading(self.envelope.events(_loads(message, self.expected)))


class _SocketIOReader(Reader):
    expected = 'Socket.IO packets: 0{…} open, 40 connect, 42["event",{…}], 2 ping'

    def __init__(self, event_path: str) -> None:
        self.envelope = _Envelope(event_path, self.expected) if event_path else None

    def read(self, message: bytes) -> Reading:
        if message == b"2":
            return Reading(replies=(b"3",))
        head = message[:2]
        if head == b"42":
            packet = _loads(message[2:], self.expected)
            if not isinstance(packet, list) or len(packet) < 2 or not isinstance(packet[0], str):
                raise MalformedMessage("an event packet without a name and an argument", expected=self.expected)
            if self.envelope is not None:
                return Reading(self.envelope.events(packet[1]))
            return Reading((_encoding(packet[1], self.expected),))
        if message[:1] == b"0":
            return Reading(replies=(b"40",))  # Engine.IO open: connect to the default namespace
        if head == b"40" or message[:1] in (b"3", b"6"):
            return NOTHING  # connected; pong; noop
        if head == b"44":
            raise MalformedMessage("the server refused the Socket.IO connect", expected=self.expected,
                                   kind="refused_by_server")
        if head == b"41" or message[:1] == b"1":
            raise MalformedMessage("the server closed the Socket.IO session", expected=self.expected,
                                   kind="refused_by_server")
        raise MalformedMessage("not a Socket.IO packet we know", expected=self.expected)


class _GraphQLReader(Reader):
    expected = 'graphql-transport-ws messages: {"type":"connection_ack"}, {"type":"next","payload":{"data":…}}'

    def __init__(self, event_path: str, subscribe: bytes) -> None:
        self.envelope = _Envelope(event_path or "/payload/data/*", self.expected)
        self.subscribe = subscribe

    def read(self, message: bytes) -> Reading:
        document = _loads(message, self.expected)
        kind = document.get("type") if isinstance(document, dict) else None
        if kind == "next":
            return Reading(self.envelope.events(document))
        if kind == "connection_ack":
            return Reading(replies=(self.subscribe,))
        if kind == "ping":
            return Reading(replies=(b'{"type":"pong"}',))
        if kind in ("pong", "complete"):
            return NOTHING
        if kind == "error":
            raise MalformedMessage("the server refused the subscription", expected=self.expected,
                                   kind="refused_by_server")
        raise MalformedMessage(f"a message of type {kind!r}", expected=self.expected)


class StreamReader(Reader):
    """A reader of a byte stream cut into messages anyhow (NATS, MQTT): the unfinished tail is kept."""

    def __init__(self) -> None:
        self.buf = b""

    @property
    def pending(self) -> bool:
        return bool(self.buf)

    def take(self, message: bytes) -> tuple[bytes, bool]:
        """The kept tail and ``message`` together, and whether nothing was kept before (a *whole* reading)."""
        whole = not self.buf
        data, self.buf = self.buf + message, b""
        return data, whole


class _NatsReader(StreamReader):
    """One connection's NATS stream: operations may span messages, so a partial one is kept."""

    expected = "NATS operations: INFO, MSG <subject> <sid> <bytes>, PING, +OK"

    def __init__(self, event_path: str) -> None:
        super().__init__()
        self.envelope = _Envelope(event_path, self.expected) if event_path else None

    def read(self, message: bytes) -> Reading:
        data, whole = self.take(message)
        events: list[bytes] = []
        replies: list[bytes] = []
        at, n = 0, len(data)
        while at < n:
            end = data.find(b"\r\n", at)
            if end < 0:
                if n - at > _MAX_NATS_LINE:
                    raise MalformedMessage("an operation line longer than 4 KB", expected=self.expected)
                self.buf = data[at:]
                break
            line = data[at:end]
            op = line[:4].upper()
            if op == b"MSG ":
                fields = line.split()
                if len(fields) not in (4, 5) or not fields[-1].isdigit():
                    raise MalformedMessage("a MSG line without a byte count", expected=self.expected)
                size = int(fields[-1])
                if size > _MAX_NATS_PAYLOAD:
                    raise MalformedMessage("a MSG larger than NATS allows", expected=self.expected)
                start, stop = end + 2, end + 2 + size
                if stop + 2 > n:
                    self.buf = data[at:]
                    break
                payload = data[start:stop]
                if self.envelope is not None:
                    events.extend(self.envelope.events(_loads(payload, self.expected)))
                else:
                    events.append(payload)
                at = stop + 2
                continue
            if op == b"PING":
                replies.append(b"PONG\r\n")
            elif op == b"-ERR":
                raise MalformedMessage(line.decode("utf-8", "replace")[:200], expected=self.expected,
                                       kind="refused_by_server")
            elif op not in (b"INFO", b"PONG", b"+OK"):
                raise MalformedMessage("not a NATS operation", expected=self.expected)
            at = end + 2
        return Reading(tuple(events), tuple(replies), whole and not self.buf)


@dataclass(frozen=True, slots=True)
class SubscriberProtocol:
    """A dialect's subscriber side: the WebSocket subprotocols to offer, what to send once open, a reader.

    Attributes:
        name: the protocol's name.
        subprotocols: offered in the handshake (``graphql-transport-ws``).
        greeting: frames sent once the connection is open.
        stateful: whether each connection needs a reader of its own (:meth:`reader`).
        binary: whether what it sends (greeting, replies) goes in binary frames (MQTT), not text ones.
    """

    name: str
    subprotocols: tuple[str, ...]
    greeting: tuple[bytes, ...]
    stateful: bool
    dialect: Dialect
    binary: bool = False

    @property
    def verbatim(self) -> bool:
        """Whether each message is read as the event itself (``raw`` with no event path)."""
        return self.name == "raw" and not self.dialect.event_path

    def reader(self) -> Reader:
        """A reader for one connection (a shared one is as good unless :attr:`stateful`)."""
        d = self.dialect
        if self.name == "nats":
            return _NatsReader(d.event_path)
        if self.name == "socketio":
            return _SocketIOReader(d.event_path)
        if self.name == "mqtt":
            from .mqtt import MqttReader

            return MqttReader()
        if self.name == "graphql-ws":
            query = _fill(d.subscribe_message, d.channel) or "subscription { events }"
            subscribe = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}},
                                   separators=(",", ":")).encode()
            return _GraphQLReader(d.event_path, subscribe)
        return _RawReader(d.event_path)


def _fill(text: str, channel: str) -> str:
    return text.replace("{channel}", channel)


def subscriber_protocol(dialect: Dialect) -> SubscriberProtocol:
    """The subscriber side of ``dialect``.

    Raises:
        ValueError: an unknown protocol, or a bad event path (one line).
    """
    parse_event_path(dialect.event_path)
    subscribe = _fill(dialect.subscribe_message, dialect.channel).encode()
    if dialect.protocol == "raw":
        return SubscriberProtocol("raw", (), (subscribe,) if subscribe else (), False, dialect)
    if dialect.protocol == "nats":
        greeting = (b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nSUB %b 1\r\n'
                    % dialect.channel.encode(),)
        return SubscriberProtocol("nats", (), greeting, True, dialect)
    if dialect.protocol == "socketio":
        return SubscriberProtocol("socketio", (), (), False, dialect)
    if dialect.protocol == "mqtt":  # binary packets; a subscriber's CONNECT and SUBSCRIBE at QoS 0
        from .mqtt import SUBPROTOCOL, connect_packet, subscribe_packet

        return SubscriberProtocol("mqtt", (SUBPROTOCOL,), (connect_packet(), subscribe_packet(dialect.channel)),
                                  True, dialect, binary=True)
    if dialect.protocol == "graphql-ws":
        return SubscriberProtocol("graphql-ws", ("graphql-transport-ws",), (b'{"type":"connection_init"}',),
                                  False, dialect)
    raise ValueError(f"unknown protocol {dialect.protocol!r}; known: raw, nats, socketio, graphql-ws, mqtt")


@lru_cache(maxsize=16)
def envelope_reader(event_path: str) -> Reader | None:
    """The one (stateless) reader of JSON envelopes holding events at ``event_path``; None without a path.

    Raises:
        ValueError: a bad event path (one line).
    """
    return subscriber_protocol(Dialect(event_path=event_path)).reader() if event_path else None


def sample(message: bytes, limit: int = _SAMPLE_CHARS) -> str:
    """The start of ``message`` on one line, for a failure: quoted, with its length when it was cut.

    Its first ``limit`` bytes; control characters and bytes that are not
    UTF-8 are escaped, so no server can break the line or the terminal.
    """
    text = message[:limit].decode("utf-8", "backslashreplace").translate(_ESCAPES)
    return f"'{text}'" + (f" … ({len(message):,} bytes)" if len(message) > limit else "")
