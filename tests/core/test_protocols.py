"""Subscriber protocols, sans-I/O: synthetic messages in, event encodings and replies out, every refusal named."""

from __future__ import annotations

import json

import pytest

from deliverybench.core.dialect import Dialect
from deliverybench.core.event import Event, encode_event, read_head
from deliverybench.core.protocols import (
    NOTHING,
    MalformedMessage,
    Reader,
    Reading,
    events_at,
    parse_event_path,
    sample,
    subscriber_protocol,
)

EVENT = encode_event(Event(7, 1_000), 2_000, 64)
DOC = json.loads(EVENT)


def reader(**fields: str) -> Reader:
    return subscriber_protocol(Dialect(**fields)).reader()


def heads(reading: Reading) -> list[tuple[int, int, int | None]]:
    return [read_head(e) for e in reading.events]


# -- event paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, tokens", [
    ("", ()), ("/data", ("data",)), ("/payload/data/onEvent", ("payload", "data", "onEvent")),
    ("/alerts/*/annotations/event", ("alerts", None, "annotations", "event")),
    ("/a~1b/c~0d/~01", ("a/b", "c~d", "~1")), ("/", ("",)),
])
def test_event_paths_are_json_pointers_with_a_wildcard(text: str, tokens: tuple[str | None, ...]) -> None:
    assert parse_event_path(text) == tokens


@pytest.mark.parametrize("text, said", [("data", "must be a JSON pointer starting with '/'"),
                                        ("/a~2", "'~' must be written ~0")])
def test_a_bad_event_path_is_one_line(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said) as caught:
        parse_event_path(text)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError):
        subscriber_protocol(Dialect(event_path=text))


def test_a_wildcard_fans_out_over_arrays_and_objects_and_a_missing_path_finds_nothing() -> None:
    doc = {"alerts": [{"e": 1}, {"e": 2}, {"x": 3}], "by": {"a": {"e": 4}, "b": {"e": 5}}, "s": "str"}
    assert events_at(doc, parse_event_path("/alerts/*/e")) == [1, 2]
    assert events_at(doc, parse_event_path("/by/*/e")) == [4, 5]
    assert events_at(doc, parse_event_path("/alerts/1/e")) == [2]
    assert events_at(doc, parse_event_path("/alerts/9/e")) == []
    assert events_at(doc, parse_event_path("/s/*")) == []
    assert events_at(doc, parse_event_path("/nope")) == []
    assert events_at(doc, ()) == [doc]


# -- raw --------------------------------------------------------------------------------------------------
def test_raw_is_the_message_itself_and_its_subscribe_message_the_greeting() -> None:
    protocol = subscriber_protocol(Dialect(subscribe_message='{"sub":"{channel}"}', channel="prices"))
    assert protocol.greeting == (b'{"sub":"prices"}',) and protocol.subprotocols == () and not protocol.stateful
    assert protocol.verbatim
    assert protocol.reader().read(EVENT) == Reading((EVENT,))
    assert subscriber_protocol(Dialect()).greeting == ()


def test_an_envelope_gives_the_event_at_its_path_compact() -> None:
    wrapped = json.dumps({"type": "event", "data": DOC}, indent=2).encode()
    reading = reader(event_path="/data").read(wrapped)
    assert reading.whole and not reading.replies and heads(reading) == [(7, 1_000, 2_000)]
    assert reading.events[0] == json.dumps(DOC, separators=(",", ":")).encode()
    assert not subscriber_protocol(Dialect(event_path="/data")).verbatim


def test_an_envelope_holding_the_event_as_a_string_or_several_events() -> None:
    assert reader(event_path="/data").read(json.dumps({"data": EVENT.decode()}).encode()).events == (EVENT,)
    many = json.dumps({"items": [{"e": DOC}, {"e": DOC}]}).encode()
    assert len(reader(event_path="/items/*/e").read(many).events) == 2


@pytest.mark.parametrize("message, reason", [
    (b"<html>", "not JSON"), (b"\xff\xfe", "not JSON"), (b'{"type":"welcome"}', "nothing at /data"),
    (b'{"data":42}', "a JSON int"), (b'{"data":[1]}', "a JSON list"),
])
def test_an_envelope_that_does_not_hold_an_event_is_malformed(message: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as caught:
        reader(event_path="/data").read(message)
    assert caught.value.kind == "malformed_event" and "/data" in caught.value.expected


# -- NATS ---------------------------------------------------------------------------------------------
def msg(payload: bytes, subject: bytes = b"deliverybench", reply: bytes = b"") -> bytes:
    return b"MSG %b 1 %b%d\r\n%b\r\n" % (subject, reply + b" " if reply else b"", len(payload), payload)


def test_nats_greets_with_connect_and_sub_on_the_channel_and_keeps_a_reader_per_connection() -> None:
    protocol = subscriber_protocol(Dialect(protocol="nats", channel="ticks"))
    assert protocol.stateful and protocol.subprotocols == ()
    assert protocol.greeting[0].startswith(b"CONNECT {") and protocol.greeting[0].endswith(b"SUB ticks 1\r\n")
    assert protocol.reader() is not protocol.reader()


def test_nats_messages_pings_and_acknowledgements_in_one_frame() -> None:
    data = b'INFO {"server_id":"x"}\r\n+OK\r\nPING\r\n' + msg(EVENT) + msg(EVENT, reply=b"_INBOX.1") + b"PONG\r\n"
    reading = reader(protocol="nats").read(data)
    assert reading == Reading((EVENT, EVENT), (b"PONG\r\n",), True)


def test_nats_operations_split_anywhere_across_messages_come_out_whole_once() -> None:
    stream = msg(EVENT) + b"PING\r\n" + msg(EVENT)
    for cut in range(1, len(stream)):
        for second in (cut, min(cut + 7, len(stream))):
            r = reader(protocol="nats")
            events: list[bytes] = []
            replies: list[bytes] = []
            for part in (stream[:cut], stream[cut:second], stream[second:]):
                before = r.pending
                reading = r.read(part)
                # whole: nothing held over from before, nothing left for after -- only then may it be cached
                assert reading.whole == (not before and not r.pending), (cut, second)
                events += reading.events
                replies += reading.replies
            assert events == [EVENT, EVENT] and replies == [b"PONG\r\n"] and not r.pending, (cut, second)


def test_nats_with_an_event_path_reads_each_payload_as_an_envelope() -> None:
    payload = json.dumps({"data": DOC}).encode()
    assert heads(reader(protocol="nats", event_path="/data").read(msg(payload))) == [(7, 1_000, 2_000)]


@pytest.mark.parametrize("data, reason, kind", [
    (b"-ERR 'Authorization Violation'\r\n", "Authorization Violation", "refused_by_server"),
    (b"HELLO there\r\n", "not a NATS operation", "malformed_event"),
    (b"MSG subject 1\r\n", "without a byte count", "malformed_event"),
    (b"MSG subject 1 many\r\n", "without a byte count", "malformed_event"),
    (b"MSG subject 1 999999999999\r\n", "larger than NATS allows", "malformed_event"),
    (b"x" * 5000, "longer than 4 KB", "malformed_event"),
])
def test_nats_errors_are_named(data: bytes, reason: str, kind: str) -> None:
    r = reader(protocol="nats")
    with pytest.raises(MalformedMessage, match=reason) as caught:
        r.read(data)
    assert caught.value.kind == kind and "NATS" in caught.value.expected
    assert not r.pending  # the next message starts afresh
    assert r.read(msg(EVENT)).events == (EVENT,)


# -- Socket.IO -------------------------------------------------------------------------------------------
def test_socketio_connects_on_open_answers_pings_and_finds_events() -> None:
    protocol = subscriber_protocol(Dialect(protocol="socketio"))
    assert protocol.greeting == () and not protocol.stateful
    r = protocol.reader()
    assert r.read(b'0{"sid":"abc","pingInterval":25000}') == Reading(replies=(b"40",))
    assert r.read(b'40{"sid":"def"}') is NOTHING and r.read(b"3") is NOTHING and r.read(b"6") is NOTHING
    assert r.read(b"2") == Reading(replies=(b"3",))
    assert heads(r.read(b'42["event",' + EVENT + b"]")) == [(7, 1_000, 2_000)]
    assert r.read(b'42["event",' + json.dumps(EVENT.decode()).encode() + b"]").events == (EVENT,)
    wrapped = b'42["update",{"payload":' + EVENT + b"}]"
    assert heads(reader(protocol="socketio", event_path="/payload").read(wrapped)) == [(7, 1_000, 2_000)]


# -- graphql-transport-ws --------------------------------------------------------------------------------
def test_graphql_ws_offers_its_subprotocol_inits_and_subscribes_on_ack() -> None:
    query = 'subscription { on(c: "{channel}") }'
    protocol = subscriber_protocol(Dialect(protocol="graphql-ws", subscribe_message=query, channel="x"))
    assert protocol.subprotocols == ("graphql-transport-ws",)
    assert protocol.greeting == (b'{"type":"connection_init"}',)
    r = protocol.reader()
    (subscribe,) = r.read(b'{"type":"connection_ack"}').replies
    query_sent = 'subscription { on(c: "x") }'
    assert json.loads(subscribe) == {"id": "1", "type": "subscribe", "payload": {"query": query_sent}}
    assert r.read(b'{"type":"ping"}') == Reading(replies=(b'{"type":"pong"}',))
    assert r.read(b'{"type":"pong"}') is NOTHING and r.read(b'{"id":"1","type":"complete"}') is NOTHING
    nxt = json.dumps({"id": "1", "type": "next", "payload": {"data": {"onEvent": DOC}}}).encode()
    assert heads(r.read(nxt)) == [(7, 1_000, 2_000)]
    assert heads(reader(protocol="graphql-ws", event_path="/payload/data/onEvent").read(nxt)) == [(7, 1_000, 2_000)]


def test_graphql_ws_has_a_default_query() -> None:
    (subscribe,) = reader(protocol="graphql-ws").read(b'{"type":"connection_ack"}').replies
    assert json.loads(subscribe)["payload"]["query"] == "subscription { events }"


# -- refusals and malformed messages of the stateless protocols ----------------------------------------
@pytest.mark.parametrize("protocol, message, reason, kind", [
    ("socketio", b'44{"message":"Not authorized"}', "refused the Socket.IO connect", "refused_by_server"),
    ("socketio", b"41", "closed the Socket.IO session", "refused_by_server"),
    ("socketio", b"1", "closed the Socket.IO session", "refused_by_server"),
    ("socketio", b'42["event"]', "without a name and an argument", "malformed_event"),
    ("socketio", b"42{}", "without a name and an argument", "malformed_event"),
    ("socketio", b"42[not json", "not JSON", "malformed_event"),
    ("socketio", b'42["event",5]', "a JSON int", "malformed_event"),
    ("socketio", b"hello", "not a Socket.IO packet", "malformed_event"),
    ("graphql-ws", b'{"id":"1","type":"error","payload":[{"message":"no"}]}', "refused the subscription",
     "refused_by_server"),
    ("graphql-ws", b'{"type":"data"}', "a message of type 'data'", "malformed_event"),
    ("graphql-ws", b"[1,2]", "a message of type None", "malformed_event"),
    ("graphql-ws", b"nope", "not JSON", "malformed_event"),
    ("graphql-ws", b'{"type":"next","payload":{}}', "nothing at /payload/data/", "malformed_event"),
])
def test_errors_are_named_with_the_shape_expected(protocol: str, message: bytes, reason: str, kind: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as caught:
        reader(protocol=protocol).read(message)
    shape = {"socketio": "Socket.IO", "graphql-ws": "graphql-transport-ws"}[protocol]
    assert caught.value.kind == kind and shape in caught.value.expected


# -- MQTT -------------------------------------------------------------------------------------------------
def test_mqtt_offers_its_subprotocol_greets_in_binary_and_reads_publish_packets() -> None:
    from deliverybench.core.mqtt import connect_packet, publish_packet, subscribe_packet

    protocol = subscriber_protocol(Dialect(protocol="mqtt", channel="ticks"))
    assert protocol.subprotocols == ("mqtt",) and protocol.binary and protocol.stateful and not protocol.verbatim
    assert protocol.greeting == (connect_packet(), subscribe_packet("ticks"))
    packet = publish_packet("ticks", EVENT)
    r = protocol.reader()
    assert r.read(packet[:3]).events == () and r.pending
    assert r.read(packet[3:] + packet) == Reading((EVENT, EVENT), (), False)
    assert not r.pending and not subscriber_protocol(Dialect()).binary


def test_an_unknown_protocol_is_one_line() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'amqp'"):
        subscriber_protocol(Dialect(protocol="amqp"))


# -- samples ------------------------------------------------------------------------------------------
def test_a_sample_is_one_escaped_line_cut_with_its_length() -> None:
    assert sample(b"<html>") == "'<html>'"
    assert sample(b"a\r\nb\x00\xff\xc3\xa9") == "'a\\r\\nb\\x00\\xffé'"
    long = sample(b"x" * 1000, limit=10)
    assert long == "'xxxxxxxxxx' … (1,000 bytes)"
    assert "\n" not in sample(bytes(range(256)))
