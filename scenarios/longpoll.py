"""Long-polling: each Locust user keeps one request outstanding, asked again the moment it is answered.

    locust -f scenarios/longpoll.py --headless -u 200 -r 100 --rate 5 --duration 20
    locust -f scenarios/longpoll.py --publish-url http://host/pub --subscribe-url http://host/lp --longpoll-resume etag

The server answers a held request when it has events newer than the
subscriber's position, or empty after its hold timeout. ``--subscribe-url``
is the target's long-poll URL; ``--longpoll-resume`` says how a subscriber
says where it is: ``after`` (``?after=N`` and ``X-Last-Id``, the built-in
target's ``GET /longpoll``) or ``etag`` (``If-Modified-Since`` +
``If-None-Match``, as nginx + nchan). With no URL the master starts the
built-in push target. Pollers live in the loop thread
(``deliverybench/adapters/longpoll_client.py``); the price shows as
requests per delivered event, empty answers and the time requests were held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from deliverybench.adapters.longpoll_client import LongPoller, LongPollOptions
from deliverybench.core.process_recorder import ProcessRecorder
from deliverybench.harness.controller import RunController
from deliverybench.harness.pollers import LoopPollerUser
from deliverybench.harness.wiring import install


def _longpoll_cost(controller: RunController) -> Mapping[str, Any]:
    """Requests (and per delivery), empty answers and the mean held time, from the pollers' counters."""
    counters = controller.aggregator.counters
    requests = counters.get("longpoll_requests", 0)
    delivered = controller.aggregator.recorder.count("delivery")
    held_us = counters.get("longpoll_held_us", 0)
    return {"requests": requests, "requests_per_delivery": round(requests / delivered, 4) if delivered else None,
            "longpoll_empty": counters.get("longpoll_empty", 0),
            "held_ms_mean": round(held_us / requests / 1000, 3) if requests else None}


install("longpoll", extra_results=_longpoll_cost)


class LongPollSubscriber(LoopPollerUser):
    """Owns one long-poller in the loop thread."""

    request_type = "longpoll"
    no_url = "no --subscribe-url (long-poll URL) given"

    def make_poller(self, name: str, recorder_ref: Callable[[], ProcessRecorder], url: str, opts: Any,
                    notify: Callable[[bool, str | None], None]) -> LongPoller:
        options = LongPollOptions(url=url, resume=opts.longpoll_resume, open_timeout_s=opts.open_timeout)
        return LongPoller(name, recorder_ref, options, notify=notify)
