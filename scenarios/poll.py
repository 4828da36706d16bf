"""Polling: each Locust user asks the target for events newer than the last it saw.

    locust -f scenarios/poll.py --headless -u 200 -r 100 --rate 5 --duration 20 --poll-interval 1

The baseline that push and callback replace: same stream, same audit; the
price shows as latency (about half the interval on average) and as requests
per delivered event. ``--subscribe-url`` is the target's poll URL
(``GET <url>?after=N&limit=M`` -> newline-delimited events, header
``X-Last-Id``); with none, the master starts the built-in target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from deliverybench.adapters.poll_client import Poller, PollOptions
from deliverybench.core.process_recorder import ProcessRecorder
from deliverybench.harness.controller import RunController
from deliverybench.harness.pollers import LoopPollerUser
from deliverybench.harness.wiring import install


def _poll_cost(controller: RunController) -> Mapping[str, Any]:
    requests = controller.aggregator.counters.get("poll_requests", 0)
    delivered = controller.aggregator.recorder.count("delivery")
    return {"requests": requests, "requests_per_delivery": round(requests / delivered, 4) if delivered else None}


install("poll", extra_results=_poll_cost)


class PollSubscriber(LoopPollerUser):
    """Owns one poller in the loop thread."""

    request_type = "poll"
    no_url = "no --subscribe-url (poll URL) given"

    def make_poller(self, name: str, recorder_ref: Callable[[], ProcessRecorder], url: str, opts: Any,
                    notify: Callable[[bool, str | None], None]) -> Poller:
        options = PollOptions(url=url, interval_s=opts.poll_interval, limit=opts.poll_limit,
                              timeout_s=opts.open_timeout)
        return Poller(name, recorder_ref, options, notify=notify)
