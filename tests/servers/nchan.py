"""nginx + nchan (Debian ``nginx-light`` + ``libnginx-mod-nchan``) started by a test on 127.0.0.1.

nchan is a real pub/sub push server: whatever body is POSTed to its
``nchan_publisher`` location is forwarded verbatim, as one WebSocket
message, to every session on its ``nchan_subscriber websocket`` location --
exactly the relay contract deliverybench measures. The same channel is
served as Server-Sent Events on ``/sse`` (``nchan_subscriber eventsource``:
it answers 403 unless asked with ``Accept: text/event-stream``; resume with
``Last-Event-ID``) and long-polled on ``/lp`` (``nchan_subscriber
longpoll``, resumed with ``If-Modified-Since`` + ``If-None-Match``; a
request held 1 s is answered 408, an empty answer). Each test gets its own
nginx (own prefix, own free port, ``daemon off``), so nothing is shared with
the machine's nginx or with other tests, and the process is killed at the end.

The tests use one worker; ``benchmarks/push_scale.py`` renders the same
configuration with several (:class:`NginxConfig`), since one nginx worker
holds at most as many sessions as its open-files limit allows.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODULE", "NginxConfig", "RunningNchan", "missing", "free_port", "render_config", "nchan_server",
           "nchan"]

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

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
    """What may differ between the tests' nginx and a benchmark's.

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
    if shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx-light libnginx-mod-nchan)"
    if not MODULE.is_file():
        return "the nchan module is not installed (apt-get install libnginx-mod-nchan)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
def nchan_server(prefix: Path, config: NginxConfig = NginxConfig()) -> Iterator[RunningNchan]:
    """Run nginx + nchan under ``prefix`` as ``config`` says until the block ends."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_config(prefix, port, config))
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    log = (prefix / "error.log").read_text(errors="replace") if (prefix / "error.log").exists() else ""
                    raise RuntimeError(f"nginx did not start (exit {proc.poll()}): {err} {log}") from None
                time.sleep(0.05)
        base = f"127.0.0.1:{port}"
        yield RunningNchan(f"http://{base}/pub", f"ws://{base}/sub", f"http://{base}/status", proc.pid, prefix,
                           sse_url=f"http://{base}/sse", longpoll_url=f"http://{base}/lp")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nchan(prefix: Path) -> Iterator[tuple[str, str]]:
    """Run the tests' nginx + nchan (one worker) under ``prefix``; yields (publish URL, WebSocket subscribe URL)."""
    with nchan_server(prefix) as server:
        yield server.publish_url, server.subscribe_url
