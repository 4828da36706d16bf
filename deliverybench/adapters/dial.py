"""Opening a TCP connection from a chosen local address without exhausting, or scanning, its ports.

``loop.create_connection(local_addr=(addr, 0))`` binds before it connects,
and a bind with port 0 must pick a port free for *every* destination: the
kernel searches the address's ephemeral range for one, which grows slow as
it fills (measured: at ~25,000 sessions on one source address most of a
harness process's CPU went to ``bind()``, run by uvloop while it holds the
GIL, so Locust's heartbeats starved and the master took the workers for
missing) and ends at ~28,000 ports per address. With
``IP_BIND_ADDRESS_NO_PORT`` the port is chosen at ``connect()`` for the
4-tuple, the cheap path the kernel uses without a bind. So the socket is
made here, bound with that option and connected, then handed to the loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["dial", "IP_BIND_ADDRESS_NO_PORT"]

#: Linux's option number (``socket.IP_BIND_ADDRESS_NO_PORT`` from Python 3.12 on)
IP_BIND_ADDRESS_NO_PORT: int = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _stdlib_socket_class() -> type[socket.socket]:
    """The standard library's socket class, even in a process gevent has patched.

    Locust patches ``socket.socket`` with gevent's cooperative one; in the
    loop thread that class's ``connect`` ran a *blocking* connect() (measured:
    most of a worker's CPU at 8,000 sessions a process, holding the GIL).
    """
    try:
        from gevent import monkey
    except ImportError:  # no gevent: nothing was patched
        return socket.socket
    original: type[socket.socket] = monkey.get_original("socket", "socket")
    return original


_SOCKET = _stdlib_socket_class()


async def dial(loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], asyncio.Protocol], host: str,
               port: int, local_addr: str, **kwargs: Any) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """``loop.create_connection`` from ``local_addr``, the port picked at connect time.

    ``host`` is resolved by the loop first (one lookup per call, as ``create_connection`` does).
    """
    family = socket.AF_INET6 if ":" in local_addr else socket.AF_INET
    try:
        socket.inet_pton(family, host)  # an address already: no lookup per session
        address: Any = (host, port)
    except OSError:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"{host} has no {'IPv6' if family == socket.AF_INET6 else 'IPv4'} address") from None
        address = infos[0][4]
    sock = _SOCKET(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET:
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:  # not Linux, or a kernel before 4.2: the plain bind still works, more slowly
                pass
        sock.setblocking(False)
        sock.bind((local_addr, 0))
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    transport, protocol = await loop.create_connection(protocol_factory, sock=sock, **kwargs)
    return transport, protocol
