"""Too many sessions on one source address is said before the run (measured: it starves the harness)."""

from __future__ import annotations

import pytest

from deliverybench.cli.config import resolve
from deliverybench.cli.limits import SESSIONS_PER_SOURCE_ADDRESS, source_ports_warning


@pytest.mark.parametrize("argv, said", [
    (["--modes", "push", "-u", "10000"], None),                      # at the figure: fine
    (["--modes", "push", "-u", "10001"], "10,001 push sessions per source address"),
    (["--modes", "sse", "-u", "30000", "--processes", "3", "--source-addresses", "127.0.0.2,127.0.0.3"],
     "15,000 sse sessions per source address"),
    (["--modes", "push", "-u", "30000", "--processes", "3",
      "--source-addresses", "127.0.0.2,127.0.0.3,127.0.0.4"], None),
    (["--modes", "callback,poll", "-u", "30000", "--processes", "3"], None),  # no sessions to spread
])
def test_crowded_source_addresses_are_warned_with_what_to_give(argv: list[str], said: str | None) -> None:
    warning = source_ports_warning(resolve(argv, env={}))
    if said is None:
        assert warning is None
    else:
        assert warning is not None and warning.startswith(said)
        assert f"{SESSIONS_PER_SOURCE_ADDRESS:,}" in warning and "--source-addresses 127.0.0.2" in warning
