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

**Why the user never runs a greenlet.** A :class:`PushSubscriber` is a
:class:`~deliverybench.harness.parked.ParkedUser`: one Locust user per
subscriber whose greenlet is never started; the session is opened in the
loop thread at spawn time and closed by ``stop()`` (see that module for
what this saves). Sessions with the same settings share one
:class:`PushSessionOptions`, which carries the target's dialect as a
subscriber protocol (``--protocol``, ``--subscribe-message``,
``--event-path``, ``--channel``): the target's, as the controller got it, or
these options' own when the process has no URLs from it.
"""

from __future__ import annotations

from functools import lru_cache

from deliverybench.adapters.ws_receiver import PushSession, PushSessionOptions
from deliverybench.core.dialect import Dialect
from deliverybench.core.protocols import SubscriberProtocol, subscriber_protocol
from deliverybench.harness.parked import ParkedUser, source_address
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install

install("push")


@lru_cache(maxsize=256)
def _session_options(url: str, open_timeout_s: float, local_addr: str | None, echo_interval_s: float,
                     ping_interval_s: float | None, protocol: SubscriberProtocol) -> PushSessionOptions:
    """One frozen options object per distinct setting, shared by the sessions that use it."""
    return PushSessionOptions(url=url, open_timeout_s=open_timeout_s, local_addr=local_addr,
                              echo_interval_s=echo_interval_s, ping_interval_s=ping_interval_s, protocol=protocol)


@lru_cache(maxsize=16)
def _protocol(dialect: Dialect) -> SubscriberProtocol | str:
    """The subscriber side of ``dialect``, built once per process; or why it cannot be (one line)."""
    try:
        return subscriber_protocol(dialect)
    except ValueError as exc:
        return str(exc)


class PushSubscriber(ParkedUser):
    """Holds one WebSocket session open; the loop thread records what arrives."""

    request_type = "push"

    def _open_session(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        url = harness.subscribe_url or self.host or ""
        dialect = harness.dialect
        protocol = _protocol(dialect)
        if isinstance(protocol, str):  # said to Locust as a failed connect, as a missing URL is
            url, missing = "", protocol
        else:
            missing = "no --subscribe-url (or --host) to subscribe to"
        name = self._admit(url, missing)
        if name is None or isinstance(protocol, str):
            return
        options = _session_options(url, opts.open_timeout,
                                   source_address(opts.source_addresses, name), opts.echo_interval,
                                   opts.ping_interval or None, protocol)
        notify = self._first_outcome(harness)

        def begin() -> None:
            self.session = PushSession(name, harness.recorder, options, notify=notify)
            self.session.start()

        harness.loop.call(begin)
