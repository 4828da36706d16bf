"""The run plan: every value derived from the resolved options, worked out once.

``run_bench.py`` (building the Locust command and bounding its wait), the
per-process harness (how many ids the stream can hold) and the publisher
(warm-up, batch size, how long to wait for it) all need the same few
derived values. Each used to work them out on its own, with its own
margins; now :func:`plan_run` does, and they read the :class:`RunPlan`.

Pure: option values in (by ``dest``, as ``run_bench.py`` resolves them or as
a locustfile's parsed options hold them), a frozen plan out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .options import schedule_from
from .schedule import Schedule

__all__ = ["MAX_BATCH", "LOCUST_MARGIN_S", "PARENT_MARGIN_S", "PUBLISH_MARGIN_S", "RunPlan", "plan_run",
           "timed_phases"]

#: the largest NDJSON batch sent to a target that takes batches
MAX_BATCH = 1000
#: Locust's own ``-t`` bound, beyond settling, stream, drain and spawning: room for the wait for
#: subscribers (--settle-timeout is not counted) and the publisher's last timeouts, so that the
#: bound only ever ends a Locust that hangs, never one that is still measuring
LOCUST_MARGIN_S = 120.0
#: run_bench.py's hard timeout on the Locust process, beyond the same sum: twice Locust's margin, so
#: a Locust stopped by its own ``-t`` still has time to write what it measured before it is killed
PARENT_MARGIN_S = 240.0
#: how long the publisher's greenlet waits beyond stream, warm-up and one request timeout: the
#: publisher winds down on its own within that; past it, something is stuck
PUBLISH_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run of one mode will do, derived from its options.

    Attributes:
        schedule: the measured stream's due times.
        warmup: the warm-up stream published before it (same rate, no event
            cap), or None without ``--warmup``.
        id_limit: the stream's length, warm-up included: no id at or above it
            is ever allocated for (an id from a target beyond it is unexpected).
        batch: most events per publish request: ``--publish-batch``, else
            :data:`MAX_BATCH` for a target that takes batches, else 1.
        spawn_s: seconds Locust takes to start every subscriber (0 when the
            values do not say how many: a locustfile's own ``-u``).
        locust_bound_s: the ``-t`` handed to Locust (see :data:`LOCUST_MARGIN_S`).
        parent_timeout_s: how long ``run_bench.py`` waits for the Locust before
            stopping it (see :data:`PARENT_MARGIN_S`).
        publish_wait_s: how long the controller waits for the publisher (see
            :data:`PUBLISH_MARGIN_S`).
    """

    schedule: Schedule
    warmup: Schedule | None
    id_limit: int
    batch: int
    spawn_s: float
    locust_bound_s: float
    parent_timeout_s: float
    publish_wait_s: float


def plan_run(values: Mapping[str, Any], *, accepts_batches: bool) -> RunPlan:
    """The plan of a run with option ``values`` against a target that does (not) take batches.

    Options a mode does not have (a burst has no ``warmup``,
    ``publish_batch`` or ``publish_timeout``; a locustfile no
    ``subscribers``) count as zero.

    Raises:
        KeyError: a schedule option is missing.
        ValueError: the values do not make a schedule.
    """
    schedule = schedule_from(values)
    warmup_s = float(values.get("warmup") or 0.0)
    warmup = dataclasses.replace(schedule, duration_s=warmup_s, max_events=None) if warmup_s else None
    # the warm-up's events come first, at the same rate: the ids of both streams share one range
    whole = (dataclasses.replace(schedule, duration_s=schedule.duration_s + warmup_s, max_events=None)
             if warmup_s else schedule)
    spawn_s = _spawn_s(values)
    busy_s = float(values["settle"]) + float(values["duration"]) + float(values["drain"]) + spawn_s
    return RunPlan(
        schedule=schedule,
        warmup=warmup,
        id_limit=max(1, whole.expected_count),
        batch=int(values.get("publish_batch") or 0) or (MAX_BATCH if accepts_batches else 1),
        spawn_s=spawn_s,
        locust_bound_s=busy_s + LOCUST_MARGIN_S,
        parent_timeout_s=busy_s + PARENT_MARGIN_S,
        publish_wait_s=schedule.duration_s + warmup_s + float(values.get("publish_timeout") or 0.0)
        + PUBLISH_MARGIN_S,
    )


def _spawn_s(values: Mapping[str, Any]) -> float:
    subscribers = float(values.get("subscribers") or 0)
    spawn_rate = float(values.get("spawn_rate") or 0.0)
    return subscribers / spawn_rate if subscribers and spawn_rate else 0.0


def timed_phases(values: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """What a run of ``values`` waits out, in order, in seconds: spawning, settle, warm-up, stream, drain.

    Their sum is the least time the run takes, so a Locust ``-t`` below it
    ends the run before its stream and drain do (the wait for subscribers to
    connect and the publisher's last timeouts come on top). Phases of zero
    seconds are left out; the stream never is.

    Raises:
        KeyError: ``settle``, ``duration`` or ``drain`` is missing.
    """
    phases = (("spawning", _spawn_s(values)), ("settle", float(values["settle"])),
              ("warm-up", float(values.get("warmup") or 0.0)), ("stream", float(values["duration"])),
              ("drain", float(values["drain"])))
    return tuple((name, seconds) for name, seconds in phases if seconds > 0 or name == "stream")
