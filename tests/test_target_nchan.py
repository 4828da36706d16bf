"""The ``nchan`` target: nginx + nchan started by the harness, and every event counted through it.

The end-to-end tests start Debian's ``nginx-light`` with ``libnginx-mod-nchan``
(skipped when they are not installed; ``.ci/run`` installs them).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from target_runs import run_counts_every_event, target_cpu

from targets.base import get_target
from targets.nchan import NchanTarget, NginxConfig, missing, render_config

needs_nchan = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def test_the_target_is_registered_and_offers_nothing_until_started() -> None:
    target = get_target("nchan")()
    assert isinstance(target, NchanTarget)
    assert target.ingress_url is None and target.egress_url("push") is None and target.pids() == []
    assert target.dialect("push").verbatim  # nchan forwards each POST body as it is


def test_the_config_serves_every_mode_on_one_channel_under_its_own_prefix() -> None:
    text = render_config(Path("/p"), 4321, NginxConfig(workers=2))
    assert "daemon off;" in text and "pid /p/nginx.pid;" in text and "listen 127.0.0.1:4321;" in text
    assert text.count("nchan_channel_id bench;") == 4  # publisher, websocket, eventsource, longpoll
    for kind in ("websocket", "eventsource", "longpoll"):
        assert f"nchan_subscriber {kind};" in text


@pytest.mark.e2e
@needs_nchan
def test_the_target_starts_answers_and_leaves_no_process_behind() -> None:
    target = NchanTarget(config=NginxConfig(workers=2))
    with target:
        urls = target.urls()
        assert urls["push"].startswith("ws://127.0.0.1:") and urls["sse"].endswith("/sse")
        assert urls["longpoll"].endswith("/lp") and urls["ingress"].endswith("/pub")
        assert target.health()
        pids = target.pids()
        assert len(pids) == 3 and pids[0] == target.pid  # the master and both workers
        request = urllib.request.Request(urls["ingress"], data=b'{"id":1}', method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test server
            assert response.status in (201, 202)
        prefix = target.prefix
        assert prefix is not None and (prefix / "nginx.conf").is_file()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not prefix.exists() and not target.health()  # its own temporary prefix is gone too


@pytest.mark.e2e
@needs_nchan
def test_every_event_reaches_every_subscriber_once_over_push_sse_and_longpoll(tmp_path: Path) -> None:
    modes = run_counts_every_event(tmp_path, "nchan", modes=("push", "sse", "longpoll"), rate=50)
    for name, mode in modes.items():
        cpu = target_cpu(mode)
        assert len(cpu) == 2 and max(cpu.values()) > 0, (name, cpu)  # nginx's master and its worker
