"""Running each delivery mode in turn: target, Locust, results.

For every mode the orchestrator starts a fresh target (or attaches to the
external URLs), runs the mode's locustfile as a real ``locust`` subprocess
(``--headless``, with ``--processes`` when asked) so the same scenarios work
by hand, reads the results file the Locust master wrote, and finally merges
the modes into one document. A mode that fails still yields a mode result
with ``status: failed`` and the reason, and the other modes still run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..adapters import results_file
from ..adapters.children import child_options, stop_group
from ..adapters.machine import git_commit, machine_facts, package_versions
from ..core.audit import AuditTotals
from ..adapters.publisher import MAX_BATCH
from ..core.options import ENV_PREFIX, OPTIONS, by_dest, locust_argv
from ..core.recording import Recorder
from ..core.redact import redact_argv, redact_config
from ..core.repeats import merge_repeats
from ..core.results import build_mode_result, merge_documents, new_document
from ..core.status import assess
from .config import RunConfig
from .interrupt import Interrupt
from .progress import Progress

__all__ = ["ModeRun", "run_modes", "SCENARIOS", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "push": REPO_ROOT / "scenarios" / "ws_push.py",
    "callback": REPO_ROOT / "scenarios" / "webhook_callback.py",
    "poll": REPO_ROOT / "scenarios" / "poll.py",
    "burst": REPO_ROOT / "scenarios" / "webhook_burst.py",
}
@dataclass
class ModeRun:
    mode: str
    results_path: Path
    log_path: Path
    returncode: int | None
    document: dict[str, Any]


def _locust_command(config: RunConfig, mode: str, urls: dict[str, str], results: Path, live: Path) -> list[str]:
    """``locust -f <scenario> --headless`` with every option of the table handed on.

    The values come from :func:`~deliverybench.core.options.locust_argv`
    (one place for every option); the URLs, pids and results path are the
    target's, which this run started or attached to.
    """
    bound_s = config.settle + config.duration + config.drain + 120 + config.subscribers / config.spawn_rate
    cmd = [
        sys.executable, "-m", "locust", "-f", str(SCENARIOS[mode]), "--headless",
        "-t", f"{int(bound_s)}s", "--stop-timeout", "5", "--only-summary", "--loglevel", "INFO",
        "--exit-code-on-error", "0",
        *locust_argv(config.values, mode),
        "--publish-url", urls.get("ingress", ""), "--subscribe-url", urls.get(mode, ""),
        "--stats-url", urls.get("stats", ""), "--target-pids", urls.get("pids", ""),
        "--target-name", urls.get("name", ""), "--results", str(results), "--live-file", str(live),
    ]
    if mode in by_dest("publish_batch").modes:
        batch = config.publish_batch or (MAX_BATCH if urls.get("batches") == "yes" else 1)
        cmd += ["--publish-batch", str(batch)]
    if config.processes > 1:
        # A private master port on loopback: with Locust's default (*:5557) the workers of
        # another run on the same machine could join this master.
        port = str(_free_port())
        cmd += ["--processes", str(config.processes), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    return cmd + list(config.extra_locust_args)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_target(config: RunConfig, mode: str) -> tuple[Any, dict[str, str]]:
    """Start (or describe) the target for ``mode``; returns (target or None, urls)."""
    if mode == "burst" and config.consumer_url:
        from targets.base import tcp_reachable

        problem = tcp_reachable(config.consumer_url)
        if problem is not None:
            from targets import TargetError

            raise TargetError(f"cannot reach consumer {config.consumer_url}: {problem}")
        return None, {"burst": config.consumer_url, "name": "consumer"}
    if config.target == "relay" and mode != "burst":
        from targets.relay import RelayTarget

        egress = {"push": config.subscribe_url, "poll": config.poll_url, "callback": config.callback_url}[mode]
        relay = RelayTarget(publish_url=config.publish_url,
                            subscribe_url=config.subscribe_url or "ws://unused.invalid/",
                            poll_url=config.poll_url or None)
        if mode == "push":
            relay.start()
        return None, {"ingress": config.publish_url, mode: egress, "name": "relay"}
    from targets import BUILTIN_FOR_MODE, get_target, test_knobs

    name = BUILTIN_FOR_MODE[mode] if config.target in ("builtin", "relay") else config.target
    cls = get_target(name)
    kwargs: dict[str, Any] = test_knobs(name, delay_ms=config.target_delay_ms, capacity=config.target_capacity)
    if name == "callback" and config.webhook_secret:
        kwargs["secret"] = config.webhook_secret
    target = cls(**kwargs)
    target.start()
    urls = {"ingress": target.ingress_url or "", mode: target.egress_url(mode) or "",
            "stats": target.stats_url or "", "pids": ",".join(str(p) for p in target.pids()),
            "name": name, "batches": "yes" if target.accepts_batches else "no"}
    return target, urls


def _failed_document(config: RunConfig, mode: str, failure: str, started_ns: int,
                     status: str = "failed") -> dict[str, Any]:
    now = time.time_ns()
    result = build_mode_result(
        mode=mode, target={"name": config.target}, params={"subscribers": config.subscribers},
        recorder=Recorder(), audit_totals=AuditTotals(), published_due_ns=[], published_ok=[],
        stream_start_ns=started_ns, started_ns=started_ns, ended_ns=now, status=status, failure=failure,
    )
    return new_document(run_id=mode, config=redact_config(config.to_dict()), machine=machine_facts(),
                        packages=package_versions(), commit=git_commit(), started_ns=started_ns, ended_ns=now,
                        modes={mode: result})


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
    """
    with open(log_path, "w") as log:
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
    target = None
    try:
        from targets import TargetError

        try:
            target, urls = _start_target(config, mode)
        except TargetError as exc:
            return ModeRun(mode, results, log_path, None, _failed_document(config, mode, f"target: {exc}", started))
        if interrupt is not None and interrupt.signal is not None:
            return ModeRun(mode, results, log_path, None, _failed_document(
                config, mode, f"interrupted by {interrupt.signal.name} before the mode started", started,
                status="interrupted"))
        cmd = _locust_command(config, mode, urls, results, live_path)
        # The handed-on flags are the one truth: the user's DELIVERYBENCH_* variables
        # must not reach Locust behind them (only the secret travels this way).
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        for option in OPTIONS:  # secrets go by environment: a command line shows in `ps`
            if option.handoff == "env" and mode in option.modes and getattr(config, option.dest):
                env[option.env_var] = str(getattr(config, option.dest))
        timeout = config.settle + config.duration + config.drain + 240 + config.subscribers / config.spawn_rate
        code, stopped_early = _run_locust(cmd, run_dir, log_path, env, timeout, interrupt, live_path, watch)
        interrupted = interrupt is not None and interrupt.signal is not None
        if results.is_file():
            document = results_file.read(results)
            result = document["modes"][mode]
            if interrupted and result.get("status") != "failed":
                result["status"] = "interrupted"
                result["failure"] = result.get("failure") or f"interrupted by {interrupt.signal.name}"  # type: ignore[union-attr]
            elif stopped_early and result.get("status") != "failed":
                result["status"] = "interrupted"
                result["stopped_early"] = stopped_early
                result["failure"] = f"stopped early: {stopped_early}"
            if target is not None and not target.health():
                result.setdefault("warnings", []).append("target was not healthy after the run")
            result["status"], result["status_reasons"] = assess(result)
        else:
            why = "timed out" if code is None else f"exited with code {code}"
            if interrupted:
                why = f"was interrupted ({interrupt.signal.name})"  # type: ignore[union-attr]
            failure = f"locust {why} without writing results; see {log_path.name}: {_tail(log_path)}"
            document = _failed_document(config, mode, failure, started,
                                        status="interrupted" if interrupted else "failed")
        return ModeRun(mode, results, log_path, code, document)
    finally:
        if target is not None:
            target.stop()


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
              stop_when: Callable[[str, dict[str, Any]], str | None] | None = None) -> dict[str, Any]:
    """Run every configured mode and return the merged results document.

    After an interrupt the mode under way is stopped and kept (``interrupted``)
    and the modes after it are not started. ``progress`` shows each mode's
    live file; ``stop_when(mode, live)`` may stop a mode early with a reason.
    """
    documents = []
    for mode in config.modes:
        if interrupt is not None and interrupt.signal is not None:
            say(f"- {mode}: not started ({interrupt.signal.name})")
            documents.append(_failed_document(config, mode, f"not started: interrupted by {interrupt.signal.name}",
                                              time.time_ns(), status="interrupted"))
            continue
        say(f"- {mode}: {config.subscribers} subscribers, {config.rate:g} events/s for {config.duration:g} s"
            + (f", {config.repeats} repeats" if config.repeats > 1 else "") + " ...")
        runs = []
        for repeat in range(1, config.repeats + 1):
            if repeat > 1 and interrupt is not None and interrupt.signal is not None:
                break
            if progress is not None:
                progress.status(f"{mode}: starting target" + (f" (repeat {repeat} of {config.repeats})"
                                                               if config.repeats > 1 else ""), phase="starting")
            run = run_mode(config, mode, run_dir, say, interrupt, tag=f".r{repeat}" if config.repeats > 1 else "",
                           watch=_watcher(mode, progress, stop_when))
            if progress is not None:
                progress.clear()
            runs.append(run)
            if config.repeats > 1:
                result = run.document["modes"][mode]
                say(f"  {mode} repeat {repeat}: {result['status']}" + _headline(result))
        document = runs[0].document
        if len(runs) > 1:
            document["modes"][mode] = merge_repeats([r.document["modes"][mode] for r in runs])
        result = document["modes"][mode]
        if result["status"] != "ok":
            why = result.get("failure") or "; ".join(result.get("status_reasons") or [])
            say(f"  {mode}: {result['status']}: {why}")
        documents.append(document)
    merged = merge_documents(documents, run_id=run_dir.name)
    merged["config"] = redact_config({**config.to_dict(), "locust": merged.get("config", {})})
    merged["run"]["command"] = redact_argv(["run_bench.py", *sys.argv[1:]])
    return merged

