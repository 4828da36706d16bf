"""Starting the target of one mode, or attaching to one given by URL: one function for every path.

``run_bench.py`` starts a fresh target for each mode and hands its URLs to
the mode's Locust; a plain ``locust -f`` with no URLs starts the built-in
target itself. Both call :func:`start_target` with their option values (by
``dest``), so which target serves a mode, with which test knobs and secret,
is decided in one place; the caller keeps the :class:`TargetUrls` it gets
(nothing is written back into Locust's parsed options).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deliverybench.core.dialect import Dialect, dialect_from_values
from targets.base import BUILTIN_FOR_MODE, Target, TargetError, get_target, refuse_unoffered, test_knobs, unoffered

__all__ = ["TargetUrls", "StartedTarget", "start_target", "LOOPBACK"]

#: where every target binds unless told otherwise
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class TargetUrls:
    """Where a mode publishes and subscribes, and what else the harness learns of its target.

    Attributes:
        name: the target's name for the results file (``push``, ``relay``,
            ``consumer``; ``external`` when nothing names it).
        ingress: the URL events are POSTed to ("" for bursts).
        egress: the mode's egress: a ws:// URL (push), a subscription API
            (callback), a poll URL, or a consumer URL (burst).
        stats: the target's ``/stats`` URL, read at the end of a run, or "".
        pids: processes whose cost is the target's (none for external ones).
        accepts_batches: whether the ingress takes NDJSON batches.
        dialect: how the target speaks (subscribe messages, envelope, framing, publish body); the
            relay contract by default.
    """

    name: str
    ingress: str = ""
    egress: str = ""
    stats: str = ""
    pids: tuple[int, ...] = ()
    accepts_batches: bool = False
    dialect: Dialect = Dialect()


@dataclass(frozen=True, slots=True)
class StartedTarget:
    """The target of one mode: the object to stop (None when it is not ours) and its URLs."""

    mode: str
    target: Target | None
    urls: TargetUrls

    def describe(self) -> dict[str, Any]:
        """The results file's ``target``: a started target's own description, else the URLs attached to and,
        as a started target says it, how they were spoken to (``dialect``, by mode, when not the relay contract)."""
        if self.target is not None:
            return self.target.describe()
        described: dict[str, Any] = {"name": self.urls.name, "kind": "external",
                                     "urls": {"ingress": self.urls.ingress, self.mode: self.urls.egress}}
        dialect = self.urls.dialect.describe()
        if dialect:
            described["dialect"] = {self.mode: dialect}
        return described

    def stop(self) -> None:
        if self.target is not None:
            self.target.stop()


def _pids(text: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text or "").split(",") if p.strip().isdigit())


def start_target(mode: str, values: Mapping[str, Any]) -> StartedTarget:
    """Start the target of ``mode`` as ``values`` say, or attach to the URLs they give.

    ``values["target"]`` (run_bench.py's ``--target``) decides: ``builtin``
    starts the built-in target of the mode, ``relay`` attaches to the
    external URLs, any other name starts that registered target. A
    locustfile has no ``--target``: there URLs given (``--publish-url``,
    ``--subscribe-url``, as run_bench.py hands them on) mean attach, none
    mean start the built-in target. A burst with ``--consumer-url`` attaches
    to that consumer.

    Raises:
        TargetError: the target did not start, or an external one is unreachable.
    """
    get = values.get
    if mode == "burst" and get("consumer_url"):
        from targets.base import tcp_reachable

        problem = tcp_reachable(str(get("consumer_url")))
        if problem is not None:
            raise TargetError(f"cannot reach consumer {get('consumer_url')}: {problem}")
        return StartedTarget(mode, None, TargetUrls("consumer", egress=str(get("consumer_url"))))
    choice = str(get("target") or ("external" if get("publish_url") or get("subscribe_url") else "builtin"))
    if choice == "external":
        return StartedTarget(mode, None, TargetUrls(
            str(get("target_name") or "external"), ingress=str(get("publish_url") or ""),
            egress=str(get("subscribe_url") or ""), stats=str(get("stats_url") or ""), pids=_pids(get("target_pids")),
            dialect=dialect_from_values(values)))
    if choice == "relay" and mode != "burst":
        return StartedTarget(mode, None, _attach_relay(mode, values))
    name = BUILTIN_FOR_MODE[mode] if choice in ("builtin", "relay") else choice
    kwargs: dict[str, Any] = test_knobs(name, delay_ms=float(get("target_delay_ms") or 0.0),
                                        capacity=float(get("target_capacity") or 0.0))
    host = str(get("target_host") or LOOPBACK)
    if host != LOOPBACK:
        if name not in BUILTIN_FOR_MODE.values():
            raise TargetError(f"--target-host binds the built-in targets; the {name} target listens on {LOOPBACK} "
                              "(start it yourself on a reachable address and give its URLs with --target relay)")
        kwargs["host"] = host
    if name == "callback" and get("webhook_secret"):
        kwargs["secret"] = get("webhook_secret")
    refuse_unoffered(name, (mode,))
    target = get_target(name)(**kwargs)
    target.start()
    error = unoffered(name, target.modes(), (mode,))
    if error is not None:
        target.stop()
        raise error
    return StartedTarget(mode, target, TargetUrls(
        name, ingress=target.ingress_for(mode) or "", egress=target.egress_url(mode) or "",
        stats=target.stats_url or "", pids=tuple(target.pids()), accepts_batches=target.accepts_batches,
        dialect=target.dialect(mode)))


def _attach_relay(mode: str, values: Mapping[str, Any]) -> TargetUrls:
    """The relay's URLs for ``mode``; a push relay's ports are checked for reachability first."""
    from targets.relay import RelayTarget

    get = values.get
    egress = str({"push": get("subscribe_url"), "sse": get("sse_url"), "longpoll": get("longpoll_url"),
                  "poll": get("poll_url"), "callback": get("callback_url")}[mode] or "")
    relay = RelayTarget(publish_url=str(get("publish_url") or ""),
                        subscribe_url=str(get("subscribe_url") or "") or "ws://unused.invalid/",
                        poll_url=str(get("poll_url") or "") or None)
    if mode == "push":
        relay.start()
    elif mode in ("sse", "longpoll"):
        from targets.base import tcp_reachable

        problem = tcp_reachable(egress)
        if problem is not None:
            raise TargetError(f"cannot reach the {mode} URL {egress}: {problem}")
    return TargetUrls("relay", ingress=str(get("publish_url") or ""), egress=egress,
                      dialect=dialect_from_values(values))
