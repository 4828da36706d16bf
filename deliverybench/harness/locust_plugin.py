"""Wiring deliverybench into Locust: options, per-process harness, the run.

A scenario (a real locustfile) calls :func:`install` once with its mode, and
defines its user class. From then on:

* every Locust process that runs users has a :class:`HarnessProcess`: the
  event-loop thread where sessions live and deliveries are recorded, and a
  greenlet that once a second moves finished histogram slices into Locust's
  own stats and into the payload for the aggregator;
* the master (or the only process) has a :class:`RunController`: it starts a
  built-in target when no URL was given, waits until subscribers are
  connected, runs the open-model publisher, waits out the drain window,
  stops the test, merges every process's payload and writes the results file.

Payloads reach the master through Locust's own channels: ``report_to_master``
every few seconds and one custom message when a worker stops, which Locust
delivers before the worker's ``client_stopped`` -- so by the time
``runner.stop()`` returns on the master, every worker's data has arrived.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

import gevent
import gevent.event
from locust import events as locust_events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from ..adapters import results_file
from ..adapters.machine import git_commit, machine_facts, package_versions
from ..adapters.process_tuning import raise_open_files_limit, settle_gc
from . import quiet
from .live import LiveWriter
from ..adapters.sampling import ProcessSampler
from ..core.audit import PublishedLog
from ..core.options import MODES, schedule_from
from ..core.process_recorder import DEFAULT_ID_LIMIT, ProcessRecorder, empty_payload
from ..core.redact import redact_argv, redact_config
from ..core.results import new_document
from ..core.schedule import Schedule
from .aggregator import RunAggregator, payload_to_wire
from .locust_options import add_options, check_form
from ..adapters.publisher import MAX_BATCH, PublishOutcome, Publisher, PublisherOptions
from .loop_thread import GeventInbox, LoopThread, wait_for_coroutine


def schedule_from_options(options: Any) -> Schedule:
    """The stream's schedule from Locust's parsed options (same names as the table)."""
    return schedule_from(vars(options))

__all__ = ["install", "schedule_from_options", "HarnessProcess", "RunController"]

log = logging.getLogger("deliverybench")
NS = 1_000_000_000
FINAL_MESSAGE = "deliverybench_final"
#: seconds after spawning with not one subscriber connected (and connections failing) before giving up
FAIL_FAST_S = 5.0
#: the publisher's own event-loop thread (see :class:`~.loop_thread.LoopThread`)
PUBLISHER_LOOP = "publisher"


class NoSubscribers(Exception):
    """Not one subscriber could connect; the message names the dominant errors."""
STATUS_MESSAGE = "deliverybench_status"
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
        self._flusher: gevent.Greenlet | None = None
        self._flusher_stop = gevent.event.Event()
        self._counter = 0
        self.prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.stoppers: list[Callable[[], None]] = []
        self.status_active = False
        _warm_histogram_tables()

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
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
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
        """The stream's length: no id from a target at or above it is ever allocated for."""
        opts = self.environment.parsed_options
        try:
            schedule = schedule_from_options(opts)
            warmup = getattr(opts, "warmup", 0) or 0
            if warmup:  # the warm-up's events come first, at the same rate
                schedule = dataclasses.replace(schedule, duration_s=schedule.duration_s + warmup,
                                               max_events=None)
            return max(1, schedule.expected_count)
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
        now = time.time_ns()
        self.pending_gauges.append((now // NS, self.recorder.connected, self.prefix))
        self.pending_samples.extend(self.sampler.sample(connections=self.recorder.connected))
        if self._loop is None:
            return
        absorbed = gevent.event.Event()
        inbox = self.inbox

        def take() -> None:
            recorder = self.recorder
            try:
                payload = recorder.take_payload(final=final, now_ns=time.time_ns())
            except Exception:  # a bug here must show in the results, not silently cost the data
                log.exception("handing over what was measured failed")
                recorder.error("harness_internal_error", time.time_ns())
                payload = empty_payload()
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

    def take_pending(self) -> dict[str, Any]:
        """The payload accumulated since the last call, with gauges and samples."""
        payload = self.pending
        payload["gauges"] = self.pending_gauges
        payload["samples"] = self.pending_samples
        self.pending = empty_payload()
        self.pending_gauges = []
        self.pending_samples = []
        return payload


class RunController:
    """The run as seen by the master (or the single local process)."""

    def __init__(self, environment: Environment, mode: str, *,
                 extra_results: Callable[["RunController"], Mapping[str, Any]] | None = None,
                 stream_runner: Callable[["RunController", Schedule], Any] | None = None) -> None:
        self.environment = environment
        self.mode = mode
        self.extra_results = extra_results
        self.stream_runner = stream_runner
        self.aggregator = RunAggregator(mode)
        self.worker_connected: dict[str, int] = {}
        self.worker_failures: dict[str, dict[str, int]] = {}
        self.target: Any = None
        self.target_info: dict[str, Any] = {}
        self.publisher: Publisher | None = None
        self.publisher_outcome: Any = None
        self._greenlet: gevent.Greenlet | None = None
        self.started_ns = 0
        self.results_path: Path | None = None
        self.written = False
        self.sampler = ProcessSampler()
        self.samples: list[Any] = []
        self._sampler_greenlet: gevent.Greenlet | None = None
        self.local: HarnessProcess | None = None
        self.phase = "starting"
        self.live: LiveWriter | None = None
        self.stopping_by_us = False
        self.interrupted = False
        self._interrupt = gevent.event.Event()
        _warm_histogram_tables()

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    # -- target ------------------------------------------------------------
    def ensure_target(self) -> None:
        """Start the built-in target for this mode when no URL was given."""
        opts = self.options
        if opts is None or opts.publish_url or opts.subscribe_url:
            self.target_info = {"name": getattr(opts, "target_name", "") or "external", "kind": "external",
                                "urls": {"ingress": getattr(opts, "publish_url", ""),
                                         self.mode: getattr(opts, "subscribe_url", "")}}
            return
        from targets import BUILTIN_FOR_MODE, get_target, test_knobs

        name = BUILTIN_FOR_MODE[self.mode]
        cls = get_target(name)
        self.target = cls(**test_knobs(name, delay_ms=opts.target_delay_ms, capacity=opts.target_capacity))
        self.target.start()
        opts.publish_url = self.target.ingress_url or ""
        opts.subscribe_url = self.target.egress_url(self.mode) or ""
        opts.stats_url = self.target.stats_url or ""
        opts.target_pids = ",".join(str(p) for p in self.target.pids())
        self.target_info = self.target.describe()
        log.info("started built-in %s target: %s", name, self.target_info.get("urls"))

    def stop_target(self) -> None:
        if self.target is not None:
            self.target.stop()
            self.target = None

    # -- run ---------------------------------------------------------------
    def on_test_start(self) -> None:
        self.aggregator = RunAggregator(self.mode)
        self.worker_connected = {}
        self.worker_failures = {}
        self.started_ns = time.time_ns()
        self.written = False
        self.stopping_by_us = False
        self.interrupted = False
        self._interrupt = gevent.event.Event()
        self.publisher, self.publisher_outcome = None, None  # a re-run from the web UI starts clean
        self.sampler = ProcessSampler()
        if self.local is None:  # a master without users: nobody else samples this process
            self.sampler.add_self("harness")
        self.sampler.add_machine()
        for pid in _pids(self.options.target_pids):
            self.sampler.add("target", pid)
        self.samples = []
        if self._sampler_greenlet is None or self._sampler_greenlet.dead:
            self._sampler_greenlet = gevent.spawn(self._sample_forever)
        self.phase = "connecting"
        if getattr(self.options, "live_file", "") and self.live is None:
            runner = self.environment.runner
            self.live = LiveWriter(self.options.live_file, self.environment, self.mode, self._live_snapshot,
                                   report_lag=6 if isinstance(runner, MasterRunner) else 3)
        if self.live is not None:
            self.live.start()

    def _live_snapshot(self) -> dict[str, Any]:
        """The controller's part of the live file."""
        runner = self.environment.runner
        outcome = self.publisher.outcome if self.publisher is not None else self.publisher_outcome
        published = max(0, outcome.submitted - outcome.warmup_events) if outcome is not None else 0
        return {"phase": self.phase, "connected": self.connected(),
                "subscribers": int(getattr(runner, "target_user_count", 0) or 0), "published": published}

    def _sample_forever(self) -> None:
        while True:
            quiet.wait_for_quiet()
            self.samples.extend(self.sampler.sample())
            gevent.sleep(1.0)

    def on_spawning_complete(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run_stream)

    def connected(self) -> int:
        if self.local is not None:
            return self.local.recorder.connected
        return sum(self.worker_connected.values())

    def connect_failures(self) -> Counter[str]:
        """Failed connection attempts so far, over every process, by kind."""
        total: Counter[str] = Counter()
        if self.local is not None:
            total.update(self.local.recorder.connect_failures)
        for failures in self.worker_failures.values():
            total.update(failures)
        return total

    def _wait_for_subscribers(self) -> None:
        """Wait until every subscriber is connected (at most --settle-timeout), then --settle.

        Hopeless waits end early: when not one subscriber has connected
        :data:`FAIL_FAST_S` seconds after spawning, and connections are
        failing, the run stops with the dominant error named.
        """
        runner = self.environment.runner
        assert runner is not None
        want = runner.target_user_count or runner.user_count
        started = time.monotonic()
        deadline = started + self.options.settle_timeout
        while self.connected() < want and time.monotonic() < deadline and not self.interrupted:
            failures = self.connect_failures()
            if self.connected() == 0 and failures and time.monotonic() - started >= FAIL_FAST_S:
                common = ", ".join(f"{kind} ×{n:,}" for kind, n in failures.most_common(3))
                raise NoSubscribers(f"no subscriber of {want:,} connected within {FAIL_FAST_S:g} s ({common})")
            gevent.sleep(0.1)
        if self.connected() < want:
            log.warning("only %d of %d subscribers connected after %.0f s; publishing anyway",
                        self.connected(), want, self.options.settle_timeout)
        self._interrupt.wait(self.options.settle)

    def _run_stream(self) -> None:
        opts = self.options
        failure: str | None = None
        outcome = None
        try:
            self._wait_for_subscribers()
            schedule = schedule_from_options(opts)
            if self.interrupted:
                return
            self.phase = "streaming"
            if self.stream_runner is not None:
                outcome = self.stream_runner(self, schedule)
            else:
                outcome = self._publish(schedule)
            failure = outcome.failure
            if failure is None and not self.interrupted:
                self.phase = "draining"
                self._interrupt.wait(opts.drain)
        except NoSubscribers as exc:
            log.error("%s", exc)
            failure = str(exc)
        except Exception as exc:  # a bad URL or a dead target must still end in a results file
            log.exception("publisher failed")
            failure = f"publisher failed: {exc}"
        finally:
            self.publisher_outcome = outcome
        if self.interrupted:
            return  # on_test_stop writes the results
        self.stopping_by_us = True
        runner = self.environment.runner
        assert runner is not None
        runner.stop()
        self.write_results(status="ok" if failure is None else "failed", failure=failure)
        if opts.headless and not opts.no_autoquit:
            # Let Locust's own reporting catch up before quitting: the --csv writer
            # rewrites its files every second.
            gevent.spawn_later(2.5 if isinstance(runner, MasterRunner) else 1.5, runner.quit)

    def _publish(self, schedule: Schedule) -> PublishOutcome:
        """Run the open-model publisher in the loop thread; this greenlet waits for it."""
        opts = self.options
        batch = opts.publish_batch or (MAX_BATCH if self.target is not None and self.target.accepts_batches else 1)
        warmup = (dataclasses.replace(schedule, duration_s=opts.warmup, max_events=None)
                  if getattr(opts, "warmup", 0) else None)
        self.publisher = publisher = Publisher(PublisherOptions(
            ingress_url=opts.publish_url, schedule=schedule, stream=opts.stream, payload_bytes=opts.payload_bytes,
            concurrency=opts.publish_concurrency, batch=batch, request_timeout_s=opts.publish_timeout,
            warmup=warmup))
        stream_start = time.time_ns() + 200_000_000
        log.info("publishing %d events (%s, %.1f/s for %.1f s; %d in flight at most, %d per request)",
                 schedule.expected_count, schedule.kind, schedule.rate, schedule.duration_s,
                 opts.publish_concurrency, batch)
        bound = schedule.duration_s + getattr(opts, "warmup", 0) + opts.publish_timeout + 30
        quiet.follow(publisher.quiet_moment_ns)
        try:
            return wait_for_coroutine(lambda: publisher.run(stream_start), timeout=bound,  # type: ignore[no-any-return]
                                      role=PUBLISHER_LOOP)
        finally:
            quiet.forget()

    def on_test_stop(self) -> None:
        """Stopped from outside (UI, --run-time, a signal): stop the stream, write what was measured."""
        if self.stopping_by_us or self.written:
            return
        self.interrupted = True
        self._interrupt.set()
        publisher = self.publisher
        if publisher is not None:
            LoopThread.get(PUBLISHER_LOOP).call(publisher.stop)
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.join(timeout=5.0)  # the publisher winds down (bounded), then the greenlet returns
            self._greenlet.kill(block=False)
        self.write_results(status="interrupted", failure="the test was stopped before the stream and drain ended")

    def write_results(self, *, status: str, failure: str | None) -> None:
        if self.written:
            return
        self.written = True
        self.phase = "writing"
        if self.live is not None:
            self.live.stop()
            self.live = None
        opts = self.options
        ended = time.time_ns()
        outcome = self.publisher_outcome
        if outcome is None and self.publisher is not None:
            outcome = self.publisher.outcome
        log_ = outcome.log if outcome is not None else PublishedLog()
        stream_start = outcome.stream_start_ns if outcome is not None and outcome.stream_start_ns else ended
        extra: dict[str, Any] = {}
        if outcome is not None:
            self._absorb_publisher(outcome)
            extra["publisher"] = {"requests": outcome.requests, "failed_requests": outcome.failed_requests,
                                  "max_lag_ms": round(outcome.max_lag_ns / 1e6, 3), "errors": dict(outcome.errors),
                                  "peak_in_flight": outcome.peak_in_flight}
            if self.publisher is not None:
                extra["publisher"].update(concurrency=self.publisher.options.concurrency,
                                          batch=self.publisher.options.batch)
        if self.extra_results is not None:
            try:
                extra.update(self.extra_results(self))
            except Exception as exc:  # extra figures must never cost the results file
                log.warning("could not collect extra results: %s", exc)
                extra["extra_error"] = str(exc)
        self.aggregator.samples.extend(self.samples)
        self.samples = []
        delivered = self.aggregator.recorder.count("delivery") + self.aggregator.recorder.count("ack")
        if status == "ok" and delivered == 0:
            status, failure = "failed", "nothing was delivered"
        runner = self.environment.runner
        params = {
            "subscribers": getattr(runner, "target_user_count", None) or 0,
            "rate": opts.rate, "duration_s": opts.duration, "schedule": dataclasses.asdict(schedule_from_options(opts)),
            "schedule_kind": opts.schedule, "payload_bytes": opts.payload_bytes, "drain_s": opts.drain,
            "join_grace_s": opts.join_grace,
            "processes": max(1, self.aggregator.processes()),
        }
        warmup_events = getattr(outcome, "warmup_events", 0) if outcome is not None else 0
        if warmup_events:
            params["warmup_s"] = opts.warmup
            params["warmup_events"] = warmup_events
        result = self.aggregator.build(
            log=log_, target=self.target_info, params=params, started_ns=self.started_ns,
            stream_start_ns=stream_start, ended_ns=ended, join_grace_ns=int(opts.join_grace * NS),
            drain_ns=int(opts.drain * NS), status=status, failure=failure, extra=extra, first_id=warmup_events,
        )
        config = redact_config({k: v for k, v in sorted(vars(opts).items()) if _plain(v)})
        document = new_document(
            run_id=Path(self._results_path()).parent.name, config=config, machine=machine_facts(),
            packages=package_versions(), commit=git_commit(), started_ns=self.started_ns, ended_ns=ended,
            modes={self.mode: result}, command=redact_argv(["locust", *sys.argv[1:]]),
        )
        path = results_file.write(document, self._results_path())
        self.results_path = path
        log.info("results written to %s (status %s)", path, status)
        if status == "failed":
            self.environment.process_exit_code = 3

    def _absorb_publisher(self, outcome: PublishOutcome) -> None:
        """The publisher's lag and errors, into the run's histograms and error counts."""
        recorder = self.aggregator.recorder
        for second, lags in sorted(outcome.lag_us.items()):
            recorder.record_many_us("publish_lag", second, lags)
        for second, lags in sorted(outcome.schedule_lag_us.items()):
            recorder.record_many_us("schedule_lag", second, lags)
        for kind, n in outcome.errors.items():
            self.aggregator.errors[f"publish_{kind}"] += n
        self.aggregator.error_series.update(outcome.error_series)

    def _results_path(self) -> Path:
        if self.results_path is not None:
            return self.results_path
        if self.options.results:
            self.results_path = Path(self.options.results)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.results_path = Path("bench-out") / f"{self.mode}-{stamp}" / "results.json"
        return self.results_path


def _warm_histogram_tables() -> None:
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
    now = time.time_ns()
    for column, value in ((intake.sub, 0), (intake.ids, 1), (intake.due, now - 1000), (intake.sent, now - 500),
                          (intake.rx, now)):
        column.append(value)
    intake.fold(Recorder(), FanoutTracker(), Counter(), Counter())


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value))


def _pids(text: str) -> list[int]:
    return [int(p) for p in str(text or "").split(",") if p.strip().isdigit()]


def install(mode: str, *, events: Any = locust_events,
            extra_results: Callable[[RunController], Mapping[str, Any]] | None = None,
            stream_runner: Callable[[RunController, Schedule], Any] | None = None,
            on_ready: Callable[[Environment], None] | None = None) -> None:
    """Register deliverybench's listeners for a scenario of ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")

    @events.init_command_line_parser.add_listener
    def _(parser: Any) -> None:
        add_options(parser, mode)

    @events.init.add_listener
    def on_init(environment: Environment, web_ui: Any = None, **_kw: Any) -> None:
        raise_open_files_limit()
        if web_ui is not None:
            _check_swarm_form(web_ui, environment, mode)
        runner = environment.runner
        harness = controller = None
        if not isinstance(runner, MasterRunner):
            harness = HarnessProcess(environment, mode)
        if not isinstance(runner, WorkerRunner):
            controller = RunController(environment, mode, extra_results=extra_results,
                                       stream_runner=stream_runner)
            controller.local = harness
        environment.deliverybench_harness = harness  # type: ignore[attr-defined]
        environment.deliverybench_controller = controller  # type: ignore[attr-defined]
        if controller is not None and environment.parsed_options is not None:
            controller.ensure_target()
        _wire(environment, harness, controller)
        if on_ready is not None:
            on_ready(environment)


def _check_swarm_form(web_ui: Any, environment: Environment, mode: str) -> None:
    """Refuse a web UI start whose form values the option table rejects, with the same one line."""
    from flask import jsonify, request

    @web_ui.app.before_request
    def check() -> Any:
        if request.method != "POST" or request.path.rstrip("/") != "/swarm":
            return None
        current = vars(environment.parsed_options) if environment.parsed_options is not None else {}
        problem = check_form(request.form, current, mode)
        if problem is None:
            return None
        log.error("web UI: %s", problem)
        return jsonify({"success": False, "message": problem, "host": environment.host})


def _wire(environment: Environment, harness: HarnessProcess | None, controller: RunController | None) -> None:
    ev = environment.events
    runner = environment.runner

    if isinstance(runner, MasterRunner) and controller is not None:
        def on_final(environment: Environment, msg: Any, **_kw: Any) -> None:
            controller.aggregator.add_wire(msg.data)

        def on_status(environment: Environment, msg: Any, **_kw: Any) -> None:
            controller.worker_connected[msg.node_id] = int(msg.data.get("connected", 0))
            controller.worker_failures[msg.node_id] = {str(k): int(v) for k, v in
                                                       (msg.data.get("failed") or {}).items()}

        runner.register_message(FINAL_MESSAGE, on_final)
        runner.register_message(STATUS_MESSAGE, on_status)

        @ev.worker_report.add_listener
        def on_worker_report(client_id: str, data: Mapping[str, Any], **_kw: Any) -> None:
            if "deliverybench" in data:
                controller.aggregator.add_wire(data["deliverybench"])

    if isinstance(runner, WorkerRunner) and harness is not None:
        @ev.report_to_master.add_listener
        def on_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
            data["deliverybench"] = payload_to_wire(harness.take_pending())

    @ev.test_start.add_listener
    def on_test_start(environment: Environment, **_kw: Any) -> None:
        if harness is not None:
            harness.reset()
            harness.start_flusher()
            if isinstance(runner, WorkerRunner):
                harness.status_active = True
                gevent.spawn(_status_loop, runner, harness)
        if controller is not None:
            controller.on_test_start()

    @ev.spawning_complete.add_listener
    def on_spawning_complete(user_count: int, **_kw: Any) -> None:
        if harness is not None or controller is not None:
            settle_gc()  # every session is open now: freeze them out of full collections
        if controller is not None:
            controller.on_spawning_complete()

    @ev.test_stop.add_listener
    def on_test_stop(environment: Environment, **_kw: Any) -> None:
        if harness is not None:
            harness.status_active = False
            harness.stop_flusher()
            harness.run_stoppers()  # senders still in flight end now, each attempt in exactly one class
            gevent.sleep(0.2)  # let close requests from on_stop reach the loop first
            harness.flush(final=True)
            payload = harness.take_pending()
            if isinstance(runner, WorkerRunner):
                runner.send_message(FINAL_MESSAGE, payload_to_wire(payload))
                # Locust's own stats of the last second go now, not at the next 3 s report,
                # so the master's UI and --csv see every delivery before it quits.
                send_stats = getattr(runner, "_send_stats", None)
                if callable(send_stats):
                    send_stats()
            elif controller is not None:
                controller.aggregator.add(payload)
        if controller is not None:
            controller.on_test_stop()

    @ev.quitting.add_listener
    def on_quitting(environment: Environment, **_kw: Any) -> None:
        """Locust is quitting (SIGTERM, Ctrl-C, the UI): stop the test first, so that every
        process hands over what it measured, then write it as interrupted."""
        if controller is not None:
            if not controller.written and controller.started_ns:
                if runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
                    runner.stop()  # fires test_stop: final flushes, worker hand-overs, on_test_stop
                if not controller.written:
                    controller.write_results(status="interrupted", failure="locust quit before the stream ended")
            controller.stop_target()


def _status_loop(runner: WorkerRunner, harness: HarnessProcess) -> None:
    while harness.status_active:
        recorder = harness.recorder
        runner.send_message(STATUS_MESSAGE, {"connected": recorder.connected,
                                             "failed": dict(recorder.connect_failures)})
        gevent.sleep(0.5)

