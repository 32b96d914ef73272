"""Engine.IO tuned for many idle connections, through the hooks python-engineio exposes.

- `LeanQueue` replaces the per-connection `asyncio.Queue` (`AsyncServer.create_queue`, documented as the
  hook for a queue class). asyncio's queue allocates four deques up front (items, getters, putters and
  its `join` event's waiters), ~3 KB per connection that holds nothing almost all the time; this one
  keeps a small list and creates a future only while someone actually waits. Its `get` returns that
  future, not a coroutine: Engine.IO's writer waits in `wait_for(queue.get(), …)`, which on Python 3.11
  wraps a coroutine in a task of its own for as long as the socket is idle, a future not (measured
  0.1 to 0.4 KB; `wait_for`'s own timer and frame stay).
- Pings come from one timer per server, not a task per connection: Engine.IO starts a task per
  connection (`start_background_task`, the server's overridable hook) that sleeps `ping_interval` and
  then sends a PING (~0.95 KB while it sleeps; even a bare `call_later` handle is ~0.6 KB on uvloop).
  Here the request becomes an entry in one heap of due pings (~0.13 KB), served by a single timer.
  Matched by identity on `AsyncSocket._send_ping`: if python-engineio renames it, pings fall back to
  its own task.
- `LeanEnviron` is the WSGI environ engineio builds per request (`translate_request` in the same driver
  table), holding only what varies per request: engineio's copies every header into an `HTTP_*` key
  and ten constants besides, and a WebSocket's environ lives as long as the socket. Here `HTTP_*`
  entries are read from the aiohttp request's own headers when asked, constants from one shared table.
- `LeanWebSocket` is the aiohttp driver's WebSocket adapter with permessage-deflate refused: a
  compressor and decompressor per socket (zlib's default window) cost hundreds of KB per browser
  connection once the first message is sent, and Socket.IO events are small.

docs/memory.md has the measurements, and what would need python-engineio itself to change.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import engineio
from aiohttp.web import WebSocketResponse
from engineio import packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

# The coroutine Engine.IO runs as a task per connection to send the next PING (see the module doc).
_SEND_PING = getattr(AsyncSocket, "_send_ping", None)
# Pings due within this much of the earliest are sent with it: one wake-up serves many sockets.
_PING_SLACK_S = 0.25

T = TypeVar("T")


class LeanQueue(Generic[T]):
    """The part of `asyncio.Queue` Engine.IO uses (unbounded): put/get (+ _nowait), task_done, join.

    Same semantics as asyncio's: FIFO among items and among waiting getters, an item is handed only to
    a getter not cancelled (one that gave up is skipped), `join` waits until every item put has been
    marked done.
    """

    __slots__ = ("_getters", "_items", "_joined", "_unfinished")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._getters: list[asyncio.Future[T]] | None = None
        self._unfinished = 0
        self._joined: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        self._unfinished += 1
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():  # cancelled getters (timed out) are skipped
                getter.set_result(item)
                break
        else:
            self._items.append(item)
        if getters is not None and not getters:
            self._getters = None

    async def put(self, item: T) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    def get(self) -> asyncio.Future[T]:
        """A future that receives the next item (FIFO among getters). Cancelling it before an item
        arrives gives up the place; an item is handed to a getter only while it is not cancelled.
        Engine.IO awaits it only under `wait_for`, which returns a result that arrived as the timeout
        fired (3.11) or closes the connection (3.12+), so no handed item goes unseen."""
        getter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._items and not self._getters:
            getter.set_result(self._items.pop(0))
        else:
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
        return getter

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joined is not None:
            if not self._joined.done():
                self._joined.set_result(None)
            self._joined = None

    async def join(self) -> None:
        if self._unfinished > 0:
            if self._joined is None:
                self._joined = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._joined)


# What engineio's aiohttp driver puts in every environ whatever the request.
_CONSTANTS: dict[str, Any] = {
    "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.async": True, "wsgi.multithread": False,
    "wsgi.multiprocess": False, "wsgi.run_once": False, "SERVER_SOFTWARE": "aiohttp", "SERVER_NAME": "aiohttp",
    "SERVER_PORT": "0", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0", "SCRIPT_NAME": "",
}
_ABSENT = object()


class LeanEnviron(dict[str, Any]):
    """A WSGI environ that stores only its per-request entries. `HTTP_<NAME>` is the request's header
    NAME (`_` read as `-`, repeated headers joined by commas, as engineio's driver joins them) and the
    constants come from `_CONSTANTS`; `[]`, `get` and `in` see them, iteration and `len` do not
    (nothing in engineio or python-socketio iterates an environ)."""

    __slots__ = ("_headers",)

    def __init__(self, environ: Mapping[str, Any], headers: Any) -> None:
        super().__init__((k, v) for k, v in environ.items()
                         if not k.startswith("HTTP_") and not (k in _CONSTANTS and _CONSTANTS[k] == v))
        self._headers = headers

    def _derived(self, key: object) -> Any:
        if not isinstance(key, str):
            return _ABSENT
        if key.startswith("HTTP_"):
            values = self._headers.getall(key[5:].replace("_", "-"), None)
            return ",".join(values) if values else _ABSENT
        return _CONSTANTS.get(key, _ABSENT)

    def __missing__(self, key: str) -> Any:
        value = self._derived(key)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        value = self._derived(key)
        return default if value is _ABSENT else value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._derived(key) is not _ABSENT


def lean_translate(translate: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap the driver's `translate_request(request)` to return a `LeanEnviron`."""

    def translate_lean(request: Any) -> dict[str, Any]:
        return LeanEnviron(translate(request), request.headers)

    return translate_lean


class LeanWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp WebSocket adapter, with permessage-deflate refused (see the module doc)."""

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


class LeanEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.async_mode == "aiohttp":
            # The driver table is shared by every engineio server in the process: replace, don't mutate.
            drivers: dict[str, Any] = getattr(self, "_async")  # noqa: B009 - engineio sets it untyped
            setattr(self, "_async", {**drivers, "websocket": LeanWebSocket,  # noqa: B010
                                     "translate_request": lean_translate(drivers["translate_request"])})
        # Heap of (due, tie-breaker, socket); a socket that closes stays until its entry is due, then is skipped.
        self._pings: list[tuple[float, int, AsyncSocket]] = []
        self._ping_order = itertools.count()
        self._ping_timer: asyncio.TimerHandle | None = None

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a bounded queue: not what engineio asks for, keep asyncio's
            return super().create_queue(*args, **kwargs)
        return LeanQueue()

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        if _SEND_PING is not None and getattr(target, "__func__", None) is _SEND_PING and not args and not kwargs:
            self._schedule_ping(target.__self__)
            return None  # engineio does not keep the ping task
        return super().start_background_task(target, *args, **kwargs)

    def _schedule_ping(self, sock: AsyncSocket) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.ping_interval
        heapq.heappush(self._pings, (due, next(self._ping_order), sock))
        timer = self._ping_timer
        if timer is None or due < timer.when():
            if timer is not None:
                timer.cancel()
            self._ping_timer = loop.call_at(due, self._pings_due)

    def _pings_due(self) -> None:
        loop = asyncio.get_running_loop()
        pings = self._pings
        horizon = loop.time() + _PING_SLACK_S
        while pings and pings[0][0] <= horizon:
            self._ping(heapq.heappop(pings)[2])
        self._ping_timer = loop.call_at(pings[0][0], self._pings_due) if pings else None

    def _ping(self, sock: AsyncSocket) -> None:
        """What `AsyncSocket._send_ping` does after its sleep: mark the ping, send it to a live socket.
        The send is a short task of its own, through the socket's own `send` (its queue or transport)."""
        if sock.closing or sock.closed:
            return
        sock.last_ping = time.time()
        super().start_background_task(sock.send, packet.Packet(packet.PING))
