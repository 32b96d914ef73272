"""A small per-process cache with expiry and single-flight loading.

Hot paths (every message send checks the sender's ban, both parties' blocks and the recipient's
rates) read through one of these so that the store is asked at most once per key per `ttl_s`, and,
when a popular key expires, once — not once per concurrent caller (single flight: later callers
await the first caller's load). Lives in `config/` because every package may use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, load: Callable[[K], Awaitable[V]], *, ttl_s: float, max_size: int = 100_000) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._max_size = max_size
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._loading.pop(key, None)
        if len(self._values) >= self._max_size:
            self._values.clear()
        self._values[key] = (time.monotonic() + self._ttl_s, value)
        if not future.done():
            future.set_result(value)
        return value

    def invalidate(self, key: K) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()
