"""The harness as webhook receiver: one HTTP server per Locust process, on its event-loop thread.

Every callback subscriber of a process owns a path on the process's single
receiver (``/hook/<n>``), served from the loop thread like the push sessions
by bare asyncio protocols over a C HTTP parser (:mod:`.http_receiver`; the
aiohttp server it replaced cost ~82 µs per webhook). Each request is stamped
when its first bytes arrive; its Standard Webhooks signature and timestamp
window are verified (:mod:`deliverybench.core.webhook_signature`, the
``standardwebhooks`` checks on raw header bytes; a bad one is answered 401
and counted, never recorded as a delivery); it is de-duplicated by
``webhook-id``, and the delivery latency from the event's due time is
recorded -- plus ``first_attempt`` latency when this was the first attempt
the receiver saw for that webhook-id.

A real webhook sender (Alertmanager) neither signs the Standard Webhooks way
nor sends our event as the whole body. For such a sender the receiver is
built unsigned (``ReceiverBehaviour.signed``: nothing is verified; a request
with no ``webhook-id`` is known by a hash of its subscriber and body, so
retries of one notification are still attempts of one message) and with the
target's event path (``/alerts/*/annotations/event``): each body is read as a
JSON envelope and every event found at that path is recorded
(:mod:`deliverybench.core.protocols`). A body without the expected shape is
counted ``malformed_event`` and its first sample kept for the failure line.

To exercise the target's retry logic the receiver can misbehave on purpose:
an acknowledgement delay (fixed or drawn from a distribution), a share of
first attempts answered with an error status, and a share held past the
target's timeout. Those answers are counted too; a held answer holds no
body bytes and blocks no other connection.

A receiver is an open port, so what arrives may be hostile: bodies are
capped and budgeted per process (:mod:`.body_limits`, re-exported here:
413, 503 with ``Retry-After``, 400 for a body cut short), and malformed,
oversized or slow requests are answered and closed by the HTTP side, every
one counted by kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..core.audit import SubscriberRecord
from ..core.delay import DelaySpec, parse_delay
from ..core.process_recorder import ProcessRecorder
from ..core.protocols import EVENT_SHAPE, MalformedMessage, Reader, envelope_reader
from ..core.webhook_signature import (
    INVALID_TIMESTAMP,
    MISSING_HEADERS,
    NO_MATCH,
    TIMESTAMP_VERDICTS,
    TOLERANCE_US,
    SignatureVerifier,
)
from .body_limits import (
    BUDGET_BODIES,
    BUSY,
    BUSY_RETRY_AFTER_S,
    CAP_PER_PAYLOAD,
    MIN_BODY_CAP,
    OVERSIZED,
    TRUNCATED,
    BodyBudget,
    BodyGate,
    Refusal,
    body_budget_for,
    body_cap_for,
    check_declared,
)
from .http_receiver import IDLE_TIMEOUT_S, REQUEST_TIMEOUT_S, HttpReceiverServer, Reply
from .undecodable import note

__all__ = ["ReceiverBehaviour", "CallbackReceiver", "CallbackSubscriptions", "parse_delay", "DelaySpec",
           "MIN_BODY_CAP", "CAP_PER_PAYLOAD", "BUDGET_BODIES", "BUSY_RETRY_AFTER_S", "Refusal", "OVERSIZED", "BUSY",
           "TRUNCATED", "body_cap_for", "body_budget_for", "check_declared", "BodyBudget", "BodyGate"]


@dataclass(frozen=True, slots=True)
class ReceiverBehaviour:
    """How the receiver answers, and whether it verifies.

    Attributes:
        secret: the Standard Webhooks secret deliveries are verified with.
        signed: whether the sender signs; False for a real sender that does not (Alertmanager):
            nothing is verified, and ``secret`` is unused.
    """

    secret: str
    ack_delay: DelaySpec = DelaySpec()
    fail_ratio: float = 0.0
    fail_status: int = 500
    timeout_ratio: float = 0.0
    timeout_hold_s: float = 20.0
    seed: int = 0
    signed: bool = True


_OK = Reply(200)
_ACKED = (_OK, 0.0)
_GONE = Reply(410, "unsubscribed\n")
_REJECTED = (Reply(401, "bad signature\n"), 0.0)
_SIMULATED_TIMEOUT = Reply(504, "simulated timeout\n")
_UNSIGNED_HINT = "; a sender that signs nothing: --webhook-signing none"
#: what a rejected delivery should have carried, by verdict: the failure line of a run that got none
_SIGNATURE_SHAPES = {
    MISSING_HEADERS: "Standard Webhooks headers webhook-id, webhook-timestamp and webhook-signature" + _UNSIGNED_HINT,
    INVALID_TIMESTAMP: "a webhook-timestamp in seconds since the epoch",
    NO_MATCH: "a webhook-signature made with the --webhook-secret given (or the built-in target's test secret)"
              + _UNSIGNED_HINT,
    **{verdict: f"a webhook-timestamp within {TOLERANCE_US // 60_000_000} minutes of this machine's clock"
       for verdict in TIMESTAMP_VERDICTS},
}


def _identity(record: SubscriberRecord, body: bytes) -> bytes:
    """What stands for the webhook-id of an unsigned sender's request: its subscriber and body, hashed."""
    digest = hashlib.blake2b(record.subscriber.encode(), digest_size=16)
    digest.update(body)
    return digest.digest()


def _share(webhook_id: bytes, salt: bytes) -> float:
    """A stable number in [0, 1) per webhook-id, so 'fail 20 %' picks the same messages every run."""
    digest = hashlib.blake2b(b"%s:%s" % (salt, webhook_id), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class CallbackReceiver:
    """The process's receiver; all methods run in the loop thread.

    It is the :class:`~.http_receiver.Endpoint` of its server: it routes a
    ``POST /hook/<name>`` to a subscriber, delivers (verifies, de-duplicates,
    records) its body, and counts what was refused.

    Args:
        body_cap: the largest body read (see :func:`body_cap_for`).
        body_budget: body bytes read at once across requests (default :func:`body_budget_for` of the cap).
        request_timeout_s: the longest a request may take to arrive, first byte to last, before its
            connection is answered 408 and closed (``request_timeout``).
        idle_timeout_s: how long an idle keep-alive connection stays open.
        event_path: a JSON pointer to the events inside each body (the target's dialect); empty: the body
            is the event itself.

    Raises:
        ValueError: a bad event path (one line).
    """

    def __init__(self, recorder_ref: Any, behaviour: ReceiverBehaviour, *, host: str = "127.0.0.1",
                 advertise_host: str | None = None, body_cap: int = MIN_BODY_CAP,
                 body_budget: int | None = None, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, event_path: str = "") -> None:
        self._recorder_ref = recorder_ref  # callable returning the current ProcessRecorder
        self.behaviour = behaviour
        self.host = host
        self.advertise_host = advertise_host or host
        self.port = 0
        self.subscribers: dict[str, SubscriberRecord] = {}
        self.body_cap = body_cap
        self.budget = BodyBudget(body_budget if body_budget is not None else body_budget_for(body_cap))
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._attempts: dict[bytes, int] = {}
        self._acked: set[bytes] = set()
        self._verifier = SignatureVerifier(behaviour.secret) if behaviour.signed else None
        #: reads a body as an envelope of events; None: the body is the event
        self._reader = envelope_reader(event_path)
        self._rng = random.Random(behaviour.seed)
        # an ack delay of 0 draws nothing: the answer is the one prebuilt tuple
        self._no_delay = behaviour.ack_delay == DelaySpec()
        self._failure = (Reply(behaviour.fail_status, "simulated failure\n"), 0.0)
        self._server: HttpReceiverServer | None = None
        self._starting = asyncio.Lock()  # binds to the loop thread's loop on first contention

    @property
    def recorder(self) -> ProcessRecorder:
        return self._recorder_ref()  # type: ignore[no-any-return]

    async def start(self) -> None:
        """Start the process's one server; every subscriber calls this, all but the first wait for it."""
        async with self._starting:
            if self._server is not None:
                return
            server = HttpReceiverServer(self, body_cap=self.body_cap, budget=self.budget,
                                        request_timeout_s=self.request_timeout_s,
                                        idle_timeout_s=self.idle_timeout_s)
            self.port = await server.start(self.host)
            self._server = server

    def url_for(self, name: str) -> str:
        host = f"[{self.advertise_host}]" if ":" in self.advertise_host else self.advertise_host
        return f"http://{host}:{self.port}/hook/{name}"

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()

    def add(self, name: str, record: SubscriberRecord) -> None:
        self.subscribers[name] = record

    def remove(self, name: str) -> None:
        self.subscribers.pop(name, None)

    # -- the endpoint of the HTTP server ---------------------------------------------------------------
    def count(self, kind: str, at_ns: int) -> None:
        """A request refused or malformed: counted by kind, as a counter and as an error."""
        recorder = self.recorder
        recorder.counters[kind] += 1
        recorder.error(kind, at_ns)

    def route(self, name: bytes, content_length: int | None, receive_ns: int) -> SubscriberRecord | Reply | Refusal:
        """The subscriber a ``POST /hook/<name>`` is for; 410 once it is gone; 413 from a declared length."""
        counters = self.recorder.counters
        counters["receiver_requests"] += 1
        refusal = check_declared(content_length, self.body_cap)
        if refusal is not None:
            return refusal
        record = self.subscribers.get(name.decode("utf-8", "replace"))
        if record is None:
            counters["after_unsubscribe"] += 1
            return _GONE
        return record

    def deliver(self, record: SubscriberRecord, msg_id: bytes, timestamp: bytes, signature: bytes, body: bytes,
                receive_ns: int) -> tuple[Reply, float]:
        """Verify and record one body that was read whole; how to answer it, and how long to hold that."""
        recorder = self.recorder
        counters = recorder.counters  # swapped every second: read per request
        verifier = self._verifier
        if verifier is not None:
            verdict = verifier.check(body, msg_id, timestamp, signature, receive_ns // 1000)
            if verdict is not None:
                kind = "rejected_timestamp" if verdict in TIMESTAMP_VERDICTS else "rejected_signature"
                counters[kind] += 1
                recorder.error(kind, receive_ns)
                note(b"webhook-id: %s, webhook-timestamp: %s, webhook-signature: %s" % (msg_id, timestamp, signature),
                     _SIGNATURE_SHAPES.get(verdict, _SIGNATURE_SHAPES[NO_MATCH]))
                return _REJECTED
        elif not msg_id:
            msg_id = _identity(record, body)
        attempts = self._attempts
        attempt = attempts.get(msg_id, 0) + 1
        attempts[msg_id] = attempt
        behaviour = self.behaviour
        if attempt == 1 and behaviour.fail_ratio and _share(msg_id, b"fail") < behaviour.fail_ratio:
            counters["simulated_failures"] += 1
            return self._failure
        if attempt == 1 and behaviour.timeout_ratio and _share(msg_id, b"timeout") < behaviour.timeout_ratio:
            counters["simulated_timeouts"] += 1
            return _SIMULATED_TIMEOUT, behaviour.timeout_hold_s
        if msg_id in self._acked:
            counters["duplicates_webhook_id"] += 1
            record.received.duplicates += 1
            record.received.arrivals += 1
        else:
            self._acked.add(msg_id)
            counters["acked"] += 1
            reader = self._reader
            if reader is None:
                self._record(record, body, receive_ns, attempt == 1)
            else:
                self._unwrap(reader, record, body, receive_ns, attempt == 1)
        if self._no_delay:
            return _ACKED
        return _OK, behaviour.ack_delay.draw_s(self._rng)

    def _record(self, record: SubscriberRecord, event: bytes, receive_ns: int, first_attempt: bool) -> None:
        """Record one event; the first that is not one (the recorder counts it) is kept as a sample."""
        recorder = self.recorder
        malformed = recorder.errors["malformed_event"]
        if not recorder.on_event(record, event, receive_ns, first_attempt=first_attempt) \
                and recorder.errors["malformed_event"] > malformed:
            note(event, EVENT_SHAPE)

    def _unwrap(self, reader: Reader, record: SubscriberRecord, body: bytes, receive_ns: int,
                first_attempt: bool) -> None:
        """Record every event in an envelope; a body without the expected shape is counted and sampled."""
        try:
            events = reader.read(body).events
        except MalformedMessage as exc:
            self.recorder.error(exc.kind, receive_ns)
            note(body, exc.expected)
            return
        for event in events:
            self._record(record, event, receive_ns, first_attempt)


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
