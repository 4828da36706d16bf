"""Webhook callback: each Locust user is one subscriber with its own callback URL.

    locust -f scenarios/webhook_callback.py --headless -u 200 -r 100 --rate 5 --duration 20
    locust -f scenarios/webhook_callback.py --fail-ratio 0.2      # make the target retry

With no ``--publish-url``/``--subscribe-url`` the master starts the built-in
callback target. ``--subscribe-url`` is the target's subscription API
(``POST {"url": ...}`` -> ``{"id": ...}``, ``DELETE .../<id>``). Every
process serves its users' callback URLs from one receiver on its event-loop
thread -- bare asyncio protocols over httptools' C parser (see
``deliverybench/adapters/http_receiver.py`` and ``callback_receiver.py``) --
which reads no body over ``body_cap_for(--payload-bytes)`` (1 MiB at least) and
no more body bytes at once than its budget: hostile requests are refused and
counted (``oversized_body``, ``receiver_busy``, ``truncated_body``,
``malformed_request``, ``oversized_headers``, ``too_many_headers``,
``request_timeout``, ``not_found``, ``method_not_allowed``).

A real sender speaks a dialect of its own (``--target alertmanager``, or
``--target relay`` with ``--event-path`` and ``--webhook-signing``): its
deliveries are verified as Standard Webhooks unless the dialect says it
signs nothing (``webhook_signing = "none"``, Alertmanager's), and with an
event path each body is read as an envelope holding the events there
(Alertmanager: ``/alerts/*/annotations/event``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

from locust import User, constant, task
from locust.exception import StopUser

from deliverybench.adapters import worker_clock
from deliverybench.adapters.callback_receiver import (
    CallbackReceiver,
    CallbackSubscriptions,
    ReceiverBehaviour,
    body_cap_for,
)
from deliverybench.core.delay import parse_delay
from deliverybench.harness.controller import RunController
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install

try:
    from targets.callback_server import DEFAULT_SECRET
except ImportError:  # pragma: no cover - the built-in targets ship with the harness
    DEFAULT_SECRET = ""


def _target_stats(controller: RunController) -> Mapping[str, Any]:
    url = controller.urls.stats
    if not url:
        return {}
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the user's own target
        return {"webhook": json.loads(response.read())}


install("callback", extra_results=_target_stats)


def _process_side(harness: HarnessProcess, opts: Any) -> tuple[CallbackReceiver, CallbackSubscriptions]:
    """The receiver and subscription client of this process, created once.

    Deliveries are verified as Standard Webhooks unless the dialect says the sender signs nothing
    (``--webhook-signing none``, Alertmanager's); events are found at the dialect's event path.
    """
    side = getattr(harness, "callback_side", None)
    if side is None:
        dialect = harness.dialect
        behaviour = ReceiverBehaviour(
            secret=opts.webhook_secret or DEFAULT_SECRET, ack_delay=parse_delay(opts.ack_delay),
            fail_ratio=opts.fail_ratio, fail_status=opts.fail_status, timeout_ratio=opts.timeout_ratio,
            timeout_hold_s=opts.timeout_hold, signed=dialect.webhook_signing != "none",
        )
        receiver = CallbackReceiver(lambda: harness.recorder, behaviour, host=opts.receiver_host,
                                    advertise_host=opts.receiver_advertise_host or None,
                                    body_cap=body_cap_for(opts.payload_bytes), event_path=dialect.event_path)
        side = harness.callback_side = (receiver, CallbackSubscriptions(harness.subscribe_url,  # type: ignore[attr-defined]
                                                                         timeout_s=opts.open_timeout))
    return side


class CallbackSubscriber(User):
    """Registers a callback URL at start, removes it at stop; deliveries arrive at the receiver."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        if not harness.subscribe_url:
            raise StopUser("no --subscribe-url (subscription API) given")
        receiver, subscriptions = _process_side(harness, opts)
        self.harness, self.receiver, self.subscriptions = harness, receiver, subscriptions
        self.name = harness.new_subscriber_name()
        self.path = self.name.rsplit(":", 1)[1]
        self.subscription_id: str | None = None
        name, path = self.name, self.path

        def start(reply: Any) -> None:
            async def register() -> None:
                recorder = harness.recorder
                started = worker_clock.now_ns()
                try:
                    await receiver.start()
                    sub_id = await subscriptions.register(receiver.url_for(path))
                except Exception as exc:  # any failure to subscribe is reported, not raised
                    recorder.error("subscribe_failed", worker_clock.now_ns())
                    reply((False, f"{type(exc).__name__}: {exc}", None))
                    return
                now = worker_clock.now_ns()
                recorder.recorder.record("connect", now - started, now)
                record = recorder.subscriber(name)
                record.open(now)
                receiver.add(path, record)
                recorder.connected += 1
                reply((True, None, sub_id))


            asyncio.get_running_loop().create_task(register())

        ok, error, self.subscription_id = harness.wait_from_loop(start, timeout=opts.open_timeout + 5)
        if not ok:
            self.environment.events.request.fire(request_type="callback", name="subscribe", response_time=0,
                                                 response_length=0, exception=ConnectionError(error), context={})

    @task
    def hold(self) -> None:
        """Nothing to do in the greenlet: deliveries arrive at the receiver."""

    def on_stop(self) -> None:
        sub_id = getattr(self, "subscription_id", None)
        if sub_id is None:
            return
        harness, receiver, subscriptions = self.harness, self.receiver, self.subscriptions
        name, path, at_ns = self.name, self.path, worker_clock.now_ns()

        def stop() -> None:
            recorder = harness.recorder
            record = recorder.subscribers.get(name)
            if record is not None:
                record.close(at_ns)
            receiver.remove(path)
            recorder.retire(name)
            recorder.connected -= 1

            async def unsubscribe() -> None:
                try:
                    await subscriptions.remove(sub_id)
                except Exception:  # the run is ending; a failed DELETE is only counted
                    recorder.counters["unsubscribe_failed"] += 1


            asyncio.get_running_loop().create_task(unsubscribe())

        harness.loop.call(stop)
