"""How many WebSocket sessions one harness process holds, and what a delivery costs.

Runs, one after the other, against a fresh built-in push target each
(``targets.builtin.PushTarget``, separate processes on 127.0.0.1; past
9,000 sessions it is spread over several processes sharing one port with
``SO_REUSEPORT``, since one process's open-files limit is 20,000 here and the
harness needs as many):

1. **current**: one Locust process running ``scenarios/ws_push.py`` headless as a
   real ``locust`` subprocess, with ``--results`` (it publishes the stream
   itself once every subscriber is connected);
2. **previous**: the same with the ``scenarios/ws_push.py`` of git commit
   ``PREVIOUS.commit``, the design before the bare-protocol receiver
   (websockets' asyncio client, a task and a running Locust greenlet per
   session, a recorder call per message) -- the baseline the current design
   is measured against. It runs from a throw-away git worktree of that commit
   with the commit's own code on ``PYTHONPATH`` (``benchmarks/_previous.py``),
   so this needs a git checkout that has the commit;
3. **floor**: ``benchmarks/_floor_receiver.py``, bare uvloop protocols that only
   stamp each chunk (no Locust, no parsing, no recording, no pong) -- what any
   receiver costs on this machine, so the figures above can be read against it;
4. **naive**: one Locust process running ``benchmarks/naive_ws_locustfile.py``
   (gevent ``User`` + websocket-client + ``json.loads`` + one
   ``events.request.fire`` per message); this script publishes the same stream
   (``encode_batch``, same rate, duration and payload) once the target's
   ``/health`` shows the sessions connected, and reads the figures from
   Locust's ``--json-file`` dump.

With ``--receivers sansio,picows`` two more runs measure the WebSocket
clients the harness could be built on *alone* (no Locust), with the same
batched recording: the harness's own (websockets' sans-I/O protocol under a
bare asyncio protocol) and picows (Cython; not a dependency, install it to
measure it) -- the choice the harness-cost issue asked for.

Measured for each, the same way:

* sessions held: ours -- the audit's ``subscribers_full`` and the peak of the
  ``connected`` gauge; both -- the target's ``/health`` subscriber count when
  publishing starts;
* deliveries, deliveries/s (deliveries / stream length);
* harness CPU µs per delivery: CPU-seconds (user+system) of the Locust process
  and its children, sampled with psutil every 0.1 s, taken at the sample just
  before the stream starts and the sample just before the drain ends
  (last due time + drain), divided by deliveries -- connection set-up and
  shutdown are excluded;
* harness RSS per idle session: (RSS when all sessions are connected, just
  before publishing - RSS when the first sessions appeared at the target) /
  (sessions then - sessions at first sight);
* p50/p99 delivery latency (receive - due): ours from the results file (HDR,
  3 significant digits), naive from Locust's response-time buckets (1 ms
  resolution below 100 ms, 10 ms below 1 s, 100 ms above);
* the target's CPU over the same window (it competes for the same cores).

Usage::

    python benchmarks/push_capacity.py                  # 10,000 sessions, 1 event/s for 20 s
    python benchmarks/push_capacity.py --sessions 19000 --design current --skip-naive
    python benchmarks/push_capacity.py --sessions 1000 --rate 10 --skip-naive
    python benchmarks/push_capacity.py --sessions 1000 --naive-sessions 500
    python benchmarks/push_capacity.py --skip-naive
    python benchmarks/push_capacity.py --naive-utf8 both   # naive with and without UTF-8 validation
    python benchmarks/push_capacity.py --design current --skip-naive --receivers sansio,picows  # the client choice

Only 127.0.0.1 is used; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from _previous import REPO, Design, checkout, python_env  # beside this file

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deliverybench.core.event import Event, encode_batch  # noqa: E402
from targets.builtin import FRAME_DIALECTS, PushTarget  # noqa: E402

NS = 1_000_000_000
GOAL_CPU_US = 8.0
GOAL_RSS_BYTES = 12_000  # 12 KB, decimal (the stricter reading; 12 KiB = 12,288 B)
#: the push locustfile, in this tree (design "current") and in the previous design's checkout
LOCUSTFILE = "scenarios/ws_push.py"
#: ``--sse``: the same stream to Server-Sent Events subscribers of the same built-in target
SSE_LOCUSTFILE = "scenarios/sse.py"
#: ``--longpoll``: the same stream to long-poll subscribers (a request per answer), printed beside them
LONGPOLL_LOCUSTFILE = "scenarios/longpoll.py"
#: issue 26's goals for SSE against push measured in the same run
GOAL_SSE_CPU_RATIO = 1.3
#: issue 27: reading an envelope, NATS or Socket.IO framing costs at most this many times raw push
GOAL_FRAMING_CPU_RATIO = 1.3
GOAL_SSE_RSS_BYTES = 12_000
#: the last commit before 11f2a15 replaced its sessions with bare asyncio protocols and batched recording
PREVIOUS = Design("dc06e2d355a0f290dbb51598f23638c8067ffd7c",
                  "websockets' asyncio client, a task and a running Locust greenlet per session, "
                  "a recorder call per message")
#: sessions one target process may hold before the benchmark spreads the target over SO_REUSEPORT workers
SESSIONS_PER_TARGET_PROCESS = 9_000


# -- sampling ----------------------------------------------------------------

@dataclass
class Sample:
    t_ns: int
    cpu_s: float
    rss: int


def machine_busy_s() -> float:
    """CPU-seconds all cores have spent busy since boot (everything but idle and iowait)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


@dataclass
class HealthSample:
    t_ns: int
    subscribers: int
    rss: int


@dataclass
class Monitor:
    """Samples harness (process + children) and target every ``interval`` s, /health every 0.25 s."""

    harness_pid: int
    target_pid: int
    health_url: str
    interval: float = 0.1
    harness: list[Sample] = field(default_factory=list)
    target: list[Sample] = field(default_factory=list)
    machine: list[Sample] = field(default_factory=list)
    health: list[HealthSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample_loop, daemon=True),
                         threading.Thread(target=self._health_loop, daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)

    @staticmethod
    def read(pid: int) -> tuple[float, int] | None:
        """(cpu seconds, rss bytes) of ``pid`` plus its live children."""
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                t = proc.cpu_times()
                cpu = t.user + t.system
                rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    ct = child.cpu_times()
                    cpu += ct.user + ct.system
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            return cpu, rss
        except psutil.Error:
            return None

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            now = time.time_ns()
            h = self.read(self.harness_pid)
            if h is not None:
                self.harness.append(Sample(now, *h))
            tg = self.read(self.target_pid)
            if tg is not None:
                self.target.append(Sample(now, *tg))
            self.machine.append(Sample(now, machine_busy_s(), 0))
            self._stop.wait(self.interval)

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            subs = health_subscribers(self.health_url)
            h = self.read(self.harness_pid)
            if subs is not None and h is not None:
                self.health.append(HealthSample(time.time_ns(), subs, h[1]))
            self._stop.wait(0.25)

    # -- lookups -------------------------------------------------------------
    @staticmethod
    def at_or_before(samples: list[Any], t_ns: int) -> Any | None:
        found = None
        for s in samples:
            if s.t_ns <= t_ns:
                found = s
            else:
                break
        return found

    def first_subscribed(self) -> HealthSample | None:
        return next((h for h in self.health if h.subscribers > 0), None)

    def subscribers_at(self, t_ns: int) -> int:
        h = self.at_or_before(self.health, t_ns)
        return h.subscribers if h is not None else 0


def health_subscribers(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(json.loads(resp.read()).get("subscribers", 0))
    except (OSError, ValueError):
        return None


# -- one measured run ----------------------------------------------------------

@dataclass
class RunFigures:
    label: str
    requested: int
    held_at_publish: int = 0          # target's /health count when the stream started
    subscribers_full: int | None = None
    connected_peak: int | None = None
    published: int = 0
    deliveries: int = 0
    expected: int | None = None
    lost: int | None = None
    stream_s: float = 0.0
    window_s: float = 0.0
    cpu_s: float = 0.0
    target_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0        # every process on the machine, same window
    rss_full: int = 0
    rss_first: int = 0
    subs_first: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exit_code: int | None = None
    #: long-poll only: requests made over the whole test (the results file's ``extra.requests``)
    requests: int | None = None

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.stream_s if self.stream_s else 0.0

    @property
    def cpu_us_per_delivery(self) -> float | None:
        return self.cpu_s / self.deliveries * 1e6 if self.deliveries else None

    @property
    def target_cpu_us_per_delivery(self) -> float | None:
        return self.target_cpu_s / self.deliveries * 1e6 if self.deliveries else None

    @property
    def rss_per_session(self) -> float | None:
        n = self.held_at_publish - self.subs_first
        return (self.rss_full - self.rss_first) / n if n > 0 else None


def window_figures(fig: RunFigures, mon: Monitor, start_ns: int, end_ns: int) -> None:
    """CPU over [start, end] and idle RSS just before start, from the monitor's samples."""
    h0, h1 = mon.at_or_before(mon.harness, start_ns), mon.at_or_before(mon.harness, end_ns)
    t0, t1 = mon.at_or_before(mon.target, start_ns), mon.at_or_before(mon.target, end_ns)
    if h0 is None or h1 is None:
        fig.notes.append("no harness CPU samples in the window")
        return
    fig.cpu_s = h1.cpu_s - h0.cpu_s
    fig.window_s = (h1.t_ns - h0.t_ns) / NS
    if t0 is not None and t1 is not None:
        fig.target_cpu_s = t1.cpu_s - t0.cpu_s
    m0, m1 = mon.at_or_before(mon.machine, start_ns), mon.at_or_before(mon.machine, end_ns)
    if m0 is not None and m1 is not None:
        fig.machine_cpu_s = m1.cpu_s - m0.cpu_s
    fig.rss_full = h0.rss
    first = mon.first_subscribed()
    if first is not None:
        fig.rss_first, fig.subs_first = first.rss, first.subscribers
    fig.held_at_publish = mon.subscribers_at(start_ns)


def locust_cmd(locustfile: str, users: int, spawn_rate: float, run_time_s: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", locustfile, "--headless", "--only-summary",
            "-u", str(users), "-r", str(spawn_rate), "-t", f"{run_time_s}s", "--stop-timeout", "5",
            "--loglevel", "INFO", *extra]


def start_locust(cmd: list[str], log_path: Path, root: Path = REPO) -> subprocess.Popen[bytes]:
    """Run ``cmd`` in ``root`` (this tree, or a previous design's checkout) with that tree's code first."""
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=root, env=python_env(root), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)


def end_process(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM (Locust then writes its summaries), wait, then SIGKILL. Only this pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def target_workers(sessions: int) -> int:
    return max(1, -(-sessions // SESSIONS_PER_TARGET_PROCESS))


def run_ours(args: argparse.Namespace, out: Path, design: str, root: Path = REPO, *, mode: str = "push",
             locustfile: str = LOCUSTFILE, frame: str = "raw") -> RunFigures:
    """One run of ``locustfile`` (mode ``mode``) as the tree at ``root`` has it, read back from its results file.

    ``frame``: the built-in target frames each message as that kind of server does, and the subscribers
    are told the matching dialect (the framing's reading cost, against the same server).
    """
    fig = RunFigures(design, args.sessions)
    results = out / f"{design}-results.json"
    log_path = out / f"{design}-locust.log"
    budget = int(args.connect_timeout + args.duration + args.drain + 60)
    target = PushTarget(workers=target_workers(args.sessions), frame=frame)
    proc = None
    mon = None
    try:
        target.start()
        extra = ["--publish-url", target.ingress_url or "", "--subscribe-url", target.egress_url(mode) or "",
                 "--stats-url", target.stats_url or "", "--target-pids", ",".join(map(str, target.pids())),
                 "--target-name", "push", "--rate", str(args.rate), "--duration", str(args.duration),
                 "--payload-bytes", str(args.payload_bytes), "--drain", str(args.drain),
                 "--settle-timeout", str(args.connect_timeout), "--open-timeout", "10",
                 "--results", str(results)]
        for name, value in target.dialect(mode).describe().items():  # a framing's protocol / event path
            extra += [f"--{name.replace('_', '-')}", value]
        cmd = locust_cmd(locustfile, args.sessions, args.spawn_rate, budget, extra)
        proc = start_locust(cmd, log_path, root)
        mon = Monitor(proc.pid, target.pids()[0], target.health_url or "")
        mon.start()
        try:
            fig.exit_code = proc.wait(budget + 60)
        except subprocess.TimeoutExpired:
            fig.notes.append(f"locust did not exit within {budget + 60} s; stopped it")
            fig.exit_code = end_process(proc, 30)
        mon.stop()
    finally:
        if mon is not None:
            mon.stop()
        if proc is not None and proc.poll() is None:
            end_process(proc, 30)
        target.stop()
    if not results.exists():
        fig.notes.append(f"no results file; locust log tail:\n{tail(log_path)}")
        return fig
    doc = json.loads(results.read_text())
    result = doc["modes"][mode]
    audit, thr = result["audit"], result["throughput"]
    fig.subscribers_full = audit["subscribers_full"]
    fig.expected, fig.lost = audit["expected"], audit["lost"]
    fig.published = thr["published"]
    fig.deliveries = thr["deliveries"]
    cols = result["series"]["columns"]
    ci = cols.index("connected")
    fig.connected_peak = max((r[ci] for r in result["series"]["rows"] if r[ci] is not None), default=0)
    summ = result["summary"].get("delivery") or {}
    fig.p50_ms, fig.p99_ms, fig.mean_ms = summ.get("p50"), summ.get("p99"), summ.get("mean")
    fig.errors = result.get("errors", {})
    requests = (result.get("extra") or {}).get("requests")
    fig.requests = int(requests) if requests is not None else None
    dues = [row[1] for row in result["fanout"]["rows"]]
    start_ns = result["stream_start_ns"]
    last_due = max(dues) if dues else start_ns
    fig.stream_s = fig.published / args.rate if args.rate else 0.0
    window_figures(fig, mon, start_ns, last_due + int(args.drain * NS))
    fig.notes.append(f"results file: status {result['status']}, deliveries_per_s (per active second) "
                     f"{thr['deliveries_per_s']}, harness verdict {result.get('harness')}")
    return fig


def publish_stream(ingress_url: str, rate: float, duration: float, payload: int, stream: str
                   ) -> tuple[int, int, int, list[str]]:
    """Open-model publisher like ours: events due at start + i/rate; late ones go as one batch.

    Returns (stream_start_ns, last_due_ns, published, errors). Bounded by count and time.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(ingress_url)
    n = max(1, round(rate * duration))
    start = time.time_ns() + 200_000_000
    due = [start + int(i * NS / rate) for i in range(n)]
    give_up = start + int((duration + 30) * NS)
    host = parts.hostname or "127.0.0.1"
    conn = http.client.HTTPConnection(host, parts.port, timeout=10)
    published, errors, i = 0, [], 0
    try:
        while i < n and time.time_ns() < give_up:
            now = time.time_ns()
            if due[i] > now:
                time.sleep(min((due[i] - now) / NS, 1.0))
                continue
            j = i + 1
            while j < n and j - i < 1000 and due[j] <= now:
                j += 1
            body = encode_batch([Event(k, due[k], stream) for k in range(i, j)], time.time_ns(), payload)
            try:
                conn.request("POST", parts.path or "/", body=body, headers={"Content-Type": "application/x-ndjson"})
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    published += j - i
                else:
                    errors.append(f"http_{resp.status}")
            except OSError as exc:
                errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection(host, parts.port, timeout=10)
            i = j
    finally:
        conn.close()
    return start, due[-1], published, errors


def locust_percentile(response_times: dict[str, int], num: int, percent: float) -> float:
    """Locust's own percentile over its rounded response-time buckets."""
    wanted = int(num * percent)
    processed = 0
    for rt in sorted((float(k) for k in response_times), reverse=True):
        processed += response_times[_key(response_times, rt)]
        if num - processed <= wanted:
            return rt
    return 0.0


def _key(d: dict[str, int], rt: float) -> str:
    for cand in (str(int(rt)) if rt == int(rt) else None, str(rt)):
        if cand is not None and cand in d:
            return cand
    raise KeyError(rt)


#: what each receiver run of ``_floor_receiver.py`` is called in the table, and what it counts
RECEIVERS = {
    "floor": ("floor", "chunks received, server pings included: no parsing, no recording, no pong"),
    "sansio": ("sans-I/O alone", "the harness's receiver (websockets sans-I/O), intake folded each second, no Locust"),
    "picows": ("picows alone", "picows 2 KB read buffer, auto pong, same intake folded each second, no Locust"),
}


def run_receiver(args: argparse.Namespace, out: Path, kind: str = "floor") -> RunFigures:
    """A receiver of ``_floor_receiver.py`` without Locust (the floor by default), same stream."""
    label, note = RECEIVERS[kind]
    fig = RunFigures(label, args.sessions)
    counts = out / f"{kind}-counts.json"
    log_path = out / f"{kind}.log"
    target = PushTarget(workers=target_workers(args.sessions))
    proc = None
    mon = None
    try:
        target.start()
        cmd = [sys.executable, str(REPO / "benchmarks" / "_floor_receiver.py"),
               "--url", target.egress_url("push") or "", "--sessions", str(args.sessions), "--out", str(counts),
               "--kind", kind,
               "--seconds", str(args.connect_timeout + args.duration + args.drain + 60)]
        proc = start_locust(cmd, log_path)
        mon = Monitor(proc.pid, target.pids()[0], target.health_url or "")
        mon.start()
        deadline = time.monotonic() + args.connect_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if (health_subscribers(target.health_url or "") or 0) >= args.sessions:
                break
            time.sleep(0.25)
        time.sleep(args.settle)
        start_ns, last_due, published, errors = publish_stream(
            target.ingress_url or "", args.rate, args.duration, args.payload_bytes, "s")
        fig.published = published
        end_ns = last_due + int(args.drain * NS)
        time.sleep(max(0.0, (end_ns - time.time_ns()) / NS) + 0.3)
        mon.stop()
        fig.stream_s = published / args.rate if args.rate else 0.0
        window_figures(fig, mon, start_ns, end_ns)
        fig.exit_code = end_process(proc, 30)
    finally:
        if mon is not None:
            mon.stop()
        if proc is not None and proc.poll() is None:
            end_process(proc, 30)
        target.stop()
    if counts.exists():
        got = json.loads(counts.read_text())
        fig.deliveries = int(got["deliveries"])
        fig.expected = published * fig.held_at_publish
        if kind != "floor":  # the floor counts chunks (pings too), not deliveries
            fig.lost = fig.expected - fig.deliveries
        fig.notes.append(note + (f"; {got['errors']} errors" if got.get("errors") else ""))
    else:
        fig.notes.append(f"no counts written; log tail:\n{tail(log_path)}")
    return fig


def run_naive(args: argparse.Namespace, out: Path, sessions: int, skip_utf8: bool) -> RunFigures:
    label = "naive" + ("(no utf8 check)" if skip_utf8 else "")
    fig = RunFigures(label, sessions)
    tag = "naive-skiputf8" if skip_utf8 else "naive"
    json_base = out / f"{tag}-stats"
    log_path = out / f"{tag}-locust.log"
    budget = int(args.connect_timeout + args.duration + args.drain + 60)
    target = PushTarget(workers=target_workers(sessions))
    proc = None
    mon = None
    try:
        target.start()
        extra = ["--host", target.egress_url("push") or "", "--json-file", str(json_base),
                 "--naive-open-timeout", "10"]
        if skip_utf8:
            extra.append("--naive-skip-utf8-validation")
        proc = start_locust(locust_cmd("benchmarks/naive_ws_locustfile.py", sessions, args.spawn_rate,
                                       budget, extra), log_path)
        mon = Monitor(proc.pid, target.pids()[0], target.health_url or "")
        mon.start()
        # Wait for the sessions: all of them, the connect timeout, or no progress for --stall s.
        deadline = time.monotonic() + args.connect_timeout
        best, best_at = -1, time.monotonic()
        while time.monotonic() < deadline and proc.poll() is None:
            subs = health_subscribers(target.health_url or "") or 0
            if subs >= sessions:
                break
            if subs > best:
                best, best_at = subs, time.monotonic()
            elif best > 0 and time.monotonic() - best_at > args.stall:
                fig.notes.append(f"no new session for {args.stall:g} s at {best}; publishing anyway")
                break
            time.sleep(0.25)
        else:
            if proc.poll() is not None:
                fig.notes.append(f"locust exited early; log tail:\n{tail(log_path)}")
            else:
                fig.notes.append(f"connect timeout ({args.connect_timeout:g} s); publishing anyway")
        time.sleep(args.settle)
        start_ns, last_due, published, errors = publish_stream(
            target.ingress_url or "", args.rate, args.duration, args.payload_bytes, "s")
        fig.published = published
        if errors:
            fig.errors.update({f"publish_{e}": errors.count(e) for e in set(errors)})
        end_ns = last_due + int(args.drain * NS)
        time.sleep(max(0.0, (end_ns - time.time_ns()) / NS) + 0.3)
        mon.stop()
        fig.stream_s = published / args.rate if args.rate else 0.0
        window_figures(fig, mon, start_ns, end_ns)
        fig.exit_code = end_process(proc, 60)
    finally:
        if mon is not None:
            mon.stop()
        if proc is not None and proc.poll() is None:
            end_process(proc, 30)
        target.stop()
    path = Path(f"{json_base}.json")
    if not path.exists():
        fig.notes.append(f"no --json-file output; locust log tail:\n{tail(log_path)}")
        return fig
    entries = json.loads(path.read_text())
    for e in entries:
        if e["name"] == "delivery":
            num = e["num_requests"] - e.get("num_none_requests", 0)
            fig.deliveries = e["num_requests"]
            rts = {str(k): v for k, v in e["response_times"].items()}
            fig.p50_ms = locust_percentile(rts, num, 0.50)
            fig.p99_ms = locust_percentile(rts, num, 0.99)
            fig.mean_ms = e["total_response_time"] / num if num else None
        elif e["num_failures"]:
            fig.errors[f"{e['name']}_failures"] = e["num_failures"]
    fig.expected = published * fig.held_at_publish
    fig.lost = fig.expected - fig.deliveries if fig.expected is not None else None
    return fig


# -- printing -------------------------------------------------------------------

def fmt(v: Any, spec: str = ",.1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return format(v, spec)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def report(args: argparse.Namespace, figs: list[RunFigures], out: Path) -> None:
    """One table: every design side by side, then current / each other design."""
    ours = next((f for f in figs if f.label == "current"), figs[0])
    others = [f for f in figs if f is not ours]
    w = 22
    print()
    print(f"push capacity: {args.sessions:,} sessions (naive: {args.naive_sessions:,}), {args.rate:g} event/s "
          f"for {args.duration:g} s, {args.payload_bytes} B payload, drain {args.drain:g} s, "
          f"{psutil.cpu_count()} cores, one harness process; target: built-in push target in "
          f"{target_workers(args.sessions)} process(es) sharing one port (SO_REUSEPORT); out: {out}")
    print()
    header = f"{'':36}" + "".join(f"{f.label:>{w}}" for f in figs)
    header += "".join(f"{ours.label + '/' + n.label:>{w + 4}}" for n in others)
    print(header)

    def row(name: str, values: list[str], ratios: list[str] | None = None) -> None:
        line = f"{name:36}" + "".join(f"{v:>{w}}" for v in values)
        if ratios:
            line += "".join(f"{r:>{w + 4}}" for r in ratios)
        print(line)

    def compare(attr: str) -> list[str]:
        return [ratio(getattr(ours, attr), getattr(n, attr)) for n in others]

    row("sessions requested", [fmt(f.requested) for f in figs])
    row("sessions held (target /health)", [fmt(f.held_at_publish) for f in figs])
    row("  audit subscribers_full", [fmt(f.subscribers_full) for f in figs])
    row("  connected gauge (peak)", [fmt(f.connected_peak) for f in figs])
    row("events published", [fmt(f.published) for f in figs])
    row("deliveries", [fmt(f.deliveries) for f in figs])
    row("  lost (expected - delivered)", [fmt(f.lost) for f in figs])
    row("deliveries/s (over the stream)", [fmt(f.deliveries_per_s) for f in figs])
    row("harness CPU s (stream+drain)", [fmt(f.cpu_s, ".2f") for f in figs])
    row("  measured window s", [fmt(f.window_s, ".1f") for f in figs])
    row("harness CPU us/delivery", [fmt(f.cpu_us_per_delivery, ".1f") for f in figs], compare("cpu_us_per_delivery"))
    row("harness RSS connected (MB)", [fmt(f.rss_full / 1e6, ".1f") for f in figs])
    row("harness RSS at first sessions (MB)", [fmt(f.rss_first / 1e6, ".1f") + f" @{f.subs_first}" for f in figs])
    row("harness RSS per idle session (KB)", [fmt(None if f.rss_per_session is None else f.rss_per_session / 1000,
                                                  ".1f") for f in figs], compare("rss_per_session"))
    row("delivery latency p50 (ms)", [fmt(f.p50_ms, ".2f") for f in figs], compare("p50_ms"))
    row("delivery latency p99 (ms)", [fmt(f.p99_ms, ".2f") for f in figs], compare("p99_ms"))
    row("delivery latency mean (ms)", [fmt(f.mean_ms, ".2f") for f in figs])
    row("target CPU s (same window)", [fmt(f.target_cpu_s, ".2f") for f in figs])
    row("target CPU us/delivery", [fmt(f.target_cpu_us_per_delivery, ".1f") for f in figs])
    row("other processes CPU % of 1 core", [fmt(None if not f.window_s else
                                               max(0.0, f.machine_cpu_s - f.cpu_s - f.target_cpu_s) / f.window_s * 100,
                                               ".0f") for f in figs])
    row("harness+target CPU % of 1 core", [fmt(None if not f.window_s else (f.cpu_s + f.target_cpu_s) / f.window_s
                                               * 100, ".0f") for f in figs])
    for f in figs:
        if f.requests is not None:
            per_request = f.cpu_s / f.requests * 1e6 if f.requests and f.cpu_s else None
            print(f"long-poll ({f.label}): {f.requests:,} requests in the test, "
                  f"{f.requests / f.deliveries if f.deliveries else float('nan'):.2f} per delivery; harness CPU "
                  f"{fmt(f.cpu_us_per_delivery, '.1f')} us per delivery, {fmt(per_request, '.1f')} us per request "
                  "(stream-window CPU over every request of the test, start and drain included: a lower bound)")
    for f in figs:
        if f.errors:
            print(f"errors ({f.label}): {f.errors}")
        for n in f.notes:
            print(f"note ({f.label}): {n}")
    print()
    held = min(x for x in (ours.subscribers_full, ours.held_at_publish) if x is not None) \
        if ours.subscribers_full is not None else ours.held_at_publish
    cpu = ours.cpu_us_per_delivery
    rss = ours.rss_per_session
    goals = [
        (f"all {args.sessions:,} sessions held by one harness process", held >= args.sessions, f"{held:,}"),
        (f"<= {GOAL_CPU_US:g} us harness CPU per delivery", cpu is not None and cpu <= GOAL_CPU_US,
         fmt(cpu, ".1f") + " us"),
        (f"<= {GOAL_RSS_BYTES / 1000:g} KB per idle session", rss is not None and rss <= GOAL_RSS_BYTES,
         fmt(None if rss is None else rss / 1000, ".1f") + " KB"),
    ]
    print(f"goals ({ours.label}):")
    for name, ok, value in goals:
        print(f"  {'PASS' if ok else 'MISS'}  {name:52} measured {value}")
    framed = [f for f in figs if f.label in FRAME_DIALECTS]
    if framed:
        print(f"goals (framings, against push in this run: <= {GOAL_FRAMING_CPU_RATIO:g}x its harness CPU per "
              "delivery, every event delivered):")
        for f in framed:
            f_cpu = f.cpu_us_per_delivery
            f_ratio = None if f_cpu is None or not cpu else f_cpu / cpu
            ok = f_ratio is not None and f_ratio <= GOAL_FRAMING_CPU_RATIO and f.lost == 0
            print(f"  {'PASS' if ok else 'MISS'}  {f.label:52} measured {fmt(f_cpu, '.1f')} us = "
                  f"{fmt(f_ratio, '.2f')}x, lost {fmt(f.lost)}")
    sse = next((f for f in figs if f.label == "sse"), None)
    if sse is not None:
        sse_cpu, sse_rss = sse.cpu_us_per_delivery, sse.rss_per_session
        cpu_ratio = None if sse_cpu is None or not cpu else sse_cpu / cpu
        print("goals (sse, against push in this run):")
        for name, ok, value in [
            (f"<= {GOAL_SSE_CPU_RATIO:g}x push's harness CPU per delivery",
             cpu_ratio is not None and cpu_ratio <= GOAL_SSE_CPU_RATIO,
             f"{fmt(sse_cpu, '.1f')} us = {fmt(cpu_ratio, '.2f')}x"),
            (f"<= {GOAL_SSE_RSS_BYTES / 1000:g} KB per idle session",
             sse_rss is not None and sse_rss <= GOAL_SSE_RSS_BYTES,
             fmt(None if sse_rss is None else sse_rss / 1000, ".1f") + " KB")]:
            print(f"  {'PASS' if ok else 'MISS'}  {name:52} measured {value}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=10000, help="sessions for our harness (default 10000)")
    p.add_argument("--naive-sessions", type=int, default=None, help="sessions for the naive user (default: --sessions)")
    p.add_argument("--skip-naive", action="store_true", help="measure our harness only")
    p.add_argument("--design", choices=("current", "previous", "both"), default="both",
                   help=f"our harness as shipped (current), the design before it (previous: {PREVIOUS.what}; "
                        f"run from a git worktree of commit {PREVIOUS.commit[:12]}), or both (default)")
    p.add_argument("--sse", action="store_true",
                   help="also run the same stream to Server-Sent Events subscribers (scenarios/sse.py) of the same "
                        "built-in target, and judge it against push (current) in this run")
    p.add_argument("--longpoll", action="store_true",
                   help="also run the same stream to long-poll subscribers (scenarios/longpoll.py) and print their "
                        "requests, CPU per delivery and per request beside push's")
    p.add_argument("--framings", default="",
                   help="also run push with the built-in target framing each message as a real server would -- "
                        f"{', '.join(FRAME_DIALECTS)} (comma-separated) -- and the subscribers reading that framing; "
                        f"judged against push (current) in this run (goal <= {GOAL_FRAMING_CPU_RATIO:g}x)")
    p.add_argument("--skip-floor", action="store_true",
                   help="do not measure the floor (bare protocols that only stamp: what any receiver costs here)")
    p.add_argument("--receivers", default="",
                   help="also measure WebSocket clients alone, without Locust, with the same recording: "
                        "'sansio' (the harness's, websockets sans-I/O), 'picows', or 'sansio,picows' -- "
                        "the choice between the two (picows must be installed; it is not a dependency)")
    p.add_argument("--naive-utf8", choices=("validate", "skip", "both"), default="validate",
                   help="naive run(s): websocket-client defaults (validate UTF-8 in pure Python), "
                        "skip_utf8_validation=True, or both (default: validate)")
    p.add_argument("--rate", type=float, default=1.0, help="events per second (default 1)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of stream (default 20)")
    p.add_argument("--payload-bytes", type=int, default=256)
    p.add_argument("--spawn-rate", type=float, default=500.0)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=1.0, help="naive: wait after connecting before publishing")
    p.add_argument("--connect-timeout", type=float, default=120.0, help="longest wait for sessions to connect")
    p.add_argument("--stall", type=float, default=20.0,
                   help="naive: give up waiting after this long without a new session")
    p.add_argument("--out", default="", help="directory for logs and results (default /tmp/push_capacity-<time>)")
    args = p.parse_args(argv)
    args.framings = [k for k in args.framings.split(",") if k]
    if any(k not in FRAME_DIALECTS for k in args.framings):
        p.error(f"--framings takes {', '.join(FRAME_DIALECTS)}")
    clients = [k for k in RECEIVERS if k != "floor"]
    args.receivers = [k for k in args.receivers.split(",") if k]
    if any(k not in clients for k in args.receivers):
        p.error(f"--receivers takes {' or '.join(clients)}, or both comma-separated")
    if "picows" in args.receivers and importlib.util.find_spec("picows") is None:
        p.error("--receivers picows needs picows installed (pip install 'picows>=2.3,<2.4')")
    if args.naive_sessions is None:
        args.naive_sessions = args.sessions
    if min(args.sessions, args.naive_sessions) < 1 or args.rate <= 0 or args.duration <= 0:
        p.error("sessions, rate and duration must be positive")
    out = Path(args.out or f"/tmp/push_capacity-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)

    figs: list[RunFigures] = []
    designs = ["current", "previous"] if args.design == "both" else [args.design]
    with contextlib.ExitStack() as stack:
        # Check the previous design out before any run, so a clone without its commit fails at once.
        roots = {"current": REPO}
        if "previous" in designs:
            roots["previous"] = stack.enter_context(checkout(PREVIOUS))
        # (label, tree, mode, locustfile, what is measured): the designs, then the other push transports
        runs = [(design, roots[design], "push", LOCUSTFILE,
                 "sessions" + (f" (git {PREVIOUS.commit[:12]}, from a worktree)" if design == "previous" else ""))
                for design in designs]
        if args.longpoll:
            runs.append(("longpoll", REPO, "longpoll", LONGPOLL_LOCUSTFILE, "long-poll subscribers"))
        if args.sse:
            runs.append(("sse", REPO, "sse", SSE_LOCUSTFILE, "Server-Sent Events subscribers"))
        runs += [(frame, REPO, "push", LOCUSTFILE, f"sessions reading {frame} framing") for frame in args.framings]
        for label, root, mode, locustfile, what in runs:
            if figs:
                time.sleep(2)
            print(f"[{label}] {args.sessions:,} {what} ...", flush=True)
            fig = run_ours(args, out, label, root, mode=mode, locustfile=locustfile,
                           frame=label if label in FRAME_DIALECTS else "raw")
            print(f"[{label}] done: held {fig.held_at_publish:,}, {fig.deliveries:,} deliveries, "
                  f"{fmt(fig.cpu_us_per_delivery, '.1f')} us/delivery", flush=True)
            figs.append(fig)
    if not args.skip_floor:
        time.sleep(2)
        print(f"[floor] {args.sessions:,} bare sessions ...", flush=True)
        fig = run_receiver(args, out)
        print(f"[floor] done: {fig.deliveries:,} chunks, {fmt(fig.cpu_us_per_delivery, '.1f')} us each", flush=True)
        figs.append(fig)
    for kind in args.receivers:
        time.sleep(2)
        print(f"[{kind}] {args.sessions:,} sessions, receiver alone ...", flush=True)
        fig = run_receiver(args, out, kind)
        print(f"[{kind}] done: {fig.deliveries:,} deliveries, {fmt(fig.cpu_us_per_delivery, '.1f')} us each",
              flush=True)
        figs.append(fig)
    if not args.skip_naive:
        variants = {"validate": [False], "skip": [True], "both": [False, True]}[args.naive_utf8]
        for skip in variants:
            time.sleep(2)
            print(f"[naive{' skip-utf8' if skip else ''}] {args.naive_sessions:,} sessions ...", flush=True)
            n = run_naive(args, out, args.naive_sessions, skip)
            print(f"[{n.label}] done: held {n.held_at_publish:,}, {n.deliveries:,} deliveries, "
                  f"{fmt(n.cpu_us_per_delivery, '.1f')} us/delivery", flush=True)
            figs.append(n)
    report(args, figs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
