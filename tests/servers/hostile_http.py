"""Hostile HTTP senders for a callback receiver: raw sockets that declare, stream or hold request bodies.

These are clients, not servers, but they sit with the test servers so that the tests of any
receiver (today's aiohttp one, a future httptools one) can aim them at a callback URL. Each
sends exactly what it is told -- a 50 MB ``Content-Length`` followed by a few bytes, an endless
chunked body, a body held open -- and reports what came back, including a reset instead of an
answer, so a test can hold the receiver's own counts against what the sender saw.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Answer", "CallbackUrl", "chunked_flood", "declare", "hold", "read_answer"]

#: bytes of one chunk of a streamed body
CHUNK = 64 * 1024


@dataclass(frozen=True)
class CallbackUrl:
    """Where a receiver listens: host, port and the path of one subscriber."""

    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> CallbackUrl:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        return cls(parts.hostname, parts.port, parts.path)


@dataclass
class Answer:
    """What a sender got back: a status line and headers, or a reset / silence instead."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    seconds: float = 0.0


def _head(url: CallbackUrl, framing: str) -> bytes:
    return (f"POST {url.path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n").encode()


def read_answer(sock: socket.socket, *, timeout_s: float) -> Answer:
    """Read a response head within ``timeout_s``: its status and headers, else ``reset`` or nothing."""
    started = time.monotonic()
    sock.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    except (ConnectionResetError, BrokenPipeError):
        return Answer(reset=True, seconds=time.monotonic() - started)
    except TimeoutError:
        return Answer(seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    if not data:
        return Answer(reset=True, seconds=seconds)
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, seconds=seconds)


def declare(url: CallbackUrl, *, declared: int, send: bytes, timeout_s: float) -> Answer:
    """Declare a body of ``declared`` bytes, send only ``send``, and wait for the answer."""
    with socket.create_connection((url.host, url.port), timeout=timeout_s) as sock:
        sock.sendall(_head(url, f"Content-Length: {declared}") + send)
        return read_answer(sock, timeout_s=timeout_s)


def chunked_flood(url: CallbackUrl, *, total: int, timeout_s: float) -> tuple[Answer, int]:
    """Stream a chunked body of ``total`` bytes as fast as the receiver takes it; the answer and bytes sent.

    Stops sending as soon as the receiver answers or closes: a receiver that refuses the body
    early is seen as an early answer (or a reset), never as a sender blocked on a full window.
    """
    frame = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    sent = 0
    with socket.create_connection((url.host, url.port), timeout=timeout_s) as sock:
        sock.sendall(_head(url, "Transfer-Encoding: chunked"))
        deadline = time.monotonic() + timeout_s
        try:
            while sent < total and time.monotonic() < deadline:
                readable, writable, _ = select.select([sock], [sock], [], 0.05)
                if readable:
                    break  # an answer (or a close) arrived before the body ended
                if writable:
                    sock.sendall(frame)
                    sent += CHUNK
            else:
                sock.sendall(b"0\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass
        return read_answer(sock, timeout_s=max(0.1, deadline - time.monotonic())), sent


def hold(url: CallbackUrl, *, declared: int, send: int) -> socket.socket:
    """Declare ``declared`` bytes, send ``send`` of them and keep the connection open; the caller closes it."""
    sock = socket.create_connection((url.host, url.port))
    sock.sendall(_head(url, f"Content-Length: {declared}") + b"x" * send)
    return sock
