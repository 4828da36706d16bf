"""The event-stream parser: the standard's examples, every way a stream can be cut, every bound.

``reference`` below reads a whole stream the way the WHATWG text says, line
by line on decoded text; the parser, fed the same bytes in any pieces, must
agree with it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverybench.core import sse
from deliverybench.core.sse import EVENT_TOO_BIG, LINE_TOO_LONG, SseEvent, SseParser

BOM = "\ufeff".encode()


def reference(stream: bytes) -> tuple[list[tuple[str, str | None, int | None]], str | None, int | None]:
    """The standard's interpretation of a whole stream: events (data, last id, retry), then last id and retry."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # what follows the last line end is not a line (yet)
    events: list[tuple[str, str | None, int | None]] = []
    data, id_buffer, last_id, retry = "", None, None, None
    for line in lines:
        if line == "":
            if id_buffer is not None:
                last_id = id_buffer
            if data:
                events.append((data[:-1] if data.endswith("\n") else data, last_id, retry))
            data = ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data += value + "\n"
        elif field == "id" and "\0" not in value:
            id_buffer = value
        elif field == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return events, last_id, retry


def feed_all(parser: SseParser, pieces: list[bytes]) -> list[SseEvent]:
    out: list[SseEvent] = []
    for piece in pieces:
        out += parser.feed(piece)
    return out


def decoded(events: list[SseEvent]) -> list[tuple[str, str | None, int | None]]:
    return [(data.decode("utf-8", "replace"), last_id, retry) for data, last_id, retry in events]


# -- the standard's own examples -------------------------------------------------------------------
def test_multi_line_data_is_joined_with_line_feeds() -> None:
    events = SseParser().feed(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert events == [(b"YHOO\n+2\n10", None, None)]


def test_comments_ids_and_an_unfinished_block() -> None:
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
    parser = SseParser()
    assert parser.feed(stream) == [(b"first event", "1", None), (b"second event", "", None)]
    assert parser.last_id == ""  # an empty id resets it: no Last-Event-ID is sent then
    assert parser.feed(b"\n") == [(b" third event", "", None)]  # one space removed, not two


def test_a_field_with_no_colon_and_empty_data() -> None:
    events = SseParser().feed(b"data\n\ndata\ndata\n\ndata:")
    assert events == [(b"", None, None), (b"\n", None, None)]


def test_the_space_after_the_colon_is_optional() -> None:
    assert SseParser().feed(b"data:test\n\ndata: test\n\n") == [(b"test", None, None)] * 2


# -- line ends, byte order mark, fields --------------------------------------------------------------
@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_end_reads_the_same(end: bytes) -> None:
    stream = end.join([b"id: 7", b"data: a", b"data: b", b"", b": ping", b"data: c", b"", b""])
    assert SseParser().feed(stream) == [(b"a\nb", "7", None), (b"c", "7", None)]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    parser = SseParser()
    assert feed_all(parser, [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [(b"a\nb", None, None)]


def test_a_byte_order_mark_is_dropped_once_even_split() -> None:
    parser = SseParser()
    assert feed_all(parser, [BOM[:1], BOM[1:2], BOM[2:] + b"data: a\n\n"]) == [(b"a", None, None)]
    # a second one is part of the next line's field name: an unknown field, ignored
    assert parser.feed(BOM + b"data: b\n\ndata: c\n\n") == [(b"c", None, None)]


def test_a_stream_that_starts_like_a_byte_order_mark_but_is_not_one() -> None:
    assert feed_all(SseParser(), [b"\xef", b"data: x\n\n"]) == []  # \xef + "data" is no field
    assert feed_all(SseParser(), [b"", b"da", b"ta: x\n\n"]) == [(b"x", None, None)]


def test_comments_are_ignored() -> None:
    assert SseParser().feed(b": ping\n:\n\n: ping\ndata: x\n: mid\n\n") == [(b"x", None, None)]


def test_retry_takes_ascii_digits_only() -> None:
    parser = SseParser()
    assert parser.feed(b"retry: 1500\n\n") == []
    assert parser.retry_ms == 1500
    for bad in (b"retry: 15a\n", b"retry: -1\n", b"retry:\n", b"retry: \xd9\xa1\n", b"retry:  20\n"):
        parser.feed(bad)
    assert parser.retry_ms == 1500
    assert parser.feed(b"data: x\n\n") == [(b"x", None, 1500)]


def test_an_id_holding_nul_is_ignored() -> None:
    parser = SseParser(last_id="4")
    assert parser.feed(b"id: 5\0\ndata: x\n\n") == [(b"x", "4", None)]
    assert parser.feed(b"id: 6\ndata: y\n\n") == [(b"y", "6", None)]


def test_an_id_is_kept_without_data_and_only_at_the_blank_line() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 3\n") == [] and parser.last_id is None
    assert parser.feed(b"\n") == [] and parser.last_id == "3"  # no data: nothing dispatched, the id kept
    assert parser.feed(b"event: tick\n\n") == []


def test_undecodable_id_bytes_are_replaced_and_data_stays_bytes() -> None:
    parser = SseParser()
    assert parser.feed(b"id: \xff1\ndata: \xe2\x82\xac \xff\n\n") == [(b"\xe2\x82\xac \xff", "\ufffd1", None)]


# -- bounds ----------------------------------------------------------------------------------------
def test_an_oversized_line_fails_the_parser_after_the_events_before_it() -> None:
    parser = SseParser(max_event=100)
    events = parser.feed(b"data: ok\n\ndata: " + b"x" * 2000 + b"\n\ndata: later\n\n")
    assert events == [(b"ok", None, None)]
    assert parser.failed == LINE_TOO_LONG
    assert parser.feed(b"data: more\n\n") == []


def test_a_line_that_never_ends_fails_instead_of_growing() -> None:
    parser = SseParser(max_event=100, max_line=150)
    assert parser.feed(b"data: ok\n\ndata: ") == [(b"ok", None, None)]
    for _ in range(20):
        parser.feed(b"y" * 10)
    assert parser.failed == LINE_TOO_LONG
    assert not parser._tail and not parser._data  # nothing kept


def test_an_event_over_the_bound_in_many_lines_fails() -> None:
    parser = SseParser(max_event=100)
    assert parser.feed(b"data: " + b"z" * 100 + b"\n\n") == [(b"z" * 100, None, None)]  # exactly the bound
    assert parser.feed(b"data: " + b"z" * 60 + b"\n" + b"data: " + b"z" * 40 + b"\n\n") == []
    assert parser.failed == EVENT_TOO_BIG


def test_a_remembered_event_is_still_bounded_by_each_parser() -> None:
    chunk = b"data: " + b"w" * 500 + b"\n\n"
    big = SseParser()
    big.feed(b":\n")  # past the start
    assert big.feed(chunk) == [(b"w" * 500, None, None)] and chunk in sse._MEMO
    small = SseParser(max_event=100)
    small.feed(b":\n")
    assert small.feed(chunk) == [] and small.failed == EVENT_TOO_BIG


# -- the memo: the same chunk read by many parsers ---------------------------------------------------
def test_a_remembered_chunk_gives_each_parser_its_own_ids() -> None:
    with_id, without = b"id: 7\ndata: a\n\n", b"data: b\n\n"
    first, second = SseParser(last_id="1"), SseParser(last_id="2")
    for parser in (first, second):
        parser.feed(b": hello\n\n")
    assert first.feed(with_id) == [(b"a", "7", None)] and second.feed(with_id) == [(b"a", "7", None)]
    assert with_id in sse._MEMO
    third = SseParser(last_id="3", retry_ms=50)
    third.feed(b":\n")
    assert third.feed(without) == [(b"b", "3", 50)]
    assert third.feed(without) == [(b"b", "3", 50)]
    assert third.feed(with_id) == [(b"a", "7", 50)] and third.last_id == "7"


def test_chunks_that_are_not_one_whole_block_are_not_remembered() -> None:
    chunks = [b"data: p\n\nid: 9\n\n", b"retry: 5\ndata: q\n\n", b"data: r\r\n\r\n", b"data: s\n\ndata: t\n\n"]
    for chunk in chunks:
        parser = SseParser()
        parser.feed(b":\n")
        parser.feed(chunk)
    assert not any(chunk in sse._MEMO for chunk in chunks)
    late = SseParser(last_id="1")
    late.feed(b":\n")
    assert late.feed(chunks[0]) == [(b"p", "1", None)] and late.last_id == "9"


# -- any stream, cut anywhere -----------------------------------------------------------------------
_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "  x", "12", "3\0", "€uro", "a:b"]))
_FIELDS = st.sampled_from(["data", "data", "data", "id", "retry", "event", "", ":", ": ping", "dat", "\ufeff"])
_LINES = st.tuples(_FIELDS, st.sampled_from([":", ": ", ""]), _VALUES).map(lambda t: "".join(t))
_BLOCKS = st.lists(st.lists(_LINES, max_size=4).map(lambda lines: [*lines, ""]), max_size=8).map(
    lambda blocks: [line for block in blocks for line in block])
_STREAMS = st.tuples(
    st.booleans(),
    st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=40, max_size=40),
    _BLOCKS,
    st.lists(_LINES, max_size=2),  # an unfinished block at the end
).map(lambda t: (BOM if t[0] else b"") + "".join(line.replace("\r", "").replace("\n", "") + t[1][i % 40]
                                                 for i, line in enumerate(t[2] + t[3])).encode())


@settings(max_examples=400, deadline=None)
@given(stream=_STREAMS, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_stream_cut_anywhere_reads_as_the_standard_says(stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    expected, last_id, retry = reference(stream)
    whole, cut = SseParser(), SseParser()
    assert decoded(whole.feed(stream)) == expected
    assert decoded(feed_all(cut, pieces)) == expected
    assert (whole.last_id, whole.retry_ms) == (cut.last_id, cut.retry_ms) == (last_id, retry)


def test_every_split_point_of_a_sample_stream_gives_the_same_events() -> None:
    stream = (BOM + b": hello\r\nretry: 250\r\n\r\nid: 1\r\ndata: {\"id\":1}\r\n\r\nid: 2\rdata: \xe2\x82\xac\r"
              b"data: two\r\rid: 3\ndata: three\n\n: ping\n\nevent: x\ndata\n\n")
    expected = SseParser().feed(stream)
    assert [e[0] for e in expected] == [b'{"id":1}', b"\xe2\x82\xac\ntwo", b"three", b""]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1, 7):
            assert feed_all(SseParser(), [stream[:i], stream[i:j], stream[j:]]) == expected, (i, j)
