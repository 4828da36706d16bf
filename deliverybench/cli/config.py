"""``run_bench.py``'s configuration: the option table read from file, environment and argv.

Resolved once, lowest precedence first: each option's default, a TOML file
(``--config bench.toml``: keys at the top level or in a ``[deliverybench]``
table, spelt ``spawn-rate`` or ``spawn_rate``), ``DELIVERYBENCH_*``
environment variables, then the command line -- the order Locust uses for its
``LOCUST_*`` twins. Every option comes from the one table in
:mod:`deliverybench.core.options`; this module only reads the three sources,
checks the combination with the same :func:`~deliverybench.core.options.validate`
the locustfiles use, and freezes the result into a :class:`RunConfig`.

Bad input raises :class:`ConfigError` with one line for the user (never a
secret's value); ``run_bench.py`` turns it into exit code 2.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.dialect import DIALECT_DESTS
from ..core.options import (
    ENV_PREFIX,
    MODES,
    OPTIONS,
    PROFILES,
    Option,
    OptionError,
    by_dest,
    closest,
    flags_for_help,
    run_options,
    schedule_from,
    url_of,
    validate,
)
from ..core.schedule import Schedule

__all__ = ["RunConfig", "ConfigError", "build_parser", "resolve", "add_table_options", "parse_table_args",
           "one_line_parser", "unknown_argument", "MODES", "ENV_PREFIX", "TOML_TABLE", "SUBCOMMANDS"]

ConfigError = OptionError
TOML_TABLE = "deliverybench"
#: the words the command takes in place of a run's options (a misspelt one is suggested like an option)
SUBCOMMANDS = ("run", "compare", "sweep", "report", "locustfile")


def _suggestion(word: str, known: Iterable[str]) -> str:
    """``; did you mean --subscribers?``, or nothing when no known name is close."""
    match = closest(word, known)
    return f"; did you mean {match}?" if match else ""


def unknown_argument(token: str, known: Iterable[str], *, hint: str, prog: str = "run_bench.py") -> str:
    """The one line for an argument no parser took: its name (never a value: it may be a secret), the
    closest known flag (or subcommand, for a bare word), and ``hint``."""
    shown = token.split("=", 1)[0]
    if shown in SUBCOMMANDS:  # a subcommand after options: the word is right, its place is not
        return f"unrecognized argument {shown!r}: a subcommand comes first ({prog} {shown} ...) ({hint})"
    candidates = [k for k in known if k.startswith("-")] if shown.startswith("-") else list(SUBCOMMANDS)
    return f"unrecognized argument {shown!r}{_suggestion(shown, candidates)} ({hint})"


class RunConfig:
    """Everything one ``run_bench.py`` run needs: one value per run option, frozen.

    Attributes are the options' ``dest`` names (``config.spawn_rate``);
    ``extra_locust_args`` are the arguments given after ``--``; ``given``
    names the options some source set explicitly.
    """

    __slots__ = ("_values", "extra_locust_args", "given")

    def __init__(self, values: Mapping[str, Any], *, extra_locust_args: Sequence[str] = (),
                 given: frozenset[str] = frozenset()) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "extra_locust_args", tuple(extra_locust_args))
        object.__setattr__(self, "given", given)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RunConfig is frozen; use replace()")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self._values == other._values and \
            self.extra_locust_args == other.extra_locust_args

    def __repr__(self) -> str:
        return f"RunConfig({self._values!r})"

    @property
    def values(self) -> Mapping[str, Any]:
        return dict(self._values)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied and checked again."""
        values = {**self._values, **changes}
        validate(values)
        return RunConfig(values, extra_locust_args=self.extra_locust_args, given=self.given | set(changes))

    def schedule_obj(self) -> Schedule:
        return schedule_from(self._values)

    def to_dict(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}
        out["extra_locust_args"] = list(self.extra_locust_args)
        return out


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus error; we owe the user one clear line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """As argparse's, but an unknown argument is one line naming the closest known flag."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            raise ConfigError(unknown_argument(extra[0], self._option_string_actions, hint="see --help",
                                               prog=self.prog.split(" ")[0]))
        return parsed


def one_line_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An argparse parser whose errors are one-line :class:`ConfigError` s, abbreviations off."""
    return _OneLineParser(allow_abbrev=False, argument_default=argparse.SUPPRESS, **kwargs)


def build_parser(prog: str = "run_bench.py") -> argparse.ArgumentParser:
    """The run parser (``prog``: ``run_bench.py`` or ``deliverybench``), every option from the table.

    Values are kept as given (``default=SUPPRESS``) so that :func:`resolve`
    knows which source set what, and parses every source the same way.
    Abbreviations are off: ``--webhook-sec`` must not silently mean
    ``--webhook-secret``.
    """
    parser = _OneLineParser(
        prog=prog,
        usage=f"{prog} [run] [OPTIONS] [-- LOCUST_OPTIONS]\n       {prog} compare BASELINE NEW [-o DIR] "
              f"[gate options]\n       {prog} sweep [--modes M] [--subscribers N,N|LOW:HIGH] [--rate R] "
              f"[--slo SLO] [options]\n       {prog} report RESULTS... [-o FILE]\n       {prog} locustfile MODE",
        description="Run one event stream through WebSocket push, Server-Sent Events, long-polling, webhook "
                    "callback and polling against a target, and compare latency, completeness and cost.",
        epilog="Every option can also be set in the --config TOML file (top level or a [deliverybench] table) "
               f"or as {ENV_PREFIX}<OPTION> in the environment (command line > environment > file > default). "
               f"Subcommands: {prog} compare BASELINE NEW (the CI gate on two results files); "
               f"{prog} report RESULTS... [-o FILE] re-renders reports; {prog} locustfile MODE prints the path "
               "of a mode's locustfile, for locust -f. "
               "Options after -- go to Locust unchanged.",
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    add_table_options(parser, run_options())
    return parser


def add_table_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Register ``options`` (raw values, ``default=SUPPRESS``), grouped as the table groups them."""
    groups: dict[str, Any] = {}
    for option in options:
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(option.group)
        shown = _default_text(option)
        default = "" if option.kind is bool or not shown else f" (default: {shown})"
        help_text = f"{option.help}{default} [{option.env_var}]"
        if option.kind is bool:
            action = "store_false" if option.negate else "store_true"
            group.add_argument(*flags_for_help(option), dest=option.dest, action=action, help=help_text)
        else:
            group.add_argument(*flags_for_help(option), dest=option.dest, metavar=_metavar(option),
                               help=help_text)


def parse_table_args(parser: argparse.ArgumentParser, argv: Sequence[str], options: Sequence[Option]
                     ) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse ``argv`` with ``parser``; the table options among it, parsed and checked like ``resolve`` does."""
    args = parser.parse_args(list(argv))
    raw = vars(args)
    values = {o.dest: o.default for o in options}
    labels = {}
    for option in options:
        if option.dest in raw:
            value = raw.pop(option.dest)
            values[option.dest] = value if option.kind is bool else option.parse(value)
            labels[option.dest] = f"--{option.name}"
    validate(values, options=options, labels=labels)
    return argparse.Namespace(**raw), values


def _default_text(option: Option) -> str:
    value = option.default
    if option.secret:
        return "the built-in test secret"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _metavar(option: Option) -> str:
    if option.choices:
        return "{" + ",".join(option.choices) + "}"
    if option.name.endswith("url"):
        return "URL"
    return {int: "N", float: "X", tuple: "A,B"}.get(option.kind, "TEXT")


def resolve(argv: Sequence[str], env: Mapping[str, str] | None = None, *,
            also_known: Sequence[str] = (), prog: str = "run_bench.py") -> RunConfig:
    """Parse and check ``argv`` (without the program name) into a :class:`RunConfig`.

    Args:
        also_known: flags a caller parsed before (``sweep``'s own), among
            which a misspelt argument's suggestion is also looked for.
        prog: the command's name, in ``--help`` and in the messages that point to it.
    """
    env = os.environ if env is None else env
    parser = build_parser(prog)
    cli_args, extra = parser.parse_known_args(list(argv))
    locust_extra = _split_extra(extra, [*parser._option_string_actions, *also_known], prog)
    cli = vars(cli_args)
    values = {o.dest: o.default for o in run_options()}
    labels: dict[str, str] = {}
    given: set[str] = set()
    config_path = cli.get("config") or env.get(by_dest("config").env_var, "")
    from_file = _file_values(Path(config_path), prog) if config_path else {}
    from_env = _env_values(env, prog)
    profile = cli.get("profile") or (from_env.get("profile") or from_file.get("profile") or ("", ""))[0]
    if profile:  # lowest after the defaults: the file, environment and command line still win
        if profile not in PROFILES:
            raise ConfigError(f"--profile must be one of {', '.join(sorted(PROFILES))} (got {profile!r})")
        values.update(PROFILES[profile])
    for dest, (value, label) in from_file.items():
        values[dest], labels[dest] = value, label
        given.add(dest)
    for dest, (value, label) in from_env.items():
        values[dest], labels[dest] = value, label
        given.add(dest)
    for dest, raw in cli.items():
        option = by_dest(dest)
        values[dest] = raw if option.kind is bool else option.parse(raw)
        labels[dest] = f"--{option.name}"
        given.add(dest)
    if config_path:
        values["config"] = str(config_path)
    if values["target"] == "relay" and "modes" not in given:  # the default's or a profile's: those with URLs
        values["modes"] = _relay_modes(values, values["modes"])
    elif values["target"] != "builtin" and "modes" not in given:  # a named target: the modes it offers
        values["modes"] = offered_modes(str(values["target"]), values["modes"])
    validate(values, labels=labels)
    config = RunConfig(values, extra_locust_args=locust_extra, given=frozenset(given))
    _check_target(config, labels)
    return config


def _split_extra(extra: Sequence[str], known: Sequence[str], prog: str) -> tuple[str, ...]:
    """Anything after ``--`` goes to Locust verbatim; anything else unknown is an error."""
    extra = list(extra)
    if not extra:
        return ()
    if extra[0] == "--":
        return tuple(extra[1:])
    raise ConfigError(unknown_argument(extra[0], known, hint="see --help; pass Locust options after --", prog=prog))


def _spellings() -> dict[str, Option]:
    names: dict[str, Option] = {}
    for option in run_options():
        names[option.name] = option
        names[option.dest] = option
    return names


def _file_values(path: Path, prog: str) -> dict[str, tuple[Any, str]]:
    """Options from a TOML file: keys at the top level or in ``[deliverybench]``, either spelling."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    spellings = _spellings()
    found: dict[str, tuple[Any, str]] = {}

    def take(items: Iterator[tuple[str, Any]], where: str) -> None:
        for key, raw in items:
            label = f"{path.name}: {where}{key}"
            if isinstance(raw, dict):
                raise ConfigError(f"{path.name}: table [{where}{key}] is not used; put options at the top level "
                                  f"or under [{TOML_TABLE}]")
            option = spellings.get(key)
            if option is None or option.dest == "config":
                like = [k for k in spellings if k != "config" and ("_" in k) == ("_" in key)]
                raise ConfigError(f"{label} is not an option{_suggestion(key, like)} (see {prog} --help)")
            if option.dest in found:
                raise ConfigError(f"{label} is set twice")
            found[option.dest] = (option.parse(raw, source=label), label)

    take(((k, v) for k, v in data.items() if k != TOML_TABLE), "")
    table = data.get(TOML_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path.name}: {TOML_TABLE} must be a table")
    take(iter(table.items()), f"{TOML_TABLE}.")
    return found


def _env_values(env: Mapping[str, str], prog: str) -> dict[str, tuple[Any, str]]:
    """Options from ``DELIVERYBENCH_*`` variables; a typo is an error, a locustfile-only option is not."""
    known = {o.env_var: o for o in OPTIONS if o.env_var}
    found: dict[str, tuple[Any, str]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == by_dest("config").env_var:
            continue
        option = known.get(name)
        if option is None:
            raise ConfigError(f"environment variable {name} is not an option{_suggestion(name, known)} "
                              f"(see {prog} --help)")
        if option.scope == "locust":
            continue  # meant for `locust -f`; run_bench.py sets these itself
        found[option.dest] = (option.parse(raw, source=name), name)
    return found


def offered_modes(target: str, modes: Sequence[str]) -> tuple[str, ...]:
    """With ``--target NAME`` and no ``--modes``: of ``modes`` (the default's, or a profile's), those the target
    declares it offers (``--target nchan`` runs push, sse and longpoll); when it offers none of them, all it
    offers. Asked for explicitly, a mode it does not offer is refused (:func:`_check_target`)."""
    from targets import TargetError, get_target

    try:
        offers = get_target(target).offers
    except TargetError:
        return tuple(modes)  # an unknown name: refused with the list of known ones
    if offers is None:
        return tuple(modes)
    return tuple(mode for mode in modes if mode in offers) or tuple(mode for mode in MODES if mode in offers)


def _relay_modes(values: Mapping[str, Any], modes: Sequence[str]) -> tuple[str, ...]:
    """With ``--target relay`` and no ``--modes``: of ``modes`` (the default's, or a profile's), those whose
    egress URLs were given (``--profile ci --target relay --subscribe-url ...`` runs push alone); when none
    of them has one, every mode whose URL was given (``--sse-url`` alone runs sse)."""
    for among in (modes, MODES):
        chosen = [mode for mode in among if mode in EGRESS_OPTIONS and values.get(EGRESS_OPTIONS[mode][0])]
        if chosen:
            return tuple(chosen)
    return tuple(modes)


#: the option naming each mode's egress on run_bench.py, and the schemes it takes
EGRESS_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "push": ("subscribe_url", ("ws", "wss")),
    "sse": ("sse_url", ("http",)),
    "longpoll": ("longpoll_url", ("http", "https")),
    "poll": ("poll_url", ("http", "https")),
    "callback": ("callback_url", ("http", "https")),
}


def _check_target(config: RunConfig, labels: Mapping[str, str]) -> None:
    if config.modes == ("burst",):
        return  # bursts need only a consumer: --consumer-url or the built-in sink
    urls = ("publish_url", *(dest for dest, _ in EGRESS_OPTIONS.values()))
    if config.target != "relay":
        spoken = [f"--{by_dest(dest).name}" for dest in DIALECT_DESTS.values()
                  if config.values.get(dest) != by_dest(dest).default]
        if spoken:
            verb, them = ("describes", "it") if len(spoken) == 1 else ("describe", "them")
            raise ConfigError(f"{', '.join(spoken)} {verb} an external server's protocol: give {them} with --target "
                              f"relay; the {config.target} target speaks its own")
    if config.target == "builtin":
        if any(getattr(config, dest) for dest in urls):
            raise ConfigError("URLs given with --target builtin; use --target relay for an external target")
        return
    if config.target == "relay":
        if not config.publish_url:
            raise ConfigError("--target relay needs --publish-url")
        for mode in config.modes:
            if mode == "burst":
                continue
            dest, schemes = EGRESS_OPTIONS[mode]
            value = getattr(config, dest)
            flag = f"--{by_dest(dest).name}"
            if not value:
                raise ConfigError(f"--target relay with mode {mode} needs {flag}")
            found = url_of(*schemes)(value)
            if found is not None:
                raise ConfigError(f"{labels.get(dest, flag)} {found} for mode {mode} (got {value!r})")
        return
    from targets import TargetError
    from targets.base import refuse_unoffered

    try:
        refuse_unoffered(config.target, config.modes)
    except TargetError as exc:
        raise ConfigError(str(exc)) from None
