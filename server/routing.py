"""Socket.IO client managers: in-process, or routed across nodes through Redis.

The stock `AsyncRedisManager` publishes every emit on one channel that every node decodes. Here a
node subscribes to one Redis channel per room it holds members of (rooms are per-user, `u:<id>`),
so an emit reaches only the nodes where its target is connected and Redis cost stays flat as nodes
are added. Publishes go through an ordered outbox flushed in pipelines, so the emitting handler
never waits for a Redis round trip and events to one room keep their order. While Redis is
unreachable the outbox keeps what could not be published (up to `outbox_max` emits, none older than
`outbox_max_age_s`) and publishes it, in order, when Redis is back: cross-node deliveries are late,
not lost (a pipeline cut mid-way may publish a few twice; clients de-duplicate by id).

Emits addressed to a single sid are delivered locally only: the application always addresses users
through their rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import msgpack
import socketio
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from server.outage import Outage
from server.pubsub import listen

log = structlog.get_logger(__name__)

_RETRY_MIN_S = 0.1
_RETRY_MAX_S = 2.0


class LocalManager(socketio.AsyncManager):  # type: ignore[misc]
    """In-memory manager for a single node, with the same extra API as the routed one."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def disconnect_room(self, room: str, namespace: str) -> None:
        await self._disconnect_local(room, namespace)

    async def _disconnect_local(self, room: str, namespace: str) -> None:
        try:
            sids = [sid for sid, _ in self.get_participants(namespace, room)]
        except KeyError:
            return
        for sid in sids:
            await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)

    async def emit_to_node(self, node: str, sid: str, event: str, data: Any, namespace: str) -> None:
        """Emit to one socket that lives on `node` (this process: the only node)."""
        await socketio.AsyncManager.emit(self, event, data, namespace, room=sid)

    def local_room_size(self, room: str, namespace: str) -> int:
        return len(self.rooms.get(namespace, {}).get(room, ()))


class RoutedRedisManager(LocalManager):
    def __init__(self, redis: Redis, prefix: str, node_id: str, *, outbox_max: int = 10_000,
                 outbox_max_age_s: float = 30.0) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix
        self.host_id = node_id
        self._broadcast = f"{prefix}:all"
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: list[tuple[str, bytes, float]] = []
        self._outbox_max = outbox_max
        self._outbox_max_age_s = outbox_max_age_s
        self._outage = Outage("redis_publish")
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def _channel(self, namespace: str, room: str) -> str:
        return f"{self._prefix}:room:{namespace}:{room}"

    def _node_channel(self, node: str) -> str:
        return f"{self._prefix}:to-node:{node}"

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._broadcast, self._node_channel(self.host_id))
        self._listener = asyncio.create_task(listen(self._pubsub, self._handle, what="routing"))
        self._writer = asyncio.create_task(self._write())

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):  # Redis may be down: what is left is dropped
            await asyncio.wait_for(self.flush(), 2.0)
        for task in (self._listener, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def flush(self) -> None:
        """Wait until every queued publish has been handed to Redis."""
        while self._outbox:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()
            if self._outage.down:
                await asyncio.sleep(_RETRY_MIN_S)

    # -- room membership drives subscriptions -----------------------------------------------------
    async def enter_room(self, sid: str, namespace: str, room: str, eio_sid: str | None = None) -> None:
        fresh = room not in self.rooms.get(namespace, {})
        self.basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if fresh and room != sid and self._pubsub is not None:
            await self._pubsub.subscribe(self._channel(namespace, room))

    async def leave_room(self, sid: str, namespace: str, room: str) -> None:
        self.basic_leave_room(sid, namespace, room)
        await self._unsubscribe_empty(namespace, [room])

    async def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        rooms = [r for r in self.get_rooms(sid, namespace) if r != sid]
        self.basic_disconnect(sid, namespace, **kwargs)
        await self._unsubscribe_empty(namespace, rooms)

    async def _unsubscribe_empty(self, namespace: str, rooms: Iterable[str]) -> None:
        gone = [self._channel(namespace, r) for r in rooms if r not in self.rooms.get(namespace, {})]
        if gone and self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(*gone)

    # -- emits ------------------------------------------------------------------------------------
    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if room is None or not self.is_sid_room(namespace, room):
            channel = self._broadcast if room is None else self._channel(namespace, room)
            self._queue(channel, {"m": "emit", "e": event, "d": data, "t": isinstance(data, tuple),
                                  "n": namespace, "r": room, "s": skip_sid})
        await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)

    async def emit_to_node(self, node: str, sid: str, event: str, data: Any, namespace: str) -> None:
        """Emit to one socket on any node: locally, or through that node's own channel."""
        if node == self.host_id:
            await socketio.AsyncManager.emit(self, event, data, namespace, room=sid)
            return
        self._queue(self._node_channel(node), {"m": "emit", "e": event, "d": data, "t": isinstance(data, tuple),
                                               "n": namespace, "r": sid, "s": None})

    async def disconnect_room(self, room: str, namespace: str) -> None:
        self._queue(self._channel(namespace, room), {"m": "disconnect", "n": namespace, "r": room})
        await self._disconnect_local(room, namespace)

    def _queue(self, channel: str, message: dict[str, Any]) -> None:
        message["h"] = self.host_id
        self._outbox.append((channel, msgpack.packb(message, use_bin_type=True), time.monotonic()))
        self._wake.set()

    async def _write(self) -> None:
        pause = _RETRY_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch, self._outbox = self._outbox, []
                pipe = self._redis.pipeline(transaction=False)
                for channel, payload, _ in batch:
                    pipe.publish(channel, payload)
                try:
                    await pipe.execute()
                except Exception as exc:
                    self._outage.failed(exc, queued=len(batch))
                    self._outbox = self._keep(batch + self._outbox)
                    self._idle.set()  # nothing more can be handed over for now
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _RETRY_MAX_S)
                    continue
                pause = _RETRY_MIN_S
                self._outage.ok()
            self._idle.set()

    def _keep(self, outbox: list[tuple[str, bytes, float]]) -> list[tuple[str, bytes, float]]:
        """What an outage keeps for later: the newest `outbox_max` emits younger than the age limit."""
        oldest = time.monotonic() - self._outbox_max_age_s
        kept = [item for item in outbox[-self._outbox_max:] if item[2] >= oldest]
        if len(kept) < len(outbox):
            log.warning("redis_publish_dropped", dropped=len(outbox) - len(kept), kept=len(kept))
        return kept

    async def _handle(self, payload: bytes) -> None:
        try:
            message = msgpack.unpackb(payload, raw=False)
        except Exception:
            log.warning("redis_bad_message")
            return
        if message.get("h") == self.host_id:
            return
        namespace, room = message["n"], message.get("r")
        if message["m"] == "emit":
            data = message["d"]
            if message.get("t") and isinstance(data, list):
                data = tuple(data)
            await socketio.AsyncManager.emit(
                self, message["e"], data, namespace, room=room, skip_sid=message.get("s")
            )
        elif message["m"] == "disconnect" and room is not None:
            await self._disconnect_local(room, namespace)
