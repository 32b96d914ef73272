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


class ConnectionRegistry(Protocol):
    async def add(self, namespace: str, user_id: str, sid: str, limit: int) -> bool: ...
    async def remove(self, namespace: str, user_id: str, sid: str) -> None: ...
    async def count(self, namespace: str, user_id: str) -> int: ...
    async def live_sids(self, namespace: str, user_id: str) -> set[str]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class LocalConnections:
    def __init__(self) -> None:
        self._by_user: dict[tuple[str, str], set[str]] = {}

    async def add(self, namespace: str, user_id: str, sid: str, limit: int) -> bool:
        sids = self._by_user.setdefault((namespace, user_id), set())
        if len(sids) >= limit:
            return False
        sids.add(sid)
        return True

    async def remove(self, namespace: str, user_id: str, sid: str) -> None:
        key = (namespace, user_id)
        sids = self._by_user.get(key)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._by_user[key]

    async def count(self, namespace: str, user_id: str) -> int:
        return len(self._by_user.get((namespace, user_id), ()))

    async def live_sids(self, namespace: str, user_id: str) -> set[str]:
        return set(self._by_user.get((namespace, user_id), ()))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._by_user.clear()


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
        self._task: asyncio.Task[None] | None = None
        self._add = redis.register_script(_ADD)

    def _key(self, namespace: str, user_id: str) -> str:
        return f"{self._prefix}:conn:{namespace}:{user_id}"

    async def _beat(self) -> None:
        await self._redis.set(self._node_prefix + self._node, "1", px=self._ttl_ms)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            with contextlib.suppress(Exception):
                await self._beat()

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
        await self._redis.hdel(self._key(namespace, user_id), sid)

    async def count(self, namespace: str, user_id: str) -> int:
        return int(await self._redis.hlen(self._key(namespace, user_id)))

    async def live_sids(self, namespace: str, user_id: str) -> set[str]:
        """Sids of the user on nodes that are alive (`count` may include a dead node's until pruned)."""
        entries: dict[bytes | str, bytes | str] = await self._redis.hgetall(self._key(namespace, user_id))
        if not entries:
            return set()
        nodes = sorted(set(entries.values()))
        pipe = self._redis.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(self._node_prefix + _text(node))
        alive = {n for n, up in zip(nodes, await pipe.execute(), strict=True) if up}
        return {_text(sid) for sid, node in entries.items() if node in alive}

    async def alive(self, node: str) -> bool:
        return bool(await self._redis.exists(self._node_prefix + node))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
