"""Engine.IO tuned for many idle connections, through the hooks python-engineio exposes.

- `LeanQueue` replaces the per-connection `asyncio.Queue` (`AsyncServer.create_queue`, documented as the
  hook for a queue class). asyncio's queue allocates four deques up front (items, getters, putters and
  its `join` event's waiters), ~3 KB per connection that holds nothing almost all the time; this one
  keeps a small list and creates a future only while someone actually waits.
- `LeanWebSocket` is the aiohttp driver's WebSocket adapter with permessage-deflate refused: a
  compressor and decompressor per socket (zlib's default window) cost hundreds of KB per browser
  connection once the first message is sent, and Socket.IO events are small.

docs/memory.md has the measurements, and what would need python-engineio itself to change.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

import engineio
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as eio_aiohttp

T = TypeVar("T")


class LeanQueue(Generic[T]):
    """The part of `asyncio.Queue` Engine.IO uses (unbounded): put/get (+ _nowait), task_done, join.

    Same semantics as asyncio's: FIFO, `get` waits, a cancelled getter passes a wake-up on to the
    next, `join` waits until every item put has been marked done.
    """

    __slots__ = ("_getters", "_items", "_joined", "_unfinished")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._joined: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._unfinished += 1
        self._wake_getter()

    async def put(self, item: T) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> T:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if self._getters is not None and getter in self._getters:
                    self._getters.remove(getter)
                if self._items and not getter.cancelled():
                    self._wake_getter()  # we were woken, then cancelled: pass the item on
                raise
        return self._items.pop(0)

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

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if getters is not None and not getters:
            self._getters = None


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
            setattr(self, "_async", {**drivers, "websocket": LeanWebSocket})  # noqa: B010

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a bounded queue: not what engineio asks for, keep asyncio's
            return super().create_queue(*args, **kwargs)
        return LeanQueue()
