"""deliverybench.core.event: the wire format, fed synthetic bytes only."""

from __future__ import annotations

import json

import pytest

from deliverybench.core.event import (
    EVENT_PREFIX,
    Event,
    EventHead,
    MalformedEvent,
    decode_head,
    encode_batch,
    encode_event,
    min_event_size,
    split_batch,
)

DUE = 1_764_245_000_000_000_000
SENT = 1_764_245_000_000_150_000


# -- encoding -------------------------------------------------------------------


def test_encode_exact_canonical_bytes() -> None:
    data = encode_event(Event(17, DUE, "s"), SENT)
    assert data == (
        b'{"id":17,"due_ns":1764245000000000000,"sent_ns":1764245000000150000,'
        b'"stream":"s","pad":""}'
    )
    assert data.startswith(EVENT_PREFIX)
    assert len(data) == min_event_size(Event(17, DUE, "s"), SENT)


@pytest.mark.parametrize("event_id", [0, 1, 9, 10, 12345, 2**40])
@pytest.mark.parametrize("stream", ["s", "orders", "a\"b", "ümlaut-\u20ac", "new\nline", "back\\slash", ""])
def test_round_trip_fast_path(event_id: int, stream: str) -> None:
    data = encode_event(Event(event_id, DUE + event_id, stream), SENT + event_id, 300)
    head = decode_head(data)
    assert (head.id, head.due_ns, head.sent_ns) == (event_id, DUE + event_id, SENT + event_id)
    # The fast path never decodes the stream; the full JSON still carries it intact.
    assert head.stream is None
    obj = json.loads(data)
    assert obj["stream"] == stream
    assert obj["id"] == event_id
    assert set(obj["pad"]) <= {"x"}


def test_encoding_is_ascii_and_single_line_even_for_unicode_and_newlines() -> None:
    data = encode_event(Event(1, DUE, "é\n\u20ac\"q"), SENT, 200)
    data.decode("ascii")  # no exception: every non-ASCII char is escaped
    assert b"\n" not in data
    assert len(data) == 200


@pytest.mark.parametrize("size", [0, 1, 50])
def test_size_below_skeleton_never_truncates(size: int) -> None:
    event = Event(3, DUE, "stream")
    skeleton = min_event_size(event, SENT)
    assert skeleton > 50
    data = encode_event(event, SENT, size)
    assert len(data) == skeleton
    assert json.loads(data)["pad"] == ""


@pytest.mark.parametrize("extra", [0, 1, 2, 7, 1000, 65_536])
def test_padding_gives_exactly_the_requested_size(extra: int) -> None:
    event = Event(42, DUE, "prices")
    size = min_event_size(event, SENT) + extra
    data = encode_event(event, SENT, size)
    assert len(data) == size
    obj = json.loads(data)
    assert obj["pad"] == "x" * extra
    assert list(obj) == ["id", "due_ns", "sent_ns", "stream", "pad"]
    assert decode_head(data) == EventHead(42, DUE, SENT)


def test_padding_size_counts_bytes_not_characters_for_escaped_streams() -> None:
    event = Event(1, DUE, "\u20ac" * 5)  # each becomes the 6-byte escape \u20ac
    data = encode_event(event, SENT, 500)
    assert len(data) == 500
    assert json.loads(data)["stream"] == "\u20ac" * 5


def test_min_event_size_grows_with_digits() -> None:
    assert min_event_size(Event(10, DUE), SENT) == min_event_size(Event(9, DUE), SENT) + 1
    assert min_event_size(Event(1, DUE, "ab"), SENT) == min_event_size(Event(1, DUE, "a"), SENT) + 1


# -- decoding: fallback -------------------------------------------------------


def test_fallback_for_reserialised_event_with_spaces_and_other_order() -> None:
    text = json.dumps({"stream": "q\"x", "pad": "xxx", "sent_ns": SENT, "due_ns": DUE, "id": 5})
    assert not text.encode().startswith(EVENT_PREFIX)
    assert decode_head(text) == EventHead(5, DUE, SENT, 'q"x')


def test_fallback_for_prefix_with_spaces_after_it() -> None:
    # Starts with the canonical prefix but a relay added spaces: the fast path bails out.
    data = json.dumps({"id": 8, "due_ns": DUE, "sent_ns": SENT, "stream": "s", "pad": ""}).encode()
    assert data.startswith(EVENT_PREFIX)
    assert b", " in data
    assert decode_head(data) == EventHead(8, DUE, SENT, "s")


def test_fallback_unicode_not_escaped() -> None:
    data = json.dumps({"id": 2, "due_ns": DUE, "stream": "ünï\u20ac"}, ensure_ascii=False).encode("utf-8")
    head = decode_head(data)
    assert head == EventHead(2, DUE, None, "ünï\u20ac")
    assert decode_head(data.decode("utf-8")) == head


def test_fallback_when_sent_ns_missing_or_null() -> None:
    assert decode_head(b'{"id":1,"due_ns":5,"stream":"s","pad":""}') == EventHead(1, 5, None, "s")
    assert decode_head(b'{"id":1,"due_ns":5,"sent_ns":null,"stream":"s"}') == EventHead(1, 5, None, "s")
    assert decode_head(b'{"id":1,"due_ns":5,"sent_ns":"7","stream":3}') == EventHead(1, 5, None, None)


def test_fallback_when_prefix_is_canonical_but_last_field_has_no_comma() -> None:
    assert decode_head(b'{"id":1,"due_ns":2,"sent_ns":3}') == EventHead(1, 2, 3, None)


def test_str_and_bytes_input_agree() -> None:
    data = encode_event(Event(77, DUE, "s"), SENT, 128)
    assert decode_head(data.decode()) == decode_head(data) == EventHead(77, DUE, SENT)


def test_fast_path_result_equals_fallback_result_on_the_same_fields() -> None:
    data = encode_event(Event(123, DUE, "x"), SENT, 64)
    fast = decode_head(data)
    slow = decode_head(json.dumps(json.loads(data), indent=1))
    assert (fast.id, fast.due_ns, fast.sent_ns) == (slow.id, slow.due_ns, slow.sent_ns)
    assert slow.stream == "x"


# -- decoding: malformed --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\xff\xfe\x00",
        b'{"id":1,"due_ns":2,"sent_ns":3',  # truncated canonical event
        b'{"id":1,"due_ns":2x,"sent_ns":3,"stream":"s","pad":""}',
        b"[1, 2, 3]",
        b"17",
        b'"an event"',
        b"null",
        b'{"due_ns": 5}',  # missing id
        b'{"id": 5}',  # missing due_ns
        b'{"id": "five", "due_ns": 5}',
        b'{"id": 5, "due_ns": "soon"}',  # non-int due
        b'{"id": 5, "due_ns": null}',
        b'{"id": 5, "due_ns": [1]}',
        b'{"id": 5, "due_ns": {"ns": 1}}',
        b'{"id": NaN, "due_ns": 5}',
        "{'id': 1, 'due_ns': 2}",  # str input, not JSON
    ],
)
def test_malformed_input_raises_malformed_event(data: bytes | str) -> None:
    with pytest.raises(MalformedEvent):
        decode_head(data)


def test_malformed_event_is_a_value_error() -> None:
    assert issubclass(MalformedEvent, ValueError)


@pytest.mark.parametrize("data", [b'{"id": Infinity, "due_ns": 5}', b'{"id": 1, "due_ns": -Infinity}'])
def test_infinite_numbers_raise_malformed_event(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_head(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":-1,"due_ns":5,"sent_ns":6,"stream":"s","pad":""}',  # fast path
        b'{"id": -3, "due_ns": 5}',  # fallback
    ],
)
def test_negative_id_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_head(data)


# -- batches ----------------------------------------------------------------


def test_batch_round_trip() -> None:
    events = [Event(i, DUE + i * 1000, "line\nbreak" if i % 2 else "s") for i in range(25)]
    body = encode_batch(events, SENT, 180)
    assert body.count(b"\n") == 24
    lines = split_batch(body)
    assert len(lines) == 25
    assert all(len(line) == 180 for line in lines)
    heads = [decode_head(line) for line in lines]
    assert [(h.id, h.due_ns, h.sent_ns) for h in heads] == [(i, DUE + i * 1000, SENT) for i in range(25)]
    assert [json.loads(line)["stream"] for line in lines] == [e.stream for e in events]


def test_batch_lines_equal_single_encodings() -> None:
    events = [Event(i, DUE, "s") for i in range(3)]
    assert split_batch(encode_batch(events, SENT, 90)) == [encode_event(e, SENT, 90) for e in events]


def test_split_batch_drops_blank_lines() -> None:
    a, b = encode_event(Event(0, DUE), SENT), encode_event(Event(1, DUE), SENT)
    assert split_batch(b"\n" + a + b"\n\n  \n" + b + b"\n") == [a, b]
    assert split_batch(b"") == []
    assert encode_batch([], SENT) == b""
