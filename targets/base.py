"""What the harness needs from a system under test, and how targets are found.

The harness never cares whether a target is a built-in reference server it
started itself or an external one given by URL: it needs an ingress to
publish into, an egress per delivery mode, a health check, and the pids whose
CPU and memory it should charge to the target. Third-party targets register
under the ``deliverybench.targets`` entry-point group, the same way the
built-in ones do.
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar

from deliverybench.core.dialect import Dialect
from deliverybench.core.options import MODES as CORE_MODES

__all__ = [
    "ENTRY_POINT_GROUP",
    "MODES",
    "BUILTIN_FOR_MODE",
    "Target",
    "TargetError",
    "available_targets",
    "get_target",
    "refuse_unoffered",
    "tcp_reachable",
    "unoffered",
]

ENTRY_POINT_GROUP = "deliverybench.targets"

#: Egress modes a target may offer: a WebSocket URL to subscribe to, a
#: subscription API for webhook callbacks, an NDJSON poll URL, and a consumer
#: endpoint the harness itself POSTs bursts at. (Declared once, in the core.)
MODES = CORE_MODES

#: the built-in target that serves each mode when no URL is given
BUILTIN_FOR_MODE: dict[str, str] = {"push": "push", "sse": "push", "longpoll": "push", "callback": "callback",
                                    "poll": "push", "burst": "sink"}

#: which built-in targets take which test-only knob (``--target-delay-ms``, ``--target-capacity``)
_TEST_KNOBS: dict[str, tuple[str, ...]] = {"push": ("delay_ms", "capacity"), "callback": ("delay_ms", "capacity"),
                                           "sink": ("delay_ms",)}


def test_knobs(name: str, *, delay_ms: float = 0.0, capacity: float = 0.0) -> dict[str, float]:
    """The constructor arguments of built-in target ``name`` for the test-only knobs that are set."""
    given = {"delay_ms": delay_ms, "capacity": capacity}
    return {k: float(given[k]) for k in _TEST_KNOBS.get(name, ()) if given[k]}


_HEALTH_TIMEOUT_S = 2.0

# Where the built-in names live; imported only when asked for so that a
# checkout that was never pip-installed (no entry points) still finds them.
_BUILTIN: dict[str, str] = {
    "push": "targets.builtin:PushTarget",
    "callback": "targets.builtin:CallbackTarget",
    "sink": "targets.builtin:SinkTarget",
    "relay": "targets.relay:RelayTarget",
    # real servers, started from their Debian or npm packages
    "nchan": "targets.nchan:NchanTarget",
    "pushpin": "targets.pushpin:PushpinTarget",
    "nats": "targets.nats:NatsTarget",
    "socketio": "targets.socketio:SocketIOTarget",
    "alertmanager": "targets.alertmanager:AlertmanagerTarget",
    "mosquitto": "targets.mosquitto:MosquittoTarget",
}


class TargetError(Exception):
    """A target could not be started, reached or found.

    The message is one line meant for the user, not a traceback.
    """


class Target(abc.ABC):
    """A system under test: an ingress, an egress per mode, a health check.

    Subclasses take keyword-only constructor arguments. ``start`` must leave
    the target healthy or raise :class:`TargetError`; ``stop`` must be safe to
    call twice or after the target died. Used as a context manager, a target
    is started on entry and stopped on exit.
    """

    name: ClassVar[str] = "target"
    kind: ClassVar[str] = "builtin"
    #: whether the ingress takes NDJSON batches (several events in one POST); an
    #: external server is sent exactly one event per request unless told otherwise
    accepts_batches: ClassVar[bool] = False
    #: the egress modes this target can offer, declared so that a run asking for another is refused before
    #: anything starts; None when only a started target knows (see :meth:`modes`)
    offers: ClassVar[tuple[str, ...] | None] = None

    @abc.abstractmethod
    def start(self, *, timeout_s: float = 15.0) -> None:
        """Start (or attach to) the target; block until healthy or raise TargetError."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release the target. Idempotent; never raises for a process already gone."""

    @property
    @abc.abstractmethod
    def ingress_url(self) -> str | None:
        """Where the harness POSTs events (one or NDJSON batch), or None."""

    def ingress_for(self, mode: str) -> str | None:
        """Where events of ``mode`` are published: :attr:`ingress_url` unless a mode needs another."""
        return self.ingress_url

    @abc.abstractmethod
    def egress_url(self, mode: str) -> str | None:
        """The URL subscribers of ``mode`` (see :data:`MODES`) use, or None if unsupported."""

    @property
    def health_url(self) -> str | None:
        return None

    @property
    def stats_url(self) -> str | None:
        return None

    def pids(self) -> list[int]:
        """Processes whose resources count as the target's cost; [] for external targets."""
        return []

    def dialect(self, mode: str) -> Dialect:
        """How subscribers of ``mode`` and the publisher speak to this target (default: the relay contract,
        events forwarded verbatim)."""
        return Dialect()

    def modes(self) -> list[str]:
        """The egress modes this target offers."""
        return [m for m in MODES if self.egress_url(m) is not None]

    def health(self) -> bool:
        """True if the health URL answers 2xx within 2 s; False on any error."""
        url = self.health_url
        if url is None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=_HEALTH_TIMEOUT_S) as resp:
                return bool(200 <= resp.status < 300)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def urls(self) -> dict[str, str]:
        """Every known URL of the target, by role."""
        found = {"ingress": self.ingress_url, "health": self.health_url, "stats": self.stats_url}
        found.update({mode: self.egress_url(mode) for mode in MODES})
        # a mode published to elsewhere (Pushpin's long-poll, through its origin): "<mode>_ingress"
        found.update({f"{mode}_ingress": self.ingress_for(mode) for mode in MODES
                      if self.ingress_for(mode) != self.ingress_url})
        return {k: v for k, v in found.items() if v is not None}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the results file."""
        described: dict[str, Any] = {"name": self.name, "kind": self.kind, "urls": self.urls()}
        dialects = {m: self.dialect(m).describe() for m in self.modes()}
        if any(dialects.values()):
            described["dialect"] = {m: d for m, d in dialects.items() if d}
        return described

    def __enter__(self) -> Target:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.kind}>"


def tcp_reachable(url: str, *, timeout_s: float = 3.0) -> str | None:
    """Open (and close) a TCP connection to the host:port of ``url``.

    Returns None when it connects, or the reason it did not.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(parts.scheme)
    except ValueError as exc:
        return str(exc)
    if not parts.hostname or port is None:
        return "no host or port in the URL"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _load(spec: str) -> type[Target]:
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not (isinstance(obj, type) and issubclass(obj, Target)):
        raise TypeError(f"{spec} is not a Target subclass")
    return obj


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_targets() -> dict[str, type[Target]]:
    """Every target by name: the built-ins plus those registered as entry points.

    A plugin that fails to import is skipped with a warning rather than
    taking the built-ins down with it; :func:`get_target` on its name reports
    why.
    """
    found: dict[str, type[Target]] = {}
    for name, spec in _BUILTIN.items():
        try:
            found[name] = _load(spec)
        except ImportError as exc:  # a real server's adapter with a missing Python dependency
            warnings.warn(f"target {name!r} ({spec}) failed to load: {exc}", stacklevel=2)
    for name, ep in _entry_points().items():
        if name in found and ep.value == _BUILTIN.get(name):
            continue
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Target)):
                raise TypeError(f"{ep.value} is not a Target subclass")
        except Exception as exc:  # a broken plugin is the plugin's problem
            warnings.warn(f"target plugin {name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        found[name] = cls
    return found


def get_target(name: str) -> type[Target]:
    """The target class called ``name``, or TargetError listing the known ones."""
    eps = _entry_points()
    if name in eps and eps[name].value != _BUILTIN.get(name):
        try:
            cls = eps[name].load()
        except Exception as exc:
            raise TargetError(f"target {name!r} ({eps[name].value}) failed to load: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Target)):
            raise TargetError(f"target {name!r} ({eps[name].value}) is not a Target subclass")
        return cls
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        known = ", ".join(sorted(available_targets()))
    raise TargetError(f"unknown target {name!r}; available: {known}")


def unoffered(name: str, offers: Sequence[str], modes: Iterable[str]) -> TargetError | None:
    """The error for the modes of ``modes`` that target ``name``, offering ``offers``, does not; None if none."""
    asked = [mode for mode in modes if mode != "burst" and mode not in offers]
    if not asked:
        return None
    return TargetError(f"the {name} target offers {', '.join(offers) or 'no mode'}, not {', '.join(asked)}")


def refuse_unoffered(name: str, modes: Iterable[str]) -> None:
    """Raise TargetError before anything starts if target ``name`` declares its modes and ``modes`` has another.

    A target that declares nothing (:attr:`Target.offers` None) is checked once started.
    """
    offers = get_target(name).offers
    error = unoffered(name, offers, modes) if offers is not None else None
    if error is not None:
        raise error
