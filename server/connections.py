"""Who is connected where: per-user connection counts for the connection cap, across nodes.

Local backend: a dict in this process. Redis backend: one hash per (namespace, user) mapping
sid -> node id, plus a liveness key per node refreshed by a heartbeat. Entries of a node whose
liveness key expired (the process died) are ignored and pruned, so a crash never leaves a user
locked out by ghost connections for longer than the liveness TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from redis.asyncio import Redis

from server.outage import Outage


class ConnectionRegistry(Protocol):
    async def add(self, namespace: str, user_id: str, sid: str, limit: int) -> bool: ...
    async def remove(self, namespace: str, user_id: str, sid: str) -> None: ...
    async def count(self, namespace: str, user_id: str) -> int: ...
    async def live_sids(self, namespace: str, user_id: str) -> set[str]: ...
    async def where(self, namespace: str, user_id: str) -> dict[str, str]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _size(held: str | set[str] | tuple[()]) -> int:
    """How many sids a `LocalConnections` entry holds (a lone sid is kept as the string itself)."""
    return 1 if isinstance(held, str) else len(held)


class LocalConnections:
    """One process's registry. A user's only socket in a namespace is held as its sid, a set only from
    the second device: most users have one device, and an empty set costs ~200 bytes (docs/memory.md)."""

    def __init__(self, node_id: str = "local") -> None:
        self._node = node_id
        self._by_ns: dict[str, dict[str, str | set[str]]] = {}

    def _sids(self, namespace: str, user_id: str) -> str | set[str] | tuple[()]:
        return self._by_ns.get(namespace, {}).get(user_id, ())

    async def add(self, namespace: str, user_id: str, sid: str, limit: int) -> bool:
        users = self._by_ns.setdefault(namespace, {})
        held = users.get(user_id, ())
        if _size(held) >= limit:
            return False
        if not held:
            users[user_id] = sid
        elif isinstance(held, str):
            users[user_id] = {held, sid}
        else:
            held.add(sid)
        return True

    async def remove(self, namespace: str, user_id: str, sid: str) -> None:
        users = self._by_ns.get(namespace)
        held = users.get(user_id) if users is not None else None
        if users is None or held is None:
            return
        if isinstance(held, str):
            if held == sid:
                del users[user_id]
            return
        held.discard(sid)
        if len(held) == 1:
            users[user_id] = next(iter(held))
        elif not held:
            del users[user_id]

    async def count(self, namespace: str, user_id: str) -> int:
        return _size(self._sids(namespace, user_id))

    async def live_sids(self, namespace: str, user_id: str) -> set[str]:
        held = self._sids(namespace, user_id)
        return {held} if isinstance(held, str) else set(held)

    async def where(self, namespace: str, user_id: str) -> dict[str, str]:
        return dict.fromkeys(await self.live_sids(namespace, user_id), self._node)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._by_ns.clear()


# KEYS[1] = user hash; ARGV = sid, node, limit, node-key prefix. Prunes dead nodes, then adds if under cap.
_ADD = """
local entries = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #entries, 2 do
  if redis.call('EXISTS', ARGV[4] .. entries[i + 1]) == 1 then
    live = live + 1
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
if live >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisConnections:
    def __init__(self, redis: Redis, prefix: str, node_id: str, ttl_s: float = 15.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node = node_id
        self._ttl_ms = int(ttl_s * 1000)
        self._node_prefix = f"{prefix}:node:"
        self._local: dict[str, tuple[str, str]] = {}
        self._stale: dict[str, tuple[str, str]] = {}
        """Entries of sockets that left while Redis was unreachable, to delete when it is back."""
        self._suspect = False
        self._beaten = False
        self._outage = Outage("redis_connections")
        self._task: asyncio.Task[None] | None = None
        self._add = redis.register_script(_ADD)

    def _key(self, namespace: str, user_id: str) -> str:
        return f"{self._prefix}:conn:{namespace}:{user_id}"

    async def _beat(self) -> None:
        """Refresh our liveness key. If it was gone (Redis restarted empty, or we could not beat for a
        TTL) or a write failed since the last beat, write our connections again: other nodes count them
        for the caps and find call devices through them."""
        had = await self._redis.set(self._node_prefix + self._node, "1", px=self._ttl_ms, get=True)
        if (had is None and self._beaten) or self._suspect:
            await self._reassert()
        self._beaten = True

    async def _reassert(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for sid, (namespace, user_id) in list(self._local.items()):
            pipe.hset(self._key(namespace, user_id), sid, self._node)
        for sid, (namespace, user_id) in list(self._stale.items()):
            pipe.hdel(self._key(namespace, user_id), sid)
        await pipe.execute()
        self._stale.clear()
        self._suspect = False
        self._outage.ok()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000 if not self._suspect else min(1.0, self._ttl_ms / 3000))
            try:
                await self._beat()
            except Exception as exc:
                self._suspect = True
                self._outage.failed(exc)

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pipe = self._redis.pipeline(transaction=False)
        for sid, (namespace, user_id) in self._local.items():
            pipe.hdel(self._key(namespace, user_id), sid)
        pipe.delete(self._node_prefix + self._node)
        with contextlib.suppress(Exception):
            await pipe.execute()
        self._local.clear()

    async def add(self, namespace: str, user_id: str, sid: str, limit: int) -> bool:
        added = await self._add(keys=[self._key(namespace, user_id)], args=[sid, self._node, limit, self._node_prefix])
        if added:
            self._local[sid] = (namespace, user_id)
        return bool(added)

    async def remove(self, namespace: str, user_id: str, sid: str) -> None:
        self._local.pop(sid, None)
        try:
            await self._redis.hdel(self._key(namespace, user_id), sid)
        except Exception as exc:
            # Not an error for the disconnecting client: the entry goes at the first beat that gets through.
            self._stale[sid] = (namespace, user_id)
            self._suspect = True
            self._outage.failed(exc)

    async def count(self, namespace: str, user_id: str) -> int:
        return int(await self._redis.hlen(self._key(namespace, user_id)))

    async def live_sids(self, namespace: str, user_id: str) -> set[str]:
        """Sids of the user on nodes that are alive (`count` may include a dead node's until pruned)."""
        return set(await self.where(namespace, user_id))

    async def where(self, namespace: str, user_id: str) -> dict[str, str]:
        """{sid: node} of the user's sockets on nodes that are alive."""
        entries: dict[bytes | str, bytes | str] = await self._redis.hgetall(self._key(namespace, user_id))
        if not entries:
            return {}
        nodes = sorted(set(entries.values()))
        pipe = self._redis.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self._node_prefix + _text(node))
        alive = {n for n, up in zip(nodes, await pipe.execute(), strict=True) if up}
        return {_text(sid): _text(node) for sid, node in entries.items() if node in alive}

    async def alive(self, node: str) -> bool:
        return bool(await self._redis.exists(self._node_prefix + node))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
