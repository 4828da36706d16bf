"""How many WebSocket sessions this one machine holds against nginx + nchan, and what each costs the harness.

The scale goal of issue 25: 100,000 concurrent sessions from one 2-core
machine, one event every 5 s for 60 s, nothing lost. A sibling of
``push_capacity.py`` (whose sampling and figures it reuses): there the target
is the built-in one and the harness one process; here the target is a real
push server, nginx + nchan (``tests/servers/nchan.py``'s configuration with
several workers), and the harness the real one at scale:

    python -m locust -f scenarios/ws_push.py --headless --processes P \\
        --source-addresses 127.0.0.2,...  --publish-url <nchan /pub> --subscribe-url <nchan /sub> ...

Its master publishes one event per POST to nchan's publisher location
(an external target takes no NDJSON batches), nchan forwards each body as one
WebSocket message to every subscriber, and the results file's audit says
which arrived.

**Why several processes and addresses.** Every session is a socket in a
Locust worker *and* in an nginx worker, and each process may hold at most
its open-files hard limit (``ulimit -Hn``, 20,000 here). Raising a hard limit
needs ``CAP_SYS_RESOURCE``; this script measures whether nginx's
``worker_rlimit_nofile`` can (it starts an nginx asking for 5x the limit and
reads the limit its worker got, and the ``setrlimit`` alert in its log) and
prints what it found. So the sessions are spread: ``P`` Locust workers and
``W`` nginx workers (``listen ... reuseport``: one listening socket per
worker, so the kernel spreads connections evenly instead of one worker
taking most), each kept to 80 % of the limit; and since a socket bound to one
source address needs its own ephemeral port (28,232 here, 32768-60999),
at most 25,000 sessions per loopback source address (127.0.0.2, 127.0.0.3,
...; 127.0.0.1 is left to everything else on the machine). The pure
planning (:func:`plan_scale`) is tested in ``tests/test_benchmark_planning.py``.

**Baseline in the same run.** Unless ``--baseline-sessions 0``, a smaller run
(10,000 sessions) goes first, planned the same way on other source addresses
(so its closed connections' TIME_WAIT ports cannot get in the main run's way),
and every per-session and per-delivery figure is printed beside its ratio.

Measured for each run (``push_capacity.py``'s :class:`Monitor`: psutil every
0.25 s, Locust master + workers summed, nginx master + workers summed):

* sessions requested; connected: the audit's ``subscribers_full`` and the
  harness's ``connected`` gauge, and nchan's own count (``nchan_stub_status``)
  when publishing starts and at its peak; connect time (handshake p50/p99
  from the results file; seconds from nchan's first subscriber to all of them);
* deliveries expected / received (unique) / lost / duplicated, from the audit;
* harness CPU µs per delivery over the stream window (first due time to last
  due time + drain; at one event in 5 s the processes' idle cost -- Locust
  heartbeats, the once-a-second folding -- is in it too, so the window's
  share of one core is printed beside it); harness RSS per session: all
  Locust processes' RSS (and PSS, which counts the pages the forked workers
  share once), and per idle session (RSS growth from nchan's first
  subscribers to the start of publishing, over the sessions added);
* nginx RSS and CPU over the same window, and every other process's CPU
  (the machine is shared); open files per process (peak, counted while the
  sessions connect) against the limit;
* when not every session connected: what stopped it, measured -- connect
  errors by kind (EADDRNOTAVAIL: ports; EMFILE/ENFILE: open files; timeouts
  with the cores busy: CPU), nginx's error log (``Too many open files``,
  ``worker_connections are not enough``), the kernel's TCP counters over the
  run (listen-queue overflows, aborts for want of memory; machine-wide), the
  lowest available memory, a Locust process killed, and ports of the source
  addresses still in TIME_WAIT from an earlier run (they expire after 60 s:
  leave a minute between two runs).

Usage::

    python benchmarks/push_scale.py                                   # 100,000 sessions after a 10,000 baseline
    python benchmarks/push_scale.py --sessions 20000 --baseline-sessions 2000 --processes 2 --addresses 2
    python benchmarks/push_scale.py --sessions 2000 --baseline-sessions 0 --processes 2 --addresses 2

Only 127.0.0.0/8 is used; nginx and Locust run with their own prefix, ports
and process groups, and are killed at the end; every wait is bounded.
"""

from __future__ import annotations

import argparse
import errno
import math
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import psutil
from _previous import REPO, python_env  # beside this file
from push_capacity import LOCUSTFILE, NS, HealthSample, Monitor, RunFigures, fmt, ratio, tail, window_figures

# found through the checkout, which importing push_capacity put on sys.path
from deliverybench.adapters.children import child_options, stop_group
from deliverybench.cli.limits import PROCESS_OVERHEAD_FDS, SESSIONS_PER_SOURCE_ADDRESS
from deliverybench.core.model import ResultsFormatError
from deliverybench.core.options import OPTIONS, OptionError, locust_argv, validate
from deliverybench.core.plan import plan_run
from deliverybench.core.results import load_run
from tests.servers.nchan import NginxConfig, RunningNchan, free_port, missing, nchan_server

__all__ = [
    "FD_HEADROOM", "SESSIONS_PER_ADDRESS", "KERNEL_COUNTERS", "ScalePlan", "plan_scale", "source_addresses",
    "nginx_config", "locust_values", "locust_command", "parse_stub_status", "parse_netstat", "counter_growth",
    "time_wait_by_address", "nginx_problems", "error_label", "stop_causes", "ScaleFigures", "run_scale", "main",
]

#: each harness or nginx worker is given at most this share of its open-files limit, for its own files
#: (libraries, logs, zmq, publisher pool) and for the sessions one worker gets beyond the average
FD_HEADROOM = 0.8
#: sessions per loopback source address: the harness's own figure, and why (deliverybench/cli/limits.py)
SESSIONS_PER_ADDRESS = SESSIONS_PER_SOURCE_ADDRESS
#: files an nginx worker holds besides connections: logs, listening sockets, channels to the other workers
NGINX_SPARE_FDS = 1_000
#: the first source address is 127.0.0.<this>: 127.0.0.1 stays free for everything else on the machine
FIRST_HOST = 2
#: the loopback network the source addresses come from
LOOPBACK = IPv4Address("127.0.0.0")
#: seconds between two per-process tables (open files, RSS, PSS of every Locust and nginx process), taken
#: only until the first event is published: counting 15,000 open files takes ~25 ms a process, which must
#: not compete with the stream
TABLE_EVERY_S = 2.0


# -- planning (pure) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalePlan:
    """How ``sessions`` are spread over Locust workers, source addresses and nginx workers."""

    sessions: int
    processes: int
    addresses: tuple[str, ...]
    nginx_workers: int
    worker_connections: int
    fd_limit: int
    nginx_fd_limit: int
    ports_per_address: int

    @property
    def sessions_per_process(self) -> int:
        return math.ceil(self.sessions / self.processes)

    @property
    def fds_per_process(self) -> int:
        """Open files one Locust worker needs: its sessions and its own files."""
        return self.sessions_per_process + PROCESS_OVERHEAD_FDS

    @property
    def sessions_per_address(self) -> int:
        return math.ceil(self.sessions / len(self.addresses))

    @property
    def sessions_per_nginx_worker(self) -> int:
        return math.ceil(self.sessions / self.nginx_workers)

    def problems(self) -> list[str]:
        """Why this plan cannot hold its sessions (each in one line), or nothing."""
        found = []
        if self.fds_per_process > self.fd_limit:
            found.append(f"{self.fds_per_process:,} open files per Locust process, over the limit of "
                         f"{self.fd_limit:,}: use more --processes")
        if self.sessions_per_address > self.ports_per_address:
            found.append(f"{self.sessions_per_address:,} sessions per source address, over its "
                         f"{self.ports_per_address:,} ephemeral ports: use more --addresses")
        if self.sessions_per_nginx_worker > self.worker_connections:
            found.append(f"{self.sessions_per_nginx_worker:,} sessions per nginx worker, over its "
                         f"{self.worker_connections:,} worker_connections: use more --nginx-workers")
        return found


def source_addresses(count: int, first_host: int = FIRST_HOST) -> tuple[str, ...]:
    """``count`` loopback addresses from 127.0.0.<first_host> on (127.0.1.0 follows 127.0.0.255)."""
    if count < 1 or first_host < 1 or first_host + count > 2**24 - 1:
        raise ValueError(f"no {count} loopback addresses from host {first_host}")
    return tuple(str(LOOPBACK + first_host + i) for i in range(count))


def _per_worker(fd_limit: int) -> int:
    return max(1, int((fd_limit - PROCESS_OVERHEAD_FDS) * FD_HEADROOM))


def plan_scale(sessions: int, *, fd_limit: int, nginx_fd_limit: int | None = None, ports_per_address: int = 28_232,
               per_address: int = SESSIONS_PER_ADDRESS, processes: int = 0, addresses: int = 0,
               nginx_workers: int = 0, cores: int = 2, first_host: int = FIRST_HOST) -> ScalePlan:
    """Spread ``sessions`` so that no process passes its open-files limit and no address its ports.

    Args:
        fd_limit: the open-files hard limit of a Locust worker.
        nginx_fd_limit: the limit an nginx worker gets (default ``fd_limit``:
            ``worker_rlimit_nofile`` cannot pass the hard limit without
            ``CAP_SYS_RESOURCE``).
        ports_per_address: ephemeral ports of one source address.
        per_address: most sessions per source address.
        processes, addresses, nginx_workers: given counts (0: worked out here).
        cores: nginx gets at least one worker per core.
        first_host: the first source address's last byte(s), from 127.0.0.0.

    Raises:
        ValueError: ``sessions`` is not positive.
    """
    if sessions < 1:
        raise ValueError("sessions must be positive")
    nginx_limit = nginx_fd_limit or fd_limit
    return ScalePlan(
        sessions=sessions,
        processes=processes or math.ceil(sessions / _per_worker(fd_limit)),
        addresses=source_addresses(addresses or math.ceil(sessions / per_address), first_host),
        nginx_workers=nginx_workers or max(cores, math.ceil(sessions / _per_worker(nginx_limit))),
        worker_connections=max(1024, nginx_limit - NGINX_SPARE_FDS),
        fd_limit=fd_limit, nginx_fd_limit=nginx_limit, ports_per_address=ports_per_address,
    )


def nginx_config(plan: ScalePlan) -> NginxConfig:
    """The tests' nginx + nchan with the plan's workers, one listening socket each, and a deep listen queue."""
    return NginxConfig(workers=plan.nginx_workers, worker_connections=plan.worker_connections,
                       rlimit_nofile=plan.nginx_fd_limit, reuseport=True, backlog=4096)


def locust_values(plan: ScalePlan, **overrides: Any) -> dict[str, Any]:
    """Every option's value by ``dest``, as run_bench.py would hand them on: defaults, the plan, ``overrides``."""
    values = {o.dest: o.default for o in OPTIONS if o.command is None}
    values.update(subscribers=plan.sessions, source_addresses=",".join(plan.addresses))
    unknown = set(overrides) - set(values)
    if unknown:
        raise KeyError(f"no option {', '.join(sorted(unknown))}")
    values.update(overrides)
    return values


def locust_command(values: Mapping[str, Any], plan: ScalePlan, nginx: RunningNchan, *, results: Path,
                   target_pids: Sequence[int], master_port: int) -> list[str]:
    """``python -m locust -f scenarios/ws_push.py --headless [--processes P]`` against ``nginx``.

    The options come from the option table (``locust_argv``, as run_bench.py
    hands them on); the ``-t`` bound is the run plan's, plus the longest wait
    for sessions to connect, so it only ever ends a Locust that hangs.
    """
    run = plan_run(values, accepts_batches=False)
    bound = int(run.locust_bound_s + float(values["settle_timeout"]))
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary", "-t", f"{bound}s",
           "--stop-timeout", "5", "--loglevel", "INFO", "--exit-code-on-error", "0", *locust_argv(values, "push"),
           "--publish-url", nginx.publish_url, "--subscribe-url", nginx.subscribe_url, "--target-name", "nchan",
           "--target-pids", ",".join(map(str, target_pids)), "--publish-batch", str(run.batch),
           "--results", str(results), "--no-report"]
    if plan.processes > 1:  # a private master port on loopback, as run_bench.py does
        port = str(master_port)
        cmd += ["--processes", str(plan.processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                "--master-host", "127.0.0.1", "--master-port", port]
    return cmd


# -- reading what the servers say (pure) ---------------------------------------------------------

def parse_stub_status(text: str) -> dict[str, int]:
    """``nchan_stub_status``'s ``name: number`` lines (``subscribers: 100000``) as a dict; sizes in K as bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        match = re.fullmatch(r"\s*(\d+)(K?)\s*", value) if sep else None
        if match:
            out[name.strip()] = int(match[1]) * (1024 if match[2] else 1)
    return out


#: what nginx's error log says when it runs out of something, by the resource
_NGINX_SIGNS = {
    "open files (EMFILE)": "Too many open files",
    "worker_connections": "worker_connections are not enough",
    "memory": "Cannot allocate memory",
    "setrlimit refused": "setrlimit(RLIMIT_NOFILE",
}


def nginx_problems(log_text: str) -> dict[str, int]:
    """Lines of nginx's error log that say it ran out of something, counted by what (none: empty)."""
    counts = {what: log_text.count(sign) for what, sign in _NGINX_SIGNS.items()}
    return {what: n for what, n in counts.items() if n}


def error_label(kind: str) -> str:
    """An error kind with its errno named: ``connect_oserror_99`` -> ``connect_oserror_99 (EADDRNOTAVAIL)``."""
    match = re.search(r"oserror_(\d+)$", kind)
    name = errno.errorcode.get(int(match[1])) if match else None
    return f"{kind} ({name})" if name else kind


#: the kernel's TCP counters (/proc/net/netstat, machine-wide) that say connections were dropped or memory ran short
KERNEL_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPAbortOnMemory", "TCPMemoryPressures",
                   "TCPTimeWaitOverflow")


def parse_netstat(text: str) -> dict[str, int]:
    """/proc/net/netstat's counters by name: each ``Prefix:`` line of names is followed by one of values."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        out.update((k, int(v)) for k, v in zip(names.split()[1:], values.split()[1:]) if v.lstrip("-").isdigit())
    return out


def counter_growth(before: Mapping[str, int], after: Mapping[str, int],
                   names: Sequence[str] = KERNEL_COUNTERS) -> dict[str, int]:
    """How much each of ``names`` grew between two readings; those that did not are left out."""
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in names}
    return {name: n for name, n in grown.items() if n > 0}


#: /proc/net/tcp's state code of a connection in TIME_WAIT
_TIME_WAIT = "06"


def time_wait_by_address(proc_net_tcp: str) -> dict[str, int]:
    """Connections in TIME_WAIT by local address, from /proc/net/tcp's text (addresses in little-endian hex).

    A port in TIME_WAIT on a source address cannot be bound again until it
    expires (60 s): an earlier run's closed sessions take ports from the next.
    """
    counts: Counter[str] = Counter()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _TIME_WAIT:
            counts[str(IPv4Address(bytes.fromhex(fields[1].split(":")[0])[::-1]))] += 1
    return dict(counts)


def _errno_count(errors: Mapping[str, int], code: int, *names: str) -> int:
    return sum(n for kind, n in errors.items() if kind.endswith(f"oserror_{code}") or kind in names)


def stop_causes(*, requested: int, held: int, at_target: int, unmeasured: int, errors: Mapping[str, int],
                nginx: Mapping[str, int], kernel: Mapping[str, int], peak_fds: int, fd_limit: int,
                min_available_fraction: float | None, busy_fraction: float | None,
                exit_code: int | None) -> list[str]:
    """What kept sessions from connecting, each cause with its measurement; nothing when all held.

    Args:
        held: sessions held for the whole stream, as the audit and the target both saw them.
        at_target: sessions the target (nchan) held when publishing started: when
            they are all there, connecting was not what failed.
        unmeasured: the audit's subscribers of harness workers whose final
            payload the master never counted.
        errors: the results file's errors by kind (``connect_oserror_99``).
        nginx: :func:`nginx_problems` of nginx's error log.
        kernel: :func:`counter_growth` of the kernel's TCP counters over the run.
        peak_fds: the most open files any Locust or nginx worker held.
        min_available_fraction: the lowest available memory seen, as a share of all.
        busy_fraction: how busy the cores were (0-1) while the sessions connected.
        exit_code: Locust's exit code (negative: ended by that signal).
    """
    if held >= requested:
        return []
    causes = []
    if unmeasured:
        lost = errors.get("harness_worker_lost", 0)
        causes.append(f"harness: {unmeasured:,} subscribers unmeasured: the final payload of {lost:,} Locust "
                      f"worker(s) was not counted by the master (nchan held {at_target:,})")
    if at_target >= requested:
        return causes or [f"none measured: nchan held all {at_target:,}; the audit counted {held:,}"]
    ports = _errno_count(errors, errno.EADDRNOTAVAIL)
    if ports:
        causes.append(f"ports: {ports:,} connects failed with EADDRNOTAVAIL (a source address had no free "
                      "ephemeral port)")
    emfile = _errno_count(errors, errno.EMFILE, "connect_emfile")
    if emfile or peak_fds >= fd_limit * 0.98:
        causes.append(f"open files: {emfile:,} connects failed with EMFILE; the busiest process held "
                      f"{peak_fds:,} of {fd_limit:,}")
    enfile = _errno_count(errors, errno.ENFILE)
    if enfile:
        causes.append(f"open files: {enfile:,} connects failed with ENFILE (the system's file table is full)")
    for what in ("open files (EMFILE)", "worker_connections"):
        if nginx.get(what):
            causes.append(f"nginx {what}: {nginx[what]:,} lines in its error log")
    if kernel.get("ListenOverflows"):
        causes.append(f"listen queue: {kernel['ListenOverflows']:,} connection attempts overflowed a listen queue "
                      "(ListenOverflows, machine-wide)")
    memory = (_errno_count(errors, errno.ENOMEM) + _errno_count(errors, errno.ENOBUFS) + nginx.get("memory", 0)
              + kernel.get("TCPAbortOnMemory", 0))
    if memory or (min_available_fraction is not None and min_available_fraction < 0.05):
        low = "-" if min_available_fraction is None else f"{min_available_fraction:.0%}"
        causes.append(f"memory: {memory:,} ENOMEM/ENOBUFS errors or TCP aborts on memory; lowest available "
                      f"memory {low}")
    if exit_code is not None and exit_code < 0:
        causes.append(f"Locust ended by signal {-exit_code} (SIGKILL: the kernel's out-of-memory killer?)")
    timeouts = sum(n for kind, n in errors.items() if kind.startswith("connect_timeout"))
    if timeouts and busy_fraction is not None and busy_fraction >= 0.9:
        causes.append(f"CPU: {timeouts:,} connects timed out while the cores were {busy_fraction:.0%} busy")
    if not causes:
        top = ", ".join(f"{error_label(k)} x{n:,}" for k, n in Counter(errors).most_common(3)) or "no errors"
        busy = "-" if busy_fraction is None else f"{busy_fraction:.0%}"
        causes.append(f"none measured: {held:,} of {requested:,} connected ({top}; cores {busy} busy)")
    return causes


# -- measuring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcRow:
    """One process at one moment: which, its open files and memory (PSS counts shared pages once)."""

    role: str
    pid: int
    fds: int
    rss: int
    pss: int


def process_rows(root_pid: int, name: str) -> list[ProcRow]:
    """``root_pid`` (``<name> master``) and its children (``<name> worker``); gone processes are skipped."""
    rows = []
    try:
        root = psutil.Process(root_pid)
        procs = [(f"{name} master", root)] + [(f"{name} worker", c) for c in root.children(recursive=True)]
    except psutil.Error:
        return []
    for role, proc in procs:
        try:
            mem = proc.memory_full_info()
            rows.append(ProcRow(role, proc.pid, proc.num_fds(), mem.rss, mem.pss))
        except psutil.Error:
            pass
    return rows


def kernel_counters() -> dict[str, int]:
    try:
        return parse_netstat(Path("/proc/net/netstat").read_text())
    except OSError:
        return {}


def time_wait_on(addresses: Sequence[str]) -> int:
    """Ports of ``addresses`` still in TIME_WAIT now."""
    try:
        counts = time_wait_by_address(Path("/proc/net/tcp").read_text())
    except OSError:
        return 0
    return sum(counts.get(a, 0) for a in addresses)


def stub_status(url: str) -> dict[str, int]:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return parse_stub_status(resp.read().decode(errors="replace"))
    except (OSError, ValueError):
        return {}


@dataclass
class ScaleMonitor(Monitor):
    """``push_capacity``'s monitor reading nchan's subscriber count, plus per-process tables while connecting."""

    tables: list[tuple[int, list[ProcRow]]] = field(default_factory=list)
    available: list[tuple[int, int]] = field(default_factory=list)

    def _health_loop(self) -> None:
        next_table = 0.0
        while not self._stop.is_set():
            status = stub_status(self.health_url)
            harness = self.read(self.harness_pid)
            now = time.time_ns()
            if "subscribers" in status and harness is not None:
                self.health.append(HealthSample(now, status["subscribers"], harness[1]))
            if time.monotonic() >= next_table:
                next_table = time.monotonic() + TABLE_EVERY_S
                self.available.append((now, psutil.virtual_memory().available))
                if not status.get("total published messages"):
                    rows = process_rows(self.harness_pid, "locust") + process_rows(self.target_pid, "nginx")
                    self.tables.append((now, rows))
            self._stop.wait(0.25)

    def table_at(self, t_ns: int) -> list[ProcRow]:
        found = self.at_or_before([_Stamped(t, rows) for t, rows in self.tables], t_ns)
        return found.rows if found is not None else []

    def peak_fds(self) -> dict[tuple[str, int], int]:
        peaks: dict[tuple[str, int], int] = {}
        for _, rows in self.tables:
            for row in rows:
                peaks[row.role, row.pid] = max(peaks.get((row.role, row.pid), 0), row.fds)
        return peaks


@dataclass(frozen=True)
class _Stamped:
    t_ns: int
    rows: list[ProcRow]


def busy_fraction(mon: Monitor, start_ns: int, end_ns: int) -> float | None:
    """How busy all cores were between two moments (0-1), from the monitor's machine samples."""
    a, b = mon.at_or_before(mon.machine, start_ns), mon.at_or_before(mon.machine, end_ns)
    if a is None or b is None or b.t_ns <= a.t_ns:
        return None
    return float((b.cpu_s - a.cpu_s) / ((b.t_ns - a.t_ns) / NS * (psutil.cpu_count() or 1)))


def nginx_processes(master: int, workers: int, wait_s: float = 5.0) -> list[int]:
    """The master's pid and its workers' (waited for: the port answers before every worker is forked)."""
    deadline = time.monotonic() + wait_s
    children: list[psutil.Process] = []
    while time.monotonic() < deadline:
        children = psutil.Process(master).children()
        if len(children) >= workers:
            break
        time.sleep(0.05)
    return [master, *(c.pid for c in children)]


@dataclass(frozen=True)
class RlimitProbe:
    """What nginx's ``worker_rlimit_nofile`` above the hard limit got, measured."""

    hard: int
    asked: int
    got: int | None
    alert: str
    cap_sys_resource: bool


def has_cap_sys_resource() -> bool:
    """Whether this process may raise a hard limit (``CAP_SYS_RESOURCE``, bit 24 of CapEff)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    except (OSError, ValueError):
        pass
    return False


def open_files_limit(pid: int) -> int | None:
    """A process's hard open-files limit, from /proc (prlimit on another user's process needs CAP_SYS_RESOURCE)."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[4])
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe_rlimit(out: Path, hard: int) -> RlimitProbe:
    """Start an nginx asking for 5x the hard limit per worker; read what its worker got, and its log."""
    asked = hard * 5
    got = None
    with nchan_server(out / "rlimit-probe", NginxConfig(rlimit_nofile=asked, worker_connections=1024)) as nginx:
        deadline = time.monotonic() + 5
        while got is None and time.monotonic() < deadline:
            workers = nginx_processes(nginx.pid, 1)[1:]
            got = open_files_limit(workers[0]) if workers else None
            time.sleep(0.1)
        time.sleep(0.2)  # the alert is written as the worker starts
        log = (nginx.prefix / "error.log").read_text(errors="replace")
    alert = next((line.split("] ", 1)[-1] for line in log.splitlines() if "setrlimit" in line), "")
    return RlimitProbe(hard, asked, got, alert, has_cap_sys_resource())


# -- one run -------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class ScaleFigures(RunFigures):
    """``push_capacity``'s figures of one run, and what only a run at scale needs."""

    plan: ScalePlan
    command: list[str] = field(default_factory=list)
    nchan_peak: int = 0
    delivered_unique: int | None = None
    duplicates: int | None = None
    connect_s: float | None = None
    connect_p50_ms: float | None = None
    connect_p99_ms: float | None = None
    max_ms: float | None = None
    nginx_rss_idle: int = 0
    nginx_rss_full: int = 0
    procs: list[ProcRow] = field(default_factory=list)
    peak_fds: dict[tuple[str, int], int] = field(default_factory=dict)
    min_available: int | None = None
    nginx_log: dict[str, int] = field(default_factory=dict)
    kernel: dict[str, int] = field(default_factory=dict)
    unmeasured: int = 0
    causes: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        """Sessions connected for the whole stream, as the audit and nchan both saw them."""
        counts = [c for c in (self.subscribers_full, self.held_at_publish) if c is not None]
        return min(counts) if counts else 0

    @property
    def harness_rss_per_session(self) -> float | None:
        return self.rss_full / self.held_at_publish if self.held_at_publish else None

    @property
    def nginx_rss_per_session(self) -> float | None:
        n = self.held_at_publish
        return (self.nginx_rss_full - self.nginx_rss_idle) / n if n else None

    @property
    def harness_pss(self) -> int:
        return sum(r.pss for r in self.procs if r.role.startswith("locust"))

    def max_fds(self, prefix: str) -> int:
        return max((n for (role, _), n in self.peak_fds.items() if role.startswith(prefix)), default=0)


def run_values(args: argparse.Namespace, plan: ScalePlan) -> dict[str, Any]:
    """The option values of one run: this script's stream and waits, and the plan.

    Raises:
        OptionError: a value (or the stream they make) the harness would refuse, in its own words.
    """
    values = locust_values(plan, rate=args.rate, duration=args.duration, drain=args.drain, settle=args.settle,
                           settle_timeout=args.settle_timeout, spawn_rate=args.spawn_rate,
                           open_timeout=args.open_timeout, payload_bytes=args.payload_bytes)
    validate(values)
    return values


def run_scale(values: Mapping[str, Any], plan: ScalePlan, out: Path, label: str) -> ScaleFigures:
    """One run of ``plan`` against a fresh nginx + nchan, read back from its results file and the monitor."""
    fig = ScaleFigures(label, plan.sessions, plan=plan)
    results, log_path = out / f"{label}-results.json", out / f"{label}-locust.log"
    budget = plan_run(values, accepts_batches=False).parent_timeout_s + float(values["settle_timeout"])
    mon: ScaleMonitor | None = None
    with nchan_server(out / f"{label}-nginx", nginx_config(plan)) as nginx:
        nginx_pids = nginx_processes(nginx.pid, plan.nginx_workers)
        fig.command = locust_command(values, plan, nginx, results=results, target_pids=nginx_pids,
                                     master_port=free_port())
        (out / f"{label}-command.txt").write_text(" ".join(fig.command) + "\n")
        kernel_before = kernel_counters()
        waiting = time_wait_on(plan.addresses)
        if waiting:
            fig.notes.append(f"{waiting:,} ports of the source addresses were still in TIME_WAIT from an earlier "
                             "run when this one started")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(fig.command, cwd=REPO, env=python_env(REPO), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, **child_options())
        try:
            mon = ScaleMonitor(proc.pid, nginx.pid, nginx.status_url, interval=0.25)
            mon.start()
            try:
                fig.exit_code = proc.wait(budget)
            except subprocess.TimeoutExpired:
                fig.notes.append(f"locust did not exit within {budget:.0f} s; stopped it")
        finally:
            if mon is not None:
                mon.stop()
            code = stop_group(proc, grace_s=30)
            fig.exit_code = code if fig.exit_code is None else fig.exit_code
        fig.kernel = counter_growth(kernel_before, kernel_counters())
        fig.nginx_log = nginx_problems((nginx.prefix / "error.log").read_text(errors="replace"))
    read_results(fig, results, log_path, mon, float(values["drain"]))
    return fig


def read_results(fig: ScaleFigures, results: Path, log_path: Path, mon: ScaleMonitor, drain_s: float) -> None:
    """Fill ``fig`` from the results file (audit, latencies, errors) and the monitor (CPU, memory, files)."""
    fig.nchan_peak = max((h.subscribers for h in mon.health), default=0)
    fig.peak_fds = mon.peak_fds()
    if mon.available:
        fig.min_available = min(a for _, a in mon.available)
    try:
        mode = load_run(results.read_text()).mode("push")
    except (OSError, ResultsFormatError, KeyError) as exc:
        fig.notes.append(f"no usable results file ({exc}); locust log tail:\n{tail(log_path)}")
        fig.held_at_publish = mon.health[-1].subscribers if mon.health else 0
        fig.causes = _causes(fig, mon, time.time_ns())
        return
    audit = mode.audit
    fig.subscribers_full, fig.expected, fig.lost = audit.subscribers_full, audit.expected, audit.lost
    fig.delivered_unique, fig.duplicates = audit.delivered_unique, audit.duplicates
    fig.unmeasured = audit.count("subscribers_unmeasured")
    fig.published = audit.count("published")
    fig.deliveries = mode.throughput.deliveries
    fig.connected_peak = max((int(c) for c in mode.series.column("connected") if isinstance(c, (int, float))),
                             default=0)
    delivery, connect = mode.latency("delivery"), mode.latency("connect")
    fig.p50_ms, fig.p99_ms, fig.mean_ms, fig.max_ms = delivery.p50, delivery.p99, delivery.mean, delivery.max
    fig.connect_p50_ms, fig.connect_p99_ms = connect.p50, connect.p99
    fig.errors = dict(mode.errors)
    dues = [int(d) for d in mode.fanout.column("due_ns") if isinstance(d, int)]
    start_ns = mode.stream_start_ns
    end_ns = (max(dues) if dues else start_ns) + int(drain_s * NS)
    fig.stream_s = (max(dues) - min(dues)) / NS if len(dues) > 1 else 0.0
    window_figures(fig, mon, start_ns, end_ns)
    nginx0 = mon.target[0] if mon.target else None
    nginx1 = mon.at_or_before(mon.target, start_ns)
    fig.nginx_rss_idle = nginx0.rss if nginx0 is not None else 0
    fig.nginx_rss_full = nginx1.rss if nginx1 is not None else 0
    fig.procs = mon.table_at(start_ns)
    first = mon.first_subscribed()
    done = next((h for h in mon.health if h.subscribers >= fig.nchan_peak), None)
    if first is not None and done is not None:
        fig.connect_s = (done.t_ns - first.t_ns) / NS
    fig.notes.append(f"results: status {mode.status}" + (f" ({'; '.join(mode.status_reasons)})"
                                                         if mode.status_reasons else ""))
    fig.causes = _causes(fig, mon, start_ns)


def _causes(fig: ScaleFigures, mon: ScaleMonitor, until_ns: int) -> list[str]:
    first = mon.first_subscribed()
    busy = busy_fraction(mon, first.t_ns, until_ns) if first is not None else None
    total = psutil.virtual_memory().total
    return stop_causes(requested=fig.requested, held=fig.held, at_target=fig.held_at_publish,
                       unmeasured=fig.unmeasured, errors=fig.errors, nginx=fig.nginx_log, kernel=fig.kernel,
                       peak_fds=max(fig.peak_fds.values(), default=0), fd_limit=fig.plan.fd_limit,
                       min_available_fraction=None if fig.min_available is None else fig.min_available / total,
                       busy_fraction=busy, exit_code=fig.exit_code)


# -- printing ------------------------------------------------------------------------------------

def _kb(value: float | None) -> str:
    return fmt(None if value is None else value / 1000, ",.1f")


def _mb(value: float | None) -> str:
    return fmt(None if value is None else value / 1e6, ",.1f")


def report(args: argparse.Namespace, probe: RlimitProbe, figs: list[ScaleFigures], out: Path) -> None:
    """The plan and limits, one table (baseline, main, main/baseline), per-process files, causes and goals."""
    main_fig = figs[-1]
    base = figs[0] if len(figs) > 1 else None
    print()
    print(f"push scale: nginx + nchan, {args.rate:g} event/s for {args.duration:g} s, {args.payload_bytes} B "
          f"payload, drain {args.drain:g} s, {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB; out: {out}")
    raised = probe.got is not None and probe.got >= probe.asked
    print(f"open files: hard limit {probe.hard:,} per process (ulimit -Hn); CAP_SYS_RESOURCE "
          f"{'held' if probe.cap_sys_resource else 'not held'}; nginx worker_rlimit_nofile {probe.asked:,} -> "
          f"worker limit {fmt(probe.got)} ({'raised' if raised else 'not raised'}"
          f"{': ' + probe.alert if probe.alert else ''})")
    w = 20
    cols = [f.label for f in figs] + ([f"{main_fig.label}/{base.label}"] if base else [])
    print()
    print(f"{'':40}" + "".join(f"{c:>{w}}" for c in cols))

    def row(name: str, get: Any, spec: str = ",.1f", compare: bool = False) -> None:
        vals = [get(f) for f in figs]
        cells = [v if isinstance(v, str) else fmt(v, spec) for v in vals]
        if base is not None:
            cells.append(ratio(vals[-1], vals[0]) if compare and not isinstance(vals[0], str) else "")
        print(f"{name:40}" + "".join(f"{c:>{w}}" for c in cells))

    row("Locust processes (workers)", lambda f: f.plan.processes)
    row("  sessions per process", lambda f: f.plan.sessions_per_process)
    row("source addresses", lambda f: f"{f.plan.addresses[0]}..x{len(f.plan.addresses)}")
    row("  sessions per address", lambda f: f.plan.sessions_per_address)
    row("nginx workers (reuseport)", lambda f: f.plan.nginx_workers)
    row("  worker_connections", lambda f: f.plan.worker_connections)
    row("sessions requested", lambda f: f.requested)
    row("connected: audit subscribers_full", lambda f: f.subscribers_full)
    row("  harness connected gauge (peak)", lambda f: f.connected_peak)
    row("  nchan subscribers at publish", lambda f: f.held_at_publish)
    row("  nchan subscribers (peak)", lambda f: f.nchan_peak)
    row("connect: handshake p50 (ms)", lambda f: f.connect_p50_ms, ",.2f")
    row("  handshake p99 (ms)", lambda f: f.connect_p99_ms, ",.2f")
    row("  first to last session at nchan (s)", lambda f: f.connect_s)
    row("events published", lambda f: f.published)
    row("deliveries expected", lambda f: f.expected)
    row("  received (unique)", lambda f: f.delivered_unique)
    row("  lost", lambda f: f.lost)
    row("  duplicates", lambda f: f.duplicates)
    row("delivery latency p50 (ms)", lambda f: f.p50_ms, ",.2f", True)
    row("delivery latency p99 (ms)", lambda f: f.p99_ms, ",.2f", True)
    row("delivery latency max (ms)", lambda f: f.max_ms, ",.2f", True)
    row("harness CPU s (stream window)", lambda f: f.cpu_s, ",.2f")
    row("  window s", lambda f: f.window_s)
    row("  % of one core", lambda f: f.cpu_s / f.window_s * 100 if f.window_s else None)
    row("harness CPU us per delivery", lambda f: f.cpu_us_per_delivery, ",.2f", True)
    row("harness RSS, all processes (MB)", lambda f: f.rss_full / 1e6)
    row("  PSS, all processes (MB)", lambda f: f.harness_pss / 1e6)
    row("  RSS per session (KB)", lambda f: _kb(f.harness_rss_per_session), compare=False)
    row("  RSS per idle session (KB)", lambda f: None if f.rss_per_session is None else f.rss_per_session / 1000,
        compare=True)
    row("nginx RSS, all processes (MB)", lambda f: _mb(f.nginx_rss_full))
    row("  RSS per session (KB)", lambda f: None if f.nginx_rss_per_session is None else f.nginx_rss_per_session
        / 1000, compare=True)
    row("nginx CPU s (stream window)", lambda f: f.target_cpu_s, ",.2f")
    row("  CPU us per delivery", lambda f: f.target_cpu_us_per_delivery, ",.2f", True)
    row("all cores busy % (stream window)", lambda f: None if not f.window_s else
        f.machine_cpu_s / f.window_s / (psutil.cpu_count() or 1) * 100, ",.0f")
    row("  other processes (% of one core)", lambda f: None if not f.window_s else
        max(0.0, f.machine_cpu_s - f.cpu_s - f.target_cpu_s) / f.window_s * 100, ",.0f")
    row("open files: Locust worker (peak)", lambda f: f.max_fds("locust worker") or f.max_fds("locust master"))
    row("  Locust master (peak)", lambda f: f.max_fds("locust master"))
    row("  nginx worker (peak)", lambda f: f.max_fds("nginx worker"))
    row("  limit per process", lambda f: f.plan.fd_limit)
    row("lowest available memory (MB)", lambda f: _mb(f.min_available))
    for f in figs:
        print()
        print(f"[{f.label}] processes when publishing started (role, pid, open files, RSS MB, PSS MB):")
        for r in f.procs:
            print(f"    {r.role:14} {r.pid:>8} {r.fds:>8,} {r.rss / 1e6:>9.1f} {r.pss / 1e6:>9.1f}")
        if f.errors:
            print("  errors: " + ", ".join(f"{error_label(k)} x{n:,}" for k, n in sorted(f.errors.items())))
        if f.nginx_log:
            print(f"  nginx error log: {f.nginx_log}")
        if f.kernel:
            print(f"  kernel TCP counters grew (machine-wide): {f.kernel}")
        for cause in f.causes:
            print(f"  what stopped it: {cause}")
        for note in f.notes:
            print(f"  note: {note}")
        print(f"  command: {' '.join(f.command)}")
    print()
    rss = main_fig.rss_per_session
    goals = [
        (f"all {main_fig.requested:,} sessions connected and measured", main_fig.held >= main_fig.requested,
         f"{main_fig.held:,}"),
        ("0 deliveries lost", main_fig.lost == 0 and main_fig.expected is not None, fmt(main_fig.lost)),
        ("<= 6 KB harness RSS per idle session", rss is not None and rss <= 6000, _kb(rss) + " KB"),
    ]
    print(f"goals ({main_fig.label}):")
    for name, ok, value in goals:
        print(f"  {'PASS' if ok else 'MISS'}  {name:44} measured {value}")


# -- main ----------------------------------------------------------------------------------------

def _ports_per_address() -> int:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28_232


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100_000, help="sessions of the main run (default 100000)")
    p.add_argument("--baseline-sessions", type=int, default=10_000,
                   help="sessions of the baseline run before it, the same way (0: none; default 10000)")
    p.add_argument("--rate", type=float, default=0.2, help="events per second (default 0.2: one every 5 s)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of stream (default 60)")
    p.add_argument("--payload-bytes", type=int, default=256)
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for deliveries after the last event")
    p.add_argument("--settle", type=float, default=2.0, help="seconds between all connected and the first event")
    p.add_argument("--settle-timeout", type=float, default=180.0,
                   help="longest wait for the sessions to connect after spawning (default 180)")
    p.add_argument("--spawn-rate", type=float, default=2000.0, help="sessions started per second (default 2000)")
    p.add_argument("--open-timeout", type=float, default=30.0, help="seconds to open one session (default 30)")
    p.add_argument("--processes", type=int, default=0, help="Locust worker processes (0: one per "
                   f"{_per_worker(resource.getrlimit(resource.RLIMIT_NOFILE)[1]):,} sessions)")
    p.add_argument("--addresses", type=int, default=0,
                   help=f"loopback source addresses (0: one per {SESSIONS_PER_ADDRESS:,} sessions)")
    p.add_argument("--nginx-workers", type=int, default=0, help="nginx workers (0: as for --processes, "
                   "at least one per core)")
    p.add_argument("--out", default="", help="folder for logs and results (default /tmp/push_scale-<time>)")
    args = p.parse_args(argv)
    if args.sessions < 1 or args.baseline_sessions < 0 or args.rate <= 0 or args.duration <= 0:
        p.error("sessions, rate and duration must be positive")
    problem = missing()
    if problem is not None:
        p.error(problem)
    out = Path(args.out or f"/tmp/push_scale-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fd_limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    probe = probe_rlimit(out, fd_limit)
    shared = dict(fd_limit=fd_limit, nginx_fd_limit=probe.got if probe.got and probe.got > fd_limit else None,
                  ports_per_address=_ports_per_address(), cores=psutil.cpu_count() or 1, processes=args.processes,
                  addresses=args.addresses, nginx_workers=args.nginx_workers)
    plans = [("main", plan_scale(args.sessions, **shared))]
    if 0 < args.baseline_sessions < args.sessions:
        # its own source addresses, after the main run's: its closed connections' ports stay out of the way
        first = FIRST_HOST + len(plans[0][1].addresses)
        shared.update(processes=0, addresses=0, nginx_workers=0)
        plans.insert(0, ("baseline", plan_scale(args.baseline_sessions, first_host=first, **shared)))
    runs = []
    for label, plan in plans:
        for found in plan.problems():
            p.error(f"{label} plan: {found}")
        try:
            runs.append((label, plan, run_values(args, plan)))
        except OptionError as exc:
            p.error(str(exc))
    figs: list[ScaleFigures] = []
    for label, plan, values in runs:
        if figs:
            time.sleep(5)
        print(f"[{label}] {plan.sessions:,} sessions: {plan.processes} Locust process(es), "
              f"{len(plan.addresses)} source address(es), {plan.nginx_workers} nginx workers ...", flush=True)
        fig = run_scale(values, plan, out, label)
        print(f"[{label}] done: {fig.held:,} held, {fmt(fig.lost)} lost, "
              f"{fmt(fig.cpu_us_per_delivery, '.2f')} us/delivery", flush=True)
        figs.append(fig)
    report(args, probe, figs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
