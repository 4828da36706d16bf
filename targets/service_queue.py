"""A target with a known capacity, for tests: one service queue of deliveries.

Why: a capacity sweep must be checked against a target whose capacity is
known. With ``--capacity C`` a built-in target serves at most C deliveries
per second, one event at a time in publication order: an event for N
subscribers occupies the server for N / C seconds and is delivered when that
service ends. At R events/s the offered load is N * R / C; below 1 latency
is the service time (rising with N), above it a backlog grows without bound
and latency with it. So the true capacity is N* = C / R -- and the latency
curve bends exactly there.
"""

from __future__ import annotations

__all__ = ["ServiceQueue"]


class ServiceQueue:
    """When each event's service ends, for a server of ``capacity`` deliveries/s (0: no limit)."""

    def __init__(self, capacity: float = 0.0) -> None:
        if capacity < 0 or capacity != capacity:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._free_at = 0.0

    def release_at(self, ready_at: float, deliveries: int) -> float:
        """The time an event ready at ``ready_at`` with ``deliveries`` to make is done (same clock)."""
        if self.capacity <= 0:
            return ready_at
        start = max(ready_at, self._free_at)
        self._free_at = start + max(0, deliveries) / self.capacity
        return self._free_at
