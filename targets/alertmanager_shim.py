"""The subscription API in front of a real Alertmanager: callback URLs in, webhook receivers in its config out.

Run as ``python -m targets.alertmanager_shim --alertmanager-url http://127.0.0.1:9093 --config PATH``
(the ``alertmanager`` target starts it beside ``prometheus-alertmanager``).

Callback subscribers speak the harness's subscription contract (``POST
/subscriptions`` with ``{"url": ...}`` -> 201 ``{"id": ...}``, ``DELETE
/subscriptions/<id>``). Alertmanager has no such API: it learns where to
send from its configuration file. So this shim keeps the set of callback
URLs, writes a configuration with one webhook receiver per URL
(:func:`alertmanager_config`), asks Alertmanager to reload it (``POST
/-/reload``, which answers once the new configuration is in force or was
refused) and only then answers the subscriber. Registrations that arrive
while a reload is under way share the next one, so fifty subscribers
starting at once cost two or three reloads, not fifty.

* ``GET /health`` -- 200 once Alertmanager is ready (``/-/ready``), else 503.
* ``GET /stats`` -- subscriptions, reloads, and Alertmanager's own notification
  counters for its webhook integration (sent, failed, requests that failed and were retried).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web
from yarl import URL

from targets._process import serve_http

__all__ = ["alertmanager_config", "callback_url", "notification_counters", "Receivers", "make_app", "main",
           "GROUP_INTERVAL", "REPEAT_INTERVAL"]

log = logging.getLogger("targets.alertmanager_shim")

#: how long after its first notification a group (one alert: ``group_by: ['...']``) may notify again:
#: far past any run, so nothing is sent twice
GROUP_INTERVAL = "1h"
#: when a still-firing alert is re-sent; under Alertmanager's default data retention (120 h)
REPEAT_INTERVAL = "24h"
#: the receiver that gets what no subscriber route takes (nothing: every child route matches everything)
_NOBODY = "nobody"
_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
#: Alertmanager's counters of the webhook integration that /stats reports, by the name they get there
_COUNTERS = {"alertmanager_notifications_total": "notifications",
             "alertmanager_notifications_failed_total": "notifications_failed",
             "alertmanager_notification_requests_total": "requests",
             "alertmanager_notification_requests_failed_total": "requests_failed"}


def alertmanager_config(urls: Mapping[str, str]) -> dict[str, Any]:
    """Alertmanager's configuration for ``urls`` (subscription id -> callback URL), as JSON (which is YAML).

    Every alert is its own group (``group_by: ['...']``) and is sent at once (``group_wait: 0s``);
    each subscriber has a child route matching every alert, ``continue: true`` so every route sees it.
    """
    receivers: list[dict[str, Any]] = [{"name": _NOBODY}]
    routes: list[dict[str, Any]] = []
    for sub_id, url in urls.items():
        name = f"subscriber-{sub_id}"  # stable across reloads: its notification log stays its own
        receivers.append({"name": name, "webhook_configs": [{"url": url, "send_resolved": False}]})
        routes.append({"receiver": name, "continue": True})
    return {"route": {"receiver": _NOBODY, "group_by": ["..."], "group_wait": "0s",
                      "group_interval": GROUP_INTERVAL, "repeat_interval": REPEAT_INTERVAL, "routes": routes},
            "receivers": receivers}


def notification_counters(metrics: str) -> dict[str, float]:
    """The webhook integration's notification counters from Alertmanager's ``/metrics`` text."""
    found = dict.fromkeys(_COUNTERS.values(), 0.0)
    for line in metrics.splitlines():
        name, brace, rest = line.partition("{")
        if brace and name in _COUNTERS and 'integration="webhook"' in rest:
            found[_COUNTERS[name]] += float(rest.rsplit(" ", 1)[1])
    return found


class Receivers:
    """The callback URLs, the configuration file they are written to, and coalesced reloads."""

    def __init__(self, alertmanager_url: str, config_path: Path) -> None:
        self.alertmanager_url = alertmanager_url.rstrip("/")
        self.config_path = config_path
        self.urls: dict[str, str] = {}
        self.reloads = 0
        self.reload_failures = 0
        self._next_id = 0
        self._changes = 0  # bumped by every change of ``urls``
        self._applied = 0  # the change count the running configuration holds
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def add(self, url: str) -> str:
        self._next_id += 1
        sub_id = str(self._next_id)
        self.urls[sub_id] = url
        await self._apply()
        return sub_id

    async def remove(self, sub_id: str) -> bool:
        if self.urls.pop(sub_id, None) is None:
            return False
        await self._apply()
        return True

    async def _apply(self) -> None:
        """Return once a configuration holding this change is in force; raise if Alertmanager refused it."""
        self._changes += 1
        wanted = self._changes
        async with self._lock:
            if self._applied >= wanted:
                return  # a reload that started after this change already carried it
            holding = self._changes
            self.config_path.write_text(json.dumps(alertmanager_config(self.urls)))
            self.reloads += 1
            async with self.session().post(f"{self.alertmanager_url}/-/reload") as response:
                text = await response.text()
                if response.status != 200:
                    self.reload_failures += 1
                    raise RuntimeError(f"Alertmanager refused the configuration: {response.status} {text[:200]}")
            self._applied = holding

    async def ready(self) -> bool:
        try:
            async with self.session().get(f"{self.alertmanager_url}/-/ready") as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = {"subscriptions": len(self.urls), "reloads": self.reloads,
                                 "reload_failures": self.reload_failures}
        try:
            async with self.session().get(f"{self.alertmanager_url}/metrics") as response:
                found["alertmanager"] = notification_counters(await response.text())
        except (TimeoutError, aiohttp.ClientError) as exc:
            found["alertmanager_error"] = f"{type(exc).__name__}: {exc}"
        return found


def callback_url(body: bytes) -> URL | None:
    """The callback URL of a subscription request (``{"url": "http(s)://host[:port]/path"}``), else None."""
    try:
        doc = json.loads(body)
        url = URL(doc["url"]) if isinstance(doc, dict) and isinstance(doc.get("url"), str) else None
    except (ValueError, UnicodeDecodeError, KeyError):
        return None
    return url if url is not None and url.scheme in ("http", "https") and url.host else None


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


def make_app(receivers: Receivers) -> web.Application:
    """The subscription API (the same contract as the built-in callback target's), health and stats."""

    async def create(request: web.Request) -> web.Response:
        url = callback_url(await request.read())
        if url is None:
            return _text(400, 'expected JSON {"url": "http(s)://host[:port]/path"}')
        try:
            sub_id = await receivers.add(str(url))
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            return _text(502, f"Alertmanager did not reload: {exc}")
        return web.json_response({"id": sub_id}, status=201)

    async def delete(request: web.Request) -> web.Response:
        try:
            removed = await receivers.remove(request.match_info["sub_id"])
        except (TimeoutError, RuntimeError, aiohttp.ClientError) as exc:
            return _text(502, f"Alertmanager did not reload: {exc}")
        return web.Response(status=204) if removed else _text(404, "no such subscription")

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"subscriptions": [{"id": k, "url": v} for k, v in receivers.urls.items()]})

    async def health(request: web.Request) -> web.Response:
        if await receivers.ready():
            return web.json_response({"ok": True})
        return _text(503, "Alertmanager is not ready")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(await receivers.stats())

    app = web.Application()
    app.router.add_post("/subscriptions", create)
    app.router.add_get("/subscriptions", listing)
    app.router.add_delete("/subscriptions/{sub_id}", delete)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


async def serve(args: argparse.Namespace) -> None:
    """Bind, announce the URLs on stdout, and run until SIGTERM or SIGINT."""
    receivers = Receivers(args.alertmanager_url, Path(args.config))
    try:
        sig = await serve_http(make_app(receivers), args.host, args.port,
                               {"subscriptions": "/subscriptions", "health": "/health", "stats": "/stats"})
        log.info("%s: shut down", sig.name)
    finally:
        await receivers.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.alertmanager_shim", description=__doc__.split("\n")[0])
    p.add_argument("--alertmanager-url", required=True, help="Alertmanager's web address (http://127.0.0.1:PORT)")
    p.add_argument("--config", required=True, help="the configuration file Alertmanager was started with")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    args = p.parse_args(argv)
    if not os.access(args.config, os.W_OK):
        p.error(f"--config {args.config} is not a writable file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
