"""Five delivery transports end to end: push, sse, longpoll, callback and poll through ``run_bench.py``.

Real Locust, real sockets on 127.0.0.1, counts that add up exactly
(``expected == delivered_unique + lost``): the built-in target serving all
five in one run, one real nginx + nchan serving push, SSE and long-poll on
one channel, and an "event stream" that is an HTML page.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helpers import assert_ok, run_bench
from servers import nchan as nchan_server

FIVE = ("push", "sse", "longpoll", "callback", "poll")


def _modes(tmp: Path) -> dict[str, Any]:
    return dict(json.loads((tmp / "run" / "results.json").read_text())["modes"])


def _exact(result: dict[str, Any], events: int | None = None, subscribers: int | None = None) -> None:
    """Every expected delivery is a unique delivery or a loss; with ``events``, all of them arrived once each."""
    audit = result["audit"]
    assert audit["balanced"] and audit["expected"] == audit["delivered_unique"] + audit["lost"], audit
    assert audit["lost"] == 0 and audit["duplicates"] == 0 and audit["unexpected"] == 0, audit
    if events is not None and subscribers is not None:
        assert audit["published"] == audit["accepted"] == events, audit
        assert audit["delivered_unique"] == audit["expected"] == events * subscribers, audit


def test_five_transports_on_one_builtin_server(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--modes", ",".join(FIVE), "-u", "20", "--rate", "10", "--duration", "5",
                     "--drain", "1", "--settle", "0.5", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modes = _modes(tmp_path)
    assert tuple(modes) == FIVE
    for name, result in modes.items():
        assert_ok(result)
        _exact(result, 50, 20)
        assert result["audit"]["subscribers"] == 20, name
    longpoll = modes["longpoll"]["extra"]
    assert longpoll["requests"] >= longpoll["longpoll_empty"] and longpoll["held_ms_mean"] > 0
    assert longpoll["requests_per_delivery"] == pytest.approx(longpoll["requests"] / 1000, abs=5e-4)
    assert "longpoll_request" in modes["longpoll"]["summary"]
    table = proc.stdout[proc.stdout.index("mode "):]
    assert [line.split()[0] for line in table.splitlines()[2:7]] == list(FIVE)
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    headline = page[page.index('id="headline-table"'):]
    headline = headline[:headline.index("</table>")]
    for name in FIVE:
        assert re.search(rf">\s*{name}\s*<", headline), f"{name} missing from the headline"


@pytest.mark.skipif(nchan_server.missing() is not None, reason=str(nchan_server.missing()))
def test_nchan_push_sse_and_longpoll_on_one_channel_every_event_to_every_subscriber_once(tmp_path: Path) -> None:
    users, rate, duration = 20, 200, 3
    with nchan_server.nchan_server(tmp_path / "nginx") as nchan:
        proc = run_bench(tmp_path, "--target", "relay", "--modes", "push,sse,longpoll", "--publish-url",
                         nchan.publish_url, "--subscribe-url", nchan.subscribe_url, "--sse-url", nchan.sse_url,
                         "--longpoll-url", nchan.longpoll_url, "--longpoll-resume", "etag", "-u", str(users),
                         "--rate", str(rate), "--duration", str(duration), "--drain", "2", "--settle", "0.5",
                         "--no-report", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modes = _modes(tmp_path)
    assert tuple(modes) == ("push", "sse", "longpoll")
    for result in modes.values():
        assert result["extra"]["publisher"]["batch"] == 1  # nchan: one event per POST, one message each
        _exact(result, rate * duration, users)
        assert_ok(result)


class _HtmlPage(BaseHTTPRequestHandler):
    """Accepts every publish; answers every GET with an HTML page, 200."""

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body>not an event stream</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@contextmanager
def _html_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_html_answer_is_an_error_by_kind_and_a_run_with_nothing_delivered_exits_3(tmp_path: Path) -> None:
    with _html_server() as base:
        proc = run_bench(tmp_path, "--target", "relay", "--modes", "sse", "--publish-url", f"{base}/publish",
                         "--sse-url", f"{base}/sse", "-u", "5", "--rate", "10", "--duration", "1", "--drain", "0.5",
                         "--settle-timeout", "3", "--open-timeout", "2", "--no-report", timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    sse = _modes(tmp_path)["sse"]
    assert sse["errors"].get("sse_not_event_stream", 0) >= 5, sse["errors"]
    assert set(sse["errors"]) == {"sse_not_event_stream"}
    assert sse["audit"].get("delivered_unique", 0) == 0
    assert "answered with something other than text/event-stream" in " ".join(sse["status_reasons"])
