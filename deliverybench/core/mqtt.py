"""MQTT 3.1.1 packets, sans-I/O: what a subscriber and a publisher need, and nothing more.

An MQTT broker over WebSocket (mosquitto's ``protocol websockets`` listener,
subprotocol ``mqtt``) carries binary MQTT packets in binary frames, and a
packet may span frames or share one with others. A subscriber sends
``CONNECT`` (clean session, keep-alive 0: the broker never expects a ping)
and ``SUBSCRIBE`` at QoS 0; the broker answers ``CONNACK`` and ``SUBACK``,
then a ``PUBLISH`` per event, whose payload is the event. A publisher writes
``CONNECT`` and then one QoS 0 ``PUBLISH`` per event on the broker's TCP port.

Everything a broker sends is untrusted: the variable-length "remaining
length" is bounded (4 bytes, as the standard says; and at most
:data:`MAX_PACKET` here), and a refused connect or subscription is a
:class:`~deliverybench.core.protocols.MalformedMessage` of kind
``refused_by_server``. Pure.
"""

from __future__ import annotations

from .protocols import MalformedMessage, Reading, StreamReader

__all__ = ["connect_packet", "subscribe_packet", "publish_packet", "MqttReader", "MAX_PACKET", "SUBPROTOCOL"]

#: the WebSocket subprotocol MQTT brokers expect
SUBPROTOCOL = "mqtt"
#: a packet larger than this is not one of ours (mosquitto's default message_size_limit is 256 MB)
MAX_PACKET = 16 * 2**20
_CONNECT, _CONNACK, _PUBLISH, _SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP = 1, 2, 3, 8, 9, 12, 13
_EXPECTED = "MQTT 3.1.1 packets: CONNACK, SUBACK, PUBLISH"


def _length(n: int) -> bytes:
    """The remaining-length field: 7 bits a byte, least significant first."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client_id: str = "") -> bytes:
    """``CONNECT``: MQTT 3.1.1, clean session, keep-alive off; an empty id lets the broker assign one."""
    body = _string("MQTT") + b"\x04\x02\x00\x00" + _string(client_id)
    return bytes([_CONNECT << 4]) + _length(len(body)) + body


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    """``SUBSCRIBE`` to ``topic`` at QoS 0."""
    body = packet_id.to_bytes(2, "big") + _string(topic) + b"\x00"
    return bytes([_SUBSCRIBE << 4 | 0x02]) + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 ``PUBLISH`` of ``payload`` to ``topic``."""
    body = _string(topic) + payload
    return bytes([_PUBLISH << 4]) + _length(len(body)) + body


class MqttReader(StreamReader):
    """One connection's packets: a packet split across frames is kept until it is whole."""

    expected = _EXPECTED

    def read(self, message: bytes) -> Reading:
        data, whole = self.take(message)
        events: list[bytes] = []
        at, n = 0, len(data)
        while at < n:
            size, head = 0, at + 1
            for shift in (0, 7, 14, 21):
                if head >= n:
                    break
                byte = data[head]
                size |= (byte & 0x7F) << shift
                head += 1
                if not byte & 0x80:
                    break
            else:
                raise MalformedMessage("a remaining length longer than 4 bytes", expected=_EXPECTED)
            if head >= n and (head == at + 1 or data[head - 1] & 0x80):
                self.buf = data[at:]  # the length itself is cut
                break
            if size > MAX_PACKET:
                raise MalformedMessage("a packet larger than 16 MB", expected=_EXPECTED)
            end = head + size
            if end > n:
                self.buf = data[at:]
                break
            kind, flags = data[at] >> 4, data[at] & 0x0F
            body = data[head:end]
            if kind == _PUBLISH:
                if len(body) < 2:
                    raise MalformedMessage("a PUBLISH without a topic", expected=_EXPECTED)
                start = 2 + int.from_bytes(body[:2], "big") + (2 if (flags >> 1) & 0x03 else 0)
                if start > len(body):
                    raise MalformedMessage("a PUBLISH whose topic runs past its end", expected=_EXPECTED)
                events.append(body[start:])
            elif kind == _CONNACK:
                if len(body) != 2 or body[1] != 0:
                    raise MalformedMessage(f"the broker refused the connection (CONNACK code "
                                           f"{body[1] if len(body) == 2 else '?'})", expected=_EXPECTED,
                                           kind="refused_by_server")
            elif kind == _SUBACK:
                if len(body) < 3 or any(code == 0x80 for code in body[2:]):
                    raise MalformedMessage("the broker refused the subscription (SUBACK 0x80)",
                                           expected=_EXPECTED, kind="refused_by_server")
            elif kind != _PINGRESP:
                raise MalformedMessage(f"an MQTT packet of type {kind} a subscriber never gets", expected=_EXPECTED)
            at = end
        return Reading(tuple(events), (), whole and not self.buf)
