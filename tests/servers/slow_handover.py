"""An extra locustfile (``-f scenarios/ws_push.py,tests/servers/slow_handover.py``) for one fault.

It makes every Locust *worker* take 4 s over its final hand-over -- longer than
Locust's 3-s worker stats report -- as folding 15,000 sessions does on a busy
machine. Locust's master stops waiting as soon as the workers' routine reports
say 0 users, before their final payloads arrive; the harness must still wait for
them rather than count the workers as dead.
"""

from __future__ import annotations

import gevent
from locust.runners import WorkerRunner

from deliverybench.harness import process

HOLD_S = 4.0
_flush = process.HarnessProcess.flush


def _slow_flush(self: process.HarnessProcess, *, final: bool) -> None:
    if final and isinstance(self.environment.runner, WorkerRunner):
        gevent.sleep(HOLD_S)
    _flush(self, final=final)


process.HarnessProcess.flush = _slow_flush  # type: ignore[method-assign]
