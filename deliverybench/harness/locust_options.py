"""The option table on Locust's side: ``locust -f`` flags, environment twins, the web UI form.

A locustfile of one mode registers exactly the options of the table that
apply to that mode (:func:`~deliverybench.core.options.locust_options`),
each with its ``DELIVERYBENCH_*`` environment twin, so Locust's own config
files, environment variables and web UI form all carry them.

Validation is the table's own :func:`~deliverybench.core.options.validate`,
the same call ``run_bench.py`` makes, run

* when Locust parses its command line -- before any ``--processes`` fork, so
  a bad value prints one line (``locust: error: --rate must be positive
  (got -5)``) and exits 2 before the run starts, Locust's convention for bad
  arguments;
* when the web UI's form starts a run: the swarm request is answered with
  the same line and nothing starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..core.options import Option, OptionError, locust_options, validate

__all__ = ["add_options", "check_form", "option_values"]

PROG = "locust"


def _fail(exc: OptionError) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def _converter(option: Option) -> Callable[[str], Any]:
    """argparse ``type=``: our parse, our one line (argparse would add its usage dump)."""
    def convert(text: str) -> Any:
        try:
            value = option.parse(text)
        except OptionError as exc:
            _fail(exc)
        if option.choices and value not in option.choices:  # before argparse's own, multi-line complaint
            _fail(OptionError(f"--{option.name} {option.problem(value)} (got {value!r})"))
        return value
    convert.__name__ = option.kind.__name__  # argparse names the type in its own messages
    return convert


def option_values(namespace: Any, mode: str) -> dict[str, Any]:
    """The values of this mode's options in a parsed Locust namespace."""
    values = vars(namespace)
    return {o.dest: values[o.dest] for o in locust_options(mode) if o.dest in values}


def add_options(parser: Any, mode: str) -> None:
    """Register the options of ``mode`` with Locust's parser, and validate after parsing."""
    for option in locust_options(mode):
        kwargs: dict[str, Any] = {
            "dest": option.dest, "default": option.default, "help": option.help, "env_var": option.env_var,
            "include_in_web_ui": option.web_ui, "is_secret": option.secret,
        }
        if option.kind is bool and option.negate:  # --<name>/--no-<name>, so DELIVERYBENCH_<NAME>=false works too
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["include_in_web_ui"] = False  # the web UI's checkbox would read the other way round
        elif option.kind is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _converter(option)
            if option.choices:
                kwargs["choices"] = list(option.choices)  # the web UI shows a drop-down
        parser.add_argument(f"--{option.name}", **kwargs)
    _validate_after_parsing(parser, mode)


def _validate_after_parsing(parser: Any, mode: str) -> None:
    """Wrap this parser's ``parse_known_args`` so every parse ends in :func:`validate`.

    Locust offers no hook between parsing and forking its ``--processes``
    workers; the parser itself is the one place every path goes through.
    """
    original = parser.parse_known_args
    if getattr(original, "_deliverybench", False):
        return

    def parse_known_args(*args: Any, **kwargs: Any) -> Any:
        namespace, rest = original(*args, **kwargs)
        try:
            validate(option_values(namespace, mode), options=locust_options(mode))
        except OptionError as exc:
            _fail(exc)
        return namespace, rest

    parse_known_args._deliverybench = True  # type: ignore[attr-defined]
    parser.parse_known_args = parse_known_args


def check_form(form: Mapping[str, str], current: Mapping[str, Any], mode: str) -> str | None:
    """The problem with a web UI swarm form, as one line, or None.

    ``current`` are the options in force; the form overrides those it names.
    """
    values = dict(current)
    try:
        for option in locust_options(mode):
            if option.dest in form:
                raw = form[option.dest]
                values[option.dest] = raw == "true" if option.kind is bool else option.parse(raw)
        validate(values, options=locust_options(mode))
    except OptionError as exc:
        return str(exc)
    return None
