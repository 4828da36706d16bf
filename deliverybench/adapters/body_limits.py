"""The limits of a request body a receiver reads: a cap per body, a budget per process; sans-I/O.

A receiver is an open port, so what arrives may be hostile: nothing is read
before it is checked. A declared ``Content-Length`` over the body cap (see
:func:`body_cap_for`) is refused before a byte of the body is read
(:func:`check_declared`), and a chunked body is cut at the cap as it streams
(:class:`BodyGate`); the bytes of all bodies being read at once are bounded
by a per-process :class:`BodyBudget`, past which a request is refused with
``Retry-After``. Each :class:`Refusal` carries the answer and the error kind
it is counted under. No sockets here, so that any receiver can apply the
limits to the chunks its parser yields.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_BODY_CAP", "CAP_PER_PAYLOAD", "BUDGET_BODIES", "BUSY_RETRY_AFTER_S", "Refusal", "OVERSIZED", "BUSY",
           "TRUNCATED", "body_cap_for", "body_budget_for", "check_declared", "BodyBudget", "BodyGate"]

#: the smallest body cap: an event is a few hundred bytes (``--payload-bytes`` 256 by default), so 1 MiB
#: is thousands of them -- room for a target that batches or wraps events in an envelope -- and 64 times
#: less than the 64 MiB the callback receiver once read before checking anything
MIN_BODY_CAP = 1 << 20
#: the cap is at least this many configured events: a large ``--payload-bytes`` (up to 16 MiB) must never be
#: refused, and an envelope may escape or repeat the event
CAP_PER_PAYLOAD = 4
#: the body budget of one process, in bodies at the cap: a genuine delivery is KBs, so hundreds of
#: concurrent ones use a small part of it, while hostile bodies can hold at most this many caps of memory
BUDGET_BODIES = 16
#: seconds a sender refused for a full budget is asked to wait: the budget frees as soon as the bodies being
#: read end, and a webhook sender (Standard Webhooks retry schedules) honours Retry-After on a 503
BUSY_RETRY_AFTER_S = 1


def body_cap_for(payload_bytes: int) -> int:
    """The largest request body a receiver reads, for events of ``payload_bytes``."""
    return max(MIN_BODY_CAP, CAP_PER_PAYLOAD * payload_bytes)


def body_budget_for(cap: int) -> int:
    """The body bytes one process reads at once, for a body cap of ``cap``."""
    return BUDGET_BODIES * cap


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request body was not read (further): the answer and the error kind it is counted under."""

    status: int
    kind: str
    text: str
    retry_after_s: int | None = None


#: the body is larger than the cap (declared, or found while it streamed)
OVERSIZED = Refusal(413, "oversized_body", "body too large\n")
#: the bodies being read by this process already hold the whole budget
BUSY = Refusal(503, "receiver_busy", "receiver busy\n", BUSY_RETRY_AFTER_S)
#: the sender stopped before the end of its body (closed, or broke the framing)
TRUNCATED = Refusal(400, "truncated_body", "incomplete body\n")


def check_declared(content_length: int | None, cap: int) -> Refusal | None:
    """OVERSIZED when the declared length is over ``cap``: decided from the headers, before any body byte."""
    return OVERSIZED if content_length is not None and content_length > cap else None


class BodyBudget:
    """The body bytes all requests of one process hold while they are read; sans-I/O, one thread.

    Bytes are reserved as they arrive (never on a declared length a sender may not
    send), so the budget bounds memory actually held, and a request that cannot
    reserve is refused at once rather than made to wait: a waiting reader would let a
    hostile sender's hold time become a genuine delivery's latency, charged to the target.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        #: the most bytes held at once (for tests and diagnostics)
        self.peak = 0

    def take(self, n: int) -> bool:
        if self.in_use + n > self.limit:
            return False
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        return True

    def give(self, n: int) -> None:
        self.in_use -= n


class BodyGate:
    """The limits of one request body, fed its chunks as a parser yields them; sans-I/O.

    Call :meth:`release` when the body is no longer needed (always: in a ``finally``).
    """

    def __init__(self, budget: BodyBudget, cap: int) -> None:
        self._budget = budget
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> Refusal | None:
        """Keep ``chunk``, or say why the body is refused (its bytes are then already given back)."""
        if self._size + len(chunk) > self._cap:
            self.release()
            return OVERSIZED
        if not self._budget.take(len(chunk)):
            self.release()
            return BUSY
        self._chunks.append(chunk)
        self._size += len(chunk)
        return None

    def body(self) -> bytes:
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def release(self) -> None:
        self._budget.give(self._size)
        self._chunks, self._size = [], 0
