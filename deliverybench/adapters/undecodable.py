"""The first message of this process that did not decode, kept to be shown, with the shape that was expected.

A run where nothing decodes ends in "nothing was delivered"; a count of
malformed messages alone does not say why. The receivers (WebSocket, SSE,
webhook) note every message that did not decode (a webhook refused for its
signature too); the first one is kept, as a short
escaped sample (:func:`~deliverybench.core.protocols.sample`), so the results
and the failure line can show what arrived beside what was expected. One per
process, written by the loop thread alone; later ones are counted by kind
where they arrive, not kept.
"""

from __future__ import annotations

from ..core.protocols import sample

__all__ = ["first", "note", "forget"]

#: (sample of the message, the shape expected), or None while every message decoded
first: tuple[str, str] | None = None


def note(message: bytes, expected: str) -> None:
    """Keep ``message`` as this process's sample if it is the first that did not decode."""
    global first
    if first is None:
        first = (sample(message), expected)


def forget() -> None:
    """Drop the sample kept (a new measurement in the same process starts without one)."""
    global first
    first = None
