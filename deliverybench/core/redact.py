"""Keeping secrets out of results files and reports, which are shared and archived.

Results record the configuration and command line so runs can be compared;
a webhook signing secret in either would travel with every copy. Secrets are
known by *identity* -- the option table marks them (``secret=True``) -- not
by spelling: argparse-style parsers accept any unambiguous prefix of a flag
(Locust's does), so ``--webhook-sec S`` must be redacted like
``--webhook-secret S``. Names that merely look secret (``*token*``,
``*password*``) are redacted too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .options import secret_dests, secret_flags

__all__ = ["redact_config", "redact_argv", "REDACTED"]

REDACTED = "<redacted>"
_MIN_PREFIX = 4  # "--we": argparse would refuse a prefix this short as ambiguous anyway


def _secret_name(name: str) -> bool:
    lowered = name.lower().lstrip("-").replace("-", "_")
    return lowered in secret_dests() or any(word in lowered for word in ("secret", "password", "token"))


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every secret value (recursively) replaced."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if _secret_name(str(key)) and value not in (None, "", False):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_config(value)
        else:
            out[key] = value
    return out


def _secret_flag(token: str) -> bool:
    """Is ``token`` (``--x`` or ``--x=v``) a secret flag, or a prefix a parser would expand to one?"""
    flag = token.split("=", 1)[0]
    if not flag.startswith("--") or len(flag) < _MIN_PREFIX:
        return False
    if _secret_name(flag):
        return True
    return any(secret.startswith(flag) for secret in secret_flags())


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A copy of a command line with the values of secret options replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif _secret_flag(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + REDACTED)
            else:
                out.append(arg)
                hide_next = True
        else:
            out.append(arg)
    return out
