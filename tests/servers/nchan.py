"""nginx + nchan (Debian ``nginx-light`` + ``libnginx-mod-nchan``) started by a test on 127.0.0.1.

nchan is a real pub/sub push server: whatever body is POSTed to its
``nchan_publisher`` location is forwarded verbatim, as one WebSocket
message, to every session on its ``nchan_subscriber websocket`` location --
exactly the relay contract deliverybench measures. Each test gets its own
nginx (own prefix, own free port, ``daemon off``), so nothing is shared with
the machine's nginx or with other tests, and the process is killed at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

CONFIG = """\
load_module {module};
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
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
        listen 127.0.0.1:{port};
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
    }}
}}
"""


def missing() -> str | None:
    """Why nginx + nchan cannot run here, or None."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx-light libnginx-mod-nchan)"
    if not MODULE.is_file():
        return "the nchan module is not installed (apt-get install libnginx-mod-nchan)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def nchan(prefix: Path) -> Iterator[tuple[str, str]]:
    """Run nginx + nchan under ``prefix``; yields (publish URL, WebSocket subscribe URL)."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(module=MODULE, prefix=prefix, port=port))
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
                    raise RuntimeError(f"nginx did not start (exit {proc.poll()}): {err} {log}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/pub", f"ws://127.0.0.1:{port}/sub"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
