"""The push client's frame fast path against websockets' own frame encoder (no network needed)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from deliverybench.adapters.push_client import scan_frames


def complete_data_frames(data: bytes) -> list[tuple[int, int]] | None:
    return scan_frames(data)[0]


def partial(data: bytes) -> bool:
    return scan_frames(data)[1]


def wire(*frames: Frame, mask: bool = False) -> bytes:
    return b"".join(f.serialize(mask=mask, extensions=[]) for f in frames)


@pytest.mark.parametrize("sizes", [[1], [125], [126], [65535], [65536], [3, 300, 70000, 5]])
def test_whole_data_frames_are_cut_into_their_payloads(sizes: list[int]) -> None:
    payloads = [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]
    data = wire(*(Frame(Opcode.TEXT if i % 2 == 0 else Opcode.BINARY, p) for i, p in enumerate(payloads)))
    spans = complete_data_frames(data)
    assert spans is not None
    assert [data[a:b] for a, b in spans] == payloads
    assert not partial(data)


def test_anything_else_goes_to_websockets() -> None:
    event = wire(Frame(Opcode.TEXT, b'{"id":1}'))
    ping = wire(Frame(Opcode.PING, b"x"))
    fragment = wire(Frame(Opcode.TEXT, b"part", fin=False))
    masked = wire(Frame(Opcode.TEXT, b"m"), mask=True)
    for data in (event + ping, fragment, masked, event[:-1], event + event[:3]):
        assert complete_data_frames(data) is None
    # Whole control frames leave websockets' parser clean: the fast path may stay on.
    assert not partial(event + ping)
    assert not partial(masked)
    # A cut frame leaves state inside websockets: the fast path must turn off.
    assert partial(event[:-1])
    assert partial(event + event[:1])
    assert partial(wire(Frame(Opcode.BINARY, b"y" * 70000))[:9])
