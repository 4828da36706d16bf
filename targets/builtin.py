"""The built-in targets: reference servers the harness starts as child processes.

Each wraps one ``python -m targets.<x>_server`` process (see
:class:`targets._process.ServerProcess`), so its CPU and memory are sampled
apart from the harness's, and maps the URLs the server announces onto the
egress modes the harness asks for.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from deliverybench.core.dialect import Dialect
from targets._process import ServerProcess
from targets.base import Target, TargetError

__all__ = ["BuiltinTarget", "PushTarget", "CallbackTarget", "SinkTarget", "FRAME_DIALECTS"]

#: how subscribers read each ``frame`` of the built-in push target (benchmarks of the harness's framing cost)
FRAME_DIALECTS: dict[str, Dialect] = {"envelope": Dialect(event_path="/data"), "nats": Dialect(protocol="nats"),
                                      "socketio": Dialect(protocol="socketio")}

_HEALTH_POLL_S = 0.05


class BuiltinTarget(Target):
    """A Target that is one server process started from this repository."""

    kind: ClassVar[str] = "builtin"
    accepts_batches: ClassVar[bool] = True
    module: ClassVar[str]
    #: egress mode -> key of the server's ready-line ``urls``
    egress_keys: ClassVar[dict[str, str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.offers = tuple(cls.egress_keys)

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self._proc: ServerProcess | None = None

    def server_args(self) -> list[str]:
        """Command-line arguments of the server process."""
        return ["--host", self.host]

    def options(self) -> dict[str, Any]:
        """Constructor options, as recorded in the results file."""
        return {"host": self.host}

    def server_env(self) -> dict[str, str]:
        """Environment for the server process (secrets go here, not on its command line)."""
        return {}

    def start(self, *, timeout_s: float = 15.0) -> None:
        if self._proc is not None and self._proc.alive:
            return
        deadline = time.monotonic() + timeout_s
        proc = ServerProcess(self.module, self.server_args(), ready_timeout_s=timeout_s, env=self.server_env())
        proc.start()
        self._proc = proc
        # Ready means bound; healthy means it also answers. Normally the same
        # moment, but a server is only handed to the harness once it answers.
        while not self.health():
            if not proc.alive:
                self.stop()
                raise TargetError(f"{self.name} target exited right after start (exit code {proc.returncode})")
            if time.monotonic() >= deadline:
                url = self.health_url
                self.stop()
                raise TargetError(f"{self.name} target did not become healthy within {timeout_s:g} s ({url})")
            time.sleep(_HEALTH_POLL_S)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.alive

    def _url(self, key: str) -> str | None:
        return self._proc.urls.get(key) if self._proc is not None else None

    @property
    def ingress_url(self) -> str | None:
        return self._url("ingress")

    def egress_url(self, mode: str) -> str | None:
        key = self.egress_keys.get(mode)
        return self._url(key) if key is not None else None

    @property
    def health_url(self) -> str | None:
        return self._url("health")

    @property
    def stats_url(self) -> str | None:
        return self._url("stats")

    def pids(self) -> list[int]:
        if self._proc is None or not self._proc.alive or self._proc.pid is None:
            return []
        return [self._proc.pid, *self._proc.extra_pids]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options()}


class PushTarget(BuiltinTarget):
    """WebSocket push (websockets + uvloop), plus Server-Sent Events, long-polling and polling of the same stream.

    Args:
        host: address to bind.
        delay_ms: TEST ONLY -- hold every event this long before delivery.
        capacity: TEST ONLY -- at most this many deliveries per second (a known capacity, N* = capacity / rate).
        buffer: events kept for polling.
        workers: processes holding WebSocket sessions (one port, SO_REUSEPORT), for more
            sessions than one process's open-files limit allows.
    """

    name: ClassVar[str] = "push"
    module: ClassVar[str] = "targets.push_server"
    egress_keys: ClassVar[dict[str, str]] = {"push": "push", "sse": "sse", "longpoll": "longpoll", "poll": "poll"}

    def __init__(self, *, host: str = "127.0.0.1", delay_ms: float = 0.0, buffer: int = 10_000,
                 workers: int = 1, capacity: float = 0.0, frame: str = "raw") -> None:
        super().__init__(host=host)
        self.frame = frame
        self.delay_ms = delay_ms
        self.capacity = capacity
        self.buffer = buffer
        self.workers = workers

    def server_args(self) -> list[str]:
        return [*super().server_args(), "--port", "0", "--ws-port", "0",
                "--delay-ms", repr(float(self.delay_ms)), "--capacity", repr(float(self.capacity)),
                "--buffer", str(self.buffer), "--workers", str(self.workers), "--frame", self.frame]

    def options(self) -> dict[str, Any]:
        return {**super().options(), "delay_ms": self.delay_ms, "capacity": self.capacity, "buffer": self.buffer,
                "workers": self.workers, **({"frame": self.frame} if self.frame != "raw" else {})}

    def dialect(self, mode: str) -> Dialect:
        """The relay contract, or (benchmarks) the protocol whose framing ``frame`` imitates on push."""
        if mode != "push" or self.frame == "raw":
            return Dialect()
        return FRAME_DIALECTS[self.frame]


class CallbackTarget(BuiltinTarget):
    """Webhook callbacks (aiohttp): subscribers register a URL, events are POSTed to it.

    Args:
        host: address to bind.
        secret: signing secret for deliveries; None leaves the choice to the
            server (its environment variable, else its documented test secret).
        timeout_s: per-delivery HTTP timeout.
        retry_schedule: comma-separated retry delays in seconds.
        max_in_flight: concurrent deliveries the server allows.
        delay_ms: TEST ONLY -- hold every event this long before delivery.
        buffer: events kept for polling.
        capacity: TEST ONLY -- at most this many deliveries per second (a known capacity, N* = capacity / rate).
    """

    name: ClassVar[str] = "callback"
    module: ClassVar[str] = "targets.callback_server"
    egress_keys: ClassVar[dict[str, str]] = {"callback": "subscriptions", "poll": "poll"}

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        secret: str | None = None,
        timeout_s: float = 15.0,
        retry_schedule: str = "0.05,0.1,0.2,0.4,0.8",
        max_in_flight: int = 256,
        delay_ms: float = 0.0,
        buffer: int = 10_000,
        capacity: float = 0.0,
    ) -> None:
        super().__init__(host=host)
        self.secret = secret
        self.timeout_s = timeout_s
        self.retry_schedule = retry_schedule
        self.max_in_flight = max_in_flight
        self.delay_ms = delay_ms
        self.capacity = capacity
        self.buffer = buffer

    def server_env(self) -> dict[str, str]:
        # The server reads DELIVERYBENCH_WEBHOOK_SECRET: a secret on argv would show in `ps`.
        return {"DELIVERYBENCH_WEBHOOK_SECRET": self.secret} if self.secret is not None else {}

    def server_args(self) -> list[str]:
        args = [*super().server_args(), "--port", "0"]
        return args + [
            "--timeout-s", repr(float(self.timeout_s)),
            "--retry-schedule", self.retry_schedule,
            "--max-in-flight", str(self.max_in_flight),
            "--delay-ms", repr(float(self.delay_ms)),
            "--capacity", repr(float(self.capacity)),
            "--buffer", str(self.buffer),
        ]

    def options(self) -> dict[str, Any]:
        # The secret itself never goes into a results file.
        return {**super().options(), "secret_given": self.secret is not None, "timeout_s": self.timeout_s,
                "retry_schedule": self.retry_schedule, "max_in_flight": self.max_in_flight,
                "delay_ms": self.delay_ms, "capacity": self.capacity, "buffer": self.buffer}


class SinkTarget(BuiltinTarget):
    """A webhook consumer for burst tests: acknowledges every POST and counts it.

    Args:
        host: address to bind.
        delay_ms: simulated processing time per delivery.
        status: HTTP status every delivery gets.
    """

    name: ClassVar[str] = "sink"
    module: ClassVar[str] = "targets.sink_server"
    egress_keys: ClassVar[dict[str, str]] = {"burst": "consumer"}

    def __init__(self, *, host: str = "127.0.0.1", delay_ms: float = 0.0, status: int = 200) -> None:
        super().__init__(host=host)
        self.delay_ms = delay_ms
        self.status = status

    def server_args(self) -> list[str]:
        return [*super().server_args(), "--port", "0",
                "--delay-ms", repr(float(self.delay_ms)), "--status", str(self.status)]

    def options(self) -> dict[str, Any]:
        return {**super().options(), "delay_ms": self.delay_ms, "status": self.status}
