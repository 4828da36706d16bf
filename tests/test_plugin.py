"""A third-party target plugin, installed the way a user installs one, found and measured through its entry point.

``examples/plugin`` is a package of its own (``deliverybench-envelope-relay``):
an aiohttp relay that wraps each event as ``{"type":"event","data":<event>}``,
and a short Target subclass whose dialect says the event is at ``/data``. The
fixture pip-installs a copy of it (so the build writes nothing into the
checkout) into a temporary folder with ``--target``; that folder on
PYTHONPATH is the only way the harness can learn of it, through the
``deliverybench.targets`` entry point in the installed dist-info. Without the
folder the name is unknown, so nothing here passes by accident.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets
from helpers import REPO, assert_ok, env, scaled

from deliverybench.core.event import Event, encode_event
from deliverybench.core.protocols import subscriber_protocol
from targets.base import Target, available_targets, get_target

pytestmark = pytest.mark.e2e

PLUGIN = REPO / "examples" / "plugin"
NAME = "envelope-relay"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed plugin (package and dist-info), as ``pip install --target`` leaves it."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    # no isolation: setuptools is already here, and the plugin's one dependency (aiohttp) is deliverybench's too
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input",
                           "--disable-pip-version-check", "--target", str(site), str(source)],
                          cwd=root, capture_output=True, text=True, timeout=scaled(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "deliverybench_envelope_relay-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


def _env_with(site: Path) -> dict[str, str]:
    out = env()
    out["PYTHONPATH"] = os.pathsep.join([str(site), out["PYTHONPATH"]])
    return out


@pytest.fixture()
def plugin_on_path(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process finds the plugin as the harness would; its children (the relay) find it too."""
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("PYTHONPATH", _env_with(plugin_site)["PYTHONPATH"])
    yield


async def _exchange(target: Target, subscribers: int, events: list[bytes]) -> list[list[bytes]]:
    """Publish ``events`` to the running relay with ``subscribers`` connected; each subscriber's frames."""
    ingress, egress = target.ingress_url, target.egress_url("push")
    assert ingress is not None and egress is not None
    sessions = [await websockets.connect(egress) for _ in range(subscribers)]
    try:
        async with aiohttp.ClientSession() as client:
            async with client.post(ingress, data=b"[1]") as refused:  # not an event: refused, nothing sent
                assert refused.status == 400
            for body in events:
                async with client.post(ingress, data=body) as response:
                    assert response.status == 202 and await response.json() == {"delivered_to": subscribers}
        return [[(await asyncio.wait_for(ws.recv(decode=False), scaled(5))) for _ in events] for ws in sessions]
    finally:
        for ws in sessions:
            await ws.close()


def test_the_installed_plugin_is_found_by_its_entry_point_and_its_relay_speaks_its_dialect(
        plugin_on_path: None) -> None:
    assert NAME in available_targets()
    target = get_target(NAME)()
    events = [encode_event(Event(i, 1_000 + i), 2_000 + i, 96) for i in range(5)]
    with target:
        assert target.health() and target.modes() == ["push"] and target.egress_url("callback") is None
        described = target.describe()
        assert described["name"] == NAME and described["dialect"] == {"push": {"event_path": "/data"}}
        frames = asyncio.run(asyncio.wait_for(_exchange(target, 3, events), scaled(20)))
        pids = target.pids()
        assert len(pids) == 1 and Path(f"/proc/{pids[0]}").exists()
    assert not Path(f"/proc/{pids[0]}").exists()  # the relay goes with its target
    reader = subscriber_protocol(target.dialect("push")).reader()
    for received in frames:
        assert [json.loads(f)["type"] for f in received] == ["event"] * len(events)  # wrapped, not verbatim
        # the harness's own reader, given the plugin's dialect, gets back exactly the bytes published
        assert [e for f in received for e in reader.read(f).events] == events


def test_run_bench_lists_the_plugin_only_when_it_is_installed(plugin_site: Path, tmp_path: Path) -> None:
    def unknown_target_line(environment: dict[str, str]) -> str:
        proc = subprocess.run([sys.executable, str(REPO / "run_bench.py"), "--target", "no-such-target",
                               "--modes", "push", "--out", str(tmp_path)], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=scaled(60))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        return proc.stderr

    without = unknown_target_line(env())
    assert "available: " in without and NAME not in without
    assert f", {NAME}," in unknown_target_line(_env_with(plugin_site))


def test_a_short_measurement_through_the_plugin_counts_every_delivery(plugin_site: Path, tmp_path: Path) -> None:
    users, rate, duration = 20, 5, 2
    published = rate * duration
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--out", str(tmp_path), "--run-id", "run", "--target", NAME,
           "--modes", "push", "-u", str(users), "--rate", str(rate), "--duration", str(duration), "--drain", "2",
           "--no-report"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env_with(plugin_site), capture_output=True, text=True,
                          timeout=scaled(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mode = json.loads((tmp_path / "run" / "results.json").read_text())["modes"]["push"]
    assert mode["target"]["name"] == NAME and mode["target"]["dialect"] == {"push": {"event_path": "/data"}}
    assert_ok(mode)
    audit = mode["audit"]
    assert audit["published"] == published and audit["subscribers"] == users, audit
    assert audit["delivered_unique"] == audit["expected"] == users * published, audit
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0, audit
    assert mode["summary"]["delivery"]["count"] == users * published
