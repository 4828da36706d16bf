"""The measuring half of one Locust process that runs users.

Every Locust process with users has one :class:`HarnessProcess`: the
event-loop thread where sessions live and deliveries are recorded, and a
greenlet that once a second moves finished histogram slices into Locust's
own stats and into the payload for the aggregator. User classes reach it as
``environment.deliverybench_harness``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
from locust.env import Environment

from targets.start import TargetUrls

from ..adapters import undecodable, worker_clock
from ..adapters.process_tuning import PROCESS_OVERHEAD_FDS, session_budget
from ..adapters.sampling import ProcessSampler
from ..core.dialect import Dialect, dialect_from_values
from ..core.plan import plan_run
from ..core.process_recorder import DEFAULT_ID_LIMIT, ProcessRecorder, empty_payload
from . import quiet
from .loop_thread import GeventInbox, LoopThread

__all__ = ["HarnessProcess", "warm_histogram_tables"]

log = logging.getLogger("deliverybench")
NS = 1_000_000_000
#: the error kind of a session refused because the process holds all its open-files limit allows
FD_BUDGET_KIND = "connect_fd_budget"


class HarnessProcess:
    """The measuring half of one Locust process that runs users."""

    def __init__(self, environment: Environment, mode: str) -> None:
        self.environment = environment
        self.mode = mode
        self._loop: LoopThread | None = None
        self._inbox: GeventInbox | None = None
        self.recorder = ProcessRecorder(mode)
        self.pending = empty_payload()
        self.pending_gauges: list[tuple[int, int, str]] = []
        self.sampler = ProcessSampler()
        self.sampler.add_self("harness")
        self.pending_samples: list[Any] = []
        self._flusher: gevent.Greenlet[..., Any] | None = None
        self._flusher_stop = gevent.event.Event()
        self._counter = 0
        self.prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.stoppers: list[Callable[[], None]] = []
        self.status_active = False
        #: the target's URLs as the controller got them (in this process, or by message from the master)
        self.urls: TargetUrls | None = None
        #: sessions this process may hold (known once Locust has raised the open-files limit), and holds
        self._session_budget: int | None = None
        self.sessions_opened = 0
        self._budget_said = False
        warm_histogram_tables()

    def session_allowed(self) -> bool:
        """Whether one more session fits in this process's open-files budget; if not, it is counted and said.

        Locust gives a worker more users when others go missing (a starved
        worker misses heartbeats): past its limit a process would fail every
        connect with EMFILE and could no longer open even ``/proc`` or a log.
        """
        if self._session_budget is None:
            self._session_budget = session_budget()
        if self.sessions_opened < self._session_budget:
            self.sessions_opened += 1
            return True
        recorder = self.recorder
        self.loop.call(recorder.error, FD_BUDGET_KIND, worker_clock.now_ns())
        if not self._budget_said:
            self._budget_said = True
            log.error("this harness process holds %d sessions, all its open-files limit allows (%d less %d for "
                      "itself): further sessions are refused and counted as %s -- use more --processes",
                      self._session_budget, self._session_budget + PROCESS_OVERHEAD_FDS, PROCESS_OVERHEAD_FDS,
                      FD_BUDGET_KIND)
        return False

    def session_closed(self) -> None:
        """A session counted by :meth:`session_allowed` has ended for good (its user stopped)."""
        self.sessions_opened -= 1

    # -- shared by user classes -------------------------------------------
    @property
    def loop(self) -> LoopThread:
        if self._loop is None:
            self._loop = LoopThread.get()
        return self._loop

    @property
    def inbox(self) -> GeventInbox:
        if self._inbox is None:
            self._inbox = GeventInbox.get()
        return self._inbox

    @property
    def subscribe_url(self) -> str:
        """The mode's egress: the target's as the controller got it, else ``--subscribe-url``."""
        if self.urls is not None:
            return self.urls.egress
        return str(getattr(self.environment.parsed_options, "subscribe_url", "") or "")

    @property
    def dialect(self) -> Dialect:
        """How the target speaks: the controller's target's, else this process's own options (a worker)."""
        if self.urls is not None:
            return self.urls.dialect
        options = self.environment.parsed_options
        return dialect_from_values(vars(options) if options is not None else {})

    def add_stopper(self, stop: Callable[[], None]) -> None:
        """Run ``stop()`` in the loop thread when the test stops, before the final hand-over.

        For senders (bursts) whose requests may still be in flight: they must
        settle every attempt before the last payload leaves this process.
        """
        self.stoppers.append(stop)

    def run_stoppers(self) -> None:
        stoppers, self.stoppers = self.stoppers, []
        if not stoppers or self._loop is None:
            return

        def run_all(reply: Callable[[Any], None]) -> None:
            for stop in stoppers:
                try:
                    stop()
                except Exception:  # one broken stopper must not keep the others from running
                    log.exception("stopping a sender failed")
            reply(None)

        try:
            self.wait_from_loop(run_all, timeout=5.0)
        except gevent.Timeout:
            log.warning("senders did not stop within 5 s")

    def new_subscriber_name(self) -> str:
        self._counter += 1
        return f"{self.prefix}:{self._counter}"

    def wait_from_loop(self, start: Callable[[Callable[[Any], None]], None], timeout: float) -> Any:
        """Run ``start(reply)`` in the loop thread; block this greenlet until it replies."""
        result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        inbox = self.inbox

        def reply(value: Any) -> None:
            inbox.post(result.set, value)

        self.loop.call(start, reply)
        return result.get(timeout=timeout)

    # -- lifecycle ---------------------------------------------------------
    def reset(self) -> None:
        self.pending = empty_payload()
        self.pending_gauges = []
        self.pending_samples = []
        fresh = ProcessRecorder(self.mode, id_limit=self._id_limit())
        if self._loop is not None:
            self.loop.call(self._swap_recorder, fresh)
        else:
            self.recorder = fresh

    def _id_limit(self) -> int:
        """The stream's length (the run plan's): no id from a target at or above it is ever allocated for."""
        try:
            return plan_run(vars(self.environment.parsed_options), accepts_batches=False).id_limit
        except (AttributeError, KeyError, TypeError, ValueError):
            return DEFAULT_ID_LIMIT

    def _swap_recorder(self, fresh: ProcessRecorder) -> None:
        self.recorder = fresh

    def start_flusher(self) -> None:
        if self._flusher is None or self._flusher.dead:
            self._flusher_stop = gevent.event.Event()
            self._flusher = gevent.spawn(self._flush_forever, self._flusher_stop)

    def stop_flusher(self) -> None:
        """Stop the once-a-second flush, letting one in progress finish."""
        if self._flusher is not None:
            self._flusher_stop.set()
            self._flusher.join(timeout=10)
            self._flusher = None

    def _flush_forever(self, stop: gevent.event.Event) -> None:
        while not stop.wait(1.0):
            quiet.wait_for_quiet()
            if not stop.is_set():
                self.flush(final=False)

    def flush(self, *, final: bool) -> None:
        """Move what the loop thread finished into Locust's stats and the pending payload.

        The loop thread hands its payload over through the inbox, and the
        hub absorbs it whether or not anyone is still waiting: a taken
        payload can never be dropped by a timeout or a killed greenlet.
        """
        now = worker_clock.now_ns()
        self.pending_gauges.append((now // NS, self.recorder.connected, self.prefix))
        self.pending_samples.extend(self.sampler.sample(connections=self.recorder.connected))
        if self._loop is None:
            return
        absorbed = gevent.event.Event()
        inbox = self.inbox

        def take() -> None:
            recorder = self.recorder
            try:
                payload = recorder.take_payload(final=final, now_ns=worker_clock.now_ns())
            except Exception:  # a bug here must show in the results, not silently cost the data
                log.exception("handing over what was measured failed")
                recorder.error("harness_internal_error", worker_clock.now_ns())
                payload = empty_payload()
            payload["undecodable"] = undecodable.first  # this process's first message that did not decode
            if final:
                undecodable.forget()  # handed over: a later test in this process starts without one
            inbox.post(self._absorb_then_set, payload, absorbed)

        self.loop.call(take)
        if not absorbed.wait(timeout=10.0):
            log.warning("event-loop thread did not hand over its data within 10 s")

    def _absorb_then_set(self, payload: Mapping[str, Any], absorbed: gevent.event.Event) -> None:
        self._absorb(payload)
        absorbed.set()

    def _absorb(self, payload: Mapping[str, Any]) -> None:
        from .locust_stats import feed_locust_stats

        feed_locust_stats(self.environment, self.mode, payload["recorder"])
        for kind, n in payload["errors"].items():
            for _ in range(n):
                self.environment.stats.log_error(self.mode, "errors", kind)
        pending = self.pending
        pending["recorder"].merge(payload["recorder"])
        pending["fanout"].merge(payload["fanout"])
        pending["subscribers"].extend(payload["subscribers"])
        pending["errors"].update(payload["errors"])
        pending["error_series"].update(payload["error_series"])
        pending["counters"].update(payload["counters"])
        if pending.get("undecodable") is None:
            pending["undecodable"] = payload.get("undecodable")

    def take_pending(self) -> dict[str, Any]:
        """The payload accumulated since the last call, with gauges and samples."""
        payload = self.pending
        payload["gauges"] = self.pending_gauges
        payload["samples"] = self.pending_samples
        self.pending = empty_payload()
        self.pending_gauges = []
        self.pending_samples = []
        return payload


def warm_histogram_tables() -> None:
    """Build the histogram index tables and run one fold now, not in the loop thread mid-stream.

    numpy's first pass over each kind of operation costs ~10 ms; during a
    stream that pause would land in the measured latencies.
    """
    from ..core import hdr_fast
    from ..core.audit import FanoutTracker
    from ..core.intake import Intake
    from ..core.recording import Recorder, new_histogram

    hdr_fast.value_tables(new_histogram())
    intake = Intake(id_limit=8)
    intake.add("warm-up")
    now = worker_clock.now_ns()
    for column, value in ((intake.sub, 0), (intake.ids, 1), (intake.due, now - 1000), (intake.sent, now - 500),
                          (intake.rx, now)):
        column.append(value)
    intake.fold(Recorder(), FanoutTracker(), Counter(), Counter())
