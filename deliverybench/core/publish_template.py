"""The publish body around an event: ``--publish-template``, compiled once, rendered per request.

A real server's publish API rarely takes our event as its whole body:
Pushpin wants ``{"items":[{"channel":…,"formats":{"ws-message":{"content":"…"}}}]}``,
Alertmanager a list of alerts whose annotation carries the event as a string,
NATS a ``PUB <subject> <bytes>`` line. A template names where the event goes
and how it is written there:

* ``{event}`` -- the event's JSON, as is;
* ``{event|json}`` -- the event as a JSON string literal (escaped, quoted);
* ``{event|sse}`` -- the event as one Server-Sent Events message (``data: …\\n\\n``),
  usually followed by ``|json``;
* ``{event|length}`` -- the event's length in bytes (NATS's ``PUB``);
* ``{event|mqtt}`` -- the event as a QoS 0 MQTT ``PUBLISH`` packet to the channel;
* ``{channel}`` (``{channel|json}``) and ``{id}``.

Everything else is literal, so JSON braces need no escaping: a placeholder is
``{`` + a name + ``}``, and a name that is not one of these is refused when
the template is parsed (one line, naming it), never when the run is under
way. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from .mqtt import publish_packet

__all__ = ["PublishTemplate", "PLACEHOLDERS", "unescape_controls", "unescape_bytes"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\|[A-Za-z_]+)*)\}")
_SOURCES = ("event", "channel", "id")
_FILTERS: dict[str, Callable[[bytes], bytes]] = {
    "json": lambda value: json.dumps(value.decode("utf-8", "replace")).encode(),
    "sse": lambda value: b"data: " + value.replace(b"\n", b"\ndata: ") + b"\n\n",
    "length": lambda value: b"%d" % len(value),
    "mqtt": lambda value: value,  # needs the channel: made in render (a _Slot's ``mqtt``)
}
#: what a template may name, for the help text and the error line
PLACEHOLDERS = ("{event}", "{event|json}", "{event|sse|json}", "{event|length}", "{event|mqtt}", "{channel}",
                "{id}")


@dataclass(frozen=True, slots=True)
class _Slot:
    source: str
    filters: tuple[Callable[[bytes], bytes], ...]
    #: the value, filtered, becomes an MQTT PUBLISH packet to the channel (last, whatever the order)
    mqtt: bool = False


@dataclass(frozen=True, slots=True)
class PublishTemplate:
    """A parsed template: literal byte strings and slots, in order."""

    text: str
    parts: tuple[bytes | _Slot, ...]

    @classmethod
    def parse(cls, text: str) -> PublishTemplate:
        """Compile ``text``; empty means the event alone.

        Raises:
            ValueError: an unknown placeholder or filter, or no event anywhere (one line).
        """
        if not text:
            return cls("", (_Slot("event", ()),))
        parts: list[bytes | _Slot] = []
        at, has_event = 0, False
        for match in _PLACEHOLDER.finditer(text):
            source, *filters = match.group(1).split("|")
            if source not in _SOURCES:
                raise ValueError(f"unknown placeholder {match.group(0)} in the publish template; known: "
                                 + ", ".join(PLACEHOLDERS))
            unknown = [f for f in filters if f not in _FILTERS]
            if unknown:
                raise ValueError(f"unknown filter {unknown[0]!r} in {match.group(0)}; known: "
                                 + ", ".join(_FILTERS))
            has_event = has_event or source == "event"
            if match.start() > at:
                parts.append(text[at:match.start()].encode())
            parts.append(_Slot(source, tuple(_FILTERS[f] for f in filters if f != "mqtt"), "mqtt" in filters))
            at = match.end()
        if not has_event:
            raise ValueError("the publish template has no {event}: where should the event go?")
        if at < len(text):
            parts.append(text[at:].encode())
        return cls(text, tuple(parts))

    @property
    def is_identity(self) -> bool:
        """Whether rendering returns the event unchanged (no template, or exactly ``{event}``)."""
        part = self.parts[0]
        return len(self.parts) == 1 and isinstance(part, _Slot) and not part.filters and not part.mqtt

    @property
    def media_type(self) -> str:
        """``application/json`` when a body starts with ``{`` or ``[`` (the event alone does), else ``text/plain``."""
        body = self.render(b"{}", channel="", event_id=0).lstrip()
        return "application/json" if body[:1] in (b"{", b"[") else "text/plain"

    def render(self, event: bytes, *, channel: str, event_id: int) -> bytes:
        """The body for one event."""
        if self.is_identity:
            return event
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
                continue
            value = event if part.source == "event" else channel.encode() if part.source == "channel" \
                else b"%d" % event_id
            for apply in part.filters:
                value = apply(value)
            if part.mqtt:
                value = publish_packet(channel, value)
            out.append(value)
        return b"".join(out)


_CONTROLS = {"\\r": "\r", "\\n": "\n", "\\t": "\t", "\\\\": "\\"}


_BYTE_ESCAPE = re.compile(rb"\\(?:x[0-9A-Fa-f]{2}|[rnt\\])")


def unescape_bytes(text: str) -> bytes:
    """``text`` as UTF-8 with ``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\xHH`` read as the bytes they name.

    A greeting typed on a command line or in TOML: NATS's ``CONNECT {}\\r\\n``, MQTT's binary ``CONNECT``.
    """
    def byte(match: re.Match[bytes]) -> bytes:
        escape = match.group(0)
        if escape[1:2] == b"x":
            return bytes([int(escape[2:], 16)])
        return _CONTROLS[escape.decode()].encode()

    return _BYTE_ESCAPE.sub(byte, text.encode())


def unescape_controls(text: str) -> str:
    """``\\r``, ``\\n``, ``\\t`` and ``\\\\`` read as the characters they name (a greeting typed on a command line)."""
    return re.sub(r"\\[rnt\\]", lambda m: _CONTROLS[m.group(0)], text)
