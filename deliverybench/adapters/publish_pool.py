"""The publisher's pool, whatever the ingress: one interface, picked by the URL's scheme.

* ``http://``, ``https://`` -- :class:`~.http_post.PostPool`: one request per
  event (or NDJSON batch), many in flight; accepted means a 2xx answer.
* ``ws://``, ``wss://`` -- :class:`~.ws_publish_pool.WsPublishPool`: one text
  frame per event over a few publisher WebSockets.
* ``tcp://`` -- :class:`~.line_publish_pool.LinePublishPool`: the rendered
  template (NATS's ``PUB``) over a few TCP connections.

Every pool reports each job once to ``on_result(job, outcome, sent_ns,
done_ns, retry_after)``. :func:`is_accepted` is the one reading of an
outcome: a 2xx status, or :data:`WRITTEN` -- a frame written to its
connection, all that a protocol without acknowledgements can say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from ..core.options import FRAME_CONNECTIONS
from .frame_publish_pool import WRITTEN
from .http_post import Job, Outcome, PostPool, ResultCallback

__all__ = ["PublishPool", "WRITTEN", "FRAME_CONNECTIONS", "is_accepted", "open_pool", "pool_size", "is_framed"]


class PublishPool(Protocol):
    """What :class:`~.publisher.Publisher` asks of a pool."""

    #: the last thing that went wrong (escaped, cut), for the failure line
    problem: str | None

    def submit(self, job: Job) -> None: ...

    async def prewarm(self, count: int, *, within_s: float) -> int: ...

    async def drain(self) -> None: ...

    def abort(self, *, in_flight: Outcome = ..., queued: Outcome = ...) -> None: ...


def is_accepted(outcome: Outcome) -> bool:
    """Whether ``outcome`` accepts its events: an HTTP 2xx, or a frame written."""
    return outcome == WRITTEN if isinstance(outcome, str) else 200 <= outcome < 300


def is_framed(url: str) -> bool:
    """Whether events go to ``url`` as frames on long-lived connections (ws://, wss://, tcp://)."""
    return urlsplit(url).scheme in ("ws", "wss", "tcp")


def pool_size(url: str, concurrency: int) -> int:
    """Connections of the pool for ``url`` given ``--publish-concurrency``: a few for frames, else all."""
    return min(concurrency, FRAME_CONNECTIONS) if is_framed(url) else concurrency


def open_pool(url: str, *, concurrency: int, timeout_s: float, on_result: ResultCallback,
              content_type: str = "application/json", greeting: bytes = b"",
              on_failure: Callable[[str], None] | None = None) -> PublishPool:
    """The pool for ``url`` (in the running loop); ``greeting`` and ``on_failure`` (told the kind of each
    connection that fails or ends) are for ws:// and tcp:// only: over HTTP, failures are requests' outcomes.

    Raises:
        ValueError: not an http(s)://, ws(s):// or tcp://host:port URL.
    """
    scheme = urlsplit(url).scheme
    size = pool_size(url, concurrency)
    if scheme in ("ws", "wss"):
        from .ws_publish_pool import WsPublishPool

        return WsPublishPool(url, size=size, timeout_s=timeout_s, on_result=on_result, greeting=greeting,
                             on_failure=on_failure)
    if scheme == "tcp":
        from .line_publish_pool import LinePublishPool

        return LinePublishPool(url, size=size, timeout_s=timeout_s, on_result=on_result, greeting=greeting,
                               on_failure=on_failure)
    return PostPool(url, size=size, timeout_s=timeout_s, on_result=on_result, content_type=content_type)
