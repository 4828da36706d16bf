"""``run_bench.py``'s configuration: one frozen object, resolved once.

Values come, lowest precedence first, from built-in defaults, a TOML file
(``--config FILE``, table ``[deliverybench]`` or top level), environment
variables (``DELIVERYBENCH_<OPTION>``, e.g. ``DELIVERYBENCH_SUBSCRIBERS=2000``)
and the command line -- the same order Locust uses for its ``LOCUST_*``
twins. ConfigArgParse (Locust's own option parser) does the layering; this
module declares the options, checks the combination, and freezes the result.

Bad input raises :class:`ConfigError` with one line for the user;
``run_bench.py`` turns it into exit code 2.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import configargparse

from .core.schedule import SCHEDULE_KINDS, Schedule

__all__ = ["RunConfig", "ConfigError", "build_parser", "resolve", "schedule_from_options", "MODES", "ENV_PREFIX"]

MODES = ("push", "callback", "poll", "burst")
ENV_PREFIX = "DELIVERYBENCH_"


def schedule_from_options(options: Any) -> Schedule:
    """The stream's schedule from options named as on the command line.

    Shared by ``run_bench.py``'s :class:`RunConfig` and the locustfiles' parsed
    Locust options, which use the same names.
    """
    return Schedule(
        kind=options.schedule,
        rate=options.rate,
        duration_s=options.duration,
        burst_size=options.burst_size,
        burst_interval_s=options.burst_interval,
        rate_end=options.rate_end or None,
        seed=options.seed,
        max_events=options.max_events or None,
    )


class ConfigError(Exception):
    """Bad usage or configuration; the message is one line."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``run_bench.py`` run needs, passed down unchanged."""

    modes: tuple[str, ...] = ("push", "callback", "poll")
    subscribers: int = 500
    rate: float = 5.0
    duration: float = 20.0
    schedule: str = "constant"
    burst_size: int = 100
    burst_interval: float = 1.0
    rate_end: float = 0.0
    seed: int = 0
    max_events: int = 0
    payload_bytes: int = 256
    spawn_rate: float = 250.0
    processes: int = 1
    drain: float = 3.0
    settle: float = 1.0
    join_grace: float = 0.05
    target: str = "builtin"
    publish_url: str = ""
    subscribe_url: str = ""
    poll_url: str = ""
    callback_url: str = ""
    target_delay_ms: float = 0.0
    echo_interval: float = 0.0
    source_addresses: str = ""
    poll_interval: float = 1.0
    webhook_secret: str = ""
    ack_delay: str = "0"
    fail_ratio: float = 0.0
    fail_status: int = 500
    consumer_url: str = ""
    sign: bool = False
    burst_timeout: float = 10.0
    out: str = "bench-out"
    run_id: str = ""
    report: bool = True
    extra_locust_args: tuple[str, ...] = field(default_factory=tuple)

    def schedule_obj(self) -> Schedule:
        return schedule_from_options(self)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["modes"] = list(self.modes)
        out["extra_locust_args"] = list(self.extra_locust_args)
        return out


class _OneLineParser(configargparse.ArgumentParser):
    """argparse prints usage plus error; we owe the user one clear line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> configargparse.ArgumentParser:
    parser = _OneLineParser(
        prog="run_bench.py",
        description="Run one event stream through WebSocket push, webhook callback and polling against a "
                    "target, and compare latency, completeness and cost.",
        epilog="Every option can also be set in the --config TOML file or as DELIVERYBENCH_<OPTION> in the "
               "environment (command line > environment > file > default). "
               "Subcommand: run_bench.py report RESULTS... [-o FILE] re-renders reports.",
        config_file_parser_class=configargparse.TomlConfigParser(["deliverybench"]),
        auto_env_var_prefix=ENV_PREFIX,
        add_help=True,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = RunConfig()
    common = parser.add_argument_group("Common options")
    common.add_argument("--config", is_config_file=True, metavar="FILE", help="TOML file with options ([deliverybench] table).")
    common.add_argument("-u", "--subscribers", type=int, default=d.subscribers, help="Subscribers per mode (Locust users).")
    common.add_argument("--rate", type=float, default=d.rate, help="Events per second.")
    common.add_argument("--duration", type=float, default=d.duration, help="Seconds of event stream per mode.")
    common.add_argument("--modes", default=",".join(d.modes), help=f"Comma-separated modes to run, in order: {', '.join(MODES)}.")
    common.add_argument("--processes", type=int, default=d.processes, help="Locust processes running subscribers (>1: master + N workers).")
    common.add_argument("-r", "--spawn-rate", type=float, default=d.spawn_rate, help="Subscribers started per second.")
    common.add_argument("--out", default=d.out, help="Folder for results; each run gets a subfolder.")
    common.add_argument("--run-id", default="", help="Name of the run's subfolder (default: a timestamp).")
    common.add_argument("--no-report", dest="report", action="store_false", help="Do not render report.html.")

    stream = parser.add_argument_group("Event stream")
    stream.add_argument("--schedule", default=d.schedule, choices=SCHEDULE_KINDS, help="Open-model schedule of due times.")
    stream.add_argument("--burst-size", type=int, default=d.burst_size, help="Events per burst (--schedule burst).")
    stream.add_argument("--burst-interval", type=float, default=d.burst_interval, help="Seconds between bursts.")
    stream.add_argument("--rate-end", type=float, default=d.rate_end, help="Final rate for --schedule ramp.")
    stream.add_argument("--seed", type=int, default=d.seed, help="Seed for --schedule poisson.")
    stream.add_argument("--max-events", type=int, default=d.max_events, help="Cap on events (0: none).")
    stream.add_argument("--payload-bytes", type=int, default=d.payload_bytes, help="Encoded size of each event.")
    stream.add_argument("--drain", type=float, default=d.drain, help="Seconds to wait for deliveries after the last due time.")
    stream.add_argument("--settle", type=float, default=d.settle, help="Seconds between all subscribers connected and the first event.")
    stream.add_argument("--join-grace", type=float, default=d.join_grace, help="Events due this soon after a subscriber joined are not expected of it.")

    target = parser.add_argument_group("Target")
    target.add_argument("--target", default=d.target, help="'builtin' (start the built-in targets), 'relay' (external, needs the URLs), or a registered target name.")
    target.add_argument("--publish-url", default="", help="External target ingress (events are POSTed here).")
    target.add_argument("--subscribe-url", default="", help="External target's WebSocket URL (push mode).")
    target.add_argument("--poll-url", default="", help="External target's poll URL (poll mode).")
    target.add_argument("--callback-url", default="", help="External target's subscription API (callback mode).")
    target.add_argument("--target-delay-ms", type=float, default=0.0, help="Built-in targets only, for tests: hold each event this long.")

    push = parser.add_argument_group("Push mode")
    push.add_argument("--echo-interval", type=float, default=0.0, help="Seconds between echo round trips per session (0: off).")
    push.add_argument("--source-addresses", default="", help="Comma-separated local addresses (127.0.0.2,...) to go past ~28k sessions.")
    callback = parser.add_argument_group("Callback mode (the harness as webhook receiver)")
    callback.add_argument("--webhook-secret", default="", help="Standard Webhooks secret (given to the built-in callback target too; default: its documented test secret). Passed on by environment, never written to results.")
    callback.add_argument("--ack-delay", default="0", help="Receiver acknowledgement delay: MS, exp:MEAN_MS or uniform:LOW,HIGH.")
    callback.add_argument("--fail-ratio", type=float, default=0.0, help="Share of first attempts the receiver fails, to exercise retries.")
    callback.add_argument("--fail-status", type=int, default=500, help="HTTP status of simulated failures.")
    burst = parser.add_argument_group("Burst mode (the harness as webhook producer; not in the default --modes)")
    burst.add_argument("--consumer-url", default="", help="Webhook consumer to POST events at (default: the built-in sink).")
    burst.add_argument("--sign", action="store_true", help="Sign burst POSTs with Standard Webhooks headers (--webhook-secret).")
    burst.add_argument("--burst-timeout", type=float, default=10.0, help="Seconds before a burst POST counts as timed out.")
    poll = parser.add_argument_group("Poll mode")
    poll.add_argument("--poll-interval", type=float, default=d.poll_interval, help="Seconds between polls per subscriber.")
    return parser


def resolve(argv: Sequence[str], env: dict[str, str] | None = None) -> RunConfig:
    """Parse and check ``argv`` (without the program name) into a :class:`RunConfig`."""
    parser = build_parser()
    _check_config_file(argv)
    args, extra = parser.parse_known_args(list(argv), env_vars=os.environ if env is None else env)
    locust_extra = _split_extra(extra)
    modes = tuple(m.strip() for m in str(args.modes).split(",") if m.strip())
    if not modes:
        raise ConfigError("--modes is empty")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"unknown mode {unknown[0]!r}; use one or more of {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise ConfigError("--modes lists a mode twice")
    positive = {"subscribers": args.subscribers, "rate": args.rate, "duration": args.duration,
                "spawn-rate": args.spawn_rate, "processes": args.processes}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"--{name} must be positive (got {value})")
    for name in ("drain", "settle", "join_grace", "target_delay_ms", "echo_interval"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
    if not 0 <= args.fail_ratio <= 1:
        raise ConfigError("--fail-ratio must be between 0 and 1")
    if not 100 <= args.fail_status <= 599:
        raise ConfigError("--fail-status must be an HTTP status code")
    from .callback_receiver import parse_delay

    try:
        parse_delay(args.ack_delay)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.burst_timeout <= 0:
        raise ConfigError("--burst-timeout must be positive")
    if args.consumer_url:
        _url(args.consumer_url, ("http", "https"), "--consumer-url")
    if args.poll_interval <= 0:
        raise ConfigError("--poll-interval must be positive")
    if args.payload_bytes < 0 or args.payload_bytes > 16 * 1024 * 1024:
        raise ConfigError("--payload-bytes must be between 0 and 16 MiB")
    config = RunConfig(
        modes=modes, subscribers=args.subscribers, rate=args.rate, duration=args.duration,
        schedule=args.schedule, burst_size=args.burst_size, burst_interval=args.burst_interval,
        rate_end=args.rate_end, seed=args.seed, max_events=args.max_events, payload_bytes=args.payload_bytes,
        spawn_rate=args.spawn_rate, processes=args.processes, drain=args.drain, settle=args.settle,
        join_grace=args.join_grace, target=args.target, publish_url=args.publish_url,
        subscribe_url=args.subscribe_url, poll_url=args.poll_url, callback_url=args.callback_url,
        target_delay_ms=args.target_delay_ms, echo_interval=args.echo_interval,
        source_addresses=args.source_addresses, poll_interval=args.poll_interval,
        webhook_secret=args.webhook_secret, ack_delay=args.ack_delay, fail_ratio=args.fail_ratio,
        fail_status=args.fail_status, consumer_url=args.consumer_url, sign=args.sign,
        burst_timeout=args.burst_timeout, out=args.out,
        run_id=args.run_id, report=args.report, extra_locust_args=locust_extra,
    )
    try:
        config.schedule_obj()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_target(config)
    return config


def _split_extra(extra: Sequence[str]) -> tuple[str, ...]:
    """Anything after ``--`` goes to Locust verbatim; anything else unknown is an error."""
    extra = list(extra)
    if not extra:
        return ()
    if extra[0] == "--":
        return tuple(extra[1:])
    raise ConfigError(f"unrecognized argument {extra[0]!r} (see --help; pass Locust options after --)")


def _check_config_file(argv: Sequence[str]) -> None:
    for i, arg in enumerate(argv):
        path = None
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is None:
            continue
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _url(value: str, schemes: tuple[str, ...], option: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{option} must be a {' or '.join(s + '://' for s in schemes)} URL (got {value!r})")


def _check_target(config: RunConfig) -> None:
    if config.modes == ("burst",):
        return  # bursts need only a consumer: --consumer-url or the built-in sink
    if config.target == "builtin":
        if config.publish_url or config.subscribe_url or config.poll_url or config.callback_url:
            raise ConfigError("URLs given with --target builtin; use --target relay for an external target")
        return
    if config.target == "relay":
        if not config.publish_url:
            raise ConfigError("--target relay needs --publish-url")
        _url(config.publish_url, ("http", "https"), "--publish-url")
        needs = {"push": ("subscribe_url", ("ws", "wss")), "poll": ("poll_url", ("http", "https")),
                 "callback": ("callback_url", ("http", "https"))}
        for mode in config.modes:
            if mode == "burst":
                continue
            attr, schemes = needs[mode]
            value = getattr(config, attr)
            option = "--" + attr.replace("_", "-")
            if not value:
                raise ConfigError(f"--target relay with mode {mode} needs {option}")
            _url(value, schemes, option)
        return
    from targets import TargetError, get_target

    try:
        get_target(config.target)
    except TargetError as exc:
        raise ConfigError(str(exc)) from None
