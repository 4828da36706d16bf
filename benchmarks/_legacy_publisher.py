"""The publisher before the open model (kept only as the baseline of ``publisher_rate.py``).

One connection, one request at a time; when late it sends everything already
due as one NDJSON batch. This is the design that fell behind nchan and let a
stalled request hold back every later event.

Original description:

It runs as one greenlet on the Locust master (or the single local process),
however many processes run subscribers, so ids are global and the published
log is the one truth the audit is checked against. Each event carries its
*due* time; when the publisher is late it sends everything already due as one
NDJSON batch, so it catches up instead of falling further behind, and the
lateness shows up as latency rather than as a slower stream.

A target that refuses or stops answering is not hung on: after
``max_consecutive_failures`` failed POSTs (or ``give_up_after_s`` of nothing
but failures) the publisher stops and says why; the events attempted so far
stay in the log, marked unconfirmed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL

from deliverybench.core.audit import PublishedLog
from deliverybench.core.event import Event, encode_batch
from deliverybench.core.schedule import Schedule, offsets_ns

__all__ = ["PublisherOptions", "PublishOutcome", "Publisher"]


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    ingress_url: str
    schedule: Schedule
    stream: str = "s"
    payload_bytes: int = 256
    max_batch: int = 1000
    request_timeout_s: float = 10.0
    max_consecutive_failures: int = 20
    give_up_after_s: float = 10.0


@dataclass
class PublishOutcome:
    log: PublishedLog = field(default_factory=PublishedLog)
    stream_start_ns: int = 0
    finished_ns: int = 0
    requests: int = 0
    failed_requests: int = 0
    max_lag_ns: int = 0
    failure: str | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None


class Publisher:
    """Publish a schedule; ``run()`` blocks the calling greenlet until done."""

    def __init__(self, options: PublisherOptions, *, on_error: Callable[[str, int], None] | None = None) -> None:
        self.options = options
        self.outcome = PublishOutcome()
        self._stopped = False
        self._on_error = on_error
        url = URL(options.ingress_url)
        self._path = urlsplit(options.ingress_url).path or "/"
        query = urlsplit(options.ingress_url).query
        if query:
            self._path += "?" + query
        self._client = HTTPClient.from_url(
            url, concurrency=1, connection_timeout=min(5.0, options.request_timeout_s),
            network_timeout=options.request_timeout_s,
        )

    def stop(self) -> None:
        """Stop after the request in flight (e.g. the test was stopped by hand)."""
        self._stopped = True

    def run(self, stream_start_ns: int) -> PublishOutcome:
        opts, out = self.options, self.outcome
        out.stream_start_ns = stream_start_ns
        due = [stream_start_ns + off for off in offsets_ns(opts.schedule)]
        i, n = 0, len(due)
        first_failure_ns: int | None = None
        consecutive = 0
        try:
            while i < n and not self._stopped:
                now = time.time_ns()
                if due[i] > now:
                    gevent.sleep((due[i] - now) / 1e9)
                    continue
                j = i + 1
                while j < n and j - i < opts.max_batch and due[j] <= now:
                    j += 1
                sent_ns = time.time_ns()
                out.max_lag_ns = max(out.max_lag_ns, sent_ns - due[i])
                events = [Event(k, due[k], opts.stream) for k in range(i, j)]
                ok, kind = self._post(encode_batch(events, sent_ns, opts.payload_bytes))
                for k in range(i, j):
                    out.log.add(k, due[k], sent_ns, ok)
                i = j
                if ok:
                    consecutive, first_failure_ns = 0, None
                    continue
                consecutive += 1
                out.errors[kind] = out.errors.get(kind, 0) + 1
                if self._on_error is not None:
                    self._on_error(f"publish_{kind}", sent_ns)
                first_failure_ns = first_failure_ns or sent_ns
                if consecutive >= opts.max_consecutive_failures or (
                    time.time_ns() - first_failure_ns > opts.give_up_after_s * 1e9
                ):
                    out.failure = (f"target ingress {opts.ingress_url} failed {consecutive} times in a row "
                                   f"(last: {kind}); stopped publishing after {i} of {n} events")
                    break
        finally:
            out.finished_ns = time.time_ns()
            self._client.close()
        return out

    def _post(self, body: bytes) -> tuple[bool, str]:
        self.outcome.requests += 1
        try:
            response = self._client.post(self._path, body=body,
                                         headers={"Content-Type": "application/x-ndjson"})
            response.read()
            status = response.status_code
        except (OSError, gevent.Timeout) as exc:
            self.outcome.failed_requests += 1
            return False, _kind(exc)
        except Exception as exc:  # geventhttpclient raises its own parse errors
            self.outcome.failed_requests += 1
            return False, type(exc).__name__
        if 200 <= status < 300:
            return True, ""
        self.outcome.failed_requests += 1
        return False, f"http_{status}"


def _kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (TimeoutError, gevent.Timeout)):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return type(exc).__name__
