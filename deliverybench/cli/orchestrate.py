"""Running each delivery mode in turn: target, Locust, results.

For every mode the orchestrator starts a fresh target (or attaches to the
external URLs), runs the mode's locustfile as a real ``locust`` subprocess
(``--headless``, with ``--processes`` when asked) so the same scenarios work
by hand, and reads the mode result the Locust master wrote. This process
owns the results document: it adds what only it learned (an interrupt, an
early stop, a target no longer healthy) to each mode result, decides each
run's status once (:func:`~deliverybench.core.status.assess`), and builds
the document once around every mode. A mode that fails still yields a mode
result with ``status: failed`` and the reason, and the other modes still run
-- except when its Locust could not write its results (a full disk): then
the modes after it are not started, as they would fail the same way, and
the caller is told (:attr:`Measured.write_error`).
"""

from __future__ import annotations

import json
import os
import signal
import site
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scenarios
from scenarios import LOCUSTFILES, locustfile
from targets._binary import free_port
from targets.start import StartedTarget, TargetUrls, start_target

from ..adapters import results_file
from ..adapters.children import child_options, stop_group
from ..adapters.machine import git_commit, machine_facts, package_versions, route_address
from ..core.audit import AuditTotals
from ..core.dialect import DIALECT_DESTS
from ..core.options import ENV_PREFIX, OPTIONS, by_dest, locust_argv
from ..core.plan import plan_run
from ..core.recording import Recorder
from ..core.redact import redact_argv, redact_config
from ..core.repeats import merge_repeats
from ..core.results import build_mode_result, new_document
from ..core.status import assess
from .config import RunConfig
from .interrupt import Interrupt
from .progress import Progress

__all__ = ["ModeRun", "Measured", "run_modes", "SCENARIOS", "PACKAGES_ROOT", "WORKERS_WAIT_S", "worker_command",
           "this_machine_address"]

#: each mode's locustfile, found through the ``scenarios`` package: in a checkout or an installed copy alike
SCENARIOS = {mode: locustfile(mode) for mode in LOCUSTFILES}
#: the longest a master started with --expect-workers waits for its workers to join
WORKERS_WAIT_S = 600.0
#: the folder our packages were imported from: a checkout, or site-packages when pip-installed
PACKAGES_ROOT = Path(scenarios.__file__).resolve().parents[1]


@dataclass
class ModeRun:
    """One run of one mode: its files, Locust's exit code, the mode result with its status decided,
    Locust's own options (None when no Locust reported them), and why its results could not be
    written, when its Locust said so."""

    mode: str
    results_path: Path
    log_path: Path
    returncode: int | None
    result: dict[str, Any]
    locust_options: dict[str, Any] | None = None
    write_error: results_file.ResultsWriteError | None = None


@dataclass
class Measured:
    """Every mode's result in one document, and the first results write that failed (the run's cause)."""

    document: dict[str, Any]
    write_error: results_file.ResultsWriteError | None = None


def _locust_command(config: RunConfig, mode: str, urls: TargetUrls, results: Path, live: Path) -> list[str]:
    """``locust -f <scenario> --headless`` with every option of the table handed on.

    The values come from :func:`~deliverybench.core.options.locust_argv`
    (one place for every option); the URLs, pids and results path are the
    target's, which this run started or attached to; the time bound and the
    batch size are the run plan's.
    """
    plan = plan_run(config.values, accepts_batches=urls.accepts_batches)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(SCENARIOS[mode]), "--headless",
        "-t", f"{int(plan.locust_bound_s)}s", "--stop-timeout", "5", "--only-summary", "--loglevel", "INFO",
        "--exit-code-on-error", "0",
        *locust_argv(config.values, mode),
        "--publish-url", urls.ingress, "--subscribe-url", urls.egress,
        "--stats-url", urls.stats, "--target-pids", ",".join(str(p) for p in urls.pids),
        "--target-name", urls.name, "--results", str(results), "--live-file", str(live),
        "--mode-result-only",  # this process builds the document: Locust writes only its mode result
    ]
    for name, value in urls.dialect.to_dict().items():  # how the target speaks: the target's, or the options'
        option = by_dest(DIALECT_DESTS[name])
        if mode in option.modes:
            cmd += [f"--{option.name}", value]
    if mode in by_dest("publish_batch").modes:
        cmd += ["--publish-batch", str(plan.batch)]
    workers = int(config.values.get("expect_workers") or 0)
    if workers:
        # workers on other machines: a master reachable from them, waiting (bounded) until all have joined
        port = str(free_port(""))
        cmd += ["--master", "--expect-workers", str(workers), "--expect-workers-max-wait", str(int(WORKERS_WAIT_S)),
                "--master-bind-host", "*", "--master-bind-port", port]
    elif config.processes > 1:
        # A private master port on loopback: with Locust's default (*:5557) the workers of
        # another run on the same machine could join this master.
        port = str(free_port())
        cmd += ["--processes", str(config.processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    return cmd + list(config.extra_locust_args)


def this_machine_address() -> str:
    """The address other machines most likely reach this one at (its default route's), else its host name."""
    return route_address("192.0.2.1", 9) or socket.gethostname()  # TEST-NET-1: any routable address will do


def worker_command(cmd: Sequence[str], mode: str) -> str | None:
    """The command to run on each load machine for a master started with ``--expect-workers`` (None otherwise)."""
    if "--expect-workers" not in cmd:
        return None
    port = cmd[list(cmd).index("--master-bind-port") + 1]
    return (f"locust -f {SCENARIOS[mode]} --worker --master-host {this_machine_address()} --master-port {port}")


def _failed_result(config: RunConfig, mode: str, failure: str, started_ns: int,
                   status: str = "failed") -> dict[str, Any]:
    """The result of a mode that measured nothing, with the runner's status (its verdict comes later)."""
    return build_mode_result(
        mode=mode, target={"name": config.target}, params={"subscribers": config.subscribers},
        recorder=Recorder(), audit_totals=AuditTotals(), published_due_ns=[], published_ok=[],
        stream_start_ns=started_ns, started_ns=started_ns, ended_ns=time.time_ns(), status=status,
        failure=failure,
    )


def _decided(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its status decided, once per run: the one call to assess."""
    result["status"], result["status_reasons"] = assess(result)
    return result


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


#: after asking Locust to stop, how long it has to write what it measured
STOP_GRACE_S = 20.0


#: a watcher reads the live file each second; a reason it returns stops the mode early
Watch = Callable[[dict[str, Any]], "str | None"]


def _read_live(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run_locust(cmd: list[str], run_dir: Path, log_path: Path, env: dict[str, str], timeout: float,
                interrupt: Interrupt | None, live_path: Path | None = None,
                watch: Watch | None = None) -> tuple[int | None, str | None]:
    """Run one Locust to the end, or stop it (bounded) when interrupted or when ``watch`` says so.

    Returns its exit code (None: timed out) and the watcher's reason if it
    stopped the mode early. Nothing of the Locust survives.

    Raises:
        ResultsWriteError: its log cannot be created (the Locust is not started).
    """
    try:
        log = open(log_path, "w")
    except OSError as exc:  # the folder cannot take even the log: a full disk (or no inode left)
        raise results_file.write_error(exc, log_path) from None
    with log:
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, **child_options())
        deadline = time.monotonic() + timeout
        next_look = time.monotonic() + 1.0
        try:
            while proc.poll() is None:
                if interrupt is not None and interrupt.signal is not None:
                    # Locust stops the stream, writes the results as interrupted, and exits.
                    return stop_group(proc, sig=signal.SIGTERM,
                                      grace_s=0.0 if interrupt.urgent else STOP_GRACE_S), None
                if time.monotonic() > deadline:
                    stop_group(proc, sig=signal.SIGTERM, grace_s=STOP_GRACE_S)
                    return None, None
                if watch is not None and live_path is not None and time.monotonic() >= next_look:
                    next_look += 1.0
                    live = _read_live(live_path)
                    reason = watch(live) if live is not None else None
                    if reason:
                        return stop_group(proc, sig=signal.SIGTERM, grace_s=STOP_GRACE_S), reason
                time.sleep(0.1)
            return proc.returncode, None
        finally:
            stop_group(proc, grace_s=0.0)  # stragglers of its group (forked workers, servers it started)


def run_mode(config: RunConfig, mode: str, run_dir: Path, say: Callable[[str], None],
             interrupt: Interrupt | None = None, *, tag: str = "", watch: Watch | None = None) -> ModeRun:
    """One run of ``mode``: a fresh target (or the external one) and a Locust; ``tag`` names its files.

    ``watch`` sees the live file every second (progress lines, a sweep's
    early stop); a reason it returns stops the mode, which is kept as
    ``interrupted`` with ``stopped_early`` set to that reason.
    """
    run_dir = run_dir.resolve()  # Locust runs with run_dir as its cwd: paths it is given must not be relative
    results = run_dir / f"{mode}{tag}.results.json"
    log_path = run_dir / f"{mode}{tag}.locust.log"
    live_path = run_dir / f"{mode}{tag}.live.json"
    started = time.time_ns()
    target: StartedTarget | None = None
    try:
        from targets import TargetError

        try:
            target = start_target(mode, config.values)
        except TargetError as exc:
            return ModeRun(mode, results, log_path, None, _decided(_failed_result(config, mode, f"target: {exc}",
                                                                                  started)))
        if interrupt is not None and interrupt.signal is not None:
            return ModeRun(mode, results, log_path, None, _decided(_failed_result(
                config, mode, f"interrupted by {interrupt.signal.name} before the mode started", started,
                status="interrupted")))
        cmd = _locust_command(config, mode, target.urls, results, live_path)
        timeout = plan_run(config.values, accepts_batches=target.urls.accepts_batches).parent_timeout_s
        on_workers = worker_command(cmd, mode)
        if on_workers is not None:
            timeout += WORKERS_WAIT_S
            say(f"{mode}: waiting for {config.values.get('expect_workers')} Locust worker(s); on each load machine "
                f"(a checkout of the same commit) run:\n    {on_workers}")
        try:
            code, stopped_early = _run_locust(cmd, run_dir, log_path, _child_env(config, mode), timeout, interrupt,
                                              live_path, watch)
        except results_file.ResultsWriteError as exc:
            return ModeRun(mode, results, log_path, None, _decided(_failed_result(config, mode, str(exc), started)),
                           write_error=exc)
        signal_name = interrupt.signal.name if interrupt is not None and interrupt.signal is not None else None
        if not results.is_file():
            unwritten = _write_error(code, results, log_path)
            why = "timed out" if code is None else f"exited with code {code}"
            if signal_name:
                why = f"was interrupted ({signal_name})"
            failure = (str(unwritten) if unwritten is not None
                       else f"locust {why} without writing results; see {log_path.name}: {_tail(log_path)}")
            return ModeRun(mode, results, log_path, code, _decided(_failed_result(
                config, mode, failure, started, status="interrupted" if signal_name else "failed")),
                write_error=unwritten)
        try:
            found = results_file.read_mode_result(results)
        except results_file.ResultsFileError as exc:
            return ModeRun(mode, results, log_path, code, _decided(_failed_result(config, mode, str(exc), started)))
        result = dict(found.result)
        # this process started (or attached to) the target: its Locust, handed only URLs, could only call it external
        result["target"] = target.describe()
        _add_what_the_parent_learned(result, interrupted_by=signal_name, stopped_early=stopped_early,
                                     target_healthy=target.target is None or target.target.health())
        return ModeRun(mode, results, log_path, code, _decided(result), dict(found.locust_options))
    finally:
        if target is not None:
            target.stop()


def _write_error(code: int | None, results: Path, log_path: Path) -> results_file.ResultsWriteError | None:
    """Why the Locust could not write ``results``, as its exit code says (its log may be on the full disk)."""
    if code == results_file.EXIT_NO_SPACE:
        return results_file.ResultsWriteError(results, results_file.NO_SPACE)
    if code == results_file.EXIT_NOT_WRITTEN:
        return results_file.ResultsWriteError(results, f"the cause is in {log_path.name}")
    return None


def _child_env(config: RunConfig, mode: str) -> dict[str, str]:
    """The environment of the mode's Locust: ours without DELIVERYBENCH_* options, plus secrets and the owner."""
    # The handed-on flags are the one truth: the user's DELIVERYBENCH_* variables
    # must not reach Locust behind them (only the secret travels this way).
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env = {**env, "PYTHONPATH": _child_pythonpath()}
    for option in OPTIONS:  # secrets go by environment: a command line shows in `ps`
        if option.handoff == "env" and mode in option.modes and getattr(config, option.dest):
            env[option.env_var] = str(getattr(config, option.dest))
    return env


def _child_pythonpath() -> str:
    """The Locust child's PYTHONPATH: the folder our packages came from, then ours -- that folder left out
    when the child's interpreter searches it anyway.

    A checkout run as ``python run_bench.py`` was never installed, so the
    child needs the checkout on its path. An installed copy's folder is
    site-packages, which PYTHONPATH would put ahead of the standard library.
    """
    site_dirs = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    ours = [] if PACKAGES_ROOT in site_dirs else [str(PACKAGES_ROOT)]
    return os.pathsep.join(filter(None, [*ours, os.environ.get("PYTHONPATH")]))


def _add_what_the_parent_learned(result: dict[str, Any], *, interrupted_by: str | None, stopped_early: str | None,
                                 target_healthy: bool) -> None:
    """What Locust could not know, as inputs to the one status decision: an interrupt, an early stop, the
    target's health after the run. A mode that measured nothing stays failed."""
    if interrupted_by and result.get("status") != "failed":
        result["status"] = "interrupted"
        result["failure"] = result.get("failure") or f"interrupted by {interrupted_by}"
    elif stopped_early and result.get("status") != "failed":
        result["status"] = "interrupted"
        result["stopped_early"] = stopped_early
        result["failure"] = f"stopped early: {stopped_early}"
    if not target_healthy:
        result.setdefault("warnings", []).append("target was not healthy after the run")


def _watcher(mode: str, progress: Progress | None,
             stop_when: Callable[[str, dict[str, Any]], str | None] | None) -> Watch | None:
    if progress is None and stop_when is None:
        return None

    def watch(live: dict[str, Any]) -> str | None:
        if progress is not None:
            progress.live(mode, live)
        return stop_when(mode, live) if stop_when is not None else None
    return watch


def _headline(result: dict[str, Any]) -> str:
    summary = (result.get("summary") or {}).get("ack" if result.get("mode") == "burst" else "delivery") or {}
    p99 = summary.get("p99")
    return "" if p99 is None else f", p99 {p99:,.2f} ms, lost {int((result.get('audit') or {}).get('lost', 0)):,}"


def run_modes(config: RunConfig, run_dir: Path, say: Callable[[str], None],
              interrupt: Interrupt | None = None, *, progress: Progress | None = None,
              stop_when: Callable[[str, dict[str, Any]], str | None] | None = None,
              command: Sequence[str] = ("run_bench.py",)) -> Measured:
    """Run every configured mode and return the results document, built once around them.

    After an interrupt the mode under way is stopped and kept (``interrupted``)
    and the modes after it are not started; likewise after a Locust could not
    write its results. ``progress`` shows each mode's live file;
    ``stop_when(mode, live)`` may stop a mode early with a reason.
    """
    results: dict[str, dict[str, Any]] = {}
    locust_options: dict[str, Any] | None = None
    write_error: results_file.ResultsWriteError | None = None
    for mode in config.modes:
        if interrupt is not None and interrupt.signal is not None:
            say(f"- {mode}: not started ({interrupt.signal.name})")
            results[mode] = _decided(_failed_result(config, mode, f"not started: interrupted by "
                                                    f"{interrupt.signal.name}", time.time_ns(), status="interrupted"))
            continue
        if write_error is not None:
            say(f"- {mode}: not started ({write_error.reason})")
            results[mode] = _decided(_failed_result(config, mode, f"not started: {write_error}", time.time_ns()))
            continue
        say(f"- {mode}: {config.subscribers} subscribers, {config.rate:g} events/s for {config.duration:g} s"
            + (f", {config.repeats} repeats" if config.repeats > 1 else "") + " ...")
        runs = []
        for repeat in range(1, config.repeats + 1):
            if repeat > 1 and (write_error is not None or interrupt is not None and interrupt.signal is not None):
                break
            if progress is not None:
                progress.status(f"{mode}: starting target" + (f" (repeat {repeat} of {config.repeats})"
                                                               if config.repeats > 1 else ""), phase="starting")
            run = run_mode(config, mode, run_dir, say, interrupt, tag=f".r{repeat}" if config.repeats > 1 else "",
                           watch=_watcher(mode, progress, stop_when))
            if progress is not None:
                progress.clear()
            runs.append(run)
            write_error = write_error or run.write_error
            if locust_options is None:
                locust_options = run.locust_options
            if config.repeats > 1:
                say(f"  {mode} repeat {repeat}: {run.result['status']}" + _headline(run.result))
        result = merge_repeats([r.result for r in runs])
        if result["status"] != "ok":
            why = result.get("failure") or "; ".join(result.get("status_reasons") or [])
            say(f"  {mode}: {result['status']}: {why}")
        results[mode] = result
    return Measured(new_document(
        run_id=run_dir.name, config=redact_config({**config.to_dict(), "locust": locust_options or {}}),
        machine=machine_facts(), packages=package_versions(), commit=git_commit(),
        started_ns=min(int(r["started_ns"]) for r in results.values()),
        ended_ns=max(int(r["ended_ns"]) for r in results.values()),
        modes=results, command=redact_argv([*command, *sys.argv[1:]])), write_error)
