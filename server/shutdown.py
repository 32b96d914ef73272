"""Socket drain on shutdown: tell every local client, close its Engine.IO transport, all within a budget.

Why not `sio.eio.disconnect()`: Engine.IO's `AsyncSocket.close()` queues a CLOSE packet and then awaits
`queue.join()`, i.e. until the client has fetched it. A long-polling client fetches with a new GET, and
by the time `on_shutdown` runs aiohttp has closed the listener and the idle keep-alive connections, so
that GET never comes: the join waits forever. WebSocket transports end only when the client answers the
close, which can take seconds. And `sio.emit` per namespace yields between emits, so a polling
client's pending GET returned the first namespace's notice alone and never saw the others.

So, per connection and in one step with no await in between, the `server:shutdown` notice of every
namespace it joined and the Engine.IO CLOSE are put on its queue (a pending long-poll returns them all
in one response; a WebSocket writer sends them, then closes the WebSocket from our side). Then the
disconnect handlers run (bounded), then the in-flight Socket.IO HTTP requests get the rest of the
budget to finish; whatever is still open after that has its TCP transport aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import socketio
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.msgpack_packet import MsgPackPacket

from server.rooms import NAMESPACES

log = structlog.get_logger(__name__)

SOCKET_PATH = "/socket.io/"
NOTICE = ("server:shutdown", {"reason": "restart"})


class SocketRequests:
    """The Socket.IO HTTP requests in flight (long-polls, WebSockets), so shutdown can end them.

    No per-request future: a WebSocket is a request that lasts hours, and `wait` (shutdown only) is
    woken through one shared event whenever a request ends.
    """

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self._path = path
        # Keyed by id: requests are mappings, hence not hashable.
        self._active: dict[int, web.BaseRequest] = {}
        self._ended: asyncio.Event | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(self._path):
            return await handler(request)
        key = id(request)
        self._active[key] = request
        try:
            return await handler(request)
        finally:
            self._active.pop(key, None)
            if self._ended is not None:
                self._ended.set()

    def __len__(self) -> int:
        return len(self._active)

    async def wait(self, timeout: float) -> int:
        """Wait up to `timeout` for the requests now in flight; return how many are still open."""
        waiting = set(self._active)
        if not waiting or timeout <= 0:
            return len(self._active)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._ended is None:
            self._ended = asyncio.Event()
        while waiting & self._active.keys() and (left := deadline - loop.time()) > 0:
            self._ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), left)
        return len(self._active)

    def abort(self) -> int:
        """Drop the connection under every request still in flight; return how many."""
        requests = list(self._active.values())
        for request in requests:
            transport = request.transport
            if transport is not None:
                transport.abort()
        return len(requests)


def _encoded_notice(sio: socketio.AsyncServer, eio_sid: str, namespace: str) -> list[Any]:
    data = [NOTICE[0], NOTICE[1]]
    uses_msgpack = getattr(sio, "uses_msgpack", None)
    pkt = (MsgPackPacket(sio_packet.EVENT, data, namespace=namespace) if uses_msgpack and uses_msgpack(eio_sid)
           else sio.packet_class(sio_packet.EVENT, namespace=namespace, data=data))
    encoded = pkt.encode()
    return encoded if isinstance(encoded, list) else [encoded]


def _queue_goodbye(sio: socketio.AsyncServer, eio_sid: str, socket: Any) -> int:
    """Queue the notice for each namespace the connection joined, then CLOSE. Synchronous on purpose."""
    manager = sio.manager
    told = 0
    for namespace in NAMESPACES:
        if manager.sid_from_eio_sid(eio_sid, namespace) is None:
            continue
        for part in _encoded_notice(sio, eio_sid, namespace):
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, part))
        told += 1
    socket.queue.put_nowait(eio_packet.Packet(eio_packet.CLOSE))
    if socket.upgraded:
        # Ends the WebSocket writer after it has sent the above: it then closes the WebSocket itself
        # instead of waiting for the client to close first.
        socket.queue.put_nowait(None)
    return told


async def drain_sockets(sio: socketio.AsyncServer, requests: SocketRequests, budget_s: float) -> dict[str, Any]:
    """Tell clients, close transports, stop Socket.IO's background task; never longer than `budget_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    eio = sio.eio
    sockets = {sid: s for sid, s in eio.sockets.items() if not s.closed and not s.closing}

    notices = sum(_queue_goodbye(sio, sid, s) for sid, s in sockets.items())

    # Disconnect handlers (connection registry, presence graces) with the CLOSE already queued, so a
    # slow handler delays no client. abort=True: close() must not queue a second CLOSE nor wait for the
    # client to fetch it.
    closes = [asyncio.create_task(s.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT))
              for s in sockets.values()]
    unfinished: set[asyncio.Task[Any]] = set()
    if closes:
        _, unfinished = await asyncio.wait(closes, timeout=budget_s * 0.4)
        for task in unfinished:
            task.cancel()
    for task in closes:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("socket_close_failed", error=repr(task.exception()))
    for sid in sockets:
        eio.sockets.pop(sid, None)

    # Long-polls return what was queued; WebSockets close. A client that never reads gets cut off.
    reserve = min(0.5, budget_s * 0.1)
    open_left = await requests.wait(deadline - loop.time() - reserve)
    aborted = requests.abort() if open_left else 0
    if aborted:
        await requests.wait(deadline - loop.time())

    with contextlib.suppress(Exception):
        await asyncio.wait_for(sio.shutdown(), timeout=max(0.1, deadline - loop.time()))
    return {"connections": len(sockets), "notices": notices, "aborted": aborted,
            "slow_disconnects": len(unfinished), "left_open": len(requests)}


class ExitDeadline:
    """The promise that a node exits within `PAIRLY_SHUTDOWN_TIMEOUT_S` of SIGTERM, whatever is in flight.

    The steps of a shutdown are each bounded, but work still queued behind a saturated store (thousands of
    call settlements or ledger writes) can outlast the budget. That work is crash-safe by design (every
    credit movement is decided by its ledger key; an ended call left unsettled is settled by the next
    process or another node), so at the deadline the process stops the embedded store and exits at once
    from a thread, which runs even if the event loop is busy. Armed only by `python -m server`: never in
    a test process.
    """

    def __init__(self, seconds: float, before_exit: Callable[[], None]) -> None:
        self._seconds = seconds
        self._before_exit = before_exit
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self._seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.warning("shutdown_deadline_reached", seconds=self._seconds,
                    detail="exiting now; unsettled work is finished by the next process or another node")
        try:
            self._before_exit()
        finally:
            os._exit(0)
