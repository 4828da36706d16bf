"""A Locust user that owns one poller running in the loop thread (interval polling, long-polling).

The poller does all the work in the loop thread; the user's greenlet only
waits for it to start (so Locust's spawn counts subscribers that asked at
least once, or said why they could not), then parks in a task that never
does anything, and stops the poller when Locust stops the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from locust import User, constant, task
from locust.exception import StopUser

from ..adapters import worker_clock
from ..core.process_recorder import ProcessRecorder
from .process import HarnessProcess

__all__ = ["LoopPollerUser", "LoopPoller"]

Notify = Callable[[bool, str | None], None]


class LoopPoller(Protocol):
    """What the user needs of a poller: start it, stop it as of a time (both in the loop thread)."""

    def start(self) -> None: ...

    def stop(self, at_ns: int) -> None: ...


class LoopPollerUser(User):
    """One subscriber whose poller lives in the loop thread; subclasses say how to make it (:meth:`make_poller`)."""

    abstract = True
    wait_time = constant(3600)
    #: the ``request_type`` of a failed start in Locust's statistics
    request_type = ""
    #: why a user stops at once when there is no URL to ask
    no_url = "no --subscribe-url given"

    def make_poller(self, name: str, recorder_ref: Callable[[], ProcessRecorder], url: str, opts: Any,
                    notify: Notify) -> LoopPoller:
        raise NotImplementedError

    def on_start(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        if not harness.subscribe_url:
            raise StopUser(self.no_url)
        self.harness = harness
        name, url = harness.new_subscriber_name(), harness.subscribe_url

        def start(reply: Any) -> None:
            poller = self.make_poller(name, lambda: harness.recorder, url, opts,
                                      lambda ok, error: reply((ok, error, poller)))
            poller.start()

        ok, error, self.poller = harness.wait_from_loop(start, timeout=opts.open_timeout + 5)
        if not ok:
            self.environment.events.request.fire(request_type=self.request_type, name="subscribe", response_time=0,
                                                 response_length=0, exception=ConnectionError(error), context={})

    @task
    def hold(self) -> None:
        """Nothing to do in the greenlet: polling happens in the loop thread."""

    def on_stop(self) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            self.harness.loop.call(poller.stop, worker_clock.now_ns())
