"""Wiring deliverybench into Locust: options, listeners, messages between master and workers.

A scenario (a real locustfile) calls :func:`install` once with its mode and
defines its user class. Every Locust process that runs users then gets a
:class:`~.process.HarnessProcess`, and the master (or the only process) a
:class:`~.controller.RunController`.

Payloads reach the master through Locust's own channels: ``report_to_master``
every few seconds and one custom message when a worker stops, which Locust
delivers before the worker's ``client_stopped`` -- so by the time
``runner.stop()`` returns on the master, every worker's data has arrived.
The target's URLs go the other way: the master sends them to every worker
when a test starts, before Locust's spawn message, so every user knows
where to subscribe without anything written into Locust's parsed options.

Each worker's clock is measured against the master's the same way, over
Locust's messages, and its receive stamps are mapped onto the master's clock
(:mod:`.clock_sync`); when the test stops, what was measured goes to the
aggregator beside each worker's deliveries.

A worker that dies (killed, out of memory) never sends its final payload,
and its subscribers would silently vanish from the audit. So the master
keeps a :class:`WorkerBook`: each worker's process and subscriber count from
its status messages, and whether its final payload came. A worker Locust
marks ``missing`` (no heartbeat for ~3 s) stops counting as connected at
once; when the test stops, every worker without a final payload is told to
the aggregator as lost, with its subscribers unmeasured.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from locust import events as locust_events
from locust.env import Environment
from locust.runners import STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from targets.start import TargetUrls

from ..adapters.process_tuning import raise_open_files_limit, settle_gc
from ..core.dialect import Dialect
from ..core.options import MODES
from ..core.schedule import Schedule
from .aggregator import WorkerClocks, payload_to_wire
from .clock_sync import ClockFollower, ClockMaster
from .controller import RunController
from .locust_options import add_options, check_form
from .process import HarnessProcess
from .report_file import serve_in_web_ui
from .results_path import taken

__all__ = ["install", "WorkerBook", "FINAL_MESSAGE", "STATUS_MESSAGE", "TARGET_MESSAGE"]

log = logging.getLogger("deliverybench")
#: a worker's last payload, sent when it stops
FINAL_MESSAGE = "deliverybench_final"
#: a worker's connected subscribers and failed connections, twice a second
STATUS_MESSAGE = "deliverybench_status"
#: the target's URLs, from the master to every worker when a test starts
TARGET_MESSAGE = "deliverybench_target"
#: seconds between two looks at Locust's worker states
_WATCH_S = 0.5
#: the longest the master waits, as a test starts, for a worker that connected a moment ago to answer
#: a clock probe (its listeners registered: it can take the target's URLs)
ANSWER_WAIT_S = 10.0
#: the longest the master waits, after Locust's stop, for final payloads still on their way (a worker's
#: last fold of 15,000 sessions takes seconds on a busy machine; a hung worker is settled as lost after it)
FINAL_WAIT_S = 30.0


class WorkerBook:
    """What the master knows of each worker (by Locust's node id) during one test."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new test: forget the last one's workers."""
        #: the worker's process, as its subscribers' names begin (``host:pid``)
        self.process: dict[str, str] = {}
        #: the most subscribers it reported having (its status messages, Locust's user count)
        self.subscribers: dict[str, int] = {}
        #: workers whose final payload arrived
        self.final: set[str] = set()
        #: workers found gone without one, and when (ns)
        self.gone: dict[str, int] = {}
        self.watching = False

    def status(self, node: str, data: Mapping[str, Any]) -> None:
        self.process[node] = str(data.get("process") or node)
        self.note_subscribers(node, int(data.get("subscribers", 0)))

    def note_subscribers(self, node: str, count: int) -> None:
        self.subscribers[node] = max(self.subscribers.get(node, 0), count)

    def look(self, runner: MasterRunner, now_ns: int) -> list[str]:
        """Workers newly found gone: Locust marks them missing, or they left without a final payload."""
        clients = runner.clients
        missing = []
        for node, client in list(clients.items()):
            if client.state == STATE_MISSING:
                missing.append(node)
            else:
                self.note_subscribers(node, client.user_count)
        vanished = [node for node in self.process if node not in clients]
        settled = self.final | self.gone.keys()
        found = [node for node in dict.fromkeys(missing + vanished) if node not in settled]
        for node in found:
            self.gone[node] = now_ns
        return found

    def settle(self, now_ns: int) -> dict[str, int]:
        """Every worker without a final payload, when it was found gone (``now_ns`` if only now)."""
        for node in self.process:
            if node not in self.final:
                self.gone.setdefault(node, now_ns)
        return {node: at for node, at in self.gone.items() if node not in self.final}


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
        runner = environment.runner
        if not isinstance(runner, WorkerRunner):
            _refuse_taken_results(environment)
        raise_open_files_limit()
        if web_ui is not None:
            _check_swarm_form(web_ui, environment, mode)
        harness = controller = None
        if not isinstance(runner, MasterRunner):
            harness = HarnessProcess(environment, mode)
        if not isinstance(runner, WorkerRunner):
            controller = RunController(environment, mode, extra_results=extra_results,
                                       stream_runner=stream_runner)
            controller.local = harness
        environment.deliverybench_harness = harness  # type: ignore[attr-defined]
        environment.deliverybench_controller = controller  # type: ignore[attr-defined]
        if controller is not None and web_ui is not None:
            serve_in_web_ui(web_ui, environment, lambda: controller.report.last)
        if controller is not None and environment.parsed_options is not None:
            controller.ensure_target()
            if harness is not None:  # one process: its users subscribe where the controller attached
                harness.urls = controller.urls
        _wire(environment, harness, controller)
        if on_ready is not None:
            on_ready(environment)


def _refuse_taken_results(environment: Environment) -> None:
    """An explicit ``--results`` that exists, without ``--overwrite``: one line and exit 2, before anything starts."""
    opts = environment.parsed_options
    if opts is None or getattr(opts, "mode_result_only", False):
        return  # run_bench.py holds the folder and names the file
    problem = taken(str(getattr(opts, "results", "") or ""), overwrite=bool(getattr(opts, "overwrite", False)))
    if problem is not None:
        sys.stderr.write(f"locust: error: {problem}\n")
        sys.stderr.flush()
        raise SystemExit(2)  # a BaseException: Locust's event hook lets it through, as a bad option's exit


def _form_results_problem(form: Mapping[str, str], current: Mapping[str, Any]) -> str | None:
    """Why the results path a web UI start would write is taken, or None (the form overrides the options)."""
    if current.get("mode_result_only"):
        return None
    overwrite = form["overwrite"] == "true" if "overwrite" in form else bool(current.get("overwrite"))
    return taken(str(form.get("results", current.get("results")) or ""), overwrite=overwrite)


def _check_swarm_form(web_ui: Any, environment: Environment, mode: str) -> None:
    """Refuse a web UI start whose form values the option table rejects, or whose results file exists,
    with the same one line."""
    from flask import jsonify, request

    @web_ui.app.before_request
    def check() -> Any:
        if request.method != "POST" or request.path.rstrip("/") != "/swarm":
            return None
        current = vars(environment.parsed_options) if environment.parsed_options is not None else {}
        problem = check_form(request.form, current, mode) or _form_results_problem(request.form, current)
        if problem is None:
            return None
        log.error("web UI: %s", problem)
        return jsonify({"success": False, "message": problem, "host": environment.host})


def urls_to_wire(urls: TargetUrls) -> dict[str, Any]:
    """The URLs as msgpack carries them (plain dict, list for the pids)."""
    return {**dataclasses.asdict(urls), "pids": list(urls.pids)}


def urls_from_wire(data: Mapping[str, Any]) -> TargetUrls:
    return TargetUrls(str(data.get("name", "")), ingress=str(data.get("ingress", "")),
                      egress=str(data.get("egress", "")), stats=str(data.get("stats", "")),
                      pids=tuple(int(p) for p in data.get("pids") or ()),
                      accepts_batches=bool(data.get("accepts_batches")),
                      dialect=Dialect.from_dict(data.get("dialect") or {}))


def _wire(environment: Environment, harness: HarnessProcess | None, controller: RunController | None) -> None:
    ev = environment.events
    runner = environment.runner

    book = WorkerBook()
    clocks: ClockMaster | None = None
    if isinstance(runner, MasterRunner) and controller is not None:
        clocks = ClockMaster(runner, correct=lambda: _clock_correction(environment))
        clocks.start()

        def on_final(environment: Environment, msg: Any, **_kw: Any) -> None:
            book.final.add(msg.node_id)
            controller.aggregator.add_wire(msg.data, msg.node_id)

        def on_status(environment: Environment, msg: Any, **_kw: Any) -> None:
            if msg.node_id in book.gone and msg.node_id not in book.final:
                del book.gone[msg.node_id]  # it answers again (Locust: "self-healed")
            book.status(msg.node_id, msg.data)
            controller.worker_connected[msg.node_id] = int(msg.data.get("connected", 0))
            controller.worker_failures[msg.node_id] = {str(k): int(v) for k, v in
                                                       (msg.data.get("failed") or {}).items()}

        runner.register_message(FINAL_MESSAGE, on_final)
        runner.register_message(STATUS_MESSAGE, on_status)

        @ev.worker_report.add_listener
        def on_worker_report(client_id: str, data: Mapping[str, Any], **_kw: Any) -> None:
            if "deliverybench" in data:
                controller.aggregator.add_wire(data["deliverybench"], client_id)

    if isinstance(runner, WorkerRunner) and harness is not None:
        opts = environment.parsed_options
        ClockFollower(runner, process=harness.prefix,
                      master=(str(getattr(opts, "master_host", "") or "127.0.0.1"),
                              int(getattr(opts, "master_port", 0) or 5557)))

        def on_target(environment: Environment, msg: Any, **_kw: Any) -> None:
            harness.urls = urls_from_wire(msg.data)

        # handled in order, before the spawn message that follows it: users never start without URLs
        runner.register_message(TARGET_MESSAGE, on_target)

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
            if isinstance(runner, MasterRunner):  # fired before Locust sends its spawn messages
                if clocks is not None:
                    for node in clocks.await_answers(ANSWER_WAIT_S):
                        log.warning("worker %s has not answered a clock probe within %.0f s", node, ANSWER_WAIT_S)
                runner.send_message(TARGET_MESSAGE, urls_to_wire(controller.urls))
            controller.on_test_start()
            if clocks is not None:
                clocks.new_test(time.time_ns())
            if isinstance(runner, MasterRunner):
                book.reset()
                book.watching = True
                gevent.spawn(_watch_workers, runner, controller, book)

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
            if isinstance(runner, MasterRunner):
                _await_final_payloads(book)
                book.watching = False
                _settle_workers(controller, book)
            if clocks is not None:
                controller.aggregator.worker_clocks = _worker_clocks(clocks, controller, book)
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
            controller.report.wait()  # a plain run's report.html, rendering since its results were written
            controller.stop_target()


def _watch_workers(runner: MasterRunner, controller: RunController, book: WorkerBook) -> None:
    """While the test runs: a worker gone silent no longer counts as connected (the live file shows it)."""
    while book.watching:
        for node in book.look(runner, time.time_ns()):
            controller.worker_connected[node] = 0
            log.error("harness worker %s (%s) stopped answering: its %d subscribers are not measured",
                      node, book.process.get(node, node), book.subscribers.get(node, 0))
        gevent.sleep(_WATCH_S)


def _await_final_payloads(book: WorkerBook, timeout_s: float = FINAL_WAIT_S) -> None:
    """Wait until every worker has handed over its final payload or is found gone.

    Locust's ``stop()`` returns on the master as soon as every worker's routine stats report says 0 users --
    a report a worker sends while its own ``test_stop`` (which folds and sends its final payload) is still
    running. Settling then would count a worker whose fold takes longer than the next report (10,000
    sessions on a busy machine) as dead, and its subscribers as unmeasured. The watcher keeps running
    meanwhile, so a worker that really dies is found gone and ends the wait.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(n not in book.final and n not in book.gone for n in book.process):
        gevent.sleep(0.05)


def _settle_workers(controller: RunController, book: WorkerBook) -> None:
    """Tell the aggregator of every worker that never handed over its final payload."""
    for node, at_ns in book.settle(time.time_ns()).items():
        controller.worker_connected[node] = 0
        controller.aggregator.process_lost(book.process.get(node, node), book.subscribers.get(node, 0), at_ns)


def _clock_correction(environment: Environment) -> bool:
    """Whether workers stamp on the master's clock (``--no-clock-correction``: each keeps its own)."""
    return bool(getattr(environment.parsed_options, "clock_correction", True))


def _worker_clocks(clocks: ClockMaster, controller: RunController, book: WorkerBook) -> WorkerClocks:
    """What was measured of every worker's clock while the stream ran (from its start, or the test's)."""
    outcome = controller.publisher_outcome
    if outcome is None and controller.publisher is not None:
        outcome = controller.publisher.outcome
    since = getattr(outcome, "stream_start_ns", 0) or controller.started_ns or None
    identity = {node: {"process": book.process.get(node, ""), **who} for node, who in clocks.identity.items()}
    return WorkerClocks(corrected=clocks.correct(), clocks=clocks.summaries(since), identity=identity,
                        sessions=dict(book.subscribers))


def _status_loop(runner: WorkerRunner, harness: HarnessProcess) -> None:
    while harness.status_active:
        recorder = harness.recorder
        runner.send_message(STATUS_MESSAGE, {"connected": recorder.connected,
                                             "failed": dict(recorder.connect_failures),
                                             "process": harness.prefix,
                                             "subscribers": recorder.subscriber_count})
        gevent.sleep(0.5)
