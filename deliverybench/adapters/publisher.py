"""The open-model publisher: each event goes out at its due time, whatever came before.

A closed-loop publisher (one connection, one request at a time) lets a
stalled request hold back every later event -- and then the stall hides:
the late events are timed from when they were finally sent, or batched and
refused. This one is an open model, like wrk2's: every event is a request of
its own, submitted at its due time to a pool of up to ``concurrency``
keep-alive connections (:class:`~deliverybench.adapters.http_post.PostPool`,
bare asyncio protocols with aiohttp's C response parser), so a slow or
stalled request never delays the next event. A ``ws://`` or ``tcp://``
ingress gets a frame per event over a few long-lived connections instead
(:mod:`~deliverybench.adapters.publish_pool` picks the pool by the scheme),
submitted the same way, at its due time. If every connection is busy the
event waits for the first free one, and because latency is counted from the
due time -- never re-based -- the wait shows as latency. How late each event
actually went out (*publisher lag*, send − due) is recorded on its own.

The body is made when the request is written, so ``sent_ns`` inside the
event is the real send time; a publish template (the target's
:class:`~deliverybench.core.dialect.Dialect`) is rendered around the event
then too. One event per request is the default, and the only way with a
template; NDJSON batches (several events due at once in one request) only
when the target says it takes them (the built-in targets, or
``--publish-batch`` for an external one).

Every request ends in exactly one outcome: a 2xx accepts its events (a
frame: being written, see :func:`~deliverybench.adapters.publish_pool.is_accepted`);
a status, a timeout or a connection error refuses them. After
``max_consecutive_failures`` refusals in a row (or ``give_up_after_s`` of
nothing else) the publisher stops and says why -- a vanishing target is
reported, not hung on. It runs in whatever asyncio loop it is given (the
harness's loop thread on the Locust master) and reads the clock only to keep
the schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from ..core.audit import PublishedLog
from ..core.dialect import Dialect
from ..core.event import WARMUP_STREAM, Event, encode_batch, encode_event
from ..core.plan import MAX_BATCH
from ..core.publish_template import PublishTemplate, unescape_bytes, unescape_controls
from ..core.schedule import Schedule, offsets_ns, quiet_moment_ns
from .http_post import Job, Outcome
from .pacing import sleep_until
from .publish_pool import PublishPool, is_accepted, is_framed, open_pool, pool_size

__all__ = ["PublisherOptions", "PublishOutcome", "Publisher", "MAX_BATCH", "publish_template", "publish_greeting"]

NS = 1_000_000_000
#: events handed to the pool in one turn of the loop, so receiving is never starved
_EVENTS_PER_TURN = 1000
#: the pool is opened, before the stream starts, wide enough for the busiest window this long
PREWARM_WINDOW_NS = 10_000_000
#: gaps between due events narrower than this hold no room for the once-a-second book-keeping
QUIET_GAP_NS = 20_000_000


def _peak(due: list[int], window_ns: int) -> int:
    """The most events due within any ``window_ns`` (due times are sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(due):
        while t - due[lo] >= window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    """How to publish.

    Args:
        ingress_url: where events are POSTed (http(s)://) or sent as frames (ws(s)://, tcp://).
        schedule: when each event is due.
        concurrency: requests in flight at most (one per keep-alive connection); a frame ingress
            opens at most :data:`~deliverybench.core.options.FRAME_CONNECTIONS`.
        batch: most events in one request (1: one JSON event per request; always 1 with a template).
        request_timeout_s: a request not answered by then refuses its events.
        max_consecutive_failures: refusals in a row after which publishing stops.
        give_up_after_s: seconds of nothing but refusals after which publishing stops.
    """

    ingress_url: str
    schedule: Schedule
    stream: str = "s"
    payload_bytes: int = 256
    concurrency: int = 256
    batch: int = 1
    request_timeout_s: float = 10.0
    max_consecutive_failures: int = 20
    give_up_after_s: float = 10.0
    #: a schedule published first, as stream ``__warmup__``, then a gap, then the real one: warms the
    #: target and the harness the same way, and is dropped by every receiver
    warmup: Schedule | None = None
    warmup_gap_s: float = 0.5
    #: the publish template, greeting and channel (the relay contract by default)
    dialect: Dialect = Dialect()


@dataclass
class PublishOutcome:
    """What the publisher did; filled in as it goes (read it after :meth:`Publisher.run`)."""

    log: PublishedLog = field(default_factory=PublishedLog)
    #: the first ids of the log that were the warm-up
    warmup_events: int = 0
    stream_start_ns: int = 0
    finished_ns: int = 0
    requests: int = 0
    failed_requests: int = 0
    submitted: int = 0
    max_lag_ns: int = 0
    peak_in_flight: int = 0
    failure: str | None = None
    errors: Counter[str] = field(default_factory=Counter)
    #: (second, "publish_<kind>") -> count
    error_series: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: send second -> publisher lag (send - due) of each event sent in it, in µs; includes
    #: waiting for a free connection, i.e. the target's back-pressure
    lag_us: dict[int, list[int]] = field(default_factory=dict)
    #: submit second -> schedule lag (handed to the pool - due) in µs: the harness's own lateness
    schedule_lag_us: dict[int, list[int]] = field(default_factory=dict)
    #: publisher connections of a ws:// or tcp:// ingress that failed to open or ended, by kind: none
    #: refuses an event by itself, but frames written just before one may be lost, and this says why
    connection_failures: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.failure is None


def _kind(outcome: Outcome) -> str:
    return outcome if isinstance(outcome, str) else f"http_{outcome}"


def publish_template(url: str, dialect: Dialect) -> PublishTemplate:
    """The template events are sent in: the dialect's; on a tcp:// ingress ``\\r\\n`` read as CR LF, and
    one event per line when none is given.

    Raises:
        ValueError: a bad template (one line).
    """
    text = dialect.publish_template
    if urlsplit(url).scheme == "tcp":
        text = unescape_controls(text) if text else "{event}\r\n"
    return PublishTemplate.parse(text)


def publish_greeting(dialect: Dialect) -> bytes:
    """What opens each publisher connection: the greeting with ``{channel}`` filled in and ``\\r\\n`` and
    ``\\xHH`` read as the bytes they name."""
    return unescape_bytes(dialect.publish_greeting.replace("{channel}", dialect.channel))


class Publisher:
    """Publish one schedule; :meth:`run` is a coroutine, everything runs in its loop."""

    def __init__(self, options: PublisherOptions) -> None:
        self.template = publish_template(options.ingress_url, options.dialect)
        # what is really used, so that the results say it: one event per request with a template, and a
        # few connections for frames
        self.options = options = dataclasses.replace(
            options, batch=options.batch if self.template.is_identity else 1,
            concurrency=pool_size(options.ingress_url, options.concurrency))
        self.outcome = PublishOutcome()
        self._stopped = False
        self._channel = options.dialect.channel
        self._pool: PublishPool | None = None
        self._due: list[int] = []
        self._warmup = 0
        self._in_flight = 0
        self._consecutive = 0
        self._first_failure_ns: int | None = None

    def quiet_moment_ns(self, after_ns: int, min_gap_ns: int = QUIET_GAP_NS) -> int | None:
        """When, at or after ``after_ns``, this process can pause for a few ms without delaying the stream.

        Read from any thread: the due list is built once and never changed.
        """
        return quiet_moment_ns(self._due, after_ns, min_gap_ns=min_gap_ns)

    def stop(self) -> None:
        """Stop scheduling (call in the publisher's loop); :meth:`run` then winds down."""
        self._stopped = True

    async def run(self, stream_start_ns: int, *, stop_drain_s: float = 2.0) -> PublishOutcome:
        """Publish every event at its due time; return when all are answered (or refused).

        Args:
            stream_start_ns: wall-clock time of the first offset.
            stop_drain_s: after :meth:`stop` or giving up, how long requests in
                flight may still finish before they are refused.
        """
        opts, out = self.options, self.outcome
        warmup = [stream_start_ns + offset for offset in offsets_ns(opts.warmup)] if opts.warmup else []
        if warmup:
            stream_start_ns += round((opts.warmup.duration_s + opts.warmup_gap_s) * NS)  # type: ignore[union-attr]
        self._warmup = out.warmup_events = len(warmup)
        self._due = due = warmup + [stream_start_ns + offset for offset in offsets_ns(opts.schedule)]
        out.log = PublishedLog.scheduled(due)
        out.stream_start_ns = stream_start_ns
        content_type = "application/x-ndjson" if opts.batch > 1 else self.template.media_type
        pool = self._pool = open_pool(opts.ingress_url, concurrency=opts.concurrency,
                                      timeout_s=opts.request_timeout_s, on_result=self._on_result,
                                      content_type=content_type, greeting=publish_greeting(opts.dialect),
                                      on_failure=self._on_connection_failure)
        i, n = 0, len(due)
        try:
            # connections for the busiest 10 ms of the schedule, opened before it starts
            await pool.prewarm(max(1, _peak(due, PREWARM_WINDOW_NS)),
                               within_s=((due[0] if due else stream_start_ns) - time.time_ns()) / NS)
            while i < n and not self._stopped:
                now = time.time_ns()
                if due[i] > now:
                    await sleep_until(due[i])
                    continue
                j, limit = i, min(n, i + _EVENTS_PER_TURN)
                while j < limit and due[j] <= now:
                    j += 1
                self._submit(pool, i, j, now)
                i = j
                if j == limit:
                    await asyncio.sleep(0)  # a backlog goes out in turns, between the receivers'
            if self._stopped:
                try:
                    await asyncio.wait_for(pool.drain(), stop_drain_s)
                except TimeoutError:
                    pass
            else:
                await pool.drain()  # bounded: every request times itself out
        finally:
            # whatever is still in flight is refused (unanswered), never left open; what never left stays unsent
            pool.abort(in_flight="unanswered", queued="unsent")
            out.finished_ns = time.time_ns()
        return out

    def _submit(self, pool: PublishPool, lo: int, hi: int, now_ns: int) -> None:
        due, w = self._due, self._warmup
        self.outcome.schedule_lag_us.setdefault(now_ns // NS, []).extend(
            (now_ns - due[k]) // 1000 for k in range(max(lo, w), hi))
        self.outcome.submitted += hi - lo  # first: a pool may settle (refuse) a job before submit returns
        step = max(1, self.options.batch)
        for start in range(lo, hi, step):
            end = min(hi, start + step)
            if start < w < end:
                end = w  # a request is all warm-up or none of it
            pool.submit(((start, end), b"", partial(self._body, start, end), b""))
            self._in_flight += 1
        if self._in_flight > self.outcome.peak_in_flight:
            self.outcome.peak_in_flight = self._in_flight

    def _body(self, lo: int, hi: int, sent_ns: int) -> bytes:
        opts, due = self.options, self._due
        stream = WARMUP_STREAM if lo < self._warmup else opts.stream
        if hi - lo == 1:
            event = encode_event(Event(lo, due[lo], stream), sent_ns, opts.payload_bytes)
            return self.template.render(event, channel=self._channel, event_id=lo)
        return encode_batch((Event(k, due[k], stream) for k in range(lo, hi)), sent_ns, opts.payload_bytes)

    def _on_connection_failure(self, kind: str) -> None:
        self.outcome.connection_failures[kind] += 1

    def _on_result(self, job: Job, outcome: Outcome, sent_ns: int, done_ns: int, _retry_after: str | None) -> None:
        out, due = self.outcome, self._due
        lo, hi = job[0]
        self._in_flight -= 1
        if outcome == "unsent":  # never written: not published, neither accepted nor refused
            return
        out.requests += 1
        accepted = is_accepted(outcome)
        lags = out.lag_us.setdefault(sent_ns // NS, [])
        for k in range(lo, hi):
            out.log.settle(k, sent_ns, accepted)
            if k >= self._warmup:
                lags.append((sent_ns - due[k]) // 1000)
        lag = sent_ns - due[lo]
        if lag > out.max_lag_ns:
            out.max_lag_ns = lag
        if accepted:
            self._consecutive, self._first_failure_ns = 0, None
            return
        kind = _kind(outcome)
        out.failed_requests += 1
        out.errors[kind] += 1
        out.error_series[(done_ns // NS, f"publish_{kind}")] += 1
        self._consecutive += 1
        if self._first_failure_ns is None:
            self._first_failure_ns = done_ns
        opts = self.options
        if out.failure is None and (self._consecutive >= opts.max_consecutive_failures
                                    or done_ns - self._first_failure_ns > opts.give_up_after_s * NS):
            what = "events" if is_framed(opts.ingress_url) else "requests"
            problem = self._pool.problem if self._pool is not None else None
            out.failure = (f"target ingress {opts.ingress_url} failed {self._consecutive} {what} in a row "
                           f"(last: {kind}{': ' + problem if problem else ''}); stopped publishing after "
                           f"{out.submitted:,} of {len(due):,} events")
            self._stopped = True
