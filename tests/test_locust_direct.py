"""Plain ``locust -f`` and its web UI are as safe as ``run_bench.py``.

Each test started from the web UI (or each headless run) writes a new
results folder with report.html beside results.json, an existing
``--results`` file is refused unless ``--overwrite`` is given, and a ``-t``
shorter than the run is said up front and fails the run when it cuts it
short. Real Locust processes on loopback; the web UI is driven through
Locust's own HTTP API (``POST /swarm``, ``POST /stop``), as its page does.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import SCENARIOS, env, scaled

from deliverybench.harness.report_file import ROUTE

#: a short push run: 5 subscribers, 10 events
SHORT = {"rate": "5", "duration": "2", "drain": "1", "settle": "0.5"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its content hash and modification time, to tell it was left alone."""
    return {path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(folder.iterdir()) if path.is_file()}


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + scaled(seconds)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _locust(scenario: str, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(SCENARIOS / scenario), *args], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=scaled(timeout))


@dataclass
class WebUi:
    """A Locust with its web UI on a free loopback port."""

    url: str
    proc: subprocess.Popen[str]
    log: Path

    def post(self, path: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
        body = urllib.parse.urlencode(fields or {}).encode()
        with urllib.request.urlopen(self.url + path, data=body, timeout=scaled(30)) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    def get(self, path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=scaled(30)) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()

    def swarm(self, **fields: str) -> dict[str, Any]:
        return self.post("/swarm", {"user_count": "5", "spawn_rate": "5", "host": "", **SHORT, **fields})

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


@contextmanager
def web_ui(scenario: str, cwd: Path, *args: str) -> Iterator[WebUi]:
    port = _free_port()
    log = cwd / "locust.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(SCENARIOS / scenario), "--web-host",
                                 "127.0.0.1", "--web-port", str(port), *args],
                                cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
    ui = WebUi(f"http://127.0.0.1:{port}", proc, log)
    try:
        def up() -> bool:
            assert proc.poll() is None, f"locust exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                return ui.get("/")[0] == 200
            except OSError:
                return False

        _wait_for(up, 30, "the web UI")
        yield ui
    finally:
        proc.terminate()
        proc.wait(timeout=scaled(60))


def _result_folders(cwd: Path) -> list[Path]:
    out = cwd / "bench-out"
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []


def _reported(folder: Path) -> bool:
    return (folder / "results.json").is_file() and (folder / "report.html").is_file()


@pytest.mark.e2e
@pytest.mark.slow
def test_two_web_ui_tests_write_two_folders_and_two_reports_the_first_untouched(tmp_path: Path) -> None:
    with web_ui("ws_push.py", tmp_path) as ui:
        status, _, body = ui.get(ROUTE)
        assert status == 404 and b"No deliverybench report yet" in body
        page = ui.get("/")[2].decode()
        assert f".{ROUTE}" in page  # the "Download Data" tab links the last report

        assert ui.swarm()["success"] is True
        _wait_for(lambda: len(_result_folders(tmp_path)) == 1 and _reported(_result_folders(tmp_path)[0]), 60,
                  "the first test's results and report")
        first = _result_folders(tmp_path)[0]
        before = _fingerprint(first)
        assert json.loads((first / "results.json").read_text())["modes"]["push"]["status"] == "ok"
        _wait_for(lambda: ui.lines(f"report: {Path('bench-out') / first.name / 'report.html'}"), 30,
                  "the first report's log line")
        assert ui.post("/stop")["success"] is True

        # the second test is stopped mid-stream: interrupted, still its own folder and report
        assert ui.swarm(duration="30")["success"] is True
        _wait_for(lambda: len(_result_folders(tmp_path)) == 2, 30, "the second test's folder")
        _wait_for(lambda: bool(ui.lines("publishing 150 events")), 60, "the second stream")
        assert ui.post("/stop")["success"] is True
        second = next(p for p in _result_folders(tmp_path) if p != first)
        _wait_for(lambda: _reported(second), 60, "the second test's results and report")

        assert _fingerprint(first) == before
        doc = json.loads((second / "results.json").read_text())
        assert doc["modes"]["push"]["status"] == "interrupted"
        assert doc["modes"]["push"]["params"]["duration_s"] == 30
        _wait_for(lambda: ui.lines(f"report: {Path('bench-out') / second.name / 'report.html'}"), 30,
                  "the second report's log line")
        line = ui.lines(f"report: {Path('bench-out') / second.name / 'report.html'}")
        assert f"results: {Path('bench-out') / second.name / 'results.json'}" in line[0]
        assert f"{ui.url}{ROUTE}" in line[0]
        status, kind, body = ui.get(ROUTE)  # the route serves the last report
        assert status == 200 and kind.startswith("text/html")
        assert body == (second / "report.html").read_bytes()


@pytest.mark.e2e
@pytest.mark.slow
def test_a_web_ui_test_never_overwrites_an_explicit_results_file_unless_asked(tmp_path: Path) -> None:
    results = tmp_path / "mine" / "results.json"
    with web_ui("ws_push.py", tmp_path, "--results", str(results)) as ui:
        assert ui.swarm()["success"] is True
        _wait_for(lambda: _reported(results.parent), 60, "the first test's results and report")
        before = _fingerprint(results.parent)
        assert ui.post("/stop")["success"] is True

        answer = ui.swarm()
        assert answer["success"] is False
        assert answer["message"] == f"--results {results} already exists; choose another path or pass --overwrite"
        time.sleep(1.0)
        assert _fingerprint(results.parent) == before

        assert ui.swarm(overwrite="true")["success"] is True  # asked: the form's own checkbox
        _wait_for(lambda: _fingerprint(results.parent)["results.json"] != before["results.json"], 60,
                  "the overwritten results")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_headless_plain_run_writes_its_report_and_logs_both_paths(tmp_path: Path) -> None:
    proc = _locust("ws_push.py", tmp_path, "--headless", "-u", "5", "-r", "5", "--only-summary",
                   *[token for key, value in SHORT.items() for token in (f"--{key}", value)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = _result_folders(tmp_path)
    assert folder.name.startswith("push-")
    assert _reported(folder)
    assert "<html" in (folder / "report.html").read_text()[:500].lower()
    lines = [line for line in proc.stderr.splitlines() if "report: " in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert (f"report: {Path('bench-out') / folder.name / 'report.html'} "
            f"(results: {Path('bench-out') / folder.name / 'results.json'})") in lines[0]
    assert not list(folder.glob(".report-*")), "a staged report folder was left behind"


@pytest.mark.e2e
@pytest.mark.slow
def test_a_time_limit_shorter_than_the_run_is_said_up_front_and_fails_the_run(tmp_path: Path) -> None:
    results = tmp_path / "cut" / "results.json"
    proc = _locust("ws_push.py", tmp_path, "--headless", "-u", "5", "-r", "5", "-t", "15s", "--only-summary",
                   "--rate", "5", "--duration", "20", "--results", str(results))
    assert proc.returncode == 3, proc.stderr[-3000:]
    log = proc.stderr.splitlines()
    warning = [i for i, line in enumerate(log) if "will cut it short" in line]
    publishing = [i for i, line in enumerate(log) if "publishing 100 events" in line]
    assert len(warning) == 1 and publishing and warning[0] < publishing[0], proc.stderr[-3000:]
    assert log[warning[0]].endswith("the run needs at least 25 s (spawning 1 s + settle 1 s + stream 20 s + "
                                    "drain 3 s); -t 15s will cut it short")
    mode = json.loads(results.read_text())["modes"]["push"]
    assert mode["status"] == "interrupted"
    assert mode["failure"].startswith("Locust's time limit (-t 15s) stopped the test")
    assert "Shutting down (exit code 3)" in proc.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_an_existing_results_file_is_refused_with_one_line_and_left_untouched(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text('{"kept": true}\n')
    before = _fingerprint(tmp_path)
    started = time.monotonic()
    proc = _locust("ws_push.py", tmp_path, "--headless", "-u", "5", "-r", "5", "--results", str(results),
                   *[token for key, value in SHORT.items() for token in (f"--{key}", value)])
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"locust: error: --results {results} already exists; choose another path or pass "
                      "--overwrite"], proc.stderr
    assert "started built-in" not in proc.stderr  # refused before anything started
    assert _fingerprint(tmp_path) == before
    assert time.monotonic() - started < scaled(30)
