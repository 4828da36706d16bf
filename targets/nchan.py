"""nginx + nchan as a target (``--target nchan``): Debian ``nginx-light`` + ``libnginx-mod-nchan``.

nchan is a real pub/sub push server: whatever body is POSTed to its
``nchan_publisher`` location (``/pub``) is forwarded verbatim, as one
WebSocket message, to every session on its ``nchan_subscriber websocket``
location (``/sub``) -- exactly the relay contract deliverybench measures, so
its dialect is the default one. The same channel is served as Server-Sent
Events on ``/sse`` (``nchan_subscriber eventsource``: it answers 403 unless
asked with ``Accept: text/event-stream``; resume with ``Last-Event-ID``) and
long-polled on ``/lp`` (``nchan_subscriber longpoll``, resumed with
``If-Modified-Since`` + ``If-None-Match``: the long-poll subscriber's
``etag`` style; a request held 1 s is answered 408, an empty answer).

The target writes its configuration into a prefix of its own (a temporary
directory unless given), listens on a free 127.0.0.1 port and runs nginx
with ``daemon off`` as a child of the run, so nothing is shared with the
machine's nginx and nothing outlives the run. Each event is one POST
(nchan forwards each body as one message: no NDJSON batches).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import Dialect
from targets._binary import BinaryProcess, free_port, http_ok, loopback_egress, require_binary
from targets.base import Target, TargetError

__all__ = ["MODULE", "NginxConfig", "NchanTarget", "missing", "render_config"]

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
_EGRESS_PATHS = {"push": "/sub", "sse": "/sse", "longpoll": "/lp"}

CONFIG = """\
load_module {module};
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {rlimit_nofile};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port}{listen_options};
        location = /pub {{
            nchan_publisher;
            nchan_channel_id bench;
            nchan_message_buffer_length 100000;
            nchan_message_timeout 10m;
        }}
        location = /sub {{
            nchan_subscriber websocket;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
        }}
        location = /sse {{
            nchan_subscriber eventsource;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
        }}
        location = /lp {{
            nchan_subscriber longpoll;
            nchan_channel_id bench;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 1s;
        }}
        location = /status {{
            nchan_stub_status;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class NginxConfig:
    """What may differ between one nginx + nchan and another (the tests' and a benchmark's at scale).

    Attributes:
        workers: ``worker_processes``; nchan relays each message between
            workers through shared memory, so every session still gets it.
        worker_connections: connections one worker may hold (sessions,
            publisher requests, status reads).
        rlimit_nofile: ``worker_rlimit_nofile``: nginx raises each worker's
            limit to this, which needs the right to pass the hard limit.
        reuseport: one listening socket per worker (``SO_REUSEPORT``), so the
            kernel spreads connections evenly instead of the busiest worker
            taking most of them.
        backlog: the listen queue; nginx's own default (511) drops SYNs when
            thousands of sessions connect at once.
    """

    workers: int = 1
    worker_connections: int = 16384
    rlimit_nofile: int = 20000
    reuseport: bool = False
    backlog: int | None = None


def render_config(prefix: Path, port: int, config: NginxConfig = NginxConfig()) -> str:
    """The nginx.conf for ``config``, serving on 127.0.0.1:``port`` with everything under ``prefix``."""
    listen = (" reuseport" if config.reuseport else "") + (f" backlog={config.backlog}" if config.backlog else "")
    return CONFIG.format(module=MODULE, prefix=prefix, port=port, workers=config.workers,
                         rlimit_nofile=config.rlimit_nofile, worker_connections=config.worker_connections,
                         listen_options=listen)


def missing() -> str | None:
    """Why nginx + nchan cannot run here, or None."""
    try:
        require_binary("nginx", "nginx-light")
    except TargetError as exc:
        return f"{exc}; apt-get install nginx-light libnginx-mod-nchan"
    if not MODULE.is_file():
        return "the nchan module is not installed (Debian package libnginx-mod-nchan)"
    return None


class NchanTarget(Target):
    """nginx + nchan started from the Debian packages: push, SSE and long-poll on one channel.

    Args:
        config: workers and limits (:class:`NginxConfig`; one worker by default).
        prefix: where the configuration, pid file, temp paths and ``error.log``
            go; default a temporary directory removed at :meth:`stop` (a given
            one is kept, so its error log can be read afterwards).
    """

    name: ClassVar[str] = "nchan"
    offers: ClassVar[tuple[str, ...]] = tuple(_EGRESS_PATHS)
    kind: ClassVar[str] = "server"

    def __init__(self, *, config: NginxConfig = NginxConfig(), prefix: Path | None = None) -> None:
        self.config = config
        self.prefix = prefix
        self._own_prefix = False
        self._nginx: BinaryProcess | None = None
        self._base = ""

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self._nginx is not None and self._nginx.alive:
            return
        problem = missing()
        if problem is not None:
            raise TargetError(problem)
        if self.prefix is None:
            self.prefix, self._own_prefix = Path(tempfile.mkdtemp(prefix="deliverybench-nchan-")), True
        prefix = self.prefix
        prefix.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(render_config(prefix, port, self.config))
        self._base = f"127.0.0.1:{port}"
        self._nginx = BinaryProcess([require_binary("nginx", "nginx-light"), "-p", str(prefix), "-c", str(conf)],
                                    name="nginx", cwd=prefix)
        try:
            self._nginx.start(lambda: http_ok(f"http://{self._base}/status"), timeout_s)
        except TargetError as exc:
            log = prefix / "error.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-10:] if log.is_file() else []
            self.stop()
            self._base = ""
            raise TargetError("\n".join([str(exc), *tail])) from None

    def stop(self) -> None:
        if self._nginx is not None:
            self._nginx.stop()
        if self._own_prefix and self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix, self._own_prefix = None, False

    @property
    def pid(self) -> int | None:
        """nginx's master process."""
        return self._nginx.pid if self._nginx is not None else None

    @property
    def ingress_url(self) -> str | None:
        return f"http://{self._base}/pub" if self._base else None

    def egress_url(self, mode: str) -> str | None:
        return loopback_egress(self._base, mode, _EGRESS_PATHS)

    @property
    def health_url(self) -> str | None:
        return f"http://{self._base}/status" if self._base else None

    def pids(self) -> list[int]:
        """The master and its workers (the workers do the delivering)."""
        return self._nginx.pids() if self._nginx is not None else []

    def dialect(self, mode: str) -> Dialect:
        """Events travel verbatim; a long-poll resumes nchan's way (``If-Modified-Since`` + ``If-None-Match``)."""
        return Dialect(longpoll_resume="etag") if mode == "longpoll" else Dialect()

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {**super().describe(), "options": {"workers": cfg.workers,
                                                  "worker_connections": cfg.worker_connections}}
