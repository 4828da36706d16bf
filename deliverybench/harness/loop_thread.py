"""One uvloop event loop in one real OS thread per Locust process.

Locust runs users as gevent greenlets. Receiving thousands of WebSocket
messages per second through gevent-patched sockets costs 50-90 µs of CPU per
message; the websockets asyncio client on uvloop costs a fraction of that.
So every Locust process that has subscribers starts one asyncio loop in a
*real* thread (``gevent.monkey.get_original``: a patched thread would just be
another greenlet), lazily and after any fork, and all sessions live there.

Two one-way channels connect the worlds without blocking either:

* gevent -> loop: :meth:`LoopThread.call` (``call_soon_threadsafe``);
* loop -> gevent: :class:`GeventInbox`, a deque plus a gevent ``async_``
  watcher whose ``send()`` is safe from any thread and wakes the hub.

No lock is shared: a gevent-patched lock must never be contended by a real
thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LoopThread", "GeventInbox", "real_thread_start", "wait_for_coroutine"]


def real_thread_start() -> Callable[..., Any]:
    """``_thread.start_new_thread`` as it was before gevent patched it."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            return monkey.get_original("_thread", "start_new_thread")  # type: ignore[no-any-return]
    import _thread

    return _thread.start_new_thread


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        return asyncio.new_event_loop()


class LoopThread:
    """An event-loop thread of this process; :meth:`get` starts it on first use.

    There are two, by role: ``"sessions"`` (every subscriber and receiver)
    and ``"publisher"`` (the open-model publisher, in the process that
    publishes). Apart, a burst of fan-out arriving on the sessions' loop --
    a hundred messages handled in one turn of the loop, a few ms -- can
    never hold back an event that is due, and the publisher's sends never
    delay an arrival stamp.
    """

    _instances: dict[str, LoopThread] = {}
    _owner_pid: int = -1

    def __init__(self) -> None:
        self.loop = _new_loop()
        self.thread_ident: int | None = None
        self._started = _RealEvent()
        real_thread_start()(self._run, ())
        if not self._started.wait(10.0):
            raise RuntimeError("event-loop thread did not start")

    @classmethod
    def get(cls, role: str = "sessions") -> LoopThread:
        """The loop thread of *this* process for ``role`` (a forked child starts its own)."""
        if cls._owner_pid != os.getpid():
            cls._instances = {}
            cls._owner_pid = os.getpid()
        thread = cls._instances.get(role)
        if thread is None:
            thread = cls._instances[role] = cls()
        return thread

    @classmethod
    def running(cls, role: str = "sessions") -> LoopThread | None:
        if cls._owner_pid == os.getpid():
            return cls._instances.get(role)
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.thread_ident = threading.get_ident()
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the loop thread soon; never blocks."""
        self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` as a task in the loop thread."""
        self.loop.call_soon_threadsafe(self.loop.create_task, coro)


class _RealEvent:
    """A threading.Event immune to gevent patching, for the start handshake only."""

    def __init__(self) -> None:
        import _thread

        lock_factory = _thread.allocate_lock
        if "gevent" in sys.modules:
            from gevent import monkey

            if monkey.is_module_patched("threading"):
                lock_factory = monkey.get_original("_thread", "allocate_lock")
        self._lock = lock_factory()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass

    def wait(self, timeout: float) -> bool:
        acquired = bool(self._lock.acquire(True, timeout))
        if acquired:
            self._lock.release()
        return acquired


class GeventInbox:
    """Callbacks posted from the loop thread, run in the gevent hub.

    Posted functions must not block or switch greenlets: they set gevent
    events or append to structures the greenlets read.
    """

    _instance: GeventInbox | None = None
    _owner_pid: int = -1

    @classmethod
    def get(cls) -> GeventInbox:
        """This process's inbox (created on first use, in the gevent thread)."""
        if cls._instance is None or cls._owner_pid != os.getpid():
            cls._instance = cls()
            cls._owner_pid = os.getpid()
        return cls._instance

    def __init__(self) -> None:
        import gevent

        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._drain)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.append((fn, args))
        self._watcher.send()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:  # one failing callback must not strand the others in the queue
                logging.getLogger("deliverybench").exception("callback from the event-loop thread failed")


def wait_for_coroutine(make: Callable[[], Coroutine[Any, Any, Any]], timeout: float, *,
                       role: str = "sessions") -> Any:
    """Run ``make()`` in the ``role`` loop thread; block the calling greenlet until it ends.

    Its result is returned and its exception re-raised here; after
    ``timeout`` seconds ``gevent.Timeout`` is raised (the coroutine goes on).
    """
    import gevent.event

    loop, inbox = LoopThread.get(role), GeventInbox.get()
    result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()

    async def run() -> None:
        try:
            value = await make()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting greenlet
            inbox.post(result.set_exception, exc)
        else:
            inbox.post(result.set, value)

    loop.spawn(run())
    return result.get(timeout=timeout)
