"""A webhook consumer that never answers: it accepts connections, reads, and says nothing.

    python -m tests.servers.blackhole

The worst consumer a burst can meet. Binds 127.0.0.1, port 0, prints the
``targets._process`` ready line with its URL and ``/hook`` path.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from targets._process import announce_ready, url_for, wait_for_signal


class Silent(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass  # read everything, answer nothing


async def run() -> None:
    server = await asyncio.get_running_loop().create_server(Silent, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    announce_ready({"consumer": url_for("http", "127.0.0.1", port, "/hook")})
    try:
        await wait_for_signal()
    finally:
        server.close()


if __name__ == "__main__":
    uvloop.run(run())
    sys.exit(0)
