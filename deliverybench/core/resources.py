"""Resource samples of the harness and target processes, and what they mean.

Samplers (adapters) take one :class:`Sample` per process per second with
psutil; this module only interprets them: CPU-seconds and peak RSS per role,
and whether the harness itself was saturated, in which case its latency
figures measure the harness rather than the target and must be flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Sample", "RoleCost", "SaturationVerdict", "role_costs", "harness_saturation", "one_per_second",
           "SAMPLE_COLUMNS", "MACHINE_ROLE", "STEAL_ROLE", "steal_fraction"]

SAMPLE_COLUMNS = ("t_s", "role", "pid", "cpu_s", "cpu_percent", "rss_bytes", "connections")
#: the role of whole-machine samples: pid 0, cpu_percent of all cores (100 = every core busy)
MACHINE_ROLE = "machine"
#: The role of the machine's CPU steal: time the hypervisor gave these cores to other guests while
#: ours wanted them (pid 0; ``cpu_s`` cumulative steal seconds, ``cpu_percent`` of all cores). Sampled
#: because on a shared VM a run's latencies move with it (see ``core.gate.STEAL_WARNING``).
STEAL_ROLE = "steal"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one process.

    ``cpu_s`` is cumulative user+system CPU time since the process started, so
    cost over a run is a difference and needs no integration; ``cpu_percent``
    is over the preceding interval (100 = one full core).
    """

    t_s: float
    role: str
    pid: int
    cpu_s: float
    cpu_percent: float
    rss_bytes: int
    connections: int = -1

    def to_row(self) -> list[object]:
        return [round(self.t_s, 3), self.role, self.pid, round(self.cpu_s, 4), round(self.cpu_percent, 1),
                self.rss_bytes, self.connections]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Sample:
        t_s, role, pid, cpu_s, pct, rss, *rest = row
        conns = int(rest[0]) if rest else -1
        return cls(float(t_s), str(role), int(pid), float(cpu_s), float(pct), int(rss), conns)


@dataclass(frozen=True, slots=True)
class RoleCost:
    role: str
    processes: int
    cpu_s: float
    peak_rss_bytes: int
    max_cpu_percent: float
    mean_cpu_percent: float

    def to_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "processes": self.processes,
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "max_cpu_percent": round(self.max_cpu_percent, 1),
            "mean_cpu_percent": round(self.mean_cpu_percent, 1),
        }


def one_per_second(samples: Iterable[Sample]) -> list[Sample]:
    """At most one sample per (role, pid, wall second): the last one taken in it.

    Processes sample themselves about once a second and once more when they
    stop; two readings landing in one second would double that second's
    RSS in sums and make the CPU line zig-zag.
    """
    last: dict[tuple[str, int, int], Sample] = {}
    for s in samples:
        key = (s.role, s.pid, int(s.t_s))
        known = last.get(key)
        if known is None or s.t_s >= known.t_s:
            last[key] = s
    return sorted(last.values(), key=lambda s: (s.t_s, s.role, s.pid))


def _by_pid(samples: Iterable[Sample], role: str) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = {}
    for s in samples:
        if s.role == role:
            out.setdefault(s.pid, []).append(s)
    for rows in out.values():
        rows.sort(key=lambda s: s.t_s)
    return out


def role_costs(samples: Sequence[Sample]) -> dict[str, RoleCost]:
    """CPU-seconds used (last minus first reading), peak RSS summed over processes."""
    out: dict[str, RoleCost] = {}
    for role in sorted({s.role for s in samples}):
        per_pid = _by_pid(samples, role)
        cpu = sum(rows[-1].cpu_s - rows[0].cpu_s for rows in per_pid.values())
        rss_by_time: dict[int, int] = {}
        for rows in per_pid.values():
            per_second: dict[int, int] = {}
            for s in rows:  # one reading per process per second, or a double flush doubles it
                key = round(s.t_s)
                per_second[key] = max(per_second.get(key, 0), s.rss_bytes)
            for key, rss in per_second.items():
                rss_by_time[key] = rss_by_time.get(key, 0) + rss
        percents = [s.cpu_percent for rows in per_pid.values() for s in rows[1:]]
        out[role] = RoleCost(
            role=role,
            processes=len(per_pid),
            cpu_s=max(cpu, 0.0),
            peak_rss_bytes=max(rss_by_time.values(), default=0),
            max_cpu_percent=max(percents, default=0.0),
            mean_cpu_percent=sum(percents) / len(percents) if percents else 0.0,
        )
    return out


@dataclass(frozen=True, slots=True)
class SaturationVerdict:
    saturated: bool
    reason: str
    busiest_pid: int | None = None
    busy_fraction: float = 0.0
    #: share of the machine's samples with every core above the threshold (None: not sampled)
    machine_busy_fraction: float | None = None
    #: share of all CPU time the hypervisor stole inside the window (None: not sampled)
    steal_fraction: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"saturated": self.saturated, "reason": self.reason, "busiest_pid": self.busiest_pid,
                "busy_fraction": round(self.busy_fraction, 3),
                "machine_busy_fraction": None if self.machine_busy_fraction is None
                else round(self.machine_busy_fraction, 3),
                "steal_fraction": None if self.steal_fraction is None else round(self.steal_fraction, 4)}


def harness_saturation(
    samples: Sequence[Sample],
    *,
    role: str = "harness",
    threshold_percent: float = 90.0,
    max_busy_fraction: float = 0.2,
    window: tuple[float, float] | None = None,
) -> SaturationVerdict:
    """Flag a harness that could not keep up: a process near a full core, or a full machine.

    One Locust process is one core (one GIL, one event loop): above
    ``threshold_percent`` its receive timestamps queue behind its own work.
    The run is flagged when any harness process is above it in more than
    ``max_busy_fraction`` of its samples inside ``window`` (seconds) -- or
    when the *machine* (role ``machine``, whose ``cpu_percent`` is of all
    cores together) was that busy that often: then every process waits for
    a core, and a harness process at 50 % may be starved rather than idle.
    """
    machine = [s.cpu_percent for rows in _by_pid(samples, MACHINE_ROLE).values() for s in rows[1:]
               if window is None or window[0] <= s.t_s <= window[1]]
    machine_busy = (sum(1 for p in machine if p >= threshold_percent) / len(machine)) if machine else None
    steal = steal_fraction(samples, window=window)
    verdict = _process_saturation(samples, role=role, threshold_percent=threshold_percent,
                                  max_busy_fraction=max_busy_fraction, window=window)
    if machine_busy is not None and machine_busy > max_busy_fraction and not verdict.saturated:
        return SaturationVerdict(
            True, f"every core of the machine was above {threshold_percent:.0f}% busy in {machine_busy:.0%} of "
                  "the samples; the harness competed for CPU, so its latencies are not trustworthy",
            verdict.busiest_pid, verdict.busy_fraction, machine_busy, steal)
    return SaturationVerdict(verdict.saturated, verdict.reason, verdict.busiest_pid, verdict.busy_fraction,
                             machine_busy, steal)


def steal_fraction(samples: Sequence[Sample], *, window: tuple[float, float] | None = None) -> float | None:
    """Share of all CPU time stolen by the hypervisor inside ``window`` (None: never sampled).

    The mean of the :data:`STEAL_ROLE` readings' ``cpu_percent`` (each the
    preceding interval's steal over all cores) after the first in the window.
    """
    rows = sorted((s for s in samples if s.role == STEAL_ROLE and (window is None or window[0] <= s.t_s <= window[1])),
                  key=lambda s: s.t_s)[1:]
    if not rows:
        return None
    return min(1.0, sum(s.cpu_percent for s in rows) / len(rows) / 100.0)


def _process_saturation(
    samples: Sequence[Sample], *, role: str, threshold_percent: float, max_busy_fraction: float,
    window: tuple[float, float] | None,
) -> SaturationVerdict:
    worst: tuple[float, int | None] = (0.0, None)
    for pid, rows in _by_pid(samples, role).items():
        readings = [s.cpu_percent for s in rows[1:] if window is None or window[0] <= s.t_s <= window[1]]
        if not readings:
            continue
        busy = sum(1 for p in readings if p >= threshold_percent) / len(readings)
        if busy > worst[0] or worst[1] is None:
            worst = (busy, pid)
    busy, busiest = worst
    if busiest is None:
        return SaturationVerdict(False, "no harness samples", None, 0.0)
    pid = busiest
    if busy > max_busy_fraction:
        return SaturationVerdict(
            True,
            f"harness process {pid} was above {threshold_percent:.0f}% CPU in {busy:.0%} of its samples; "
            "latencies include the harness's own queueing and are not trustworthy",
            pid,
            busy,
        )
    return SaturationVerdict(False, f"busiest harness process above {threshold_percent:.0f}% CPU in {busy:.0%} of "
                             "samples", pid, busy)


def samples_from_rows(rows: Iterable[Sequence[object]]) -> list[Sample]:
    return [Sample.from_row(r) for r in rows]


def costs_to_dict(costs: Mapping[str, RoleCost]) -> dict[str, dict[str, object]]:
    return {role: cost.to_dict() for role, cost in costs.items()}
