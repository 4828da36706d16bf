"""A Locust user that holds one session in the loop thread and never runs a greenlet of its own.

Shared by the session modes whose subscriber is a bare asyncio protocol
(push over WebSocket, Server-Sent Events). A gevent greenlet parked in a
Locust task loop holds a saved C stack of ~8 KB; with the user object it was
~13 KB of every session, more than the session itself. A :class:`ParkedUser`
is still one Locust user per subscriber -- spawned by Locust at the spawn
rate, counted in the user count and the UI, stopped by Locust -- but its
greenlet is added to Locust's group without being started (:meth:`start`):
the session is opened in the loop thread at spawn time, and :meth:`stop`
closes it. Nothing in the user blocks, so nothing needs a stack.

That greenlet is made without gevent's spawn-tree tracking (a greenlet that
never runs has no use for the ten frames of the spawning stack gevent would
save for it) and with its body as a method (a ``run`` argument is kept in an
instance dict): 0.86 KB a user with its place in the group, down from 1.41 KB.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, cast

from gevent import Greenlet, config
from gevent.pool import Group
from locust import User, task
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from ..adapters import worker_clock
from .process import HarnessProcess

__all__ = ["ParkedUser", "parked_greenlet", "source_address"]


class _Session(Protocol):
    def stop(self, at_ns: int) -> None: ...


class _Parked(Greenlet):  # type: ignore[type-arg]  # not subscriptable at run time
    """A user's greenlet that is never started (see the module docstring).

    Its body is a method, not a ``run`` argument, which gevent would keep
    in an instance dict of each user's greenlet.
    """

    __slots__ = ()

    def _run(self) -> None:  # pragma: no cover - never runs
        """Never started."""


def parked_greenlet(user: User) -> Greenlet[..., Any]:
    """A greenlet for ``user`` that records no spawning stack or tree: it never runs, so they would never be read."""
    tracking = config.track_greenlet_tree
    config.track_greenlet_tree = False
    try:
        make: Any = _Parked  # run=None: gevent calls ``_run``; its stubs know only the other forms
        return cast("Greenlet[..., Any]", make(None, user))
    finally:
        config.track_greenlet_tree = tracking


def source_address(addresses: str | None, name: str) -> str | None:
    """The local address of subscriber ``name`` (``host:pid:N``): ``--source-addresses`` taken in turn."""
    chosen = [a.strip() for a in (addresses or "").split(",") if a.strip()]
    return chosen[int(name.rsplit(":", 1)[1]) % len(chosen)] if chosen else None


class ParkedUser(User):
    """One subscriber session opened in the loop thread at spawn; the user's greenlet is never started.

    Subclasses implement :meth:`_open_session`: :meth:`_admit` a subscriber,
    then set ``self.session`` from the loop thread.
    """

    abstract = True
    #: the ``request_type`` of this mode's connect failures in Locust's statistics
    request_type = ""
    harness: HarnessProcess | None = None
    session: _Session | None = None
    _budgeted = False

    def start(self, group: Group) -> Greenlet[..., Any]:
        """Open the session (in the loop thread) and join Locust's group without a running greenlet."""
        greenlet = parked_greenlet(self)
        group.add(greenlet)
        self._group, self._greenlet = group, greenlet
        self._state = LOCUST_STATE_WAITING  # Locust may stop (kill) it at once: nothing is running
        self._open_session()
        return greenlet

    def _open_session(self) -> None:
        raise NotImplementedError

    def _admit(self, url: str, missing: str) -> str | None:
        """A new subscriber's name, or None (said to Locust) when there is no ``url`` or no room for a session."""
        harness: HarnessProcess = self.environment.deliverybench_harness
        self.harness, self.session = harness, None
        if not url:
            self._connect_failed(missing)
            return None
        if not harness.session_allowed():
            self._connect_failed("over this process's open-files budget")
            return None
        self._budgeted = True
        return harness.new_subscriber_name()

    def _connect_failed(self, error: str | None) -> None:
        self.environment.events.request.fire(request_type=self.request_type, name="connect", response_time=0,
                                             response_length=0, exception=ConnectionError(error), context={})

    def _first_outcome(self, harness: HarnessProcess) -> Callable[[bool, str | None], None]:
        """The session's ``notify``: a failed first attempt told to Locust (from the loop thread, via the inbox)."""
        inbox = harness.inbox

        def failed_first(ok: bool, error: str | None) -> None:
            if not ok:  # counted in the error series already; the session keeps retrying
                inbox.post(partial(self._connect_failed, error))

        return failed_first

    def stop(self, force: bool = False) -> bool:
        """Close the session as of now, then leave Locust's group."""
        if self._state != LOCUST_STATE_STOPPING:
            self._state = LOCUST_STATE_STOPPING
            at_ns = worker_clock.now_ns()
            harness = self.harness
            if harness is not None:
                harness.loop.call(self._close_session, at_ns)
                if self._budgeted:
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
