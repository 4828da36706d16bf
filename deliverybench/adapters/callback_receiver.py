"""The harness as webhook receiver: one aiohttp server per Locust process.

Every callback subscriber of a process owns a path on the process's single
receiver (``/hook/<n>``), served from the loop thread like the push sessions.
For each POST the receiver takes the receive time before reading anything
else, verifies the Standard Webhooks signature and timestamp window with the
``standardwebhooks`` library (a bad one is answered 401 and counted, never
recorded as a delivery), de-duplicates by ``webhook-id``, and records the
delivery latency from the event's due time -- plus ``first_attempt`` latency
when this was the first attempt the receiver saw for that webhook-id.

To exercise the target's retry logic the receiver can misbehave on purpose:
an acknowledgement delay (fixed or drawn from a distribution), a share of
first attempts answered with an error status, and a share held past the
target's timeout. Those answers are counted too.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ..core.audit import SubscriberRecord
from ..core.delay import DelaySpec, parse_delay
from ..core.process_recorder import ProcessRecorder

__all__ = ["ReceiverBehaviour", "CallbackReceiver", "parse_delay", "DelaySpec"]


@dataclass(frozen=True, slots=True)
class ReceiverBehaviour:
    secret: str
    ack_delay: DelaySpec = DelaySpec()
    fail_ratio: float = 0.0
    fail_status: int = 500
    timeout_ratio: float = 0.0
    timeout_hold_s: float = 20.0
    seed: int = 0


def _share(webhook_id: str, salt: str) -> float:
    """A stable number in [0, 1) per webhook-id, so 'fail 20 %' picks the same messages every run."""
    digest = hashlib.blake2b(f"{salt}:{webhook_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CallbackReceiver:
    """The process's receiver; all methods run in the loop thread."""

    def __init__(self, recorder_ref: Any, behaviour: ReceiverBehaviour, *, host: str = "127.0.0.1",
                 advertise_host: str | None = None) -> None:
        self._recorder_ref = recorder_ref  # callable returning the current ProcessRecorder
        self.behaviour = behaviour
        self.host = host
        self.advertise_host = advertise_host or host
        self.port = 0
        self.subscribers: dict[str, SubscriberRecord] = {}
        self._attempts: dict[str, int] = {}
        self._acked: set[str] = set()
        self._webhook = Webhook(behaviour.secret)
        self._rng = random.Random(behaviour.seed)
        self._runner: web.AppRunner | None = None

    @property
    def recorder(self) -> ProcessRecorder:
        return self._recorder_ref()  # type: ignore[no-any-return]

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook/{name}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0, backlog=4096)
        await site.start()
        self._runner = runner
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url_for(self, name: str) -> str:
        host = f"[{self.advertise_host}]" if ":" in self.advertise_host else self.advertise_host
        return f"http://{host}:{self.port}/hook/{name}"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def add(self, name: str, record: SubscriberRecord) -> None:
        self.subscribers[name] = record

    def remove(self, name: str) -> None:
        self.subscribers.pop(name, None)

    async def _handle(self, request: web.Request) -> web.Response:
        receive_ns = time.time_ns()
        body = await request.read()
        recorder = self.recorder
        counters = recorder.counters  # swapped every second: re-read after every await
        counters["receiver_requests"] += 1
        record = self.subscribers.get(request.match_info["name"])
        if record is None:
            counters["after_unsubscribe"] += 1
            return web.Response(status=410, text="unsubscribed\n")
        headers = request.headers
        webhook_id = headers.get("webhook-id", "")
        try:
            self._webhook.verify(body, headers, json_parse=False)  # type: ignore[arg-type]
        except WebhookVerificationError as exc:
            kind = "rejected_timestamp" if "timestamp" in str(exc) else "rejected_signature"
            counters[kind] += 1
            recorder.error(kind, receive_ns)
            return web.Response(status=401, text="bad signature\n")
        attempt = self._attempts.get(webhook_id, 0) + 1
        self._attempts[webhook_id] = attempt
        behaviour = self.behaviour
        if attempt == 1 and behaviour.fail_ratio and _share(webhook_id, "fail") < behaviour.fail_ratio:
            counters["simulated_failures"] += 1
            return web.Response(status=behaviour.fail_status, text="simulated failure\n")
        if attempt == 1 and behaviour.timeout_ratio and _share(webhook_id, "timeout") < behaviour.timeout_ratio:
            counters["simulated_timeouts"] += 1
            await asyncio.sleep(behaviour.timeout_hold_s)  # nothing is counted after this await
            return web.Response(status=504, text="simulated timeout\n")
        if webhook_id in self._acked:
            counters["duplicates_webhook_id"] += 1
            record.received.duplicates += 1
            record.received.arrivals += 1
        else:
            self._acked.add(webhook_id)
            counters["acked"] += 1
            recorder.on_event(record, body, receive_ns, first_attempt=attempt == 1)
        delay = behaviour.ack_delay.draw_s(self._rng)
        if delay > 0:
            await asyncio.sleep(delay)
        return web.Response(status=200)


class CallbackSubscriptions:
    """Registering and removing callback URLs with a target's subscription API.

    The contract for any target: ``POST <subscription API>`` with JSON
    ``{"url": ...}`` answers 2xx with JSON ``{"id": ...}``; ``DELETE
    <subscription API>/<id>`` removes it. Runs in the loop thread.
    """

    def __init__(self, api_url: str, *, timeout_s: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=64), trust_env=False)
        return self._session

    async def register(self, url: str) -> str:
        session = await self._client()
        async with session.post(self.api_url, json={"url": url}) as response:
            body = await response.text()
            if response.status // 100 != 2:
                raise RuntimeError(f"subscription API answered {response.status}: {body[:200]}")
        import json

        try:
            return str(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"subscription API reply has no id: {body[:200]}") from None

    async def remove(self, subscription_id: str) -> int:
        session = await self._client()
        async with session.delete(f"{self.api_url}/{subscription_id}") as response:
            await response.read()
            return response.status

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
