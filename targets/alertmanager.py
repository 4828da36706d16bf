"""Prometheus Alertmanager as a real webhook sender for callback mode (``--target alertmanager``).

Callback mode's built-in target is a dispatcher written here; this one is a
sender no one here wrote, with its own grouping, batching and retries. The
harness starts Debian's ``prometheus-alertmanager`` on a free loopback port
(``--cluster.listen-address=`` empty: no gossip, no peer wait before a
notification; its own ``--storage.path`` in a temporary directory) and,
beside it, :mod:`targets.alertmanager_shim`: the subscription API the
callback subscribers already speak, which turns each callback URL into one
webhook receiver in Alertmanager's configuration and reloads it.

Publishing: each event is one alert, ``POST /api/v2/alerts`` with the event
as the ``event`` annotation (a JSON string) and the event's id among its
labels -- Alertmanager merges alerts whose label sets are equal, so without
the id every event after the first would update one alert instead of
notifying. Every alert is its own group (``group_by: ['...']``), sent at once
(``group_wait: 0s``), never repeated within a run, never resolved
(``send_resolved: false``). Alertmanager POSTs its webhook body
(``{"version":"4",…,"alerts":[{…,"annotations":{"event":"…"}}]}``) to each
subscriber, whose receiver finds the event at ``/alerts/*/annotations/event``.
Alertmanager signs nothing, so those deliveries are not verified.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from deliverybench.core.dialect import Dialect
from targets._binary import BinaryProcess, free_port, require_binary
from targets._process import ServerProcess
from targets.alertmanager_shim import alertmanager_config
from targets.base import Target, TargetError, tcp_reachable

__all__ = ["AlertmanagerTarget", "ALERT_TEMPLATE", "EVENT_PATH"]

#: one alert per event: its id among the labels (equal label sets are one alert), the event as an annotation
ALERT_TEMPLATE = ('[{"labels":{"alertname":"deliverybench","channel":"{channel}","id":"{id}"},'
                  '"annotations":{"event":{event|json}}}]')
#: where the event is in Alertmanager's webhook body
EVENT_PATH = "/alerts/*/annotations/event"
_BINARY = "prometheus-alertmanager"
_HEALTH_POLL_S = 0.05


class AlertmanagerTarget(Target):
    """Alertmanager started from its Debian package, behind a subscription-API shim (callback mode).

    Args:
        host: the loopback address both processes bind.
        binary: the Alertmanager executable (default: ``prometheus-alertmanager`` on PATH).
    """

    name: ClassVar[str] = "alertmanager"
    offers: ClassVar[tuple[str, ...]] = ("callback",)
    kind: ClassVar[str] = "server"

    def __init__(self, *, host: str = "127.0.0.1", binary: str = _BINARY) -> None:
        self.host = host
        self.binary = binary
        self._dir: Path | None = None
        self._alertmanager: BinaryProcess | None = None
        self._shim: ServerProcess | None = None
        self._web = ""

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self._shim is not None and self._shim.alive:
            return
        executable = require_binary(self.binary, "prometheus-alertmanager")
        deadline = time.monotonic() + timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="deliverybench-alertmanager-"))
        config = self._dir / "alertmanager.yml"
        config.write_text(json.dumps(alertmanager_config({})))  # JSON is YAML: no receivers until subscribers come
        port = free_port(self.host)
        self._web = f"http://{self.host}:{port}"
        self._alertmanager = BinaryProcess(
            [executable, f"--config.file={config}", f"--storage.path={self._dir / 'data'}",
             f"--web.listen-address={self.host}:{port}", "--cluster.listen-address=", "--log.level=warn"],
            name="alertmanager", cwd=str(self._dir))
        try:
            # it listens once its configuration is loaded; the shim's health then asks /-/ready itself
            self._alertmanager.start(lambda: tcp_reachable(self._web, timeout_s=1.0) is None, timeout_s)
            shim = self._shim = ServerProcess(
                "targets.alertmanager_shim",
                ["--host", self.host, "--alertmanager-url", self._web, "--config", str(config)],
                ready_timeout_s=max(1.0, deadline - time.monotonic()))
            shim.start()
        except BaseException:
            self.stop()
            raise
        while not self.health():
            if time.monotonic() >= deadline:
                url = self.health_url
                self.stop()
                raise TargetError(f"alertmanager target did not become healthy within {timeout_s:g} s ({url})")
            time.sleep(_HEALTH_POLL_S)

    def stop(self) -> None:
        if self._shim is not None:
            self._shim.stop()
        if self._alertmanager is not None:
            self._alertmanager.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _shim_url(self, key: str) -> str | None:
        return self._shim.urls.get(key) if self._shim is not None else None

    @property
    def ingress_url(self) -> str | None:
        return f"{self._web}/api/v2/alerts" if self._web else None

    def egress_url(self, mode: str) -> str | None:
        return self._shim_url("subscriptions") if mode in self.offers else None

    @property
    def health_url(self) -> str | None:
        return self._shim_url("health")

    @property
    def stats_url(self) -> str | None:
        return self._shim_url("stats")

    def pids(self) -> list[int]:
        found = list(self._alertmanager.pids()) if self._alertmanager is not None else []
        if self._shim is not None and self._shim.alive and self._shim.pid is not None:
            found.append(self._shim.pid)
        return found

    def dialect(self, mode: str) -> Dialect:
        """Events published as alerts, found in the webhook body at :data:`EVENT_PATH`; Alertmanager signs nothing."""
        return Dialect(event_path=EVENT_PATH, publish_template=ALERT_TEMPLATE, webhook_signing="none")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {"host": self.host, "binary": self.binary}}
