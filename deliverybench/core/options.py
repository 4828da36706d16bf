"""The option table: every run option declared once, with its type, default, help and checks.

Locust keeps one argument parser from which its web UI form, environment
variables and config files all derive; deliverybench keeps one *table*. From
each :class:`Option` come

* the ``run_bench.py`` command line, its TOML keys and its
  ``DELIVERYBENCH_*`` environment twins (``deliverybench.cli.config``);
* the locustfiles' own options, their environment twins and the web UI form
  (``deliverybench.harness.locust_options``);
* the flags ``run_bench.py`` hands to each mode's Locust (:func:`locust_argv`);
* the validation (:func:`validate`), run the same way on every path, so a bad
  value gets the same one line whether it came through ``run_bench.py``,
  ``locust -f`` or the web UI;
* the options of a ``run_bench.py`` subcommand (``sweep``): entries whose
  :attr:`Option.command` names it (:func:`command_options`); they are read
  from that subcommand's command line only, and parsed by the subcommand
  (``deliverybench.core.sweep.spec``), which words their errors.

Adding an option is one entry in :data:`OPTIONS`; ``tests/test_options.py``
walks the table and checks every option reaches Locust and round-trips.

Everything here is pure: values in, values or one-line :class:`OptionError`
messages out.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .delay import parse_delay
from .dialect import DEFAULT_CHANNEL, PROTOCOLS, WEBHOOK_SIGNINGS
from .schedule import SCHEDULE_KINDS, Schedule, offsets_ns

__all__ = [
    "FRAME_CONNECTIONS",
    "MODES",
    "DEFAULT_MODES",
    "ENV_PREFIX",
    "PROFILES",
    "Option",
    "OptionError",
    "OPTIONS",
    "by_dest",
    "run_options",
    "command_options",
    "locust_options",
    "locust_argv",
    "validate",
    "MIN_EVENTS",
    "closest",
    "schedule_from",
    "secret_dests",
    "secret_flags",
]

#: every delivery mode, in the order the report shows them
MODES: tuple[str, ...] = ("push", "sse", "longpoll", "callback", "poll", "burst")
#: what ``run_bench.py`` runs when ``--modes`` is not given: every subscribing mode (the five took 146 s at the
#: defaults -- 500 subscribers, 5 events/s for 20 s each -- on a shared 2-core machine)
DEFAULT_MODES: tuple[str, ...] = ("push", "sse", "longpoll", "callback", "poll")
ENV_PREFIX = "DELIVERYBENCH_"

#: ``run``: run_bench.py only; ``locust``: locustfiles only; ``both``
Scope = Literal["run", "locust", "both"]
#: how run_bench.py hands an option to Locust: ``value`` as a flag; ``env`` by
#: environment (secrets: a command line shows in ``ps``); ``target``: computed
#: from the target run_bench.py started (URLs, pids, results path); ``never``
Handoff = Literal["value", "env", "target", "never"]
#: a check returns what is wrong with a value ("must be positive"), or None
Check = Callable[[Any], "str | None"]


class OptionError(ValueError):
    """A bad option value or combination; the message is one line for the user."""


# -- checks ------------------------------------------------------------------------------

def positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "cannot be negative"


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"
    return check


def at_least(low: int) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be at least {low}"
    return check


def url_of(*schemes: str) -> Check:
    """Empty (not given) or a URL with one of ``schemes`` and a host."""
    def check(value: Any) -> str | None:
        if not value:
            return None
        try:
            parts = urlsplit(str(value))
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            return "is not a valid URL"
        if parts.scheme not in schemes or not parts.hostname:
            return "must be a " + " or ".join(f"{s}://" for s in schemes) + " URL"
        return None
    return check


def address_list(value: Any) -> str | None:
    for part in (p.strip() for p in str(value).split(",")):
        if not part:
            continue
        try:
            ipaddress.ip_address(part)
        except ValueError:
            return f"must be comma-separated IP addresses ({part!r} is not one)"
    return None


def event_path_spec(value: Any) -> str | None:
    """Empty, or a JSON pointer the envelope reader accepts."""
    if not value:
        return None
    from .protocols import parse_event_path

    try:
        parse_event_path(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def template_spec(value: Any) -> str | None:
    """Empty, or a publish template whose placeholders are all known."""
    if not value:
        return None
    from .publish_template import PublishTemplate

    try:
        PublishTemplate.parse(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def delay_spec(value: Any) -> str | None:
    try:
        parse_delay(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def mode_list(value: Any) -> str | None:
    modes = tuple(value)
    if not modes:
        return "is empty"
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        return f"names an unknown mode {unknown[0]!r}; use one or more of {', '.join(MODES)}"
    if len(set(modes)) != len(modes):
        return "lists a mode twice"
    return None


def slo_spec(value: Any) -> str | None:
    if not value:
        return None
    from .slo import SloError, parse_slo

    try:
        parse_slo(str(value))
    except SloError as exc:
        return str(exc).split(": ", 1)[-1] if str(exc).startswith("--slo") else str(exc)
    return None


def gate_specs(value: Any) -> str | None:
    from .gate import parse_gate_spec

    for spec in value:
        try:
            parse_gate_spec(spec)
        except ValueError as exc:
            return str(exc).split(": ", 1)[-1]
    return None


def tolerance_specs(value: Any) -> str | None:
    from .gate import parse_gate_spec

    for item in value:
        key, sep, number = item.partition("=")
        try:
            parse_gate_spec(key)
            if not sep or not math.isfinite(float(number)) or float(number) < 0:
                raise ValueError
        except ValueError:
            return f"needs [MODE.]METRIC=NUMBER items, e.g. p99=0.2 ({item!r} is not one)"
    return None


def pid_list(value: Any) -> str | None:
    if all(p.strip().isdigit() for p in str(value).split(",") if p.strip()):
        return None
    return "must be comma-separated process ids"


# -- the option --------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Option:
    """One option, declared once.

    Args:
        name: the long flag without dashes (``spawn-rate``); the TOML key
            (either spelling), attribute (``spawn_rate``) and environment
            variable (``DELIVERYBENCH_SPAWN_RATE``) derive from it.
        kind: ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (a
            comma-separated list of strings).
        default: the value when nothing sets it.
        help: one sentence for ``--help`` and the web UI.
        group: the heading it is listed under.
        modes: the modes it applies to: the locustfile of each registers it,
            and run_bench.py hands it to that mode's Locust.
        scope: who accepts it (``run``, ``locust`` or ``both``).
        handoff: how run_bench.py passes it on (see :data:`Handoff`).
        short: a one-letter flag (``-u``).
        locust_flag: a run option handed to Locust as one of Locust's own
            flags (``--subscribers`` becomes ``-u``).
        negate: a boolean that defaults to true, set false by ``--no-<name>``.
        checks: what a valid value satisfies.
        choices: the allowed values of a ``str`` option.
        secret: never echoed, written or put on a command line.
        web_ui: shown in Locust's web UI form.
        command: the ``run_bench.py`` subcommand whose own option this is
            (``sweep``); its ``dest`` is prefixed with it (``sweep_modes``),
            so it may share a flag with a run option, and it has no
            environment or TOML twin.
        metavar: the value's name in that subcommand's ``--help``
            (default: the name in capitals).
    """

    name: str
    kind: type
    default: Any
    help: str
    group: str
    modes: tuple[str, ...] = MODES
    scope: Scope = "both"
    handoff: Handoff = "value"
    short: str | None = None
    locust_flag: str | None = None
    negate: bool = False
    checks: tuple[Check, ...] = ()
    choices: tuple[str, ...] = ()
    secret: bool = False
    web_ui: bool = True
    command: str | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        own = self.name.replace("-", "_")
        return f"{self.command}_{own}" if self.command else own

    @property
    def flag(self) -> str:
        return f"--no-{self.name}" if self.negate else f"--{self.name}"

    @property
    def env_var(self) -> str:
        """``DELIVERYBENCH_<DEST>``; empty for a subcommand's option (read from its command line only)."""
        return "" if self.command else ENV_PREFIX + self.dest.upper()

    def parse(self, raw: Any, *, source: str | None = None) -> Any:
        """Turn ``raw`` (text from argv, environment or a form, or a TOML value) into ``kind``.

        Raises:
            OptionError: one line naming ``source`` (default: the flag); a
                secret's value is never part of the message.
        """
        where = source or f"--{self.name}"
        shown = "" if self.secret else f" {raw!r}"
        kind = self.kind
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise OptionError(f"{where}:{shown} is not true or false")
        if kind is tuple:
            if isinstance(raw, (list, tuple)):
                items = [str(x).strip() for x in raw]
            else:
                items = [x.strip() for x in str(raw).split(",")]
            return tuple(x for x in items if x)
        if kind is int:
            if isinstance(raw, bool) or isinstance(raw, float):
                raise OptionError(f"{where}:{shown} is not a whole number")
            try:
                return int(str(raw).strip())
            except ValueError:
                raise OptionError(f"{where}:{shown} is not a whole number") from None
        if kind is float:
            if isinstance(raw, bool):
                raise OptionError(f"{where}:{shown} is not a number")
            try:
                value = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
            except ValueError:
                raise OptionError(f"{where}:{shown} is not a number") from None
            if not math.isfinite(value):
                raise OptionError(f"{where} must be a finite number (got {raw!r})")
            return value
        if isinstance(raw, (dict, list, tuple, bool)):
            raise OptionError(f"{where} must be text")
        return str(raw)

    def problem(self, value: Any) -> str | None:
        """What is wrong with an already-parsed ``value``, or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        for check in self.checks:
            found = check(value)
            if found is not None:
                return found
        return None

    def format(self, value: Any) -> list[str]:
        """The argv tokens that hand ``value`` on (booleans: the flag alone, or nothing)."""
        flag = self.locust_flag or f"--{self.name}"
        if self.kind is bool and self.negate:
            return [] if value else [f"--no-{self.name}"]
        if self.kind is bool:
            return [flag] if value else []
        if self.kind is float:
            return [flag, repr(float(value))]
        if self.kind is tuple:
            return [flag, ",".join(value)]
        return [flag, str(value)]


def _o(name: str, kind: type, default: Any, help: str, group: str, **kw: Any) -> Option:
    return Option(name, kind, default, help, group, **kw)


_COMMON, _STREAM, _PUBLISHER, _TARGET = "Common options", "Event stream", "Publisher", "Target"
_GATE = "CI gate (compare with a baseline; absolute objectives)"
_SWEEP = "Capacity sweep (run_bench.py sweep)"
#: what every option of ``run_bench.py sweep`` shares: its own, handed to nobody
_SWEEP_ONLY: dict[str, Any] = {"scope": "run", "handoff": "never", "web_ui": False, "command": "sweep"}

#: named sets of defaults (``--profile``), applied before the file, the environment and the command line
PROFILES: dict[str, dict[str, Any]] = {
    # 10 repeats of 5 s, not 5 of 10 s: what defeats the gate is a run that meets one of a shared
    # machine's slow stretches (seconds in which the target's sends cost twice the CPU), because one such
    # baseline run outranks the slowed-down ones. A shorter run meets one less often and ten runs outvote
    # it: run interleaved in a noisy half hour, +30 % p99 was caught in 140 of 150 10-vs-10 comparisons of
    # 5-s runs against 12 of 150 5-vs-5 of 10-s runs, with no more false regressions (README, Benchmarks).
    # Spawning at 1,000/s keeps a 5-s run's start-up from outlasting it (15 s a run, not 18).
    # 1,000 subscribers at 5 events/s, not 100 at 20: each event's fan-out then spans ~15 ms, so
    # p99 is the tail of every event rather than of the slowest few, a shared machine's few-ms stalls
    # are a fraction of it instead of a doubling, and a 15 % tolerance lies above the 1 ms floor.
    # Poll (whose latency is its interval) is left to plain runs.
    "ci": {"modes": ("push", "callback"), "subscribers": 1000, "rate": 5.0, "duration": 5.0,
           "warmup": 2.0, "drain": 2.0, "settle": 0.5, "repeats": 10, "spawn_rate": 1000.0},
}


def _profile_words(profile: dict[str, Any]) -> str:
    """A profile in words, for ``--profile``'s help (the values are declared once, above)."""
    return (f"{' and '.join(profile['modes'])}, {profile['subscribers']:,} subscribers, {profile['rate']:g} events/s, "
            f"{profile['duration']:g} s after a {profile['warmup']:g} s warm-up, {profile['repeats']} repeats")


_PUSH, _CALLBACK, _BURST, _POLL = ("Push mode", "Callback mode (the harness as webhook receiver)",
                                   "Burst mode (the harness as webhook producer)", "Poll mode")
_LONGPOLL = "Long-poll mode"
_MACHINES = "Many load machines (Locust master and workers)"
_PLUMBING = "Set by run_bench.py (or by the master) for each mode"
_SUBSCRIBING = ("push", "sse", "longpoll", "callback", "poll")
#: publisher connections of a ws:// or tcp:// ingress at most (whatever --publish-concurrency says): one carries
#: the stream while it keeps up, the others take over while it is paused by flow control or being re-opened
FRAME_CONNECTIONS = 4

#: every option, in the order ``--help`` lists them
OPTIONS: tuple[Option, ...] = (
    # -- common (run_bench.py) --
    _o("config", str, "", "TOML file with options (top level or a [deliverybench] table).", _COMMON,
       scope="run", handoff="never"),
    _o("subscribers", int, 500, "Subscribers per mode (Locust users).", _COMMON, scope="run", short="-u",
       locust_flag="-u", checks=(positive,)),
    _o("modes", tuple, DEFAULT_MODES, f"Comma-separated modes to run, in order: {', '.join(MODES)}.", _COMMON,
       scope="run", handoff="never", checks=(mode_list,)),
    _o("processes", int, 1, "Locust processes running subscribers (>1: master + N workers).", _COMMON,
       scope="run", handoff="never", checks=(positive,)),
    _o("spawn-rate", float, 250.0, "Subscribers started per second.", _COMMON, scope="run", short="-r",
       locust_flag="-r", checks=(positive,)),
    _o("out", str, "bench-out", "Folder for results; each run gets a subfolder.", _COMMON, scope="run",
       handoff="never"),
    _o("run-id", str, "", "Name of the run's subfolder (default: a timestamp).", _COMMON, scope="run",
       handoff="never"),
    _o("report", bool, True, "Do not render report.html.", _COMMON, scope="both", handoff="never", negate=True),
    # locust -f reads it too (run_bench.py's Locust writes into a folder it holds, so it is not handed on)
    _o("overwrite", bool, False, "Write into a run folder (run_bench.py) or over a --results file (locust -f) that "
       "already holds results.", _COMMON, handoff="never"),
    _o("profile", str, "",
       f"A named set of defaults: 'ci' is small enough for a CI job ({_profile_words(PROFILES['ci'])}).", _COMMON,
       scope="run", handoff="never", choices=("", *PROFILES)),
    _o("repeats", int, 1, "Independent runs of each mode (a fresh target and Locust each); the run is what the "
       "CI gate compares.", _GATE, scope="run", handoff="never", checks=(between(1, 50),)),
    _o("baseline", str, "", "A results file to compare this run with (writes comparison.json, comparison.md, "
       "junit.xml; exit 1 on a regression, 4 if not comparable).", _GATE, scope="run", handoff="never"),
    _o("save-baseline", str, "", "Also write the results to this path, to compare later runs with.", _GATE,
       scope="run", handoff="never"),
    _o("slo", str, "", "Absolute objectives, checked with or without a baseline: "
       "'push.p99<=50ms,*.lost==0' (exit 1 when broken).", _GATE, scope="run", handoff="never",
       checks=(slo_spec,)),
    _o("gate", tuple, ("*.p99", "*.lost", "*.deliveries_per_s"), "The [MODE.]METRIC that can fail the job; the "
       "rest are shown.", _GATE, scope="run", handoff="never", checks=(gate_specs,)),
    _o("tolerance", tuple, (), "Tolerances overriding the defaults: p99=0.2,push.p50=0.05 (fractions; events for "
       "lost/refused/duplicates).", _GATE, scope="run", handoff="never", checks=(tolerance_specs,)),
    _o("strict-machine", bool, False, "Refuse (not comparable) instead of warning when the machines differ.", _GATE,
       scope="run", handoff="never"),
    # -- the stream --
    _o("rate", float, 5.0, "Events per second (the start rate of --schedule ramp).", _STREAM, checks=(positive,)),
    _o("duration", float, 20.0, "Seconds of event stream per mode.", _STREAM, checks=(positive,)),
    _o("schedule", str, "constant", "Open-model schedule of due times.", _STREAM, choices=SCHEDULE_KINDS),
    _o("burst-size", int, 100, "Events per burst (--schedule burst).", _STREAM, checks=(at_least(1),)),
    _o("burst-interval", float, 1.0, "Seconds between bursts (--schedule burst).", _STREAM, checks=(positive,)),
    _o("rate-end", float, 0.0, "Final rate of --schedule ramp.", _STREAM, checks=(non_negative,)),
    _o("seed", int, 0, "Seed for --schedule poisson.", _STREAM),
    _o("max-events", int, 0, "Cap on events published (0: no cap).", _STREAM, checks=(non_negative,)),
    _o("payload-bytes", int, 256, "Encoded size of each event in bytes.", _STREAM,
       checks=(between(0, 16 * 1024 * 1024),)),
    _o("stream", str, "s", "Stream name written into events.", _STREAM),
    _o("warmup", float, 0.0, "Seconds of warm-up stream before the measured one: published and delivered the same "
       "way, left out of every figure.", _STREAM, modes=_SUBSCRIBING, checks=(non_negative,)),
    _o("drain", float, 3.0, "Seconds to wait for deliveries after the last due time.", _STREAM,
       checks=(non_negative,)),
    _o("settle", float, 1.0, "Seconds between all subscribers connected and the first event.", _STREAM,
       checks=(non_negative,)),
    _o("settle-timeout", float, 60.0, "Longest wait for subscribers to connect before publishing.", _STREAM,
       checks=(positive,)),
    _o("join-grace", float, 0.05, "Events due this soon after a subscriber joined are not expected of it.",
       _STREAM, checks=(non_negative,)),
    # -- the publisher --
    _o("publish-concurrency", int, 256, "Publisher requests in flight at most (one keep-alive connection each), so "
       f"a stalled request never holds back the next event; a ws:// or tcp:// ingress opens at most "
       f"{FRAME_CONNECTIONS} connections.",
       _PUBLISHER, modes=_SUBSCRIBING, checks=(at_least(1),)),
    _o("publish-batch", int, 0, "Most events per publish request, as NDJSON (0: as the target says -- batches of "
       "up to 1000 for the built-in targets, one event per request for external ones).", _PUBLISHER,
       modes=_SUBSCRIBING, handoff="target", checks=(between(0, 1000),)),
    _o("publish-timeout", float, 10.0, "Seconds before an unanswered publish request counts its events as refused.",
       _PUBLISHER, modes=_SUBSCRIBING, checks=(positive,)),
    # -- the target --
    _o("target", str, "builtin", "'builtin' (start the built-in targets), 'relay' (external, needs the URLs), "
       "or a registered target name.", _TARGET, scope="run", handoff="never"),
    _o("publish-url", str, "", "External target's ingress: events are POSTed here (http://), sent as text frames "
       "over a few publisher WebSockets (ws://), or written as lines of a TCP protocol (tcp://host:port). Empty: "
       "start the built-in target.", _TARGET, handoff="target", checks=(url_of("http", "https", "ws", "wss", "tcp"),)),
    _o("protocol", str, "raw", "How subscribers talk to the target: 'raw' (each message is an event, or holds one "
       "at --event-path), 'nats', 'socketio' (Engine.IO 4 / Socket.IO 5), 'graphql-ws' (graphql-transport-ws), "
       "'mqtt' (MQTT 3.1.1 over WebSocket).",
       _TARGET, modes=_SUBSCRIBING, handoff="target", choices=PROTOCOLS),
    _o("channel", str, DEFAULT_CHANNEL, "Channel, subject or topic published to and subscribed on ({channel} in "
       "templates and messages).", _TARGET, modes=_SUBSCRIBING, handoff="target"),
    _o("subscribe-message", str, "", "Text frame each subscriber sends once its WebSocket is open, e.g. "
       "'{\"type\":\"subscribe\",\"channel\":\"{channel}\"}' (graphql-ws: the subscription query).", _TARGET,
       modes=_SUBSCRIBING, handoff="target"),
    _o("event-path", str, "", "JSON pointer to the event inside each message, e.g. /data or "
       "/payload/data/onEvent ('*' for every element of an array: /alerts/*/annotations/event).", _TARGET,
       modes=_SUBSCRIBING, handoff="target", checks=(event_path_spec,)),
    _o("publish-template", str, "", "Publish body around the event: {event}, {event|json} (as a JSON string), "
       "{event|sse|json}, {event|length}, {event|mqtt} (an MQTT PUBLISH to the channel), {channel}, {id}; e.g. "
       "'{\"channel\":\"{channel}\",\"data\":{event}}'.",
       _TARGET, modes=_SUBSCRIBING, handoff="target", checks=(template_spec,)),
    _o("publish-greeting", str, "", "Sent once on each publisher connection of a ws:// or tcp:// --publish-url "
       "(e.g. NATS's 'CONNECT {}\\r\\n'; \\r, \\n, \\t and \\xHH are read as the bytes they name).", _TARGET,
       modes=_SUBSCRIBING, handoff="target"),
    _o("subscribe-url", str, "", "External target's egress: with run_bench.py the WebSocket URL (push); with "
       "locust -f the egress of its mode (ws:// URL, event-stream URL, long-poll URL, subscription API, poll URL or "
       "consumer URL).", _TARGET,
       handoff="target", checks=(url_of("ws", "wss", "http", "https"),)),
    _o("sse-url", str, "", "External target's Server-Sent Events URL (sse mode; plain http://).", _TARGET,
       scope="run", handoff="never", checks=(url_of("http"),)),
    _o("longpoll-url", str, "", "External target's long-poll URL (longpoll mode).", _TARGET, scope="run",
       handoff="never", checks=(url_of("http", "https"),)),
    _o("poll-url", str, "", "External target's poll URL (poll mode).", _TARGET, scope="run", handoff="never",
       checks=(url_of("http", "https"),)),
    _o("callback-url", str, "", "External target's subscription API (callback mode).", _TARGET, scope="run",
       handoff="never", checks=(url_of("http", "https"),)),
    _o("target-host", str, "127.0.0.1", "Address the built-in targets bind and put in their URLs: one the load "
       "machines reach, with --expect-workers (default: loopback only).", _TARGET, scope="run", handoff="never",
       checks=(address_list,)),
    _o("target-delay-ms", float, 0.0, "Built-in targets only, for tests: hold each event this long.", _TARGET,
       checks=(non_negative,)),
    _o("target-capacity", float, 0.0, "Built-in push and callback targets only, for tests: serve at most this many "
       "deliveries per second, one event at a time, so the true capacity at --rate R is this / R subscribers "
       "(0: no limit).", _TARGET, checks=(non_negative,)),
    # -- many load machines --
    _o("expect-workers", int, 0, "Run the subscribers on N Locust workers started by hand on other machines: "
       "run_bench.py starts the master and the target, prints the command to run on each, and waits for them.",
       _MACHINES, scope="run", handoff="never", checks=(non_negative,)),
    _o("clock-correction", bool, True, "Do not map workers' receive times onto the master's clock (for tests and "
       "for the record: latencies then carry each worker's clock offset).", _MACHINES, negate=True,
       modes=_SUBSCRIBING),
    # -- push --
    _o("echo-interval", float, 0.0, "Seconds between echo round trips per session (0: off).", _PUSH,
       modes=("push",), checks=(non_negative,)),
    _o("source-addresses", str, "", "Comma-separated local addresses (127.0.0.2,...) to spread sessions past "
       "the ~28k ephemeral ports of one address (push and sse).", _PUSH, modes=("push", "sse"),
       checks=(address_list,)),
    _o("ping-interval", float, 0.0, "Client keepalive ping interval in seconds (0: off; servers ping their "
       "clients).", _PUSH, modes=("push",), checks=(non_negative,)),
    _o("open-timeout", float, 10.0, "Seconds to open one subscription.", _COMMON, modes=_SUBSCRIBING,
       checks=(positive,)),
    # -- callback --
    _o("webhook-secret", str, "", "Standard Webhooks secret (default: the built-in callback target's "
       "documented test secret). Passed on by environment, never written to results.", _CALLBACK,
       modes=("callback", "burst"), handoff="env", secret=True),
    _o("webhook-signing", str, "standard-webhooks", "How the external sender signs its webhooks: "
       "'standard-webhooks' (each delivery verified with --webhook-secret) or 'none' (a sender that signs "
       "nothing; deliveries are told apart by subscriber and body).", _CALLBACK, modes=("callback",),
       handoff="target", choices=WEBHOOK_SIGNINGS),
    _o("ack-delay", str, "0", "Receiver acknowledgement delay: MS, exp:MEAN_MS or uniform:LOW,HIGH.", _CALLBACK,
       modes=("callback",), checks=(delay_spec,)),
    _o("fail-ratio", float, 0.0, "Share of first attempts the receiver fails, to exercise retries.", _CALLBACK,
       modes=("callback",), checks=(between(0, 1),)),
    _o("fail-status", int, 500, "HTTP status of simulated failures.", _CALLBACK, modes=("callback",),
       checks=(between(100, 599),)),
    _o("timeout-ratio", float, 0.0, "Share of first attempts held past the target's timeout.", _CALLBACK,
       modes=("callback",), checks=(between(0, 1),)),
    _o("timeout-hold", float, 20.0, "Seconds a simulated timeout holds the request.", _CALLBACK,
       modes=("callback",), checks=(positive,)),
    _o("receiver-host", str, "127.0.0.1", "Address the callback receiver binds.", _CALLBACK, modes=("callback",),
       checks=(address_list,)),
    _o("receiver-advertise-host", str, "", "Host put in callback URLs (default: --receiver-host).", _CALLBACK,
       modes=("callback",)),
    # -- burst --
    _o("consumer-url", str, "", "Webhook consumer to POST events at (default: the built-in sink).", _BURST,
       scope="run", handoff="never", checks=(url_of("http", "https"),)),
    _o("sign", bool, False, "Sign burst POSTs with Standard Webhooks headers (--webhook-secret).", _BURST,
       modes=("burst",)),
    _o("burst-timeout", float, 10.0, "Seconds before a burst POST counts as timed out.", _BURST, modes=("burst",),
       checks=(positive,)),
    # -- poll --
    _o("poll-interval", float, 1.0, "Seconds between polls per subscriber.", _POLL, modes=("poll",),
       checks=(positive,)),
    _o("poll-limit", int, 1000, "Most events asked for per poll.", _POLL, modes=("poll",), checks=(at_least(1),)),
    # -- long-poll --
    _o("longpoll-resume", str, "after", "How a long-poll subscriber resumes: 'after' (?after=N with X-Last-Id, the "
       "built-in target's) or 'etag' (If-Modified-Since + If-None-Match, as nginx + nchan).", _LONGPOLL,
       modes=("longpoll",), handoff="target", choices=("after", "etag")),
    # -- plumbing: what run_bench.py (or the master) sets for each mode --
    _o("stats-url", str, "", "Target /stats URL read at the end of the run.", _PLUMBING, scope="locust",
       handoff="target", web_ui=False, checks=(url_of("http", "https"),)),
    _o("target-pids", str, "", "Comma-separated pids of the target, sampled for cost.", _PLUMBING,
       scope="locust", handoff="target", web_ui=False, checks=(pid_list,)),
    _o("target-name", str, "", "Name of the target, for the results file.", _PLUMBING, scope="locust",
       handoff="target", web_ui=False),
    _o("results", str, "", "Results file to write; an existing one is refused without --overwrite (default: each "
       "test a new folder, bench-out/<mode>-<time>[-n]/results.json).", _PLUMBING,
       scope="locust", handoff="target"),
    _o("mode-result-only", bool, False, "Write only this mode's result to --results (run_bench.py sets it: it "
       "builds the results document and decides the status itself).", _PLUMBING, scope="locust",
       handoff="target", web_ui=False),
    _o("live-file", str, "", "JSON file rewritten every second with the run's progress (phase, subscribers, "
       "events, deliveries, p99 so far), for run_bench.py's progress line.", _PLUMBING, scope="locust",
       handoff="target", web_ui=False),
    _o("no-autoquit", bool, False, "Headless: stay up after the stream ends instead of quitting.", _PLUMBING,
       scope="locust", handoff="never", web_ui=False),
    # -- run_bench.py sweep: its own options, text specs parsed by deliverybench.core.sweep.spec --
    _o("modes", str, ",".join(DEFAULT_MODES), "Modes to sweep.", _SWEEP, **_SWEEP_ONLY),
    _o("subscribers", str, "50:3200", "A grid 'N,N,...' or a search range 'LOW:HIGH'.", _SWEEP, **_SWEEP_ONLY),
    _o("rate", str, "10", "Events per second, one or several 'R,R'.", _SWEEP, **_SWEEP_ONLY),
    _o("slo", str, "p99<=50ms,lost==0", "What a point must hold, e.g. 'p99<=50ms,lost==0'.", _SWEEP,
       **_SWEEP_ONLY),
    _o("precision", str, "0.1", "Bisect until (first fail - last pass) / last pass <= this.", _SWEEP,
       **_SWEEP_ONLY),
    _o("confirm", str, "2", "Runs a boundary point must pass.", _SWEEP, **_SWEEP_ONLY),
    _o("require", str, "", "Exit 1 unless the capacities meet this, e.g. 'push>=2000,callback>=500'.", _SWEEP,
       metavar="REQ", **_SWEEP_ONLY),
    _o("resume", str, "", "Continue the sweep in DIR (its finished points are not run again).", _SWEEP,
       metavar="DIR", **_SWEEP_ONLY),
    _o("early-stop", bool, True, "Run every point to its end even when it has clearly failed.", _SWEEP,
       negate=True, **_SWEEP_ONLY),
)


_BY_DEST: dict[str, Option] = {o.dest: o for o in OPTIONS}
assert len(_BY_DEST) == len(OPTIONS), "two options share a name"


def by_dest(dest: str) -> Option:
    """The option whose attribute name is ``dest`` (``spawn_rate``)."""
    return _BY_DEST[dest]


def run_options() -> list[Option]:
    """Options a ``run_bench.py`` run accepts (not a subcommand's own)."""
    return [o for o in OPTIONS if o.scope in ("run", "both") and o.command is None]


def command_options(command: str) -> list[Option]:
    """The own options of the ``run_bench.py`` subcommand ``command`` (``sweep``), in ``--help`` order."""
    return [o for o in OPTIONS if o.command == command]


def locust_options(mode: str) -> list[Option]:
    """Options the locustfile of ``mode`` registers with Locust."""
    return [o for o in OPTIONS if o.scope in ("locust", "both") and mode in o.modes]


def secret_dests() -> frozenset[str]:
    return frozenset(o.dest for o in OPTIONS if o.secret)


def secret_flags() -> frozenset[str]:
    return frozenset(f"--{o.name}" for o in OPTIONS if o.secret)


def locust_argv(values: Mapping[str, Any], mode: str) -> list[str]:
    """The flags that hand ``values`` on to the Locust of ``mode`` (``handoff == "value"``).

    Options computed from the target (URLs, pids, results path), secrets
    (by environment) and run_bench.py's own options are not among them.
    """
    argv: list[str] = []
    for option in OPTIONS:
        if option.handoff != "value" or mode not in option.modes:
            continue
        if option.scope == "locust" or (option.scope == "run" and option.locust_flag is None):
            continue
        argv += option.format(values[option.dest])
    return argv


def schedule_from(values: Mapping[str, Any]) -> Schedule:
    """The stream's schedule from option values (``run_bench.py``'s or a locustfile's).

    Raises:
        ValueError: the combination does not make a schedule.
    """
    return Schedule(
        kind=values["schedule"],
        rate=values["rate"],
        duration_s=values["duration"],
        burst_size=values["burst_size"],
        burst_interval_s=values["burst_interval"],
        rate_end=values["rate_end"] or None,
        seed=values["seed"],
        max_events=values["max_events"] or None,
    )


def _shown(option: Option, value: Any) -> str:
    if option.secret:
        return ""
    if isinstance(value, tuple):
        value = ",".join(value)
    return f" (got {value!r})" if not isinstance(value, float) else f" (got {value:g})"


def _schedule_problem(values: Mapping[str, Any]) -> str | None:
    try:
        schedule_from(values)
    except ValueError as exc:
        return str(exc)
    return None


#: the fewest events a stream may have: every figure of a run rests on them (one event made a
#: 0.0001-s run report 5,804 deliveries/s against 100 offered, and pass)
MIN_EVENTS = 5
_FAR_S = 1e9  # a stream long enough to hold MIN_EVENTS of any valid schedule but a ramp


def _nice_above(seconds: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k strictly above ``seconds``: a duration to suggest."""
    k = math.floor(math.log10(seconds)) if seconds > 0 else -3
    for exponent in (k, k + 1):
        for mantissa in (1.0, 2.0, 2.5, 5.0):
            value = float(f"{mantissa * 10.0 ** exponent:.12g}")
            if value > seconds:
                return value
    return 10.0 ** (k + 2)


def _events(values: Mapping[str, Any], duration: float) -> int:
    """How many events (at most MIN_EVENTS) the stream of ``values`` has over ``duration`` seconds, uncapped."""
    schedule = schedule_from({**values, "duration": duration, "max_events": 0})
    return sum(1 for _ in itertools.islice(offsets_ns(schedule), MIN_EVENTS))


def _too_few_events(values: Mapping[str, Any]) -> str | None:
    """Why the stream is too short to measure anything (fewer than MIN_EVENTS events), with the duration that is not.

    Counted from the schedule itself (a burst schedule counts its bursts'
    events), without ``--max-events``: the cap is asked for explicitly.
    """
    duration = float(values["duration"])
    got = _events(values, duration)
    if got >= MIN_EVENTS:
        return None
    if values["schedule"] == "ramp":  # its shape depends on the duration: grow it until it holds enough
        needed = duration
        while _events(values, needed) < MIN_EVENTS and needed < _FAR_S:
            needed *= 1.25
        suggestion = _nice_above(needed * 0.999)
    else:  # the MIN_EVENTS-th event's due time, which the duration must pass
        offsets = offsets_ns(schedule_from({**values, "duration": _FAR_S, "max_events": 0}))
        last = next(itertools.islice(offsets, MIN_EVENTS - 1, None)) / 1e9
        suggestion = _nice_above(last)
    events = f"{got} event{'s' if got != 1 else ''}"
    if values["schedule"] == "burst":
        bursts = got // int(values["burst_size"])
        what = f"{events} ({bursts} burst{'s' if bursts != 1 else ''} of {values['burst_size']})"
    else:
        what = f"{events} at {values['rate']:g} event{'s' if values['rate'] != 1 else ''}/s"
    return (f"{duration:g} gives {what}; at least {MIN_EVENTS} are needed for a measurement: "
            f"use --duration {suggestion:g} or more")


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name ``word`` most probably misspells (:func:`difflib.get_close_matches`), or None.

    Leading dashes are left out of the likeness: every flag shares them, and
    they made ``--frobnicate`` look like ``--rate``.
    """
    bare = {name.lstrip("-"): name for name in known}
    found = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.6)
    return bare[found[0]] if found else None


_SCHEDULE_DESTS = ("schedule", "rate", "duration", "burst_size", "burst_interval", "rate_end", "seed",
                   "max_events")


def validate(values: Mapping[str, Any], *, options: Iterable[Option] | None = None,
             labels: Mapping[str, str] | None = None) -> None:
    """Check every option's value, then the combinations; raise the first problem.

    Args:
        values: parsed values by ``dest``; options missing from it are skipped.
        options: the options to check (default: every option in ``values``).
        labels: how to name an option in a message (``DELIVERYBENCH_RATE``,
            ``bench.toml: rate``); default: its flag.

    Raises:
        OptionError: one line, e.g. ``--rate must be positive (got -5)``.
    """
    labels = labels or {}
    chosen = list(options) if options is not None else [o for o in OPTIONS if o.dest in values]
    for option in chosen:
        if option.dest not in values:
            continue
        value = values[option.dest]
        found = option.problem(value)
        if found is not None:
            where = labels.get(option.dest, option.flag if option.kind is not bool else f"--{option.name}")
            raise OptionError(f"{where} {found}{_shown(option, value)}")
    if all(d in values for d in _SCHEDULE_DESTS):
        found = _schedule_problem(values)
        if found is not None:
            raise OptionError(f"--schedule {values['schedule']}: {found}")
        found = _too_few_events(values)
        if found is not None:
            raise OptionError(f"{labels.get('duration', '--duration')} {found}")


def flags_for_help(option: Option) -> Sequence[str]:
    """The flags a parser registers for ``option``: ``-u``, ``--subscribers``."""
    return [option.short, option.flag] if option.short else [option.flag]
