"""Per-user, per-event token buckets (PAIRLY_RATE_LIMITS). In-process, or shared through Redis.

A bucket holds `events` tokens and refills at `events / per_seconds` tokens per second. `take`
returns 0 when allowed, else the seconds until a token is available.
"""

from __future__ import annotations

import time
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.settings import RateLimit

log = structlog.get_logger(__name__)


class RateLimiter(Protocol):
    async def take(self, user_id: str, event: str, rate: RateLimit) -> float: ...


class LocalRateLimiter:
    _MAX_BUCKETS = 200_000

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    async def take(self, user_id: str, event: str, rate: RateLimit) -> float:
        return self.take_now(user_id, event, rate)

    def take_now(self, user_id: str, event: str, rate: RateLimit) -> float:
        now = time.monotonic()
        key = (user_id, event)
        refill = rate.events / rate.per_seconds
        tokens, stamp = self._buckets.get(key, (float(rate.events), now))
        tokens = min(float(rate.events), tokens + (now - stamp) * refill)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / refill
        if len(self._buckets) >= self._MAX_BUCKETS:
            self._buckets.clear()  # bounded memory; worst case a burst is forgiven once
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


# KEYS[1] bucket; ARGV capacity, refill per ms, now ms, ttl ms. Returns ms to wait (0 = allowed).
_TAKE = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(b[1]) or cap
local stamp = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) / rate)
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._prefix = prefix
        self._script = redis.register_script(_TAKE)

    async def take(self, user_id: str, event: str, rate: RateLimit) -> float:
        per_ms = rate.events / (rate.per_seconds * 1000.0)
        ttl_ms = int(rate.per_seconds * 1000) + 1000
        now_ms = int(time.time() * 1000)
        wait_ms = await self._script(
            keys=[f"{self._prefix}:rl:{event}:{user_id}"], args=[rate.events, repr(per_ms), now_ms, ttl_ms]
        )
        return float(wait_ms) / 1000.0


class SharedRateLimiter:
    """Buckets in Redis, shared by every node; while Redis is unreachable, this node's own buckets.

    An outage must not stop what a node can serve alone (same-node chat): during one each node enforces
    the limits by itself, so a user spread over N nodes gets at most N times the rate until Redis is back.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._shared = RedisRateLimiter(redis, prefix)
        self._local = LocalRateLimiter()
        self._degraded = False

    async def take(self, user_id: str, event: str, rate: RateLimit) -> float:
        try:
            wait = await self._shared.take(user_id, event, rate)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            if not self._degraded:
                self._degraded = True
                log.warning("rate_limits_local", detail="Redis unreachable: limits enforced per node")
            return self._local.take_now(user_id, event, rate)
        if self._degraded:
            self._degraded = False
            log.info("rate_limits_shared_again")
        return wait
