"""The callback receiver against hostile senders: one server per process, bodies capped and budgeted.

The limits themselves are sans-I/O and tested first with synthetic chunks; then real Locust
runs against the built-in callback target on loopback, with raw-socket senders
(tests/servers/hostile_http.py) aimed at the Locust process's receiver while genuine
deliveries flow, and the audit held exact.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import run_locust, scaled
from servers.hostile_http import Answer, CallbackUrl, chunked_flood, declare, hold, read_answer

from deliverybench.adapters.callback_receiver import (
    BUDGET_BODIES,
    BUSY,
    MIN_BODY_CAP,
    OVERSIZED,
    BodyBudget,
    BodyGate,
    body_budget_for,
    body_cap_for,
    check_declared,
)
from targets.base import Target
from targets.builtin import CallbackTarget

MiB = 1 << 20


# -- the limits, sans-I/O ---------------------------------------------------------------------


def test_the_cap_is_a_mebibyte_or_four_events_and_the_budget_sixteen_caps() -> None:
    assert body_cap_for(256) == MIN_BODY_CAP == MiB
    assert body_cap_for(16 * MiB) == 64 * MiB  # the largest --payload-bytes is never refused
    assert body_budget_for(MiB) == BUDGET_BODIES * MiB == 16 * MiB


def test_a_declared_length_over_the_cap_is_refused_from_the_headers() -> None:
    assert check_declared(None, MiB) is None  # chunked: decided as it streams
    assert check_declared(MiB, MiB) is None
    assert check_declared(MiB + 1, MiB) is OVERSIZED
    assert OVERSIZED.status == 413 and BUSY.status == 503 and BUSY.retry_after_s == 1


def test_a_gate_cuts_a_body_at_the_cap_and_gives_its_bytes_back() -> None:
    budget = BodyBudget(10)
    gate = BodyGate(budget, cap=6)
    assert gate.feed(b"abc") is None and gate.feed(b"def") is None and budget.in_use == 6
    assert gate.body() == b"abcdef"
    assert gate.feed(b"g") is OVERSIZED and budget.in_use == 0
    gate.release()
    assert budget.in_use == 0 and budget.peak == 6


def test_a_budget_refuses_the_request_that_would_pass_it_and_spares_the_others() -> None:
    budget = BodyBudget(10)
    first, second, third = BodyGate(budget, 8), BodyGate(budget, 8), BodyGate(budget, 8)
    assert first.feed(b"x" * 6) is None and second.feed(b"x" * 3) is None
    assert third.feed(b"x" * 2) is BUSY and budget.in_use == 9  # the third holds nothing
    assert second.feed(b"x") is None and budget.in_use == 10
    first.release()
    assert third.feed(b"x" * 2) is None  # bytes given back are free again
    second.release()
    third.release()
    assert budget.in_use == 0 and budget.peak == 10


# -- real runs --------------------------------------------------------------------------------


def _callback_args(target: Target) -> list[str]:
    return ["--publish-url", str(target.ingress_url), "--subscribe-url", str(target.egress_url("callback")),
            "--stats-url", str(target.stats_url), "--target-pids", ",".join(map(str, target.pids()))]


@dataclass
class LiveRun:
    """A Locust callback run in progress: its process, its subscribers' URLs, and later its results."""

    target: Target
    pid: int = 0
    urls: list[CallbackUrl] = field(default_factory=list)
    returncode: int | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    failure: BaseException | None = None

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    @property
    def mode(self) -> dict[str, Any]:
        assert set(self.doc["modes"]) == {"callback"}
        return self.doc["modes"]["callback"]  # type: ignore[no-any-return]


def _locust_pid(thread: threading.Thread, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and thread.is_alive():
        for child in psutil.Process().children(recursive=True):
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if "locust" in cmdline and any(arg.endswith("webhook_callback.py") for arg in cmdline):
                return child.pid
        time.sleep(0.05)
    raise AssertionError("no Locust process started")


def _subscriptions(target: Target) -> list[str]:
    with urllib.request.urlopen(str(target.egress_url("callback")), timeout=5) as response:  # noqa: S310 - loopback
        return [sub["url"] for sub in json.loads(response.read())["subscriptions"]]


@contextmanager
def live_run(tmp_path: Path, *args: str, users: int, target: CallbackTarget | None = None) -> Iterator[LiveRun]:
    """A real ``locust -f webhook_callback.py`` run; yields once every subscriber is registered.

    On leaving, waits for the run to end and loads its results into the yielded object.
    """
    with target or CallbackTarget() as started:
        run = LiveRun(started)

        def locust() -> None:
            try:
                proc, run.doc = run_locust("webhook_callback.py", tmp_path, *_callback_args(started), *args,
                                           users=users)
            except BaseException as exc:  # handed to the test's thread, which raises it
                run.failure = exc
            else:
                run.returncode = proc.returncode

        thread = threading.Thread(target=locust, daemon=True)
        thread.start()
        run.pid = _locust_pid(thread, scaled(30))
        deadline = time.monotonic() + scaled(60)
        while len(urls := _subscriptions(started)) < users:
            run.check()
            assert thread.is_alive() and time.monotonic() < deadline, f"{len(urls)} of {users} subscribed"
            time.sleep(0.05)
        run.urls = [CallbackUrl.parse(url) for url in urls]
        yield run
        thread.join(scaled(180))
        run.check()
        assert not thread.is_alive() and run.doc, "the Locust run did not end"


class Sampler(threading.Thread):
    """Samples one process every few milliseconds: peak RSS and the TCP ports it listens on."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.first_rss = self.peak_rss = self.process.memory_info().rss
        self.listening: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.005):
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                self.listening |= {c.laddr.port for c in self.process.net_connections(kind="tcp")
                                   if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def growth(self) -> int:
        return self.peak_rss - self.first_rss


@dataclass(frozen=True)
class Stream:
    """The genuine stream of a run: its Locust arguments and the deliveries it must make."""

    users: int
    rate: int
    duration: int
    drain: int = 2

    @property
    def args(self) -> tuple[str, ...]:
        return "--rate", str(self.rate), "--duration", str(self.duration), "--drain", str(self.drain)

    @property
    def deliveries(self) -> int:
        return self.users * self.rate * self.duration


def _assert_exact(run: LiveRun, stream: Stream, refused: dict[str, int]) -> None:
    """Every genuine delivery counted once, and every hostile request counted once under its kind."""
    cb, n = run.mode, stream.deliveries
    assert cb["audit"]["delivered_unique"] == n and cb["audit"]["lost"] == 0 and cb["audit"]["balanced"]
    assert cb["summary"]["delivery"]["count"] == n
    extra = cb["extra"]
    assert extra["acked"] == n and extra["webhook"]["delivered"] == extra["webhook"]["attempts"] == n
    assert cb["errors"] == refused and {kind: extra[kind] for kind in refused} == refused
    assert extra["receiver_requests"] == n + sum(refused.values())


def _wait_for_answers(sockets: list[socket.socket], count: int, *, timeout_s: float) -> None:
    """Until ``count`` of ``sockets`` have something to read (held ones never do), or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select(sockets, [], [], 0.05)
        if len(readable) >= count:
            return


def _concurrently(count: int, send: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        results[i] = send()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(scaled(60))
    return results


@pytest.mark.e2e
@pytest.mark.slow
def test_a_hundred_subscribers_share_one_listening_socket(tmp_path: Path) -> None:
    stream = Stream(users=100, rate=3, duration=2)
    with live_run(tmp_path, *stream.args, users=stream.users) as run:
        sampler = Sampler(run.pid)
        sampler.start()
        ports = {url.port for url in run.urls}
    sampler.stop()
    assert len(ports) == 1 and sampler.listening == ports
    _assert_exact(run, stream, {})


@pytest.mark.e2e
@pytest.mark.slow
def test_a_declared_oversized_body_is_answered_413_unread(tmp_path: Path) -> None:
    stream = Stream(users=5, rate=5, duration=2, drain=1)
    with live_run(tmp_path, *stream.args, users=stream.users) as run:
        answer = declare(run.urls[0], declared=50 * 10**6, send=b'{"id": 0', timeout_s=scaled(5))
    assert answer.status == 413 and answer.headers.get("connection") == "close", answer
    assert answer.seconds < scaled(1)
    _assert_exact(run, stream, {"oversized_body": 1})


@pytest.mark.e2e
@pytest.mark.slow
def test_six_chunked_50_mb_bodies_leave_memory_and_deliveries_alone(tmp_path: Path) -> None:
    stream = Stream(users=10, rate=10, duration=4)
    with live_run(tmp_path, *stream.args, users=stream.users) as run:
        sampler = Sampler(run.pid)
        sampler.start()
        floods: list[tuple[Answer, int]] = _concurrently(
            6, lambda: chunked_flood(run.urls[0], total=50 * 10**6, timeout_s=scaled(10)))
        time.sleep(0.2)  # anything the receiver still held would show now
        sampler.stop()
    # Each body is cut at the 1 MiB cap: six of them hold 6 MiB at most, and a little for buffers.
    assert sampler.growth < 10 * MiB, f"RSS grew {sampler.growth / MiB:.1f} MiB"
    for answer, sent in floods:
        assert answer.status == 413 or answer.reset, answer
        assert sent < 16 * MiB  # refused long before 50 MB: the cap, plus what both socket buffers held
    _assert_exact(run, stream, {"oversized_body": 6})


@pytest.mark.e2e
@pytest.mark.slow
def test_bodies_past_the_budget_are_answered_503_with_retry_after(tmp_path: Path) -> None:
    # 900 KiB bodies (under the 1 MiB cap), one after another and held open: 18 fit the 16 MiB
    # budget, every later one is refused; 184 KiB stay free for the genuine deliveries meanwhile.
    stream = Stream(users=10, rate=10, duration=4)
    size, held_fit, extra = 900 * 1024, 16 * MiB // (900 * 1024), 4
    with live_run(tmp_path, *stream.args, users=stream.users) as run:
        sampler = Sampler(run.pid)
        sampler.start()
        sockets = [hold(run.urls[0], declared=MiB, send=size) for _ in range(held_fit + extra)]
        _wait_for_answers(sockets, extra, timeout_s=scaled(5))
        time.sleep(0.2)  # room for a refusal too many to show
        answers = [read_answer(sock, timeout_s=0.01) for sock in sockets]
        sampler.stop()
        for sock in sockets:
            sock.close()
    refused = [a for a in answers if a.status is not None]
    assert len(refused) == extra and all(a.status == 503 and a.headers.get("retry-after") == "1" for a in refused)
    # the budget's 16 MiB held at once, and a little for buffers and the allocator
    assert sampler.growth < 16 * MiB + 8 * MiB, f"RSS grew {sampler.growth / MiB:.1f} MiB"
    # the held bodies end when their senders close: counted as truncated, never as deliveries
    _assert_exact(run, stream, {"receiver_busy": extra, "truncated_body": held_fit})
