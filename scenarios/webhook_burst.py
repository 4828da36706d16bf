"""Webhook bursts: the harness POSTs events at a consumer endpoint and times the acks.

    locust -f scenarios/webhook_burst.py --headless -u 100 --schedule burst \\
        --burst-size 5000 --burst-interval 1 --duration 5 --subscribe-url http://127.0.0.1:9000/hooks/x

``--subscribe-url`` is the consumer URL (your webhook receiver); with none,
the master starts the built-in sink target. Users are keep-alive
connections: ``-u 100`` means at most 100 requests in flight at once across
all processes. Latency counts from each event's due time, so a consumer that
cannot keep up shows as latency, never as a slower stream. Optional Standard
Webhooks signing with ``--sign`` (secret from ``--webhook-secret``).

This uses a lean keep-alive client on the harness's event-loop thread
(``deliverybench/adapters/http_post.py``) rather than Locust's FastHttpUser or aiohttp's
ClientSession: ``benchmarks/webhook_capacity.py`` measures them side by side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gevent
from locust import User, constant, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from deliverybench.adapters.burst import BurstOptions, BurstSender
from deliverybench.adapters.publisher import PublishOutcome
from deliverybench.core.audit import PublishedLog
from deliverybench.core.plan import plan_run
from deliverybench.core.schedule import Schedule, offsets_ns
from deliverybench.harness.controller import RunController
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install

START_MESSAGE = "deliverybench_burst_start"

try:
    from targets.callback_server import DEFAULT_SECRET
except ImportError:  # pragma: no cover
    DEFAULT_SECRET = ""


def _sender(harness: HarnessProcess, opts: Any, connections: int) -> BurstSender:
    return BurstSender(BurstOptions(
        url=harness.subscribe_url, schedule=plan_run(vars(opts), accepts_batches=False).schedule,
        stream=opts.stream, payload_bytes=opts.payload_bytes, connections=connections,
        timeout_s=opts.burst_timeout, secret=(opts.webhook_secret or DEFAULT_SECRET) if opts.sign else None,
    ), lambda: harness.recorder)


def _start_share(environment: Environment, stream_start_ns: int, index: int, count: int) -> None:
    """Begin sending this process's share, in its loop thread."""
    harness: HarnessProcess = environment.deliverybench_harness  # type: ignore[attr-defined]
    runner = environment.runner
    users = max(1, runner.user_count if runner is not None else 1)
    sender = _sender(harness, environment.parsed_options, users)
    harness.add_stopper(sender.stop)  # at test stop every attempt still open gets its class
    harness.loop.spawn(sender.run(stream_start_ns, index, count))


def _on_ready(environment: Environment) -> None:
    if isinstance(environment.runner, WorkerRunner):
        def on_start(environment: Environment, msg: Any, **_kw: Any) -> None:
            data = msg.data
            _start_share(environment, int(data["stream_start_ns"]), int(data["index"]), int(data["count"]))

        environment.runner.register_message(START_MESSAGE, on_start)


def _run_stream(controller: RunController, schedule: Schedule) -> PublishOutcome:
    """The master's part: pick the start, hand out shares, wait for the last due time."""
    environment = controller.environment
    runner = environment.runner
    stream_start = time.time_ns() + 500_000_000
    outcome = PublishOutcome(stream_start_ns=stream_start)
    if isinstance(runner, MasterRunner):
        workers = sorted(runner.clients.keys())
        if not workers:
            outcome.failure = "no workers to send bursts"
            return outcome
        for index, client_id in enumerate(workers):
            runner.send_message(START_MESSAGE, {"stream_start_ns": stream_start, "index": index,
                                                "count": len(workers)}, client_id=client_id)
    else:
        _start_share(environment, stream_start, 0, 1)
    log = PublishedLog()
    last_due = stream_start
    for event_id, offset in enumerate(offsets_ns(schedule)):
        due = stream_start + offset
        log.add(event_id, due, due, True)
        last_due = due
    outcome.log = log
    controller.publisher_outcome = outcome
    gevent.sleep(max(0.0, (last_due - time.time_ns()) / 1e9))
    # Requests still in flight get their timeout to finish (the drain follows).
    opts = environment.parsed_options
    gevent.sleep(min(opts.burst_timeout if opts is not None else 30.0, 30.0))
    outcome.finished_ns = time.time_ns()
    return outcome


def _burst_extra(controller: RunController) -> Mapping[str, Any]:
    counters = controller.aggregator.counters
    classes = {k[len("status_"):]: v for k, v in counters.items() if k.startswith("status_")}
    return {"status_classes": classes, "attempted": counters.get("attempted", 0),
            "timeouts": counters.get("timeouts", 0), "connection_errors": counters.get("connection_errors", 0),
            "unanswered": counters.get("unanswered", 0), "unsent": counters.get("unsent", 0)}


install("burst", extra_results=_burst_extra, stream_runner=_run_stream,
        on_ready=_on_ready)


class BurstConnection(User):
    """One keep-alive connection's worth of concurrency; the sending happens in the loop thread."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        self.harness = harness
        harness.loop.call(self._count, 1)

    def _count(self, delta: int) -> None:
        self.harness.recorder.connected += delta

    @task
    def hold(self) -> None:
        """Nothing to do in the greenlet."""

    def on_stop(self) -> None:
        self.harness.loop.call(self._count, -1)
