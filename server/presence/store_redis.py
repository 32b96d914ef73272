"""Presence state in Redis, shared by every node.

Keys (under `<REDIS_PREFIX>:pr:`):
- `u:<user>`   hash, one user's `Record`: `v` version, `m` mode, `la` last activity, `st` status, `ls`
               last seen, `off`/`on` pending grace (since, node), `d:<sid>` -> node per device.
               No expiry while the user has devices; offline records expire (MongoDB keeps last_seen).
- `n:<node>`   set, users this node holds devices or a pending grace for (cleaned when it dies).
- `nodes`      hash, node -> last beat (ms), to enumerate nodes and date a death.
- `alive:<node>` key with a TTL refreshed by the node's sweep; its expiry is the node's death.
- `reap:<node>`  short lock so one survivor cleans up after a dead node.
Every write is one compare-and-set script on the record's version (see `server.presence.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from server.presence.model import MODES, STATUSES, Mode, Record, Status
from server.presence.store import Write

# KEYS: record, index. ARGV: expected version, expire ms (0 = none), index op (+ - or empty), member,
# then the record's field/value pairs.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'v') or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[3] == '+' then
  redis.call('SADD', KEYS[2], ARGV[4])
elseif ARGV[3] == '-' then
  redis.call('SREM', KEYS[2], ARGV[4])
end
return 1
"""

# KEYS: nodes hash. ARGV: alive-key prefix. Returns node, last beat pairs of nodes whose key expired.
_DEAD = """
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if redis.call('EXISTS', ARGV[1] .. all[i]) == 0 then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

# KEYS: nodes hash, index. ARGV: node. Forget the node once nobody is listed in its index.
_FORGET = """
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


def _s(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def encode(rec: Record) -> list[str]:
    fields = ["v", str(rec.version), "m", rec.mode, "la", repr(rec.last_active), "st", rec.status]
    if rec.last_seen is not None:
        fields += ["ls", repr(rec.last_seen)]
    if rec.left_at is not None:
        fields += ["off", repr(rec.left_at)]
    if rec.left_node is not None:
        fields += ["on", rec.left_node]
    for sid, node in rec.devices.items():
        fields += [f"d:{sid}", node]
    return fields


def decode(raw: dict[Any, Any]) -> Record | None:
    if not raw:
        return None
    h = {_s(k): _s(v) for k, v in raw.items()}
    mode, status = h.get("m", "auto"), h.get("st", "offline")
    return Record(
        version=int(h.get("v", "0")),
        devices={k[2:]: v for k, v in h.items() if k.startswith("d:")},
        mode=_mode(mode),
        last_active=float(h.get("la", "0")),
        status=_status(status),
        last_seen=float(h["ls"]) if "ls" in h else None,
        left_at=float(h["off"]) if "off" in h else None,
        left_node=h.get("on"),
    )


def _mode(value: str) -> Mode:
    for mode in MODES:
        if mode == value:
            return mode
    return "auto"


def _status(value: str) -> Status:
    for status in STATUSES:
        if status == value:
            return status
    return "offline"


class RedisPresenceStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._p = f"{prefix}:pr:"
        self._nodes = self._p + "nodes"
        self._cas = redis.register_script(_CAS)
        self._dead = redis.register_script(_DEAD)
        self._forget = redis.register_script(_FORGET)

    def _user(self, user: str) -> str:
        return f"{self._p}u:{user}"

    def _index(self, node: str) -> str:
        return f"{self._p}n:{node}"

    async def load(self, users: Sequence[str]) -> list[Record | None]:
        if not users:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(self._user(user))
        return [decode(raw) for raw in await pipe.execute()]

    async def save(self, writes: Sequence[Write]) -> list[bool]:
        if not writes:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for w in writes:
            key = self._user(w.user)
            op, node = w.index if w.index is not None else ("", "")
            expire_ms = int(w.expire_s * 1000) if w.expire_s is not None else 0
            await self._cas(
                keys=[key, self._index(node) if node else key],
                args=[str(w.expected), expire_ms, op, w.user, *encode(w.record)],
                client=pipe,
            )
        return [bool(r) for r in await pipe.execute()]

    async def beat(self, node: str, now: float, ttl_s: float) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(f"{self._p}alive:{node}", "1", px=max(1, int(ttl_s * 1000)))
        pipe.hset(self._nodes, node, str(int(now * 1000)))
        await pipe.execute()

    async def dead_nodes(self) -> dict[str, float]:
        flat = await self._dead(keys=[self._nodes], args=[f"{self._p}alive:"])
        return {_s(flat[i]): int(flat[i + 1]) / 1000 for i in range(0, len(flat), 2)}

    async def claim(self, node: str, holder: str, ttl_s: float) -> bool:
        key = f"{self._p}reap:{node}"
        if await self._redis.set(key, holder, nx=True, px=int(ttl_s * 1000)):
            return True
        return _s(await self._redis.get(key) or b"") == holder  # ours already: finishing a partial cleanup

    async def node_users(self, node: str) -> list[str]:
        return sorted(_s(m) for m in await self._redis.smembers(self._index(node)))

    async def forget_node(self, node: str) -> bool:
        return bool(await self._forget(keys=[self._nodes, self._index(node)], args=[node]))
