"""The ``alertmanager`` target: the configuration its shim writes, and a real Alertmanager end to end.

The end-to-end tests start Debian's ``prometheus-alertmanager`` (skipped when
it is not installed; ``.ci/run`` installs it) and count every delivery: each
event is one alert whose labels carry its id, so Alertmanager never merges
two events, and every subscriber must get every event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import assert_ok, run_bench, scaled

from deliverybench.core.event import Event, encode_event
from deliverybench.core.protocols import events_at, parse_event_path
from deliverybench.core.publish_template import PublishTemplate
from targets.alertmanager import ALERT_TEMPLATE, EVENT_PATH, AlertmanagerTarget
from targets.alertmanager_shim import alertmanager_config, callback_url, notification_counters
from targets.base import get_target

needs_alertmanager = pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                                        reason="prometheus-alertmanager not installed (apt-get install "
                                               "prometheus-alertmanager)")


# -- what the shim writes ----------------------------------------------------------------------


def test_each_callback_url_is_one_webhook_receiver_on_a_route_that_sees_every_alert() -> None:
    config = alertmanager_config({"1": "http://127.0.0.1:5000/hook/a", "7": "http://127.0.0.1:5000/hook/b"})
    route = config["route"]
    assert route["group_by"] == ["..."] and route["group_wait"] == "0s"
    assert route["routes"] == [{"receiver": "subscriber-1", "continue": True},
                               {"receiver": "subscriber-7", "continue": True}]
    by_name = {r["name"]: r for r in config["receivers"]}
    assert by_name["subscriber-7"]["webhook_configs"] == [{"url": "http://127.0.0.1:5000/hook/b",
                                                            "send_resolved": False}]
    assert by_name[route["receiver"]] == {"name": route["receiver"]}  # the root's receiver sends nothing
    assert alertmanager_config({})["route"]["routes"] == []


def test_the_published_alert_carries_the_event_where_the_receiver_looks_for_it() -> None:
    event = encode_event(Event(41, 1_000), 2_000, 64)
    body = PublishTemplate.parse(ALERT_TEMPLATE).render(event, channel="deliverybench", event_id=41)
    alerts = json.loads(body)
    assert alerts[0]["labels"]["id"] == "41"  # unique labels: Alertmanager merges alerts with equal ones
    # Alertmanager copies annotations into its webhook body as they were posted
    webhook = {"version": "4", "alerts": [{"status": "firing", **alerts[0]}]}
    assert [e.encode() for e in events_at(webhook, parse_event_path(EVENT_PATH))] == [event]


def test_a_subscription_request_names_an_http_callback_url_or_is_refused() -> None:
    assert str(callback_url(b'{"url": "http://127.0.0.1:81/hook/3"}')) == "http://127.0.0.1:81/hook/3"
    for body in (b'{"url": "ftp://host/x"}', b'{"url": "http:///x"}', b'{"url": 3}', b'["url"]', b"\xff", b"{"):
        assert callback_url(body) is None, body


def test_notification_counters_are_read_from_alertmanagers_metrics() -> None:
    metrics = "\n".join([
        "# HELP alertmanager_notifications_total The total number of attempted notifications.",
        'alertmanager_notifications_total{integration="email"} 4',
        'alertmanager_notifications_total{integration="webhook"} 300',
        'alertmanager_notifications_failed_total{integration="webhook"} 2',
        'alertmanager_notification_requests_failed_total{integration="webhook"} 3',
        "alertmanager_notifications_total 9"])
    assert notification_counters(metrics) == {"notifications": 300.0, "notifications_failed": 2.0,
                                              "requests": 0.0, "requests_failed": 3.0}


def test_the_target_is_registered_and_speaks_callback_only() -> None:
    target = get_target("alertmanager")()
    assert target is not None and isinstance(target, AlertmanagerTarget)
    assert target.dialect("callback").event_path == EVENT_PATH
    assert target.egress_url("push") is None and target.ingress_url is None  # nothing until started


# -- a real Alertmanager -----------------------------------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
        return json.loads(response.read())


@pytest.mark.e2e
@needs_alertmanager
def test_subscriptions_become_receivers_of_the_running_alertmanager_and_leave_with_nothing_left() -> None:
    async def subscribe(api: str) -> tuple[list[tuple[int, Any]], tuple[int, int]]:
        async with aiohttp.ClientSession() as client:
            async def one(n: int) -> tuple[int, Any]:
                async with client.post(api, json={"url": f"http://127.0.0.1:9/hook/{n}"}) as response:
                    return response.status, await response.json()

            created = await asyncio.gather(*(one(n) for n in range(20)))
            async with client.delete(f"{api}/{created[0][1]['id']}") as first, \
                    client.delete(f"{api}/{created[0][1]['id']}") as again:
                return list(created), (first.status, again.status)

    with AlertmanagerTarget() as target:
        api = target.egress_url("callback")
        assert api is not None and target.ingress_url is not None and len(target.pids()) == 2
        created, deleted = asyncio.run(asyncio.wait_for(subscribe(api), scaled(20)))
        assert {status for status, _ in created} == {201} and len({doc["id"] for _, doc in created}) == 20
        assert deleted == (204, 404)
        stats = _get(target.stats_url or "")
        assert stats["subscriptions"] == 19 and stats["reload_failures"] == 0
        assert stats["reloads"] < 20  # registrations that arrive during a reload share the next one
        running = _get(target.ingress_url.replace("/alerts", "/status"))["config"]["original"]
        assert running.count("subscriber-") == 2 * 19  # a route and a receiver each
        pids = target.pids()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


#: 30 subscribers × 5 events/s × 2 s: a low rate; Alertmanager sends each alert as a notification of its own
USERS, RATE, DURATION = 30, 5, 2
N = USERS * RATE * DURATION


def _callback_run(tmp_path: Path, *args: str) -> dict[str, Any]:
    """The callback mode's result of ``run_bench.py --target alertmanager`` (which must exit 0)."""
    proc = run_bench(tmp_path, "--target", "alertmanager", "--modes", "callback", "-u", str(USERS), "--rate",
                     str(RATE), "--duration", str(DURATION), "--no-report", *args, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mode: dict[str, Any] = json.loads((tmp_path / "run" / "results.json").read_text())["modes"]["callback"]
    return mode


@pytest.mark.e2e
@needs_alertmanager
def test_every_subscriber_gets_every_event_once_through_alertmanager(tmp_path: Path) -> None:
    mode = _callback_run(tmp_path, "--drain", "2")
    assert_ok(mode)
    audit = mode["audit"]
    assert audit["delivered_unique"] == N and audit["lost"] == 0 and audit["duplicates"] == 0
    assert mode["summary"]["delivery"]["count"] == N
    extra = mode["extra"]
    assert extra["acked"] == N and extra["receiver_requests"] == N  # one alert per notification
    sent = extra["webhook"]["alertmanager"]
    assert sent["notifications"] == N and sent["notifications_failed"] == 0


@pytest.mark.e2e
@needs_alertmanager
def test_alertmanager_retries_what_the_receiver_fails_and_each_event_still_counts_once(tmp_path: Path) -> None:
    mode = _callback_run(tmp_path, "--drain", "4", "--fail-ratio", "0.2")
    extra, failures = mode["extra"], mode["extra"]["simulated_failures"]
    assert 0.1 * N < failures < 0.3 * N  # Alertmanager sends no webhook-id: a hash of body and subscriber stands in
    assert mode["audit"]["delivered_unique"] == N and mode["audit"]["lost"] == 0 and mode["audit"]["duplicates"] == 0
    assert mode["summary"]["first_attempt"]["count"] == N - failures  # the retry is a later attempt of the same one
    sent = extra["webhook"]["alertmanager"]
    assert sent["requests_failed"] == failures and sent["requests"] == N + failures == extra["receiver_requests"]
