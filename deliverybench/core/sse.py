"""Server-Sent Events, read incrementally: bytes in, events out, nothing else.

The event-stream interpretation of the WHATWG HTML standard
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
as a sans-I/O state machine in the manner of websockets' ``protocol.py``:
:meth:`SseParser.feed` takes whatever bytes the transport had -- split
anywhere, inside a CRLF or a UTF-8 sequence -- and returns the events those
bytes completed. It never reads a clock or a socket.

It works on bytes, not decoded text. Every byte the grammar looks at (CR,
LF, ``:``, space, the field names) is ASCII, and no byte of a multi-byte
UTF-8 sequence is ASCII, so splitting the raw bytes is the same as
splitting the decoded text; an event's data is handed on as the bytes the
server sent (the receive path reads JSON from bytes), and only an ``id`` is
decoded (UTF-8, invalid bytes replaced, as the standard decodes the stream).

What arrives is untrusted, so nothing grows without bound: a line longer
than ``max_line`` (complete or not) or an event whose data passes
``max_event`` fails the parser with a kind (:data:`LINE_TOO_LONG`,
:data:`EVENT_TOO_BIG`) instead of buffering more; once failed it reads
nothing further.

This is the receive hot path of every SSE subscriber, and every subscriber
of a process is sent the same bytes for the same event; so a chunk that is
exactly one whole event (its ``id``/``data`` lines and the blank line) is
read once and its outcome remembered (:data:`_MEMO`, bounded), and read
again only on a miss.
"""

from __future__ import annotations

__all__ = ["SseParser", "SseEvent", "LINE_TOO_LONG", "EVENT_TOO_BIG", "MAX_EVENT_BYTES", "MAX_LINE_SLACK"]

#: one dispatched event: its data (lines joined by LF), the last event id then, the reconnection time then
SseEvent = tuple[bytes, "str | None", "int | None"]

#: the kind of failure when a line (a field name, its value, its line end) exceeds ``max_line``
LINE_TOO_LONG = "sse_line_too_long"
#: the kind of failure when one event's data (all its ``data`` lines) exceeds ``max_event``
EVENT_TOO_BIG = "sse_event_too_big"
#: the largest event data accepted by default (websockets' default ``max_size``)
MAX_EVENT_BYTES = 2**20
#: what a line may hold beyond an event's data: the field name, the colon and the space
MAX_LINE_SLACK = 1024

_BOM = b"\xef\xbb\xbf"
_NO_ID = object()
#: chunks that were exactly one event, read from a clean state: chunk -> (data, its id or _NO_ID)
_MEMO: dict[bytes, tuple[bytes, object]] = {}
#: the memo is cleared when it would hold more entries, or more bytes, than this
_MEMO_KEPT = 4096
_MEMO_BYTES = 16 * 2**20
#: a longer chunk is never memoised
_MEMO_CHUNK = 64 * 1024
_memo_bytes = [0]


class SseParser:
    """The event-stream interpreter of one connection.

    Args:
        last_id: the last event id of the previous connection, if any (the
            standard keeps it on the ``EventSource``, across reconnections).
        retry_ms: the reconnection time the server set before, if any.
        max_event: the largest event data accepted, in bytes.
        max_line: the longest line accepted (default ``max_event`` plus
            :data:`MAX_LINE_SLACK`).

    ``last_id`` and ``retry_ms`` are kept current as the stream says, also
    when no event is dispatched (an ``id`` in a block without ``data``);
    ``failed`` is the kind of failure, once the stream went over a bound.
    """

    __slots__ = ("last_id", "retry_ms", "failed", "max_event", "max_line", "_tail", "_data", "_size",
                 "_id", "_ids", "_skip_lf", "_start", "_memo_limit")

    def __init__(self, *, last_id: str | None = None, retry_ms: int | None = None,
                 max_event: int = MAX_EVENT_BYTES, max_line: int | None = None) -> None:
        self.last_id = last_id
        self.retry_ms = retry_ms
        self.failed: str | None = None
        self.max_event = max_event
        self.max_line = max_event + MAX_LINE_SLACK if max_line is None else max_line
        self._tail: bytes | bytearray = b""  # the incomplete last line
        self._data: list[bytes] = []  # the data buffer of the event being read, one item per line
        self._size = 0
        self._id: str | None = None  # the id field of the block being read, if it had one
        self._ids = 0  # blocks dispatched with an id
        self._skip_lf = False  # the last chunk ended with CR: a LF first in the next one ends no line
        self._start = True  # the byte order mark is still possible
        #: chunks up to this long may be answered from the memo: within every bound of this parser
        self._memo_limit = min(self.max_event, self.max_line, _MEMO_CHUNK)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events ``chunk`` completed, in order (none once :attr:`failed`)."""
        if not chunk or self.failed is not None:
            return []
        if self._tail or self._data or self._id is not None or self._skip_lf or self._start:
            return self._resume(chunk)
        known = _MEMO.get(chunk)
        if known is None:
            return self._first_sight(chunk)
        if len(chunk) > self._memo_limit:
            return self._lines(chunk)
        # this exact event was read before, from a clean state: the same event, the same id
        if known[1] is not _NO_ID:
            self.last_id = known[1]  # type: ignore[assignment]  # a str: see _first_sight
        return [(known[0], self.last_id, self.retry_ms)]

    def _resume(self, chunk: bytes) -> list[SseEvent]:
        """A chunk that continues something: a CR, a partial line, a block, the stream's first bytes."""
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if self._start:
            chunk = bytes(self._tail) + chunk  # the tail is a few bytes of a byte order mark, if anything
            self._tail = b""
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._tail = chunk  # maybe the start of a byte order mark: wait for the rest
                return []
            self._start = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        elif self._tail:
            if 10 not in chunk and 13 not in chunk:  # still the same line: grown in place, not copied again
                tail = self._tail if isinstance(self._tail, bytearray) else bytearray(self._tail)
                tail += chunk
                self._tail = tail
                if len(tail) > self.max_line:
                    self._fail(LINE_TOO_LONG)
                return []
            chunk = bytes(self._tail + chunk)
            self._tail = b""
        return self._lines(chunk)

    def _first_sight(self, chunk: bytes) -> list[SseEvent]:
        """Read a chunk from a clean state; remember it if it was exactly one block ending the chunk."""
        ids = self._ids
        events = self._lines(chunk)
        n = len(chunk)
        if (len(events) == 1 and n <= _MEMO_CHUNK and self.failed is None and b"retry" not in chunk
                and 13 not in chunk and chunk.find(b"\n\n") == n - 2):
            # one block, dispatched at the chunk's end: the event, and the id if the block had one
            if len(_MEMO) >= _MEMO_KEPT or _memo_bytes[0] > _MEMO_BYTES:
                _MEMO.clear()
                _memo_bytes[0] = 0
            _MEMO[chunk] = (events[0][0], self.last_id if self._ids != ids else _NO_ID)
            _memo_bytes[0] += 2 * n
        return events

    def _lines(self, chunk: bytes) -> list[SseEvent]:
        if 13 in chunk:  # CR: every line end becomes LF (a CR last may be half of a CRLF split in two)
            if chunk[-1] == 13:
                self._skip_lf = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        max_line = self.max_line
        if len(chunk) > max_line and (len(tail) > max_line or max(map(len, lines), default=0) > max_line):
            return self._fail_at(lines, max_line)
        self._tail = tail
        events: list[SseEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data or self._id is not None:
                    self._dispatch(events)
                    data = self._data
                continue
            if line[0] == 58:  # ':' -- a comment (a keep-alive)
                continue
            colon = line.find(b":")
            if colon < 0:
                field, value = line, b""
            else:
                field, value = line[:colon], line[colon + 1:]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                self._size += len(value) + 1
                if self._size > self.max_event + 1:  # each line counts its LF; the last one is not kept
                    self._fail(EVENT_TOO_BIG)
                    return events
                data.append(value)
            elif field == b"id":
                if 0 not in value:
                    self._id = value.decode("utf-8", "replace")
            elif field == b"retry":
                if value.isdigit():  # ASCII digits only, as bytes.isdigit reads them
                    self.retry_ms = int(value)
            # "event" names a type; every event here is data to be read, so it is not kept
        return events

    def _dispatch(self, events: list[SseEvent]) -> None:
        """A blank line: the block read so far becomes an event, if it had data."""
        if self._id is not None:
            self.last_id, self._id = self._id, None
            self._ids += 1
        data = self._data
        if data:
            events.append((data[0] if len(data) == 1 else b"\n".join(data), self.last_id, self.retry_ms))
            self._data = []
            self._size = 0

    def _fail_at(self, lines: list[bytes], max_line: int) -> list[SseEvent]:
        """A line over the bound: the lines before it are read (their events count), then nothing more."""
        good = next((i for i, line in enumerate(lines) if len(line) > max_line), len(lines))
        events = self._lines(b"".join(line + b"\n" for line in lines[:good])) if good else []
        if self.failed is None:
            self._fail(LINE_TOO_LONG)
        return events

    def _fail(self, kind: str) -> None:
        self.failed = kind
        self._tail, self._data, self._size, self._id = b"", [], 0, None
