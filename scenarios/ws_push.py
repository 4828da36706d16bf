"""WebSocket push: each Locust user is one subscriber session.

Run it like any locustfile::

    locust -f scenarios/ws_push.py --headless -u 500 -r 250 --rate 5 --duration 20
    locust -f scenarios/ws_push.py --processes 2 ...          # one master, two workers
    locust -f scenarios/ws_push.py                             # web UI

With no ``--publish-url``/``--subscribe-url`` the master starts the built-in
push target itself. Once every user is connected the master publishes the
open-model stream, waits ``--drain`` seconds, stops the test and writes the
results file (``--results``). Sessions live in a uvloop thread as bare
asyncio protocols (``deliverybench/adapters/ws_receiver.py``), not in the
user's greenlet: see ``deliverybench/harness/loop_thread.py`` for why.

**Why the user never runs a greenlet.** A gevent greenlet parked in a
Locust task loop holds a saved C stack of ~8 KB; with the user object it was
~13 KB of every session, more than the session itself. A
:class:`PushSubscriber` is still one Locust user per subscriber -- spawned by
Locust at the spawn rate, counted in the user count and the UI, stopped by
Locust -- but its greenlet is added to Locust's group without being started
(``start()`` below): the session is opened in the loop thread at spawn time,
and ``stop()`` closes it. Nothing in the user blocks, so nothing needs a
stack.

**What a user still costs.** That greenlet is made without gevent's
spawn-tree tracking (a greenlet that never runs has no use for the ten
frames of the spawning stack gevent would save for it) and with its body
as a method (a ``run`` argument is kept in an instance dict): 0.86 KB a
user with its place in the group, down from 1.41 KB. Sessions with the
same settings share one :class:`PushSessionOptions`.
"""

from __future__ import annotations

import time
from functools import lru_cache, partial
from typing import Any, cast

from gevent import Greenlet, config
from gevent.pool import Group
from locust import User, task
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from deliverybench.adapters.ws_receiver import PushSession, PushSessionOptions
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install

install("push")


class _Parked(Greenlet):  # type: ignore[type-arg]  # not subscriptable at run time
    """A user's greenlet that is never started (see the module docstring).

    Its body is a method, not a ``run`` argument, which gevent would keep
    in an instance dict of each user's greenlet.
    """

    __slots__ = ()

    def _run(self) -> None:  # pragma: no cover - never runs
        """Never started."""


def _parked_greenlet(user: PushSubscriber) -> Greenlet[..., Any]:
    """A greenlet for ``user`` that records no spawning stack or tree: it never runs, so they would never be read."""
    tracking = config.track_greenlet_tree
    config.track_greenlet_tree = False
    try:
        make: Any = _Parked  # run=None: gevent calls ``_run``; its stubs know only the other forms
        return cast("Greenlet[..., Any]", make(None, user))
    finally:
        config.track_greenlet_tree = tracking


@lru_cache(maxsize=256)
def _session_options(url: str, open_timeout_s: float, local_addr: str | None, echo_interval_s: float,
                     ping_interval_s: float | None) -> PushSessionOptions:
    """One frozen options object per distinct setting, shared by the sessions that use it."""
    return PushSessionOptions(url=url, open_timeout_s=open_timeout_s, local_addr=local_addr,
                              echo_interval_s=echo_interval_s, ping_interval_s=ping_interval_s)


class PushSubscriber(User):
    """Holds one WebSocket session open; the loop thread records what arrives."""

    def start(self, group: Group) -> Greenlet[..., Any]:
        """Open the session (in the loop thread) and join Locust's group without a running greenlet."""
        greenlet = _parked_greenlet(self)
        group.add(greenlet)
        self._group, self._greenlet = group, greenlet
        self._state = LOCUST_STATE_WAITING  # Locust may stop (kill) it at once: nothing is running
        self._open_session()
        return greenlet

    def _open_session(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        url = harness.subscribe_url or self.host
        self.harness, self.session = harness, None
        if not url:
            self.environment.events.request.fire(
                request_type="push", name="connect", response_time=0, response_length=0,
                exception=ConnectionError("no --subscribe-url (or --host) to subscribe to"), context={})
            return
        if not harness.session_allowed():
            self.environment.events.request.fire(
                request_type="push", name="connect", response_time=0, response_length=0,
                exception=ConnectionError("over this process's open-files budget"), context={})
            return
        self._budgeted = True
        addresses = [a.strip() for a in (opts.source_addresses or "").split(",") if a.strip()]
        name = harness.new_subscriber_name()
        index = int(name.rsplit(":", 1)[1])
        options = _session_options(url, opts.open_timeout, addresses[index % len(addresses)] if addresses else None,
                                   opts.echo_interval, opts.ping_interval or None)
        inbox, events = harness.inbox, self.environment.events

        def failed_first(ok: bool, error: str | None) -> None:
            if not ok:  # counted in the error series already; the session keeps retrying
                inbox.post(partial(events.request.fire, request_type="push", name="connect", response_time=0,
                                   response_length=0, exception=ConnectionError(error), context={}))

        def begin() -> None:
            self.session = PushSession(name, harness.recorder, options, notify=failed_first)
            self.session.start()

        harness.loop.call(begin)

    def stop(self, force: bool = False) -> bool:
        """Close the session as of now, then leave Locust's group."""
        if self._state != LOCUST_STATE_STOPPING:
            self._state = LOCUST_STATE_STOPPING
            at_ns = time.time_ns()
            harness = getattr(self, "harness", None)
            if harness is not None:
                harness.loop.call(self._close_session, at_ns)
                if getattr(self, "_budgeted", False):
                    harness.session_closed()
        if self._greenlet is not None:
            self._group.killone(self._greenlet)
        return True

    def _close_session(self, at_ns: int) -> None:
        if self.session is not None:
            self.session.stop(at_ns)

    @task
    def hold(self) -> None:  # pragma: no cover - never runs: the greenlet is never started
        """Locust requires a task; sessions are handled in the loop thread."""

    def context(self) -> dict[str, Any]:
        return {}
