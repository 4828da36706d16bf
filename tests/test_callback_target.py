"""End-to-end tests of the built-in webhook target (``targets.callback_server``).

Real processes over loopback, no mocks: the target runs as a subprocess exactly
as the harness starts it, and the callback receivers are aiohttp servers in
this test process. pytest-asyncio is not a dependency, so every test drives
one ``asyncio.run`` of its own scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from deliverybench.core.event import Event, encode_event

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + "dGVzdHMtb25seS1zZWNyZXQtZm9yLWNhbGxiYWNrLXRhcmdldA=="  # any valid whsec_ works
READY_TIMEOUT_S = 15.0


# -- the target process -------------------------------------------------------


@dataclass
class Target:
    """A running callback target and its announced URLs."""

    proc: subprocess.Popen[bytes]
    urls: dict[str, str]
    stderr_path: str

    @property
    def base(self) -> str:
        return self.urls["ingress"].rsplit("/", 1)[0]


def _read_ready_line(proc: subprocess.Popen[bytes], *, timeout_s: float) -> dict[str, Any]:
    """One line from stdout within ``timeout_s``; a thread because pipes have no read timeout."""
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not box or not box[0]:
        raise AssertionError("target printed no ready line in time")
    return json.loads(box[0])


@contextmanager
def running_target(*extra: str, secret: str | None = SECRET) -> Iterator[Target]:
    """Start the target; on exit SIGTERM it and insist on a clean exit 0.

    ``secret=None`` starts it with neither ``--secret`` nor the secret
    environment variable, i.e. on its documented default.
    """
    with tempfile.NamedTemporaryFile(prefix="callback-target-", suffix=".log", delete=False) as err:
        stderr_path = err.name
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DELIVERYBENCH_WEBHOOK_SECRET", None)
    cmd = [sys.executable, "-m", "targets.callback_server", "--host", "127.0.0.1", "--port", "0"]
    if secret is not None:
        cmd += ["--secret", secret]
    with open(stderr_path, "wb") as err_file:
        proc = subprocess.Popen([*cmd, *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err_file)
    try:
        ready = _read_ready_line(proc, timeout_s=READY_TIMEOUT_S)
        assert ready["ready"] is True and ready["pid"] == proc.pid
        assert set(ready["urls"]) == {"ingress", "subscriptions", "poll", "health", "stats"}
        yield Target(proc, ready["urls"], stderr_path)
    except BaseException:
        proc.kill()
        proc.wait()
        sys.stderr.write(Path(stderr_path).read_text(errors="replace"))
        raise
    else:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, Path(stderr_path).read_text(errors="replace")
        assert proc.stdout is not None and proc.stdout.read() == b"", "only the ready line goes to stdout"
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        os.unlink(stderr_path)


# -- callback receivers ---------------------------------------------------------


@dataclass
class Hit:
    """One request a receiver got."""

    headers: dict[str, str]
    body: bytes
    at: float


Responder = Callable[[Hit, list[Hit]], web.StreamResponse]


def ok(hit: Hit, hits: list[Hit]) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Receiver:
    """An aiohttp callback endpoint that records every hit and answers via ``respond``."""

    respond: Responder = ok
    delay_first_s: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit({k.lower(): v for k, v in request.headers.items()}, await request.read(), time.monotonic())
        self.hits.append(hit)
        if self.delay_first_s and hit.headers.get("webhook-attempt") == "1":
            await asyncio.sleep(self.delay_first_s)
        return self.respond(hit, self.hits)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        # a short shutdown: a receiver that is deliberately hanging must not hold up teardown
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def ids(self) -> set[str]:
        return {h.headers["webhook-id"] for h in self.hits}


# -- helpers --------------------------------------------------------------------


def events(n: int, *, start: int = 0, size: int = 0) -> list[bytes]:
    """``n`` encoded events; distinct sizes so a mix-up of bodies cannot go unnoticed."""
    now = time.time_ns()
    return [encode_event(Event(i, now), now, size + i) for i in range(start, start + n)]


async def publish(session: aiohttp.ClientSession, target: Target, batch: list[bytes]) -> None:
    async with session.post(target.urls["ingress"], data=b"\n".join(batch)) as resp:
        assert resp.status == 202, await resp.text()
        assert await resp.json() == {"accepted": len(batch)}


async def subscribe(session: aiohttp.ClientSession, target: Target, url: str) -> str:
    async with session.post(target.urls["subscriptions"], json={"url": url}) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["id"]


async def stats(session: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    async with session.get(target.urls["stats"]) as resp:
        assert resp.status == 200
        return await resp.json()


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    """Poll ``check`` until true; delivery is asynchronous, so tests wait for outcomes, not sleeps."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def settled(session: aiohttp.ClientSession, target: Target, **expected: int) -> dict[str, Any]:
    """Wait until /stats shows ``expected`` and nothing is left to do; return the stats."""
    snapshot: dict[str, Any] = {}

    async def check() -> bool:
        snapshot.update(await stats(session, target))
        done = snapshot["in_flight"] == 0 and snapshot["pending"] == 0
        return done and all(snapshot[k] == v for k, v in expected.items())

    try:
        await eventually(check)
    except AssertionError:
        raise AssertionError(f"stats never reached {expected}: {snapshot}") from None
    return snapshot


def run(
    scenario: Callable[..., Awaitable[None]],
    *receivers: Receiver,
    target_args: tuple[str, ...] = (),
    secret: str | None = SECRET,
) -> None:
    """Start the target (with ``target_args``, signing with ``secret``) and the receivers,
    run ``scenario(target, session, *receivers)``, tear everything down."""

    async def main(target: Target) -> None:
        for r in receivers:
            await r.start()
        try:
            async with aiohttp.ClientSession() as session:
                await scenario(target, session, *receivers)
        finally:
            for r in receivers:
                await r.stop()

    with running_target(*target_args, secret=secret) as target:
        asyncio.run(main(target))


def first_attempt_fails(status: int, **headers: str) -> Responder:
    def respond(hit: Hit, hits: list[Hit]) -> web.StreamResponse:
        if hit.headers["webhook-attempt"] == "1":
            return web.Response(status=status, headers=headers)
        return web.Response(status=200, text="ok")

    return respond


def always(status: int) -> Responder:
    return lambda hit, hits: web.Response(status=status)


# -- tests ----------------------------------------------------------------------


def test_fan_out_signed_and_verbatim() -> None:
    """N subscribers x M events: each gets M distinct ids, valid signatures, identical bytes."""
    n_subs, published = 4, events(30, size=200)
    receivers = [Receiver() for _ in range(n_subs)]

    async def scenario(target: Target, session: aiohttp.ClientSession, *rs: Receiver) -> None:
        for r in rs:
            await subscribe(session, target, r.url)
        await publish(session, target, published[:1])  # a single event
        await publish(session, target, published[1:20])  # and NDJSON batches
        await publish(session, target, published[20:])
        s = await settled(session, target, delivered=n_subs * len(published))
        assert s["published"] == len(published)
        assert s["attempts"] == s["first_attempt_delivered"] == n_subs * len(published)
        assert s["retries"] == s["give_ups"] == 0 and s["failures"] == {}
        assert s["subscriptions_active"] == n_subs and s["subscriptions_disabled"] == 0
        verifier = Webhook(SECRET)
        all_ids: set[str] = set()
        for r in rs:
            assert len(r.hits) == len(published) and len(r.ids()) == len(published)
            assert sorted(h.body for h in r.hits) == sorted(published)
            for h in r.hits:
                verifier.verify(h.body, h.headers)  # raises if the signature is wrong
                assert h.headers["content-type"] == "application/json"
                assert h.headers["webhook-attempt"] == "1"
                assert abs(int(h.headers["webhook-timestamp"]) - time.time()) < 30
            all_ids |= r.ids()
        assert len(all_ids) == n_subs * len(published)

    run(scenario, *receivers)


def test_default_secret_is_the_documented_one() -> None:
    """The documented test secret verifies what the target signs, so harness receivers can use it."""
    from targets.callback_server import DEFAULT_SECRET

    async def scenario(target: Target, session: aiohttp.ClientSession, r: Receiver) -> None:
        await subscribe(session, target, r.url)
        await publish(session, target, events(2))
        await settled(session, target, delivered=2)
        for h in r.hits:
            Webhook(DEFAULT_SECRET).verify(h.body, h.headers)

    run(scenario, Receiver(), secret=None)


def test_retry_after_500_keeps_id_and_counts_attempts() -> None:
    """A 500 on each first attempt: every event still arrives, on attempt 2, same webhook-id."""
    published = events(12)
    receiver = Receiver(first_attempt_fails(500))

    async def scenario(target: Target, session: aiohttp.ClientSession, r: Receiver) -> None:
        await subscribe(session, target, r.url)
        await publish(session, target, published)
        s = await settled(session, target, delivered=len(published))
        assert s["attempts"] == 2 * len(published) > s["delivered"]
        assert s["retries"] == len(published) and s["failures"] == {"http_500": len(published)}
        assert s["first_attempt_delivered"] == 0 and s["give_ups"] == 0
        by_id: dict[str, list[Hit]] = {}
        for h in r.hits:
            by_id.setdefault(h.headers["webhook-id"], []).append(h)
        assert len(by_id) == len(published)
        for hits in by_id.values():
            assert [h.headers["webhook-attempt"] for h in hits] == ["1", "2"]
            assert hits[0].body == hits[1].body
            Webhook(SECRET).verify(hits[1].body, hits[1].headers)
        assert sorted(hits[1].body for hits in by_id.values()) == sorted(published)

    run(scenario, receiver, target_args=("--retry-schedule", "0.02,0.02", "--jitter", "0.1"))


def test_410_disables_subscription() -> None:
    """410 Gone: the subscription is disabled, gets nothing more; others are unaffected."""
    gone, healthy = Receiver(always(410)), Receiver()

    async def scenario(target: Target, session: aiohttp.ClientSession, g: Receiver, h: Receiver) -> None:
        gone_id = await subscribe(session, target, g.url)
        await subscribe(session, target, h.url)
        await publish(session, target, events(1))
        await settled(session, target, subscriptions_disabled=1, delivered=1)
        await publish(session, target, events(9, start=1))
        s = await settled(session, target, delivered=10)
        assert len(g.hits) == 1 and len(h.hits) == 10
        assert s["attempts"] == 11 and s["retries"] == 0 and s["give_ups"] == 0
        assert s["failures"] == {"http_410": 1}
        assert s["subscriptions_active"] == 1 and s["subscriptions_disabled"] == 1
        async with session.get(target.urls["subscriptions"]) as resp:
            listed = {sub["id"]: sub for sub in (await resp.json())["subscriptions"]}
        assert listed[gone_id]["state"] == "disabled" and len(listed) == 2

    run(scenario, gone, healthy, target_args=("--retry-schedule", "0.01,0.01"))


def test_give_up_after_schedule() -> None:
    """Always failing (500 or nobody listening): give_ups == events after 1 + len(schedule) attempts."""
    published = events(5)
    failing = Receiver(always(500))
    with socket.socket() as s:  # a port with no listener: connection refused
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"

    async def scenario(target: Target, session: aiohttp.ClientSession, f: Receiver) -> None:
        await subscribe(session, target, f.url)
        await subscribe(session, target, dead_url)
        await publish(session, target, published)
        s = await settled(session, target, give_ups=2 * len(published))
        assert s["delivered"] == 0 and s["attempts"] == 2 * 3 * len(published)
        assert s["retries"] == 2 * 2 * len(published)
        assert s["failures"] == {"http_500": 3 * len(published), "connection": 3 * len(published)}
        assert len(f.hits) == 3 * len(published) and len(f.ids()) == len(published)
        await asyncio.sleep(0.2)
        assert len(f.hits) == 3 * len(published), "no attempts after giving up"

    run(scenario, failing, target_args=("--retry-schedule", "0.01,0.01"))


def test_retry_after_header_sets_the_delay() -> None:
    """503 with Retry-After: 1 defers the retry by about a second instead of the 10 ms schedule."""
    receiver = Receiver(first_attempt_fails(503, **{"Retry-After": "1"}))

    async def scenario(target: Target, session: aiohttp.ClientSession, r: Receiver) -> None:
        await subscribe(session, target, r.url)
        await publish(session, target, events(1))
        s = await settled(session, target, delivered=1)
        assert s["failures"] == {"http_503": 1} and s["retries"] == 1
        first, second = r.hits
        assert second.at - first.at >= 0.95

    run(scenario, receiver, target_args=("--retry-schedule", "0.01", "--jitter", "0"))


def test_timeout_is_a_failure_and_retried() -> None:
    """A receiver slower than --timeout-s counts as a timeout and is retried."""
    receiver = Receiver(delay_first_s=1.0)

    async def scenario(target: Target, session: aiohttp.ClientSession, r: Receiver) -> None:
        await subscribe(session, target, r.url)
        await publish(session, target, events(2))
        s = await settled(session, target, delivered=2)
        assert s["failures"] == {"timeout": 2} and s["retries"] == 2

    run(scenario, receiver, target_args=("--timeout-s", "0.3", "--retry-schedule", "0.01"))


def test_delete_subscription() -> None:
    """DELETE removes a subscription: 204 once, 404 after, and it receives nothing."""
    kept, dropped = Receiver(), Receiver()

    async def scenario(target: Target, session: aiohttp.ClientSession, k: Receiver, d: Receiver) -> None:
        await subscribe(session, target, k.url)
        dropped_id = await subscribe(session, target, d.url)
        url = f"{target.urls['subscriptions']}/{dropped_id}"
        async with session.delete(url) as resp:
            assert resp.status == 204
        async with session.delete(url) as resp:
            assert resp.status == 404
        await publish(session, target, events(3))
        s = await settled(session, target, delivered=3)
        assert len(k.hits) == 3 and d.hits == []
        assert s["subscriptions_active"] == 1
        async with session.get(target.urls["subscriptions"]) as resp:
            listed = (await resp.json())["subscriptions"]
        assert len(listed) == 1 and listed[0]["id"] != dropped_id and listed[0]["state"] == "active"

    run(scenario, kept, dropped)


def test_bad_requests_are_400() -> None:
    """Garbage publish bodies and subscription requests are refused whole, with one text line."""

    async def scenario(target: Target, session: aiohttp.ClientSession) -> None:
        good = events(1)[0]
        for body in (b"not json", b"", b"[1,2]", good + b"\n{\"id\": \"x\"}", b'{"id":1}'):
            async with session.post(target.urls["ingress"], data=body) as resp:
                assert resp.status == 400, body
                text = await resp.text()
                assert text.endswith("\n") and text.count("\n") == 1
        for doc in ({}, {"url": "ftp://x/y"}, {"url": 3}, []):
            async with session.post(target.urls["subscriptions"], json=doc) as resp:
                assert resp.status == 400, doc
        async with session.post(target.urls["subscriptions"], data=b"{") as resp:
            assert resp.status == 400
        assert (await stats(session, target))["published"] == 0
        async with session.get(target.urls["health"]) as resp:
            assert resp.status == 200 and await resp.json() == {"ok": True}

    run(scenario)


def test_poll_returns_events_after_n() -> None:
    """GET /events?after=N serves the same bytes that were published, in order."""
    published = events(6, size=80)

    async def scenario(target: Target, session: aiohttp.ClientSession) -> None:
        await publish(session, target, published)
        async with session.get(target.urls["poll"], params={"after": "2"}) as resp:
            assert resp.status == 200
            assert (await resp.read()).split(b"\n") == published[3:]
            assert resp.headers["X-Last-Id"] == "5"

    run(scenario)


def test_delay_ms_holds_fan_out() -> None:
    """--delay-ms (test only) holds each event before its first attempt."""
    receiver = Receiver()

    async def scenario(target: Target, session: aiohttp.ClientSession, r: Receiver) -> None:
        await subscribe(session, target, r.url)
        sent = time.monotonic()
        await publish(session, target, events(1))
        await settled(session, target, delivered=1)
        assert r.hits[0].at - sent >= 0.28

    run(scenario, receiver, target_args=("--delay-ms", "300"))


def test_a_hung_subscriber_does_not_starve_the_others() -> None:
    """With 8 request slots and at most 2 deliveries per subscription, a subscriber that never
    answers holds 2 slots; the healthy one gets every event without waiting for its timeouts."""
    hung, healthy = Receiver(delay_first_s=30.0), Receiver()
    published = events(30)

    async def scenario(target: Target, session: aiohttp.ClientSession, slow: Receiver, fast: Receiver) -> None:
        await subscribe(session, target, slow.url)
        await subscribe(session, target, fast.url)
        started = time.monotonic()
        await publish(session, target, published)
        await eventually(lambda: len(fast.hits) == len(published), timeout_s=5.0)
        assert time.monotonic() - started < 5.0  # far below the 10 s per-attempt timeout
        assert len(slow.hits) == 2  # only its per-subscription share is ever in flight
        s = await stats(session, target)
        assert s["in_flight"] == 2 and s["pending"] >= len(published) - 2

    run(scenario, hung, healthy, target_args=("--timeout-s", "10", "--max-in-flight", "8",
                                              "--max-in-flight-per-subscription", "2"))
