"""The built-in webhook (callback) target: one aiohttp + uvloop process.

Subscribers register a callback URL through ``POST /subscriptions``; every
event published to ``POST /publish`` is then POSTed, byte for byte, to every
active subscription, signed the Standard Webhooks way, with retries. It is a
*reference* producer: small, fast and honest, so that what the harness
measures is webhook delivery itself rather than an accidental bottleneck.

Run it as::

    python -m targets.callback_server --host 127.0.0.1 --port 0

and read the single JSON ready line it prints on stdout (logs go to stderr).

Delivery model, and why:

* Keep-alive connection pools, one per receiver origin
  (:class:`deliverybench.adapters.http_post.PostClient`: bare asyncio protocols with
  aiohttp's C response parser). A new TCP connection per webhook would
  measure the kernel's handshake rather than the dispatcher, and aiohttp's
  ``ClientSession`` alone took ~70 % of the dispatcher's CPU.
* Memory stays bounded under overload and nothing is silently dropped:
  published events go into a bounded queue (a full queue makes
  ``POST /publish`` wait -- back-pressure reaches the publisher); one fan-out
  loop takes an event and, for each active subscription, first acquires a
  slot among ``--max-outstanding`` live deliveries (an attempt running *or* a
  retry waiting) and then one of ``--max-in-flight`` request slots, and only
  then creates the delivery task. A retry waiting out its back-off keeps its
  outstanding slot but gives back its request slot, so a failing subscriber
  slows the others only once it has used up all outstanding slots.
* No subscriber can starve the others: at most
  ``--max-in-flight-per-subscription`` deliveries to one subscription are
  under way at once; the rest wait in that subscription's own line, holding
  no request slot, so a hung receiver costs its share and nothing more.
* ``webhook-id`` is ``msg_<n>_<subscription id>``, where ``n`` is this
  target's publication counter, not the event's ``id``: event ids restart at
  0 per stream, and a receiver deduplicates by ``webhook-id``. It is stable
  across the retries of one event to one subscription.
* The signature covers the attempt's timestamp, so it is computed per attempt
  (with the ``standardwebhooks`` library); the UTF-8 text of each event is
  decoded once at publish time, not per delivery.
* ``410 Gone`` disables a subscription for good: its queued and retrying
  deliveries are abandoned (counted in ``abandoned``). ``Retry-After`` on a 429
  or 503 replaces the schedule's delay for the next attempt (capped at 60 s),
  but not the number of attempts: the schedule still decides when to give up.

Failure kinds in ``/stats`` ``failures``: ``http_<status>`` (non-2xx, no
redirects followed), ``timeout`` (no complete response within
``--timeout-s``), ``connection`` (refused, reset, closed early, DNS),
``protocol`` (any other client error, e.g. a malformed response) and
``internal`` (a bug in this dispatcher; logged with its traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import uvloop
from aiohttp import web
from standardwebhooks.webhooks import Webhook
from yarl import URL

from deliverybench.adapters.http_post import PostClient, request_target
from deliverybench.adapters.process_tuning import raise_open_files_limit, settle_gc
from deliverybench.core.event import MalformedEvent, decode_head, split_batch
from targets import hold
from targets.event_buffer import EventBuffer, poll_handler
from targets.service_queue import ServiceQueue

__all__ = [
    "DEFAULT_SECRET",
    "SECRET_ENV",
    "RETRY_AFTER_CAP_S",
    "Settings",
    "Subscription",
    "Dispatcher",
    "parse_schedule",
    "parse_retry_after",
    "make_app",
    "parse_args",
    "serve",
    "main",
]

log = logging.getLogger("deliverybench.targets.callback")

#: Fixed, documented *test* secret (``whsec_`` + base64 of
#: ``b"deliverybench-webhook-test-secret"``). Receivers in the harness verify
#: with it unless ``--secret`` / ``$DELIVERYBENCH_WEBHOOK_SECRET`` says
#: otherwise. It protects nothing: benchmark traffic only.
DEFAULT_SECRET = "whsec_ZGVsaXZlcnliZW5jaC13ZWJob29rLXRlc3Qtc2VjcmV0"

#: Environment variable read for the secret when ``--secret`` is not given,
#: so a real secret need not appear in the process list.
SECRET_ENV = "DELIVERYBENCH_WEBHOOK_SECRET"

#: Upper bound on a ``Retry-After`` delay: a receiver cannot park a delivery
#: for longer than this.
RETRY_AFTER_CAP_S = 60.0


_USER_AGENT = "deliverybench-callback-target"
_RETRY_AFTER_STATUSES = frozenset((429, 503))
_SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the dispatcher is configured with, fixed at start-up."""

    secret: str = DEFAULT_SECRET
    timeout_s: float = 15.0
    retry_schedule: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
    jitter: float = 0.2
    max_in_flight: int = 256
    max_in_flight_per_subscription: int = 32
    max_outstanding: int = 8192
    connection_limit: int = 1024
    delay_ms: float = 0.0
    capacity: float = 0.0
    max_queued: int = 10_000


@dataclass(slots=True, eq=False)
class Subscription:
    """One registered callback URL and its own delivery counters."""

    id: str
    url: URL
    active: bool = True
    url_text: str = ""
    target: bytes = b""
    state: str = "active"  # active | disabled | deleted
    attempts: int = 0
    delivered: int = 0
    give_ups: int = 0
    in_flight: int = 0  # deliveries started and not finished (attempting or waiting to retry)
    backlog: deque[_QueuedEvent] = field(default_factory=deque)  # waiting for in_flight to drop

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": str(self.url),
            "state": self.state,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "give_ups": self.give_ups,
        }


@dataclass(slots=True, eq=False)
class _QueuedEvent:
    """A published event waiting for (or in) fan-out; shared by all its deliveries."""

    seq: int
    text: str  # the raw bytes decoded once, since the signing library wants ``str``
    raw: bytes  # the body, sent verbatim to every subscriber
    ready_at: float  # targets.hold.now() time before which fan-out must not start (--delay-ms)


class _Slots:
    """A counting semaphore whose uncontended take is a plain method call.

    The fan-out loop takes two slots per delivery; :class:`asyncio.Semaphore`
    costs a coroutine per acquire, which is measurable at thousands per
    second. A released slot is handed directly to the oldest waiter, so a
    newcomer's :meth:`try_take` can never overtake it.
    """

    __slots__ = ("free", "_waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


@dataclass(slots=True)
class _Counters:
    published: int = 0
    attempts: int = 0
    delivered: int = 0
    first_attempt_delivered: int = 0
    retries: int = 0
    give_ups: int = 0
    abandoned: int = 0
    in_flight: int = 0
    retry_waiting: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def parse_schedule(text: str) -> tuple[float, ...]:
    """Parse ``"0.05,0.1"`` into delays before attempt 2, 3, ...; ``""`` means no retries."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        delays = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"retry schedule must be comma-separated seconds: {text!r}") from None
    if any(d < 0 or d != d for d in delays):
        raise argparse.ArgumentTypeError("retry delays must be >= 0")
    return delays


def parse_retry_after(value: str | None, *, now: float | None = None, cap: float = RETRY_AFTER_CAP_S) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), capped; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


class Dispatcher:
    """Owns subscriptions, the fan-out queue, the HTTP client and the counters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = ServiceQueue(settings.capacity)
        self._webhook = Webhook(settings.secret)  # raises on a malformed secret
        self._subs: dict[str, Subscription] = {}
        self._active: tuple[Subscription, ...] = ()
        self._queue: asyncio.Queue[_QueuedEvent] = asyncio.Queue(maxsize=settings.max_queued)
        self._slots = _Slots(settings.max_in_flight)
        self._outstanding = _Slots(max(settings.max_outstanding, settings.max_in_flight))
        self._tasks: set[asyncio.Task[None]] = set()
        self._fanout_remaining = 0
        self._seq = 0
        self._stamp: tuple[int, datetime] = (0, datetime.fromtimestamp(0, tz=UTC))
        self.counters = _Counters()
        self._client: PostClient | None = None
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open the pooled HTTP client and start the fan-out loop."""
        # A keep-alive pool per receiver origin with aiohttp's C response parser: the
        # dispatcher spent ~70 % of its CPU inside ClientSession (deliverybench/adapters/http_post.py).
        self._client = PostClient(connections_per_origin=self.settings.connection_limit,
                                  timeout_s=self.settings.timeout_s)
        self._loop_task = asyncio.create_task(self._fan_out_loop(), name="fan-out")

    async def close(self) -> None:
        """Stop fan-out, cancel live deliveries and close the connections."""
        pending = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            self._client.close()

    # -- subscriptions -----------------------------------------------------

    def subscribe(self, url: URL) -> Subscription:
        sub_id = f"sub_{secrets.token_hex(6)}"
        while sub_id in self._subs:
            sub_id = f"sub_{secrets.token_hex(6)}"
        sub = Subscription(sub_id, url, url_text=str(url), target=request_target(str(url)))
        self._subs[sub_id] = sub
        self._refresh_active()
        log.debug("subscribed %s -> %s", sub_id, url)
        return sub

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self._subs.pop(sub_id, None)
        if sub is None:
            return False
        sub.active, sub.state = False, "deleted"
        self._refresh_active()
        log.debug("unsubscribed %s", sub_id)
        return True

    def subscriptions(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self._subs.values()]

    def _disable(self, sub: Subscription) -> None:
        if sub.active:
            sub.active, sub.state = False, "disabled"
            self._refresh_active()
            log.info("subscription %s disabled by 410 Gone from %s", sub.id, sub.url)

    def _refresh_active(self) -> None:
        self._active = tuple(s for s in self._subs.values() if s.active)

    # -- ingress -----------------------------------------------------------

    async def publish(self, raw: bytes, text: str) -> None:
        """Queue one validated event for fan-out; waits while the queue is full."""
        self._seq += 1
        self.counters.published += 1
        ready_at = self.service.release_at(hold.now() + self.settings.delay_ms / 1000.0,
                                           len(self._active))
        item = _QueuedEvent(self._seq, text, raw, ready_at)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            await self._queue.put(item)

    # -- fan-out -----------------------------------------------------------

    async def _fan_out_loop(self) -> None:
        """Take events in order and start one bounded delivery per active subscription."""
        while True:
            event = await self._queue.get()
            if event.ready_at > hold.now():
                await hold.sleep_until(event.ready_at, precise=self.settings.delay_ms > 0)
            targets = self._active
            self._fanout_remaining = len(targets)
            cap = self.settings.max_in_flight_per_subscription
            for sub in targets:
                if not self._outstanding.try_take():
                    await self._outstanding.take()
                if sub.in_flight >= cap:
                    # A slow or hung subscriber waits in its own line, holding its outstanding
                    # slot but no request slot, so it cannot starve the others.
                    sub.backlog.append(event)
                    self._fanout_remaining -= 1
                    continue
                if not self._slots.try_take():
                    try:
                        await self._slots.take()
                    except BaseException:
                        self._outstanding.give()
                        raise
                self._fanout_remaining -= 1
                sub.in_flight += 1
                self._spawn(self._deliver(event, sub))
            self._fanout_remaining = 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_from_backlog(self, sub: Subscription) -> None:
        """One of ``sub``'s deliveries ended: start its next waiting one, if any."""
        if not sub.backlog:
            return
        if not sub.active:
            while sub.backlog:
                sub.backlog.popleft()
                self.counters.abandoned += 1
                self._outstanding.give()
            return
        event = sub.backlog.popleft()
        sub.in_flight += 1
        self._spawn(self._deliver_when_slot_free(event, sub))

    async def _deliver_when_slot_free(self, event: _QueuedEvent, sub: Subscription) -> None:
        """A backlogged delivery: holds its outstanding slot, still needs a request slot."""
        try:
            await self._slots.take()
        except BaseException:
            sub.in_flight -= 1
            self._outstanding.give()
            raise
        await self._deliver(event, sub)

    async def _deliver(self, event: _QueuedEvent, sub: Subscription) -> None:
        """Attempt, back off, retry until delivered, given up, or the subscription is gone.

        Entered holding one outstanding slot and one request slot.
        """
        msg_id = f"msg_{event.seq}_{sub.id}"
        attempt = 1
        try:
            while True:
                try:
                    if not sub.active:
                        self.counters.abandoned += 1
                        return
                    delay = await self._attempt(event, sub, msg_id, attempt)
                finally:
                    self._slots.give()
                if delay is None:
                    return
                attempt += 1
                self.counters.retry_waiting += 1
                try:
                    await asyncio.sleep(delay)
                    await self._slots.take()
                finally:
                    self.counters.retry_waiting -= 1
        finally:
            self._outstanding.give()
            sub.in_flight -= 1
            self._next_from_backlog(sub)

    def _header_lines(self, event: _QueuedEvent, msg_id: str, attempt: int) -> bytes:
        now = int(time.time())
        if now != self._stamp[0]:
            self._stamp = (now, datetime.fromtimestamp(now, tz=UTC))
        signature = self._webhook.sign(msg_id, self._stamp[1], event.text)
        return (f"User-Agent: {_USER_AGENT}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {now}\r\n"
                f"webhook-signature: {signature}\r\nwebhook-attempt: {attempt}\r\n").encode()

    async def _attempt(self, event: _QueuedEvent, sub: Subscription, msg_id: str, attempt: int) -> float | None:
        """One POST; returns the delay before the next attempt, or None when done with it."""
        assert self._client is not None
        c = self.counters
        c.attempts += 1
        sub.attempts += 1
        if attempt > 1:
            c.retries += 1
        status = 0
        retry_after: str | None = None
        c.in_flight += 1
        try:
            outcome, told = await self._client.post(sub.url_text, event.raw, self._header_lines(event, msg_id, attempt),
                                                    target=sub.target)
        except Exception:  # a bug here must not lose the delivery silently
            log.exception("attempt %d of %s failed unexpectedly", attempt, msg_id)
            outcome, told = "internal", None
        finally:
            c.in_flight -= 1
        if isinstance(outcome, int):
            status = outcome
            if 200 <= status < 300:
                c.delivered += 1
                sub.delivered += 1
                if attempt == 1:
                    c.first_attempt_delivered += 1
                return None
            kind = f"http_{status}"
            if status in _RETRY_AFTER_STATUSES:
                retry_after = told
        else:
            kind = outcome  # "timeout" or "connection"
        c.failures[kind] += 1
        if status == 410:
            self._disable(sub)
            return None
        return self._next_delay(sub, msg_id, attempt, retry_after)

    def _next_delay(self, sub: Subscription, msg_id: str, attempt: int, retry_after: str | None) -> float | None:
        schedule = self.settings.retry_schedule
        if attempt > len(schedule):
            self.counters.give_ups += 1
            sub.give_ups += 1
            log.debug("gave up on %s after %d attempts", msg_id, attempt)
            return None
        told = parse_retry_after(retry_after)
        if told is not None:
            return told
        jitter = self.settings.jitter
        base = schedule[attempt - 1]
        return base * (1.0 + random.uniform(-jitter, jitter)) if jitter else base

    # -- introspection -----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        c = self.counters
        active = len(self._active)
        queued = self._queue.qsize()
        return {
            "published": c.published,
            "subscriptions_active": active,
            "subscriptions_disabled": sum(1 for s in self._subs.values() if s.state == "disabled"),
            "attempts": c.attempts,
            "delivered": c.delivered,
            "first_attempt_delivered": c.first_attempt_delivered,
            "retries": c.retries,
            "give_ups": c.give_ups,
            "abandoned": c.abandoned,
            "failures": dict(c.failures),
            "in_flight": c.in_flight,
            # first attempts not yet started (estimated with today's subscribers
            # for events still queued) plus retries waiting for their next attempt
            "pending": queued * active + self._fanout_remaining + c.retry_waiting
            + sum(len(s.backlog) for s in self._subs.values()),
            "queued_events": queued,
            "retry_waiting": c.retry_waiting,
        }


# -- HTTP ------------------------------------------------------------------


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.replace("\n", " ") + "\n")


def _validate_batch(body: bytes) -> list[tuple[bytes, str, int]] | str:
    """Split and check a publish body; returns ``(raw, text, id)`` per event, or an error line."""
    events = []
    for n, raw in enumerate(split_batch(body)):
        raw = raw.rstrip(b"\r")
        try:
            head = decode_head(raw)
            text = raw.decode("utf-8")
        except MalformedEvent as exc:
            return f"event {n}: {exc}"
        except UnicodeDecodeError:
            return f"event {n}: not UTF-8"
        events.append((raw, text, head.id))
    return events or "empty body: expected one event or NDJSON events"


def make_app(dispatcher: Dispatcher, buffer: EventBuffer) -> web.Application:
    """The target's HTTP API; the dispatcher's lifecycle is tied to the app's."""

    async def publish(request: web.Request) -> web.Response:
        checked = _validate_batch(await request.read())
        if isinstance(checked, str):
            return _text(400, checked)
        for raw, text, event_id in checked:
            buffer.append(event_id, raw)
            await dispatcher.publish(raw, text)
        return web.json_response({"accepted": len(checked)}, status=202)

    async def create_subscription(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
            url = URL(doc["url"]) if isinstance(doc, dict) and isinstance(doc.get("url"), str) else None
        except (ValueError, UnicodeDecodeError, KeyError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            return _text(400, 'expected JSON {"url": "http(s)://host[:port]/path"}')
        sub = dispatcher.subscribe(url)
        return web.json_response({"id": sub.id}, status=201)

    async def delete_subscription(request: web.Request) -> web.Response:
        if dispatcher.unsubscribe(request.match_info["sub_id"]):
            return web.Response(status=204)
        return _text(404, "no such subscription")

    async def list_subscriptions(request: web.Request) -> web.Response:
        return web.json_response({"subscriptions": dispatcher.subscriptions()})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dispatcher.stats())

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await dispatcher.start()
        yield
        await dispatcher.close()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscriptions", create_subscription)
    app.router.add_get("/subscriptions", list_subscriptions)
    app.router.add_delete("/subscriptions/{sub_id}", delete_subscription)
    app.router.add_get("/events", poll_handler(buffer))
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    return app


# -- process ---------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m targets.callback_server", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    p.add_argument(
        "--secret",
        default=os.environ.get(SECRET_ENV, DEFAULT_SECRET),
        help=f"Standard Webhooks signing secret, whsec_<base64> (default ${SECRET_ENV} or the documented test secret)",
    )
    p.add_argument("--timeout-s", type=float, default=15.0, help="per-attempt timeout in seconds (default 15)")
    p.add_argument(
        "--retry-schedule",
        type=parse_schedule,
        default=parse_schedule("0.05,0.1,0.2,0.4,0.8"),
        help="seconds before attempt 2, 3, ...; give up after the last (default 0.05,0.1,0.2,0.4,0.8)",
    )
    p.add_argument("--jitter", type=float, default=0.2, help="± fraction applied to each scheduled delay (default 0.2)")
    p.add_argument("--max-in-flight", type=_positive_int, default=256, help="requests in flight at once (default 256)")
    p.add_argument("--max-in-flight-per-subscription", type=_positive_int, default=32,
                   help="deliveries under way to one subscription at once; the rest wait in its own line, "
                        "so a hung subscriber cannot starve the others (default 32)")
    p.add_argument(
        "--max-outstanding",
        type=_positive_int,
        default=8192,
        help="live deliveries, in flight or waiting to retry, before fan-out waits (default 8192)",
    )
    p.add_argument("--connection-limit", type=_positive_int, default=1024, help="pooled connections (default 1024)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="test only: hold each event before fan-out (default 0)")
    p.add_argument("--capacity", type=float, default=0.0,
                   help="test only: at most this many deliveries per second, one event at a time (default 0, none)")
    p.add_argument("--buffer", type=_positive_int, default=10_000, help="events kept for GET /events (default 10000)")
    p.add_argument("--max-queued", type=_positive_int, default=10_000,
                   help="events queued for fan-out before /publish waits (default 10000)")
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    args = p.parse_args(argv)
    if not 0 <= args.jitter < 1:
        p.error("--jitter must be in [0, 1)")
    if args.timeout_s <= 0:
        p.error("--timeout-s must be > 0")
    if not args.capacity >= 0:
        p.error("--capacity must be >= 0")
    try:
        Webhook(args.secret)
    except Exception as exc:  # the library raises several types for a bad secret
        p.error(f"--secret is not a usable webhook secret ({type(exc).__name__})")
    return args


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        secret=args.secret,
        timeout_s=args.timeout_s,
        retry_schedule=args.retry_schedule,
        jitter=args.jitter,
        max_in_flight=args.max_in_flight,
        max_in_flight_per_subscription=args.max_in_flight_per_subscription,
        max_outstanding=args.max_outstanding,
        connection_limit=args.connection_limit,
        delay_ms=max(args.delay_ms, 0.0),
        capacity=args.capacity,
        max_queued=args.max_queued,
    )


def _ready_line(host: str, port: int) -> str:
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    base = f"http://{netloc}"
    urls = {
        "ingress": f"{base}/publish",
        "subscriptions": f"{base}/subscriptions",
        "poll": f"{base}/events",
        "health": f"{base}/health",
        "stats": f"{base}/stats",
    }
    return json.dumps({"ready": True, "pid": os.getpid(), "urls": urls})


async def serve(args: argparse.Namespace) -> None:
    """Bind, announce readiness on stdout, and run until SIGTERM or SIGINT."""
    dispatcher = Dispatcher(_settings(args))
    app = make_app(dispatcher, EventBuffer(args.buffer))
    # a short shutdown grace: a /publish waiting on a full queue must not hold
    # the exit for aiohttp's default 60 s
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        settle_gc()  # see deliverybench/adapters/process_tuning.py: the dispatcher's largest CPU saving
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sys.stdout.write(_ready_line(args.host, port) + "\n")
        sys.stdout.flush()
        log.info("callback target listening on %s:%s", args.host, port)
        await stop.wait()
        log.info("shutting down: %s", json.dumps(dispatcher.stats()))
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise_open_files_limit()
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
