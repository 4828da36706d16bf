"""The previous push session design, kept only as ``push_capacity.py --design previous``.

websockets' asyncio ``ClientConnection`` with a task per session, a
whole-frame fast path, and one recorder call per message. Replaced by
``deliverybench/adapters/ws_receiver.py``.

Original description: a push subscriber's WebSocket session, running in the loop thread.

The session stamps the time when bytes arrive (``data_received``) and hands
each complete data frame straight to the recorder from ``process_event``,
bypassing websockets' message queue and the task wake-up per message: that
is most of the client's per-message cost, and the queueing it skips would
otherwise be counted as latency. Fragmented messages, which the harness
never sends, still take websockets' ordinary path through ``recv()``.

If a websockets release no longer has the hooks, the session falls back to
``recv()`` for everything (slower, still correct); ``stamping`` says which.
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from deliverybench.core.audit import SubscriberRecord
from deliverybench.core.process_recorder import ProcessRecorder

__all__ = ["PushSessionOptions", "PushSession", "STAMPING_SUPPORTED"]

STAMPING_SUPPORTED = hasattr(ClientConnection, "process_event") and hasattr(ClientConnection, "data_received")
_DATA = (Opcode.TEXT, Opcode.BINARY)


def scan_frames(data: bytes) -> tuple[list[tuple[int, int]] | None, bool]:
    """Walk the WebSocket frames in ``data``: (data payload spans, ends mid-frame).

    The spans are ``None`` unless ``data`` is only whole, unmasked, final
    text/binary frames without RSV bits; the flag says whether the chunk
    stops inside a frame, which leaves state inside websockets' parser.
    """
    spans: list[tuple[int, int]] | None = []
    i, n = 0, len(data)
    while i < n:
        if n - i < 2:
            return None, True
        b0, b1 = data[i], data[i + 1]
        length, header = b1 & 0x7F, 2
        if length == 126:
            if n - i < 4:
                return None, True
            length, header = int.from_bytes(data[i + 2 : i + 4], "big"), 4
        elif length == 127:
            if n - i < 10:
                return None, True
            length, header = int.from_bytes(data[i + 2 : i + 10], "big"), 10
        if b1 & 0x80:
            header += 4
        end = i + header + length
        if end > n:
            return None, True
        if spans is not None:
            if b0 & 0x70 or b1 & 0x80 or not b0 & 0x80 or (b0 & 0x0F) not in (1, 2):
                spans = None  # a control frame, fragment, mask or extension: websockets' job
            else:
                spans.append((i + header, end))
        i = end
    return spans, False


class _StampingConnection(ClientConnection):
    """ClientConnection that timestamps arrivals and short-cuts data frames.

    While every chunk received so far held whole frames, websockets' parser
    holds no partial state, so a chunk made only of complete data frames can
    be cut into payloads right here: no frame objects, no per-chunk
    ``send_data()``. The first chunk that is anything else turns the fast path
    off for good and everything from then on (that chunk included) goes
    through websockets, which stays correct whatever the stream does.
    """

    on_frame: Callable[[bytes, int], None] | None = None
    _rx_ns = 0
    _fast = True

    def data_received(self, data: bytes) -> None:
        rx_ns = time.time_ns()
        handler = self.on_frame
        if self._fast and handler is not None and self.protocol.state is State.OPEN:
            spans, partial = scan_frames(data)
            if spans is not None:
                for start, end in spans:
                    handler(data[start:end], rx_ns)
                return
            if partial:
                self._fast = False  # websockets now holds state the fast path can't see
        self._rx_ns = rx_ns
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        handler = self.on_frame
        if handler is not None and isinstance(event, Frame) and event.fin and event.opcode in _DATA:
            payload = event.data
            handler(payload if isinstance(payload, bytes) else bytes(payload), self._rx_ns)
            return
        super().process_event(event)


@dataclass(frozen=True, slots=True)
class PushSessionOptions:
    url: str
    open_timeout_s: float = 10.0
    local_addr: str | None = None
    echo_interval_s: float = 0.0
    reconnect_delay_s: float = 1.0
    max_reconnects: int = 10
    #: client keepalive pings; off by default: servers ping their clients, and a
    #: ping per session is a large share of the harness's CPU at low event rates
    ping_interval_s: float | None = None


class PushSession:
    """One subscriber: connect, receive until stopped, reconnect if dropped.

    ``notify(ok, error)`` is called (in the loop thread) once, after the first
    connection attempt, so the Locust user can finish ``on_start``.
    """

    def __init__(self, name: str, recorder: ProcessRecorder, options: PushSessionOptions,
                 notify: Callable[[bool, str | None], None]) -> None:
        self.name = name
        self.recorder = recorder
        self.options = options
        self.record: SubscriberRecord = recorder.subscriber(name)
        self._notify: Callable[[bool, str | None], None] | None = notify
        self._stopping = False
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    # -- called in the loop thread ---------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self, at_ns: int) -> None:
        """Unsubscribe as of ``at_ns`` (when the user asked), then close."""
        self._stopping = True
        if self.recorder.subscribers.get(self.name) is self.record:
            self.record.close(at_ns)
        if self._task is not None:
            self._task.cancel()
        self.recorder.retire(self.name)

    def send_echo(self) -> None:
        ws = self._ws
        if ws is None or self._stopping:
            return
        self.recorder.counters["echo_sent"] += 1
        asyncio.get_running_loop().create_task(self._send(ws, b'{"echo":%d}' % time.time_ns()))

    async def _send(self, ws: ClientConnection, data: bytes) -> None:
        try:
            await ws.send(data.decode())
        except ConnectionClosed:
            pass

    # -- the session -------------------------------------------------------
    def _tell(self, ok: bool, error: str | None) -> None:
        if self._notify is not None:
            notify, self._notify = self._notify, None
            notify(ok, error)

    async def _run(self) -> None:
        attempts = 0
        try:
            while not self._stopping and attempts <= self.options.max_reconnects:
                attempts += 1
                await self._one_connection()
                if not self._stopping:
                    await asyncio.sleep(self.options.reconnect_delay_s)
        except asyncio.CancelledError:
            pass
        finally:
            self._tell(False, "stopped before connecting")

    async def _one_connection(self) -> None:
        options, recorder = self.options, self.recorder
        kwargs: dict[str, Any] = {}
        if options.local_addr:
            kwargs["local_addr"] = (options.local_addr, 0)
        if STAMPING_SUPPORTED:
            kwargs["create_connection"] = _StampingConnection
        started = time.time_ns()
        try:
            ws = await connect(options.url, open_timeout=options.open_timeout_s, compression=None,
                               max_size=None, proxy=None, ping_interval=options.ping_interval_s, **kwargs)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as exc:
            now = time.time_ns()
            kind = _error_kind(exc)
            recorder.error(f"connect_{kind}", now)
            self._tell(False, f"{kind}: {exc}")
            return
        connected = time.time_ns()
        recorder.recorder.record("connect", connected - started, connected)
        self.record.open(connected)
        if isinstance(ws, _StampingConnection):
            record = self.record
            on_event = recorder.on_event
            ws.on_frame = lambda data, rx_ns: on_event(record, data, rx_ns)
        self._ws = ws
        recorder.connected += 1
        self._tell(True, None)
        echo = asyncio.get_running_loop().create_task(self._echo_loop()) if options.echo_interval_s > 0 else None
        try:
            while True:
                data = await ws.recv(decode=False)
                recorder.on_event(self.record, data, time.time_ns())
        except ConnectionClosed as exc:
            if not self._stopping:
                now = time.time_ns()
                self.record.close(now)
                code = exc.rcvd.code if exc.rcvd is not None else "abnormal"
                recorder.error(f"closed_{code}", now)
        finally:
            if echo is not None:
                echo.cancel()
            if isinstance(ws, _StampingConnection) and not ws._fast:
                recorder.counters["ws_fast_path_off"] += 1
            if self._ws is ws:
                self._ws = None
                recorder.connected -= 1
            if self._stopping:
                asyncio.get_running_loop().create_task(_close_quietly(ws))

    async def _echo_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.echo_interval_s)
            self.send_echo()


async def _close_quietly(ws: ClientConnection) -> None:
    try:
        await asyncio.wait_for(ws.close(), 2.0)
    except BaseException:  # noqa: BLE001 - closing a dying socket must not raise
        pass


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, InvalidURI):
        return "bad_uri"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    if isinstance(exc, OSError):
        if exc.errno == errno.EMFILE:
            return "emfile"  # the open-files limit: the one cause worth its own name
        return f"oserror_{exc.errno}" if exc.errno else "oserror"
    return type(exc).__name__
