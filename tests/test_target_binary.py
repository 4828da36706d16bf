"""Launching a real server binary (:mod:`targets._binary`): failures say why, and nothing outlives ``stop``."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psutil
import pytest

from targets._binary import BinaryProcess, free_port, loopback_egress, require_binary
from targets.base import TargetError


def _ended(pids: list[int], within_s: float = 2.0) -> bool:
    """Whether every pid is gone or a zombie (killed; its new parent, pid 1, reaps it when it gets to it)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return not alive
        time.sleep(0.05)


def test_a_missing_binary_names_its_debian_package() -> None:
    with pytest.raises(TargetError, match=r"^no-such-server-x is not installed \(Debian package nats-server\)$"):
        require_binary("no-such-server-x", "nats-server")
    assert Path(require_binary("sh", "dash")).name == "sh"


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_egress_urls_are_websocket_for_push_and_http_otherwise() -> None:
    paths = {"push": "/sub", "sse": "/sse"}
    assert loopback_egress("127.0.0.1:80", "push", paths) == "ws://127.0.0.1:80/sub"
    assert loopback_egress("127.0.0.1:80", "sse", paths) == "http://127.0.0.1:80/sse"
    assert loopback_egress("127.0.0.1:80", "longpoll", paths) is None
    assert loopback_egress("", "push", paths) is None  # not started


def test_a_binary_that_exits_before_it_is_ready_fails_with_its_last_lines() -> None:
    proc = BinaryProcess(["sh", "-c", "echo first; echo 'bind failed' >&2; exit 3"], name="broken")
    with pytest.raises(TargetError, match=r"broken exited with code 3 before it was ready .*\n(.|\n)*bind failed"):
        proc.start(lambda: False, 5.0)
    assert not proc.alive and proc.pids() == []
    assert proc.log_path is not None and proc.log_path.is_file()  # a failure keeps its log
    proc.log_path.unlink()


def test_a_binary_not_ready_in_time_is_stopped() -> None:
    proc = BinaryProcess(["sleep", "60"], name="sleeper")
    with pytest.raises(TargetError, match="sleeper not ready after 0.3 s"):
        proc.start(lambda: False, 0.3)
    assert not proc.alive
    assert proc.log_path is not None
    proc.log_path.unlink()


def test_stop_ends_the_binary_and_every_process_it_started_and_may_be_called_twice() -> None:
    # the shell ends on SIGTERM; its background child is not sent one, and must go with the group
    proc = BinaryProcess(["sh", "-c", "sleep 60 & echo up; wait"], name="shell")
    proc.start(lambda: "up" in proc.log_tail(), 10.0)
    pids = proc.pids()
    assert len(pids) == 2 and pids[0] == proc.pid
    proc.stop()
    proc.stop()
    assert _ended(pids)
    assert proc.log_path is None  # ran until told to stop: its log is not kept
