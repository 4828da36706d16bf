"""The previous push design as a locustfile, for ``benchmarks/push_capacity.py --design previous``.

A Locust user greenlet per subscriber blocking in on_start, websockets' asyncio
client with a task per session (``previous_push_client.py``). The shipped
scenario is ``scenarios/ws_push.py``.

Original description: WebSocket push: each Locust user is one subscriber session.

Run it like any locustfile::

    locust -f scenarios/ws_push.py --headless -u 500 -r 250 --rate 5 --duration 20
    locust -f scenarios/ws_push.py --processes 2 ...          # one master, two workers
    locust -f scenarios/ws_push.py                             # web UI

With no ``--publish-url``/``--subscribe-url`` the master starts the built-in
push target itself. Once every user is connected the master publishes the
open-model stream, waits ``--drain`` seconds, stops the test and writes the
results file (``--results``). Sessions live in a uvloop thread, not in the
user's greenlet: see ``deliverybench/harness/loop_thread.py`` for why.
"""

from __future__ import annotations

import time
from typing import Any

from locust import User, constant, task
from locust.exception import StopUser

from deliverybench.harness.locust_plugin import HarnessProcess, install
from previous_push_client import PushSession, PushSessionOptions  # beside this file

install("push")


class PushSubscriber(User):
    """Holds one WebSocket session open and lets the loop thread record what arrives."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness  # type: ignore[attr-defined]
        opts = self.environment.parsed_options
        url = opts.subscribe_url or self.host
        if not url:
            raise StopUser("no --subscribe-url (or --host) to subscribe to")
        addresses = [a.strip() for a in (opts.source_addresses or "").split(",") if a.strip()]
        self.harness = harness
        self.subscriber = harness.new_subscriber_name()
        index = int(self.subscriber.rsplit(":", 1)[1])
        session_options = PushSessionOptions(
            url=url,
            open_timeout_s=opts.open_timeout,
            local_addr=addresses[index % len(addresses)] if addresses else None,
            echo_interval_s=opts.echo_interval,
            ping_interval_s=opts.ping_interval or None,
        )
        name = self.subscriber

        def start(reply: Any) -> None:
            session = PushSession(name, harness.recorder, session_options,
                                  notify=lambda ok, error: reply((ok, error, session)))
            session.start()

        ok, error, self.session = harness.wait_from_loop(start, timeout=opts.open_timeout + 5)
        if not ok:
            # Counted in the error series already; the session keeps retrying in the loop thread.
            self.environment.events.request.fire(
                request_type="push", name="connect", response_time=0, response_length=0,
                exception=ConnectionError(error), context={})

    @task
    def hold(self) -> None:
        """Nothing to do in the greenlet: deliveries are handled in the loop thread."""

    def on_stop(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            self.harness.loop.call(session.stop, time.time_ns())
