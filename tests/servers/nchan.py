"""nginx + nchan (Debian ``nginx-light`` + ``libnginx-mod-nchan``) started by a test on 127.0.0.1.

The server itself is :class:`targets.nchan.NchanTarget` (``--target nchan``);
this module keeps the shape the tests and ``benchmarks/push_scale.py`` use:
a context manager under a prefix of the test's own, yielding the URLs of
push (``/sub``), SSE (``/sse``) and long-poll (``/lp``) on one channel, and
the master's pid. The tests use one worker; ``benchmarks/push_scale.py``
renders the same configuration with several (:class:`NginxConfig`), since one
nginx worker holds at most as many sessions as its open-files limit allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from targets._binary import free_port
from targets.nchan import MODULE, NchanTarget, NginxConfig, missing, render_config

__all__ = ["MODULE", "NginxConfig", "RunningNchan", "missing", "free_port", "render_config", "nchan_server",
           "nchan"]


_ONE_WORKER = NginxConfig()


@dataclass(frozen=True, slots=True)
class RunningNchan:
    """A started nginx + nchan: its URLs, its master's pid and its prefix (error.log is there).

    ``subscribe_url`` is the WebSocket egress; ``sse_url`` and ``longpoll_url``
    carry the same channel.
    """

    publish_url: str
    subscribe_url: str
    status_url: str
    pid: int
    prefix: Path
    sse_url: str = ""
    longpoll_url: str = ""


@contextmanager
def nchan_server(prefix: Path, config: NginxConfig = _ONE_WORKER) -> Iterator[RunningNchan]:
    """Run nginx + nchan under ``prefix`` as ``config`` says until the block ends."""
    target = NchanTarget(config=config, prefix=prefix)
    target.start()
    try:
        urls, pid = target.urls(), target.pid
        assert pid is not None
        yield RunningNchan(urls["ingress"], urls["push"], urls["health"], pid, prefix,
                           sse_url=urls["sse"], longpoll_url=urls["longpoll"])
    finally:
        target.stop()


@contextmanager
def nchan(prefix: Path) -> Iterator[tuple[str, str]]:
    """Run the tests' nginx + nchan (one worker) under ``prefix``; yields (publish URL, WebSocket subscribe URL)."""
    with nchan_server(prefix) as server:
        yield server.publish_url, server.subscribe_url
