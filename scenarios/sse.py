"""Server-Sent Events: each Locust user is one subscriber holding one ``text/event-stream`` response.

Run it like any locustfile::

    locust -f scenarios/sse.py --headless -u 500 -r 250 --rate 5 --duration 20
    locust -f scenarios/sse.py --publish-url http://host/pub --subscribe-url http://host/sub

With no ``--publish-url``/``--subscribe-url`` the master starts the built-in
push target, whose ``GET /sse`` carries the same broadcast as its WebSocket.
``--subscribe-url`` is the target's event-stream URL (plain ``http://``).
Streams live in a uvloop thread as bare asyncio protocols
(``deliverybench/adapters/sse_receiver.py``); a dropped stream resumes with
``Last-Event-ID`` and is counted (``sse_reconnects``). As with push, the
user's greenlet never runs (:mod:`deliverybench.harness.parked`).
With ``--event-path`` each event's data is an envelope holding the event at
that JSON pointer (a server of one's own; nchan and Pushpin send events as
they were published).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from deliverybench.adapters.sse_receiver import SseSession, SseSessionOptions
from deliverybench.harness.parked import ParkedUser, source_address
from deliverybench.harness.process import HarnessProcess
from deliverybench.harness.wiring import install

install("sse")


@lru_cache(maxsize=256)
def _session_options(url: str, open_timeout_s: float, local_addr: str | None, event_path: str) -> SseSessionOptions:
    """One frozen options object per distinct setting, shared by the sessions that use it."""
    return SseSessionOptions(url=url, open_timeout_s=open_timeout_s, local_addr=local_addr, event_path=event_path)


class SseSubscriber(ParkedUser):
    """Holds one event stream open; the loop thread records what arrives."""

    request_type = "sse"

    def _open_session(self) -> None:
        harness: HarnessProcess = self.environment.deliverybench_harness
        opts = self.environment.parsed_options
        url = harness.subscribe_url or self.host or ""
        missing = "no --subscribe-url (or --host): no event stream to subscribe to"
        if url and urlsplit(url).scheme != "http":  # the receiver speaks plain HTTP only: said, not raised
            url, missing = "", f"an event-stream URL must be http://, not {url!r}"
        name = self._admit(url, missing)
        if name is None:
            return
        dialect = harness.dialect
        options = _session_options(url, opts.open_timeout, source_address(opts.source_addresses, name),
                                   dialect.event_path)
        notify = self._first_outcome(harness)

        def begin() -> None:
            self.session = SseSession(name, harness.recorder, options, notify=notify)
            self.session.start()

        harness.loop.call(begin)
