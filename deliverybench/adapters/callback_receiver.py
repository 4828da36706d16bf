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

A receiver is an open port, so what arrives may be hostile: nothing is
read before it is checked. A declared ``Content-Length`` over the body cap
(see :func:`body_cap_for`) is answered 413 before a byte of the body is read,
and a chunked body is cut at the cap as it streams; the bytes of all bodies
being read at once are bounded by a per-process :class:`BodyBudget`, past
which a request is answered 503 with ``Retry-After``. Refused requests are
closed (no lingering read of the rest) and counted by kind. The limits are
sans-I/O (:func:`check_declared`, :class:`BodyGate`) so that any receiver
can apply them to the chunks its parser yields.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ..core.audit import SubscriberRecord
from ..core.delay import DelaySpec, parse_delay
from ..core.process_recorder import ProcessRecorder

__all__ = ["ReceiverBehaviour", "CallbackReceiver", "parse_delay", "DelaySpec", "MIN_BODY_CAP", "CAP_PER_PAYLOAD",
           "BUDGET_BODIES", "BUSY_RETRY_AFTER_S", "Refusal", "OVERSIZED", "BUSY", "TRUNCATED", "body_cap_for",
           "body_budget_for", "check_declared", "BodyBudget", "BodyGate", "read_body"]

#: the smallest body cap: an event is a few hundred bytes (``--payload-bytes`` 256 by default), so 1 MiB
#: is thousands of them -- room for a target that batches or wraps events in an envelope -- and 64 times
#: less than the 64 MiB this receiver used to read before checking anything
MIN_BODY_CAP = 1 << 20
#: the cap is at least this many configured events: a large ``--payload-bytes`` (up to 16 MiB) must never be
#: refused, and an envelope may escape or repeat the event
CAP_PER_PAYLOAD = 4
#: the body budget of one process, in bodies at the cap: a genuine delivery is KBs, so hundreds of
#: concurrent ones use a small part of it, while hostile bodies can hold at most this many caps of memory
BUDGET_BODIES = 16
#: seconds a sender refused for a full budget is asked to wait: the budget frees as soon as the bodies being
#: read end, and a webhook sender (Standard Webhooks retry schedules) honours Retry-After on a 503
BUSY_RETRY_AFTER_S = 1


def body_cap_for(payload_bytes: int) -> int:
    """The largest request body a receiver reads, for events of ``payload_bytes``."""
    return max(MIN_BODY_CAP, CAP_PER_PAYLOAD * payload_bytes)


def body_budget_for(cap: int) -> int:
    """The body bytes one process reads at once, for a body cap of ``cap``."""
    return BUDGET_BODIES * cap


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request body was not read (further): the answer and the error kind it is counted under."""

    status: int
    kind: str
    text: str
    retry_after_s: int | None = None


#: the body is larger than the cap (declared, or found while it streamed)
OVERSIZED = Refusal(413, "oversized_body", "body too large\n")
#: the bodies being read by this process already hold the whole budget
BUSY = Refusal(503, "receiver_busy", "receiver busy\n", BUSY_RETRY_AFTER_S)
#: the sender stopped before the end of its body (closed, or broke the framing)
TRUNCATED = Refusal(400, "truncated_body", "incomplete body\n")


def check_declared(content_length: int | None, cap: int) -> Refusal | None:
    """OVERSIZED when the declared length is over ``cap``: decided from the headers, before any body byte."""
    return OVERSIZED if content_length is not None and content_length > cap else None


class BodyBudget:
    """The body bytes all requests of one process hold while they are read; sans-I/O, one thread.

    Bytes are reserved as they arrive (never on a declared length a sender may not
    send), so the budget bounds memory actually held, and a request that cannot
    reserve is refused at once rather than made to wait: a waiting reader would let a
    hostile sender's hold time become a genuine delivery's latency, charged to the target.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        #: the most bytes held at once (for tests and diagnostics)
        self.peak = 0

    def take(self, n: int) -> bool:
        if self.in_use + n > self.limit:
            return False
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        return True

    def give(self, n: int) -> None:
        self.in_use -= n


class BodyGate:
    """The limits of one request body, fed its chunks as a parser yields them; sans-I/O.

    Call :meth:`release` when the body is no longer needed (always: in a ``finally``).
    """

    def __init__(self, budget: BodyBudget, cap: int) -> None:
        self._budget = budget
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> Refusal | None:
        """Keep ``chunk``, or say why the body is refused (its bytes are then already given back)."""
        if self._size + len(chunk) > self._cap:
            self.release()
            return OVERSIZED
        if not self._budget.take(len(chunk)):
            self.release()
            return BUSY
        self._chunks.append(chunk)
        self._size += len(chunk)
        return None

    def body(self) -> bytes:
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def release(self) -> None:
        self._budget.give(self._size)
        self._chunks, self._size = [], 0


async def read_body(content: aiohttp.StreamReader, gate: BodyGate) -> bytes | Refusal:
    """An aiohttp request body through ``gate``: the body, or the refusal that stopped reading it."""
    try:
        while chunk := await content.readany():
            refusal = gate.feed(chunk)
            if refusal is not None:
                return refusal
    except (ConnectionError, HttpProcessingError):  # closed mid-body, or a broken chunk
        return TRUNCATED
    return gate.body()


@dataclass(frozen=True, slots=True)
class ReceiverBehaviour:
    secret: str
    ack_delay: DelaySpec = DelaySpec()
    fail_ratio: float = 0.0
    fail_status: int = 500
    timeout_ratio: float = 0.0
    timeout_hold_s: float = 20.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Answer:
    """How to answer a body that was read: a status, after holding the request ``hold_s`` seconds."""

    status: int
    text: str = ""
    hold_s: float = 0.0


def _share(webhook_id: str, salt: str) -> float:
    """A stable number in [0, 1) per webhook-id, so 'fail 20 %' picks the same messages every run."""
    digest = hashlib.blake2b(f"{salt}:{webhook_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CallbackReceiver:
    """The process's receiver; all methods run in the loop thread.

    Args:
        body_cap: the largest body read (see :func:`body_cap_for`).
        body_budget: body bytes read at once across requests (default :func:`body_budget_for` of the cap).
    """

    def __init__(self, recorder_ref: Any, behaviour: ReceiverBehaviour, *, host: str = "127.0.0.1",
                 advertise_host: str | None = None, body_cap: int = MIN_BODY_CAP,
                 body_budget: int | None = None) -> None:
        self._recorder_ref = recorder_ref  # callable returning the current ProcessRecorder
        self.behaviour = behaviour
        self.host = host
        self.advertise_host = advertise_host or host
        self.port = 0
        self.subscribers: dict[str, SubscriberRecord] = {}
        self.body_cap = body_cap
        self.budget = BodyBudget(body_budget if body_budget is not None else body_budget_for(body_cap))
        self._attempts: dict[str, int] = {}
        self._acked: set[str] = set()
        self._webhook = Webhook(behaviour.secret)
        self._rng = random.Random(behaviour.seed)
        self._runner: web.AppRunner | None = None
        self._starting = asyncio.Lock()  # binds to the loop thread's loop on first contention

    @property
    def recorder(self) -> ProcessRecorder:
        return self._recorder_ref()  # type: ignore[no-any-return]

    async def start(self) -> None:
        """Start the process's one server; every subscriber calls this, all but the first wait for it."""
        async with self._starting:
            if self._runner is not None:
                return
            app = web.Application(client_max_size=self.body_cap)
            app.router.add_post("/hook/{name}", self._handle)
            # lingering_time=0: a refused body is not read to its end before the connection closes
            runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=0)
            await runner.setup()
            site = web.TCPSite(runner, self.host, 0, backlog=4096)
            try:
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
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

    def _refuse(self, refusal: Refusal, receive_ns: int) -> web.Response:
        """Count a refused body by kind and answer it; the connection closes after the answer."""
        recorder = self.recorder
        recorder.counters[refusal.kind] += 1
        recorder.error(refusal.kind, receive_ns)
        headers = {"Retry-After": str(refusal.retry_after_s)} if refusal.retry_after_s is not None else None
        response = web.Response(status=refusal.status, text=refusal.text, headers=headers)
        response.force_close()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        receive_ns = time.time_ns()
        self.recorder.counters["receiver_requests"] += 1
        refusal = check_declared(request.content_length, self.body_cap)
        if refusal is not None:
            return self._refuse(refusal, receive_ns)
        record = self.subscribers.get(request.match_info["name"])
        if record is None:
            self.recorder.counters["after_unsubscribe"] += 1
            return web.Response(status=410, text="unsubscribed\n")
        gate = BodyGate(self.budget, self.body_cap)
        try:
            body = await read_body(request.content, gate)
            if isinstance(body, Refusal):
                return self._refuse(body, receive_ns)
            answer = self._accept(request.headers, body, record, receive_ns)
        finally:
            gate.release()  # the body is recorded: a held answer holds none of the budget
        if answer.hold_s > 0:  # nothing is counted after this await
            await asyncio.sleep(answer.hold_s)
        return web.Response(status=answer.status, text=answer.text or None)

    def _accept(self, headers: Mapping[str, str], body: bytes, record: SubscriberRecord, receive_ns: int) -> _Answer:
        """Verify and record one body that was read whole; how to answer it."""
        recorder = self.recorder
        counters = recorder.counters  # swapped every second: re-read after every await
        webhook_id = headers.get("webhook-id", "")
        try:
            self._webhook.verify(body, headers, json_parse=False)  # type: ignore[arg-type]
        except WebhookVerificationError as exc:
            kind = "rejected_timestamp" if "timestamp" in str(exc) else "rejected_signature"
            counters[kind] += 1
            recorder.error(kind, receive_ns)
            return _Answer(401, "bad signature\n")
        attempt = self._attempts.get(webhook_id, 0) + 1
        self._attempts[webhook_id] = attempt
        behaviour = self.behaviour
        if attempt == 1 and behaviour.fail_ratio and _share(webhook_id, "fail") < behaviour.fail_ratio:
            counters["simulated_failures"] += 1
            return _Answer(behaviour.fail_status, "simulated failure\n")
        if attempt == 1 and behaviour.timeout_ratio and _share(webhook_id, "timeout") < behaviour.timeout_ratio:
            counters["simulated_timeouts"] += 1
            return _Answer(504, "simulated timeout\n", behaviour.timeout_hold_s)
        if webhook_id in self._acked:
            counters["duplicates_webhook_id"] += 1
            record.received.duplicates += 1
            record.received.arrivals += 1
        else:
            self._acked.add(webhook_id)
            counters["acked"] += 1
            recorder.on_event(record, body, receive_ns, first_attempt=attempt == 1)
        return _Answer(200, hold_s=behaviour.ack_delay.draw_s(self._rng))


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
