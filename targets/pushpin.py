"""Pushpin as a target (``--target pushpin``): Debian ``pushpin``, with ``condure`` and ``zurl``.

Pushpin is a GRIP proxy: clients connect to it, a request is passed to an
origin server once, and the origin's answer tells Pushpin which channel the
connection listens on; from then on Pushpin alone delivers what is published
to that channel. The target starts:

* the tiny GRIP origin of :mod:`targets.grip_origin` (WebSocket-over-HTTP
  ``subscribe`` control message for push, ``Grip-Hold: stream`` for SSE);
* ``pushpin`` itself, from a copy of ``/etc/pushpin/pushpin.conf`` in a run
  directory of its own: its own free loopback ports (client HTTP, publish
  HTTP), ``ipc://`` sockets for everything else (nothing shared with a system
  Pushpin or another run), its own ``zurl`` (the Debian configuration expects
  the system's), and a routes file pointing every path at the origin
  (``over_http``, so WebSocket sessions reach it as WebSocket-over-HTTP).

Each event is published with ``POST /publish/`` carrying a ``ws-message``
and an ``http-stream`` format (:data:`PUBLISH_TEMPLATE`), one event per
request. Pushpin's handler limits deliveries to ``message_rate`` per second
(2,500 by default, queueing at most ``message_hwm``, then dropping), which a
few hundred subscribers at a few events per second already pass; the target
raises both (:data:`MESSAGE_RATE`) and says so in :meth:`PushpinTarget.describe`.

Opening many connections at once gets some ``502 Error while proxying to
origin.`` from Pushpin's proxy: it queues at most 100 WebSocket-over-HTTP
and stream requests towards zurl (``OUT_HWM`` in its ``zhttpmanager.cpp``)
and fails the rest at once. Subscribers count and retry them
(``connect_http_502``); a slower ramp (``-r 50``) avoids them.

Long-poll is different: a ``Grip-Hold: response`` request holds only what
is published while it waits, so an event published while a poller is
between two requests must come from the origin when it asks again. Its
events are therefore published to the origin (:meth:`PushpinTarget.ingress_for`),
which keeps them and forwards each to Pushpin as an ``http-response`` item
chained by ``id``/``prev-id``; a hold names the newest id its poller has,
and Pushpin asks the origin again when an item does not follow it (GRIP's
reliability). Every long-poll request passes through the origin, as GRIP
intends: it is part of what is measured.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import DEFAULT_CHANNEL, Dialect
from targets._binary import BinaryProcess, free_port, http_ok, loopback_egress, require_binary
from targets._process import ServerProcess
from targets.base import Target, TargetError

__all__ = ["PushpinTarget", "PUBLISH_TEMPLATE", "MESSAGE_RATE", "MESSAGE_HWM", "pushpin_config", "missing"]

#: one publish item per event: the WebSocket message and the SSE message
PUBLISH_TEMPLATE = ('{"items":[{"channel":{channel|json},"formats":{"ws-message":{"content":{event|json}},'
                    '"http-stream":{"content":{event|sse|json}}}}]}')
#: deliveries per second Pushpin's handler may send (its default 2,500 throttles a few hundred subscribers)
MESSAGE_RATE = 1_000_000
#: deliveries it may queue above that rate before it drops them (default 25,000)
MESSAGE_HWM = 1_000_000
_SYSTEM_CONFIG = Path("/etc/pushpin/pushpin.conf")
_EGRESS_PATHS = {"push": "/ws", "sse": "/sse", "longpoll": "/lp"}
_BINARIES = (("pushpin", "pushpin"), ("condure", "condure"), ("zurl", "zurl"))


def missing() -> str | None:
    """Why Pushpin cannot run here, or None."""
    try:
        for binary, package in _BINARIES:
            require_binary(binary, package)
    except TargetError as exc:
        return str(exc)
    if not _SYSTEM_CONFIG.is_file():
        return f"{_SYSTEM_CONFIG} is missing (Debian package pushpin)"
    return None


def _set(text: str, section: str, values: Mapping[str, str]) -> str:
    """``text`` (an INI file) with ``values`` set in ``[section]``: each key's line replaced, or added."""
    lines = text.splitlines()
    try:
        start = lines.index(f"[{section}]") + 1
    except ValueError:
        lines += ["", f"[{section}]"]
        start = len(lines)
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    todo = dict(values)
    for i in range(start, end):
        match = re.match(r"([A-Za-z0-9_]+)\s*=", lines[i])
        if match and match.group(1) in todo:
            lines[i] = f"{match.group(1)}={todo.pop(match.group(1))}"
    lines[end:end] = [f"{key}={value}" for key, value in todo.items()]
    return "\n".join(lines) + "\n"


def pushpin_config(system: str, rundir: Path, *, http_port: int, publish_port: int,
                   message_rate: int = MESSAGE_RATE, message_hwm: int = MESSAGE_HWM) -> str:
    """The system's ``pushpin.conf`` made private to ``rundir``: own ports, ``ipc://`` specs, own zurl."""
    ipc = "ipc://{rundir}/{ipc_prefix}"
    text = _set(system, "global", {"rundir": str(rundir / "run"), "ipc_prefix": "deliverybench-",
                                   "port_offset": "0"})
    text = _set(text, "runner", {"services": "condure,zurl,pushpin-proxy,pushpin-handler",
                                 "http_port": f"127.0.0.1:{http_port}", "logdir": str(rundir / "log"),
                                 "log_level": "1"})
    text = _set(text, "proxy", {"routesfile": str(rundir / "routes"), "updates_check": "off",
                                # Debian points these at the system's zurl (/var/run/zurl); the runner's own
                                # zurl listens where upstream Pushpin expects it
                                "zurl_out_specs": f"{ipc}zurl-in", "zurl_out_stream_specs": f"{ipc}zurl-in-stream",
                                "zurl_in_specs": f"{ipc}zurl-out"})
    return _set(text, "handler", {"push_in_spec": f"{ipc}push-in", "push_in_sub_specs": f"{ipc}push-in-sub",
                                  "push_in_http_addr": "127.0.0.1", "push_in_http_port": str(publish_port),
                                  "command_spec": f"{ipc}command", "message_rate": str(message_rate),
                                  "message_hwm": str(message_hwm)})


class PushpinTarget(Target):
    """Pushpin from the Debian packages, in front of its own tiny GRIP origin: push and SSE on one channel.

    Args:
        channel: the channel every client is subscribed to and every event published on.
        message_rate: Pushpin's ``message_rate`` (deliveries per second; Pushpin's default is 2,500).
        message_hwm: Pushpin's ``message_hwm`` (deliveries queued above the rate before dropping).
    """

    name: ClassVar[str] = "pushpin"
    offers: ClassVar[tuple[str, ...]] = tuple(_EGRESS_PATHS)
    kind: ClassVar[str] = "server"

    def __init__(self, *, channel: str = DEFAULT_CHANNEL, message_rate: int = MESSAGE_RATE,
                 message_hwm: int = MESSAGE_HWM) -> None:
        self.channel = channel
        self.message_rate = message_rate
        self.message_hwm = message_hwm
        self._dir: Path | None = None
        self._origin: ServerProcess | None = None
        self._pushpin: BinaryProcess | None = None
        self._base = ""
        self._publish = ""

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self._pushpin is not None and self._pushpin.alive:
            return
        problem = missing()
        if problem is not None:
            raise TargetError(problem)
        deadline = time.monotonic() + timeout_s
        self._dir = rundir = Path(tempfile.mkdtemp(prefix="deliverybench-pushpin-"))
        (rundir / "run").mkdir()
        (rundir / "log").mkdir()
        http_port, publish_port = free_port(), free_port()
        try:
            origin = self._origin = ServerProcess(
                "targets.grip_origin",
                ["--channel", self.channel, "--pushpin-publish", f"http://127.0.0.1:{publish_port}/publish/"],
                ready_timeout_s=timeout_s)
            origin.start()
            host_port = origin.urls["origin"].split("//", 1)[1].rstrip("/")
            (rundir / "routes").write_text(f"* {host_port},over_http\n")
            conf = rundir / "pushpin.conf"
            conf.write_text(pushpin_config(_SYSTEM_CONFIG.read_text(), rundir, http_port=http_port,
                                           publish_port=publish_port, message_rate=self.message_rate,
                                           message_hwm=self.message_hwm))
            self._base, self._publish = f"127.0.0.1:{http_port}", f"127.0.0.1:{publish_port}"
            self._pushpin = BinaryProcess([require_binary("pushpin", "pushpin"), "--config", str(conf),
                                           "--merge-output"], name="pushpin", cwd=rundir)
            # ready when a request goes all the way through (condure, proxy, zurl, origin) and publishing answers
            self._pushpin.start(lambda: http_ok(f"http://{self._base}/health")
                                and http_ok(f"http://{self._publish}/publish/", data=b'{"items":[]}'),
                                max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            self._base = self._publish = ""
            raise

    def stop(self) -> None:
        if self._pushpin is not None:
            self._pushpin.stop()
        if self._origin is not None:
            self._origin.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def ingress_url(self) -> str | None:
        return f"http://{self._publish}/publish/" if self._publish else None

    def ingress_for(self, mode: str) -> str | None:
        """Long-poll's events go to the origin, which keeps them for resumes; the others' straight to Pushpin."""
        if mode == "longpoll":
            return self._origin.urls.get("publish") if self._origin is not None and self._publish else None
        return self.ingress_url

    def egress_url(self, mode: str) -> str | None:
        return loopback_egress(self._base, mode, _EGRESS_PATHS)

    @property
    def health_url(self) -> str | None:
        return f"http://{self._base}/health" if self._base else None

    def pids(self) -> list[int]:
        """Pushpin's runner and what it started (condure, zurl, proxy, handler), and the origin."""
        found = self._pushpin.pids() if self._pushpin is not None else []
        if self._origin is not None and self._origin.alive and self._origin.pid is not None:
            found.append(self._origin.pid)
        return found

    def dialect(self, mode: str) -> Dialect:
        """Events published as Pushpin items (:data:`PUBLISH_TEMPLATE`), long-poll's as they are (to the
        origin); delivered to clients as they were."""
        if mode == "longpoll":
            return Dialect(channel=self.channel)
        return Dialect(channel=self.channel, publish_template=PUBLISH_TEMPLATE)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {
            "channel": self.channel, "message_rate": self.message_rate, "message_hwm": self.message_hwm,
            "note": f"Pushpin's message_rate raised from its default 2,500/s to {self.message_rate:,}/s "
                    f"(message_hwm {self.message_hwm:,})"}}
