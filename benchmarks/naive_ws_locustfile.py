"""A naive push subscriber, for comparison with ``scenarios/ws_push.py``.

This is how a WebSocket subscriber is usually written for Locust: a plain
gevent ``User`` holding a ``websocket-client`` connection (``websocket``
package, gevent-patched sockets), whose task loops on ``ws.recv()``, parses
each message with ``json.loads`` and fires ``events.request`` once per
message, latency = ``time.time_ns() - due_ns``.

It publishes nothing: ``benchmarks/push_capacity.py`` POSTs the event stream
into the target itself once the sessions are connected, and reads the
figures from Locust's ``--json-file`` dump. Run it by hand like::

    locust -f benchmarks/naive_ws_locustfile.py --headless -u 100 -r 50 \\
        --host ws://127.0.0.1:PORT/ -t 60s --json-file /tmp/naive

Options (added to Locust's command line):

* ``--naive-skip-utf8-validation``: pass ``skip_utf8_validation=True`` to
  websocket-client. Off by default (library defaults are the naive way); without
  the optional ``wsaccel`` package the library validates every text frame with
  a pure-Python UTF-8 state machine, which dominates its per-message cost.
* ``--naive-open-timeout``: seconds to open a session (default 10).
* ``--naive-max-messages`` / ``--naive-max-seconds``: bound on each user's
  receive loop (the loop always ends; Locust's ``-t`` bounds the process).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import websocket  # websocket-client
from locust import User, constant, events, task
from locust.exception import StopUser


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # Locust's hook is untyped
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--naive-skip-utf8-validation", action="store_true", default=False,
                        help="websocket-client: skip UTF-8 validation of text frames.")
    parser.add_argument("--naive-open-timeout", type=float, default=10.0,
                        help="Seconds to open one WebSocket session.")
    parser.add_argument("--naive-max-messages", type=int, default=10_000_000,
                        help="Upper bound on messages one user receives before it stops.")
    parser.add_argument("--naive-max-seconds", type=float, default=3600.0,
                        help="Upper bound on how long one user's receive loop runs.")


class NaiveSubscriber(User):
    """One WebSocket session; the task receives until the bounds or a close."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.ws = None
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                self.host or "",  # no --host: fails to connect like any bad URL
                timeout=opts.naive_open_timeout,
                skip_utf8_validation=bool(opts.naive_skip_utf8_validation),
            )
        except Exception as exc:  # noqa: BLE001 - any failure to connect is one failed "connect"
            self.environment.events.request.fire(
                request_type="ws", name="connect", response_time=(time.perf_counter() - started) * 1000,
                response_length=0, exception=exc, context={})
            raise StopUser() from None
        ws.settimeout(None)  # block in recv(): an idle session costs nothing per second
        self.ws = ws
        self.environment.events.request.fire(
            request_type="ws", name="connect", response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=None, context={})

    @task
    def receive(self) -> None:
        opts = self.environment.parsed_options
        ws = self.ws
        if ws is None:
            raise StopUser()
        fire = self.environment.events.request.fire
        deadline = time.monotonic() + opts.naive_max_seconds
        received = 0
        while received < opts.naive_max_messages and time.monotonic() < deadline:
            try:
                message = ws.recv()
            except Exception as exc:  # noqa: BLE001 - closed by the server, reset, ...
                fire(request_type="ws", name="recv", response_time=0, response_length=0,
                     exception=exc, context={})
                raise StopUser() from None
            now_ns = time.time_ns()
            received += 1
            event = json.loads(message)
            fire(request_type="ws", name="delivery", response_time=(now_ns - event["due_ns"]) / 1e6,
                 response_length=len(message), exception=None, context={})
        raise StopUser()

    def on_stop(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):  # closing a dying socket must not raise
                ws.close(timeout=1)
