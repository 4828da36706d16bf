"""Sampling CPU and memory of harness and target processes with psutil.

Each Locust process samples itself once a second (so a saturated harness can
be flagged, process by process, even across machines); the process that
knows the target's pids samples those too. A vanished process simply stops
producing samples; the absence is visible in the report.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

import psutil

from ..core.resources import Sample

__all__ = ["ProcessSampler"]


class ProcessSampler:
    """Take :class:`Sample` readings of a fixed set of (role, pid) pairs."""

    def __init__(self, targets: Iterable[tuple[str, int]] = ()) -> None:
        self._procs: dict[tuple[str, int], psutil.Process] = {}
        for role, pid in targets:
            self.add(role, pid)

    def add(self, role: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # prime: the first reading is meaningless
            self._procs[(role, pid)] = proc
        except psutil.Error:
            pass

    def add_self(self, role: str = "harness") -> None:
        self.add(role, os.getpid())

    def sample(self, connections: int = -1) -> list[Sample]:
        now = time.time()
        out: list[Sample] = []
        for (role, pid), proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    out.append(Sample(now, role, pid, times.user + times.system, proc.cpu_percent(None),
                                      proc.memory_info().rss,
                                      connections if pid == os.getpid() else -1))
            except psutil.Error:
                del self._procs[(role, pid)]
        return out
