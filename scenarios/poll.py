"""Polling: each Locust user asks the target for events newer than the last it saw.

    locust -f scenarios/poll.py --headless -u 200 -r 100 --rate 5 --duration 20 --poll-interval 1

The baseline that push and callback replace: same stream, same audit; the
price shows as latency (about half the interval on average) and as requests
per delivered event. ``--subscribe-url`` is the target's poll URL
(``GET <url>?after=N&limit=M`` -> newline-delimited events, header
``X-Last-Id``); with none, the master starts the built-in target.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from locust import User, constant, task
from locust.exception import StopUser

from deliverybench.adapters.poll_client import Poller, PollOptions
from deliverybench.harness.controller import RunController
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install


def _poll_cost(controller: RunController) -> Mapping[str, Any]:
    requests = controller.aggregator.counters.get("poll_requests", 0)
    delivered = controller.aggregator.recorder.count("delivery")
    return {"requests": requests, "requests_per_delivery": round(requests / delivered, 4) if delivered else None}


install("poll", extra_results=_poll_cost)


class PollSubscriber(User):
    """Owns one poller in the loop thread."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        if not harness.subscribe_url:
            raise StopUser("no --subscribe-url (poll URL) given")
        self.harness = harness
        name = harness.new_subscriber_name()
        options = PollOptions(url=harness.subscribe_url, interval_s=opts.poll_interval, limit=opts.poll_limit,
                              timeout_s=opts.open_timeout)

        def start(reply: Any) -> None:
            poller = Poller(name, lambda: harness.recorder, options,
                            notify=lambda ok, error: reply((ok, error, poller)))
            poller.start()

        ok, error, self.poller = harness.wait_from_loop(start, timeout=opts.open_timeout + 5)
        if not ok:
            self.environment.events.request.fire(request_type="poll", name="subscribe", response_time=0,
                                                 response_length=0, exception=ConnectionError(error), context={})

    @task
    def hold(self) -> None:
        """Nothing to do in the greenlet: polling happens in the loop thread."""

    def on_stop(self) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            self.harness.loop.call(poller.stop, time.time_ns())
