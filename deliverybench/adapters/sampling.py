"""Sampling CPU and memory of harness and target processes with psutil.

Each Locust process that runs users samples itself once a second (so a
saturated harness can be flagged, process by process, even across
machines); the process that knows the target's pids samples those, and
itself only when no harness in it already does -- one reading per process
per second, never two. A vanished process simply stops producing samples;
the absence is visible in the report.

CPU percent is computed here from consecutive ``cpu_times`` readings over
the wall time between them, not with psutil's ``cpu_percent``: its first
reading after priming covers however short a gap there was (a process seen
at 300 % of a core for one sample), and a reading over a very short gap is
noise. A gap under half a second gives no percent (0.0) and is marked as
the first reading of its process, which the saturation check skips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import psutil

from ..core.resources import MACHINE_ROLE, STEAL_ROLE, Sample

__all__ = ["ProcessSampler", "MIN_GAP_S"]

#: shortest gap between two readings that gives a CPU percent
MIN_GAP_S = 0.5


class ProcessSampler:
    """Take :class:`Sample` readings of a fixed set of (role, pid) pairs."""

    def __init__(self, targets: Iterable[tuple[str, int]] = ()) -> None:
        self._machine: tuple[float, float] | None = None
        self._steal: tuple[float, float] | None = None
        self._procs: dict[tuple[str, int], psutil.Process] = {}
        self._last: dict[tuple[str, int], tuple[float, float]] = {}
        for role, pid in targets:
            self.add(role, pid)

    def add(self, role: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
        except psutil.Error:
            return
        self._procs[(role, pid)] = proc
        self._last[(role, pid)] = (time.time(), times.user + times.system)

    def add_self(self, role: str = "harness") -> None:
        self.add(role, os.getpid())

    def add_machine(self) -> None:
        """Also sample the whole machine: busy CPU over all cores (role ``machine``, pid 0) and the
        hypervisor's steal (role ``steal``, pid 0)."""
        now, times = time.time(), psutil.cpu_times()
        self._machine = (now, _busy_cpu_s(times))
        self._steal = (now, _steal_s(times))

    def sample(self, connections: int = -1) -> list[Sample]:
        out: list[Sample] = []
        for key, proc in list(self._procs.items()):
            role, pid = key
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
            except psutil.Error:
                del self._procs[key]
                continue
            except OSError:  # EMFILE: a process at its open-files limit cannot open /proc; skip this reading
                continue
            now, cpu_s = time.time(), times.user + times.system
            last_t, last_cpu = self._last.get(key, (now, cpu_s))
            gap = now - last_t
            if gap < MIN_GAP_S:
                percent = 0.0
            else:
                percent = max(0.0, 100.0 * (cpu_s - last_cpu) / gap)
                self._last[key] = (now, cpu_s)
            out.append(Sample(now, role, pid, cpu_s, percent, rss, connections if pid == os.getpid() else -1))
        if self._machine is not None and self._steal is not None:
            try:
                now, machine_times = time.time(), psutil.cpu_times()  # one reading for both machine figures
                used = psutil.virtual_memory().used
            except OSError:  # EMFILE, as above
                return out
            busy, stolen = _busy_cpu_s(machine_times), _steal_s(machine_times)
            percent, self._machine = _share_of_all_cores(self._machine, now, busy)
            out.append(Sample(now, MACHINE_ROLE, 0, busy, percent, used))
            percent, self._steal = _share_of_all_cores(self._steal, now, stolen)
            out.append(Sample(now, STEAL_ROLE, 0, stolen, percent, 0))
        return out


def _share_of_all_cores(last: tuple[float, float], now: float, cpu_s: float) -> tuple[float, tuple[float, float]]:
    """(percent of all cores since ``last``, the reading to compare the next one with)."""
    last_t, last_cpu = last
    if now - last_t < MIN_GAP_S:
        return 0.0, last
    return max(0.0, 100.0 * (cpu_s - last_cpu) / (now - last_t) / (psutil.cpu_count() or 1)), (now, cpu_s)


def _steal_s(times: Any) -> float:
    """CPU-seconds the hypervisor has stolen from all cores since boot (0 where not reported)."""
    return float(getattr(times, "steal", 0.0))


def _busy_cpu_s(times: Any) -> float:
    """CPU-seconds all cores have spent busy since boot (everything but idle and iowait)."""
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))
