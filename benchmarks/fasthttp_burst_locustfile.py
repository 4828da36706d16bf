"""Locust's own FastHttpUser POSTing events as fast as it can, for comparison
with ``scenarios/webhook_burst.py``.

This is how a webhook burst is usually written for Locust: a ``FastHttpUser``
(geventhttpclient, one keep-alive connection per user) whose task POSTs one
event body -- built per request with ``deliverybench.core.event.encode_event``,
the same encoder and payload size our burst client uses -- with a constant
wait of 0. Timing and counting are Locust's own (``events.request`` per
request, read back from ``--csv`` / ``--json``). ``benchmarks/webhook_capacity.py``
runs it against the built-in sink target; by hand::

    locust -f benchmarks/fasthttp_burst_locustfile.py --headless -u 50 -r 50 \\
        --host http://127.0.0.1:PORT -t 10s --csv /tmp/fh

Options (added to Locust's command line):

* ``--fh-path``: path POSTed to on ``--host`` (default ``/hook``, the sink's).
* ``--fh-payload-bytes``: size of each encoded event (default 256).
* ``--fh-max-requests``: upper bound on requests per user (the loop always
  ends; Locust's ``-t`` bounds the process).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from deliverybench.core.event import Event, encode_event

_HEADERS = {"Content-Type": "application/json"}
_user_ids = itertools.count()


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # Locust's hook is untyped
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--fh-path", default="/hook", help="Path POSTed to on --host.")
    parser.add_argument("--fh-payload-bytes", type=int, default=256, help="Size of each encoded event.")
    parser.add_argument("--fh-max-requests", type=int, default=2_000_000,
                        help="Upper bound on requests one user sends before it stops.")


class FastHttpBurst(FastHttpUser):
    """One keep-alive connection POSTing events back to back."""

    wait_time = constant(0)
    # Defaults of FastHttpUser otherwise (connection reuse, no gzip negotiation on our side).

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.path = opts.fh_path if opts is not None else "/hook"
        self.size = opts.fh_payload_bytes if opts is not None else 256
        self.max_requests = opts.fh_max_requests if opts is not None else 2_000_000
        self.stream = f"fh{next(_user_ids)}"
        self.sent = 0

    @task
    def post_event(self) -> None:
        if self.sent >= self.max_requests:
            raise StopUser()
        now = time.time_ns()
        body = encode_event(Event(self.sent, now, self.stream), now, self.size)
        self.sent += 1
        # Locust's stub says str or dict; geventhttpclient sends bytes as they are (no decode per request)
        self.client.post(self.path, data=body, headers=_HEADERS, name="POST /hook")  # type: ignore[arg-type]
