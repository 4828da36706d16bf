"""The run as seen by the master (or the only Locust process).

The master has one :class:`RunController`: it starts the target when no URL
was given (or attaches to the URLs it was given), waits until subscribers
are connected, runs the open-model publisher, waits out the drain window,
stops the test, merges every process's payload and writes what was
measured.

What it writes depends on who owns the results document. Under
``run_bench.py`` the parent does: this Locust writes only its mode result,
with the runner's own status (ok, failed or interrupted), and the parent
adds what it learned, decides the status once and builds the document. A
plain ``locust -f`` has no parent: the controller owns the document,
decides the status once and writes a whole results file -- each test into
a place of its own (:mod:`.results_path`), with report.html beside it
(:mod:`.report_file`) -- and says up front when Locust's ``-t`` is shorter
than the run (:mod:`.time_limit`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from locust.runners import MasterRunner

from targets.start import StartedTarget, TargetUrls, start_target

from ..adapters import results_file
from ..adapters.machine import git_commit, machine_facts, package_versions
from ..adapters.publisher import Publisher, PublisherOptions, PublishOutcome
from ..adapters.sampling import ProcessSampler
from ..core.audit import PublishedLog
from ..core.plan import RunPlan, plan_run
from ..core.redact import redact_argv, redact_config
from ..core.results import new_document
from ..core.schedule import Schedule
from ..core.status import assess
from . import quiet, time_limit
from .aggregator import RunAggregator
from .live import LiveWriter
from .loop_thread import LoopThread, wait_for_coroutine
from .process import HarnessProcess, warm_histogram_tables
from .report_file import ReportRenderer
from .results_path import ResultsTaken, claim_results_path

__all__ = ["RunController", "NoSubscribers", "FAIL_FAST_S", "PUBLISHER_LOOP"]

log = logging.getLogger("deliverybench")
NS = 1_000_000_000
#: seconds after spawning with not one subscriber connected (and connections failing) before giving up
FAIL_FAST_S = 5.0
#: the publisher's own event-loop thread (see :class:`~.loop_thread.LoopThread`)
PUBLISHER_LOOP = "publisher"
#: the exit code of a test whose results path is taken: run_bench.py's "bad usage/config"
EXIT_RESULTS_TAKEN = 2


class NoSubscribers(Exception):
    """Not one subscriber could connect; the message names the dominant errors."""


class RunController:
    """The run as seen by the master (or the single local process)."""

    def __init__(self, environment: Environment, mode: str, *,
                 extra_results: Callable[[RunController], Mapping[str, Any]] | None = None,
                 stream_runner: Callable[[RunController, Schedule], Any] | None = None) -> None:
        self.environment = environment
        self.mode = mode
        self.extra_results = extra_results
        self.stream_runner = stream_runner
        self.aggregator = RunAggregator(mode)
        self.worker_connected: dict[str, int] = {}
        self.worker_failures: dict[str, dict[str, int]] = {}
        self.started: StartedTarget | None = None
        self.publisher: Publisher | None = None
        self.publisher_outcome: Any = None
        self._greenlet: gevent.Greenlet[..., Any] | None = None
        self._plan: RunPlan | None = None
        self.started_ns = 0
        self.results_path: Path | None = None
        self.written = False
        self.sampler = ProcessSampler()
        self.samples: list[Any] = []
        self._sampler_greenlet: gevent.Greenlet[..., Any] | None = None
        self.local: HarnessProcess | None = None
        self.phase = "starting"
        self.live: LiveWriter | None = None
        self.stopping_by_us = False
        self.interrupted = False
        self._interrupt = gevent.event.Event()
        #: renders report.html beside a plain locust -f test's results
        self.report = ReportRenderer(environment)
        #: the exit code this controller set for the current test (a later test clears it)
        self._exit_code: int | None = None
        warm_histogram_tables()

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    # -- target ------------------------------------------------------------
    @property
    def urls(self) -> TargetUrls:
        """The target's URLs as this controller got them (empty before :meth:`ensure_target`)."""
        return self.started.urls if self.started is not None else TargetUrls("external")

    def ensure_target(self) -> None:
        """Start the built-in target for this mode when no URL was given; else attach to the URLs."""
        self.started = start_target(self.mode, vars(self.options))
        if self.started.target is not None:
            log.info("started built-in %s target: %s", self.urls.name, self.started.describe().get("urls"))

    def stop_target(self) -> None:
        if self.started is not None:
            self.started.stop()  # safe twice: a target's stop() is

    def plan(self) -> RunPlan:
        """This test's run plan, from the options in force when it started (the web UI may change them)."""
        if self._plan is None:
            self._plan = plan_run(vars(self.options), accepts_batches=self.urls.accepts_batches)
        return self._plan

    # -- run ---------------------------------------------------------------
    def on_test_start(self) -> None:
        self.aggregator = RunAggregator(self.mode)
        self.worker_connected = {}
        self.worker_failures = {}
        self.started_ns = time.time_ns()
        self.written = False
        self.results_path = None  # every test writes a new results file: a second UI test never overwrites one
        if self._exit_code is not None and self.environment.process_exit_code == self._exit_code:
            self.environment.process_exit_code = None
        self._exit_code = None
        self.stopping_by_us = False
        self.interrupted = False
        self._interrupt = gevent.event.Event()
        self._plan = None
        self.publisher, self.publisher_outcome = None, None  # a re-run from the web UI starts clean
        self.sampler = ProcessSampler()
        if self.local is None:  # a master without users: nobody else samples this process
            self.sampler.add_self("harness")
        self.sampler.add_machine()
        for pid in self.urls.pids:
            self.sampler.add("target", pid)
        self.samples = []
        if self._sampler_greenlet is None or self._sampler_greenlet.dead:
            self._sampler_greenlet = gevent.spawn(self._sample_forever)
        self.phase = "connecting"
        self._claim_results_path()
        too_short = time_limit.warning(vars(self.options))
        if too_short is not None:
            log.warning("%s", too_short)
        if getattr(self.options, "live_file", "") and self.live is None:
            runner = self.environment.runner
            self.live = LiveWriter(self.options.live_file, self.environment, self.mode, self._live_snapshot,
                                   report_lag=6 if isinstance(runner, MasterRunner) else 3)
        if self.live is not None:
            self.live.start()

    def _claim_results_path(self) -> None:
        """This test's results path, claimed now; a taken one refuses the test, which then writes nothing."""
        opts = self.options
        try:
            self.results_path = claim_results_path(self.mode, results=opts.results, overwrite=opts.overwrite,
                                                   given_by_parent=opts.mode_result_only)
        except (ResultsTaken, results_file.ResultsWriteError) as exc:
            log.error("%s; this test is stopped and writes nothing", exc)
            self.written = True
            self._set_exit_code(EXIT_RESULTS_TAKEN if isinstance(exc, ResultsTaken)
                                else results_file.EXIT_NO_SPACE if exc.no_space else results_file.EXIT_NOT_WRITTEN)
            runner = self.environment.runner
            assert runner is not None
            gevent.spawn(runner.quit if opts.headless else runner.stop)

    def _set_exit_code(self, code: int) -> None:
        self.environment.process_exit_code = self._exit_code = code

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
            plan = self.plan()
            if self.interrupted:
                return
            self.phase = "streaming"
            if self.stream_runner is not None:
                outcome = self.stream_runner(self, plan.schedule)
            else:
                outcome = self._publish(plan)
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
            # Let Locust's own reporting catch up before quitting (the --csv writer rewrites its files every
            # second), and the report be written.
            gevent.spawn(self._quit_after, 2.5 if isinstance(runner, MasterRunner) else 1.5)

    def _quit_after(self, seconds: float) -> None:
        """Quit Locust ``seconds`` from now, or when the report is written if that takes longer."""
        started = time.monotonic()
        self.report.wait()
        gevent.sleep(max(0.0, seconds - (time.monotonic() - started)))
        runner = self.environment.runner
        assert runner is not None
        runner.quit()

    def _publish(self, plan: RunPlan) -> PublishOutcome:
        """Run the open-model publisher in the loop thread; this greenlet waits for it."""
        opts = self.options
        schedule = plan.schedule
        self.publisher = publisher = Publisher(PublisherOptions(
            ingress_url=self.urls.ingress, schedule=schedule, stream=opts.stream, payload_bytes=opts.payload_bytes,
            concurrency=opts.publish_concurrency, batch=plan.batch, request_timeout_s=opts.publish_timeout,
            warmup=plan.warmup, dialect=self.urls.dialect))
        stream_start = time.time_ns() + 200_000_000
        log.info("publishing %d events (%s, %.1f/s for %.1f s; %d in flight at most, %d per request)",
                 schedule.expected_count, schedule.kind, schedule.rate, schedule.duration_s,
                 publisher.options.concurrency, publisher.options.batch)
        quiet.follow(publisher.quiet_moment_ns)
        try:
            return wait_for_coroutine(lambda: publisher.run(stream_start),  # type: ignore[no-any-return]
                                      timeout=plan.publish_wait_s, role=PUBLISHER_LOOP)
        finally:
            quiet.forget()

    def on_test_stop(self) -> None:
        """Stopped from outside (UI, --run-time, a signal): stop the stream, write what was measured."""
        if self.stopping_by_us or self.written:
            return
        values = vars(self.options)
        cut_short = time_limit.cut_short(values, (time.time_ns() - self.started_ns) / NS)
        self.interrupted = True
        self._interrupt.set()
        publisher = self.publisher
        if publisher is not None:
            LoopThread.get(PUBLISHER_LOOP).call(publisher.stop)
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.join(timeout=5.0)  # the publisher winds down (bounded), then the greenlet returns
            self._greenlet.kill(block=False)
        if not cut_short:
            self.write_results(status="interrupted", failure="the test was stopped before the stream and drain ended")
            return
        failure = time_limit.cut_short_failure(values)
        log.error("%s: the results are interrupted (exit %d)", failure, time_limit.EXIT_CUT_SHORT)
        self.write_results(status="interrupted", failure=failure)
        if self.environment.process_exit_code is None:  # a failed write's code says more
            self._set_exit_code(time_limit.EXIT_CUT_SHORT)

    def write_results(self, *, status: str, failure: str | None) -> None:
        """Write what was measured, once: the mode result for a parent, or the whole document."""
        if self.written:
            return
        self.written = True
        self.phase = "writing"
        if self.live is not None:
            self.live.stop()
            self.live = None
        ended = time.time_ns()
        result = self._mode_result(status=status, failure=failure, ended_ns=ended)
        locust_options = redact_config({k: v for k, v in sorted(vars(self.options).items()) if _plain(v)})
        try:
            if self.options.mode_result_only:
                # the runner's status as it stands: run_bench.py adds what it learned and decides once
                path = results_file.write_mode_result(
                    results_file.ModeResultFile(mode=self.mode, result=result, locust_options=locust_options),
                    self._results_path())
            else:
                result["status"], result["status_reasons"] = assess(result)
                document = new_document(
                    run_id=Path(self._results_path()).parent.name, config=locust_options, machine=machine_facts(),
                    packages=package_versions(), commit=git_commit(), started_ns=self.started_ns, ended_ns=ended,
                    modes={self.mode: result}, command=redact_argv(["locust", *sys.argv[1:]]),
                )
                path = results_file.write(document, self._results_path())
        except results_file.ResultsWriteError as exc:
            # Said in the exit code too (this log may be on the same full disk); the caller still quits.
            log.error("%s", exc)
            self._set_exit_code(results_file.EXIT_NO_SPACE if exc.no_space else results_file.EXIT_NOT_WRITTEN)
            return
        self.results_path = path
        log.info("results written to %s (status %s)", path, result["status"])
        if result["status"] == "failed":
            self._set_exit_code(3)
        if self.options.report and not self.options.mode_result_only:  # run_bench.py renders its own, once
            self.report.start(path)

    def _mode_result(self, *, status: str, failure: str | None, ended_ns: int) -> dict[str, Any]:
        """This mode's result with the runner's status: ok, failed (nothing delivered) or interrupted."""
        opts = self.options
        outcome = self.publisher_outcome
        if outcome is None and self.publisher is not None:
            outcome = self.publisher.outcome
        log_ = outcome.log if outcome is not None else PublishedLog()
        stream_start = outcome.stream_start_ns if outcome is not None and outcome.stream_start_ns else ended_ns
        extra: dict[str, Any] = {}
        if outcome is not None:
            self._absorb_publisher(outcome)
            extra["publisher"] = {"requests": outcome.requests, "failed_requests": outcome.failed_requests,
                                  "max_lag_ms": round(outcome.max_lag_ns / 1e6, 3), "errors": dict(outcome.errors),
                                  "peak_in_flight": outcome.peak_in_flight}
            if outcome.connection_failures:
                extra["publisher"]["connection_failures"] = dict(outcome.connection_failures)
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
        first_undecodable = self.aggregator.undecodable
        if first_undecodable is not None:
            extra["first_undecodable"] = {"sample": first_undecodable[0], "expected": first_undecodable[1]}
        if status == "ok" and delivered == 0:
            status, failure = "failed", "nothing was delivered"
            if first_undecodable is not None:
                failure += f": first message {first_undecodable[0]} (expected {first_undecodable[1]})"
        runner = self.environment.runner
        params = {
            "subscribers": getattr(runner, "target_user_count", None) or 0,
            "rate": opts.rate, "duration_s": opts.duration, "schedule": dataclasses.asdict(self.plan().schedule),
            "schedule_kind": opts.schedule, "payload_bytes": opts.payload_bytes, "drain_s": opts.drain,
            "join_grace_s": opts.join_grace,
            "processes": max(1, self.aggregator.processes()),
        }
        warmup_events = getattr(outcome, "warmup_events", 0) if outcome is not None else 0
        if warmup_events:
            params["warmup_s"] = opts.warmup
            params["warmup_events"] = warmup_events
        target = self.started.describe() if self.started is not None else {}
        return self.aggregator.build(
            log=log_, target=target, params=params, started_ns=self.started_ns,
            stream_start_ns=stream_start, ended_ns=ended_ns, join_grace_ns=int(opts.join_grace * NS),
            drain_ns=int(opts.drain * NS), status=status, failure=failure, extra=extra, first_id=warmup_events,
        )

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
        """The path claimed when the test started (claimed now if it was not: never an old one)."""
        if self.results_path is None:
            opts = self.options
            self.results_path = claim_results_path(self.mode, results=opts.results, overwrite=True,
                                                   given_by_parent=opts.mode_result_only)
        return self.results_path


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value))
