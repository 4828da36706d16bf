"""Keeping secrets out of results files, which are shared and archived.

Results record the configuration and command line so runs can be compared;
a webhook signing secret in either would travel with every copy.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["redact_config", "redact_argv", "REDACTED"]

REDACTED = "<redacted>"


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return "secret" in lowered or "password" in lowered or "token" in lowered


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every secret-looking value (recursively) replaced."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if _secret_name(str(key)) and value not in (None, "", False):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_config(value)
        else:
            out[key] = value
    return out


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A copy of a command line with the values of secret-looking options replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg.startswith("--") and _secret_name(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + REDACTED)
            else:
                out.append(arg)
                hide_next = True
        else:
            out.append(arg)
    return out
