"""Measuring each worker's clock against the master's over Locust's own messages, and correcting it.

The master probes every worker it knows: a burst as the worker appears,
then a few probes a second for as long as it runs (:class:`ClockMaster`).
Each answer gives one :class:`~deliverybench.core.clock.Exchange`; the
worker's :class:`~deliverybench.core.clock.ClockEstimator` turns the window
into an estimate, which goes straight back to that worker. The worker
(:class:`ClockFollower`) then reads every subscriber-side stamp as its
monotonic clock less the estimated offset -- the master's wall clock -- by
rebinding :mod:`~deliverybench.adapters.worker_clock`; with
``--no-clock-correction`` it keeps its own wall clock, and is measured all
the same. A single Locust process has no worker and nothing to measure.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from ..adapters import worker_clock
from ..adapters.machine import route_address
from ..core.clock import ClockEstimator, Exchange, WorkerClock

__all__ = ["ClockMaster", "ClockFollower", "PROBE_MESSAGE", "ANSWER_MESSAGE", "SET_MESSAGE", "BURST",
           "PROBE_INTERVAL_S"]

log = logging.getLogger("deliverybench")
#: master -> worker: a probe (its sequence number and t1)
PROBE_MESSAGE = "deliverybench_clock_probe"
#: worker -> master: the probe answered (t1 back, t2/t3 monotonic, w2/w3 wall, who the worker is)
ANSWER_MESSAGE = "deliverybench_clock_answer"
#: master -> worker: the estimate to stamp by, and whether to
SET_MESSAGE = "deliverybench_clock_set"
#: probes sent to a worker as it appears, :data:`_BURST_GAP_S` apart, before anything is measured
BURST = 32
_BURST_GAP_S = 0.02
#: seconds between two probes of a worker after its burst (a few a second, as long as it runs)
PROBE_INTERVAL_S = 0.3


class ClockMaster:
    """The master's side: probes every worker, estimates its offset, sends the estimate back."""

    def __init__(self, runner: MasterRunner, *, correct: Callable[[], bool]) -> None:
        self.runner = runner
        self.correct = correct
        self.estimators: dict[str, ClockEstimator] = {}
        #: who each worker is, from its answers: host, address, process (``host:pid``)
        self.identity: dict[str, dict[str, str]] = {}
        self._sent: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._seq = 0
        self._greenlet: gevent.Greenlet[..., Any] | None = None
        runner.register_message(ANSWER_MESSAGE, self.on_answer)

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._probe_forever)

    def _probe_forever(self) -> None:
        while True:
            now = time.monotonic()
            for node, client in list(self.runner.clients.items()):
                if client.state == STATE_MISSING or now < self._next.get(node, 0.0):
                    continue
                sent = self._sent.get(node, 0)
                self._sent[node] = sent + 1
                self._next[node] = now + (_BURST_GAP_S if sent < BURST else PROBE_INTERVAL_S)
                self._seq += 1
                self.runner.send_message(PROBE_MESSAGE, {"seq": self._seq, "t1": time.time_ns()}, client_id=node)
            gevent.sleep(_BURST_GAP_S)

    def on_answer(self, environment: Any, msg: Any, **_kw: Any) -> None:
        t4 = time.time_ns()
        data = msg.data
        node = str(msg.node_id)
        try:
            exchange = Exchange(t1=int(data["t1"]), t2=int(data["t2"]), t3=int(data["t3"]), t4=t4,
                                w2=int(data["w2"]), w3=int(data["w3"]))
        except (KeyError, TypeError, ValueError):
            log.warning("malformed clock answer from worker %s", node)
            return
        if "host" in data:
            self.identity[node] = {k: str(data.get(k, "")) for k in ("host", "address", "process")}
        estimate = self.estimators.setdefault(node, ClockEstimator()).add(exchange)
        if estimate is not None:
            self.runner.send_message(SET_MESSAGE, {"offset_ns": estimate.offset_ns, "correct": self.correct()},
                                     client_id=node)

    def await_answers(self, timeout_s: float) -> list[str]:
        """Wait (at most ``timeout_s``) until every connected worker has answered a probe; those that did not.

        Locust counts a worker ready as soon as it connects, which can be
        before its ``init`` listeners have registered deliverybench's
        messages: one that answered has them, and has a first estimate too.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            silent = [n for n, c in self.runner.clients.items() if c.state != STATE_MISSING and n not in self.identity]
            if not silent or time.monotonic() >= deadline:
                return silent
            gevent.sleep(0.05)

    def new_test(self, at_ns: int) -> None:
        """A test starts: each worker's history from now on (the estimate in force is kept)."""
        for estimator in self.estimators.values():
            estimator.forget_before(at_ns)

    def summaries(self, since_ns: int | None) -> dict[str, WorkerClock]:
        """Every worker's clock over the stream (from ``since_ns``), by Locust node id."""
        corrected = self.correct()
        out: dict[str, WorkerClock] = {}
        for node, estimator in self.estimators.items():
            summary = estimator.summary(corrected=corrected, since_ns=since_ns)
            if summary is not None:
                out[node] = summary
        return out


class ClockFollower:
    """A worker's side: answers probes, and stamps by the estimate the master sends."""

    def __init__(self, runner: WorkerRunner, *, process: str, master: tuple[str, int]) -> None:
        self.runner = runner
        address = route_address(master[0] or "127.0.0.1", master[1] or 5557)
        self.identity = {"host": socket.gethostname(), "address": address, "process": process,
                         "pid": str(os.getpid())}
        self.offset_ns: int | None = None
        runner.register_message(PROBE_MESSAGE, self.on_probe)
        runner.register_message(SET_MESSAGE, self.on_set)

    def on_probe(self, environment: Any, msg: Any, **_kw: Any) -> None:
        t2, w2 = time.monotonic_ns(), time.time_ns()
        data: dict[str, Any] = {"seq": msg.data.get("seq"), "t1": msg.data.get("t1"), "t2": t2, "w2": w2,
                                **self.identity}
        data["w3"], data["t3"] = time.time_ns(), time.monotonic_ns()
        self.runner.send_message(ANSWER_MESSAGE, data)

    def on_set(self, environment: Any, msg: Any, **_kw: Any) -> None:
        data: Mapping[str, Any] = msg.data
        offset = int(data["offset_ns"])
        self.offset_ns = offset
        if data.get("correct", True):
            monotonic = time.monotonic_ns  # master_time_ns inlined: this runs for every receive stamp
            worker_clock.use(lambda: monotonic() - offset)
        else:
            worker_clock.reset()
