"""One timer wheel per node for every call deadline (ring timeouts, minute ticks, low-balance
warnings, reconnect graces): a heap and one task, instead of a task or a `call_later` per call.

Deadlines are wall-clock seconds, because they come from call records shared by every node. Due
timers are handed to `on_due` in one batch per wake, so a thousand minute ticks falling due together
become one pass (one store read, one ledger group commit) rather than a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

TimerKey = tuple[str, str]  # (call id, what)
DueBatch = list[tuple[TimerKey, float]]  # (key, the deadline it was scheduled for)


class Timers:
    def __init__(self, on_due: Callable[[DueBatch], None], clock: Callable[[], float] = time.time) -> None:
        self._on_due = on_due
        self._clock = clock
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._live: dict[TimerKey, int] = {}
        self._by_call: dict[str, set[str]] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, key: TimerKey, at: float) -> None:
        """Fire `key` at wall time `at` (replacing an earlier schedule of the same key)."""
        seq = next(self._seq)
        self._live[key] = seq
        self._by_call.setdefault(key[0], set()).add(key[1])
        first = not self._heap or at < self._heap[0][0]
        heapq.heappush(self._heap, (at, seq, key))
        if first:
            self._wake.set()

    def cancel(self, key: TimerKey) -> None:
        if self._live.pop(key, None) is not None:
            kinds = self._by_call.get(key[0])
            if kinds is not None:
                kinds.discard(key[1])
                if not kinds:
                    del self._by_call[key[0]]

    def cancel_call(self, call_id: str) -> None:
        for what in list(self._by_call.pop(call_id, ())):
            self._live.pop((call_id, what), None)

    def pending(self, key: TimerKey) -> bool:
        return key in self._live

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            due = self._pop_due()
            if due:
                self._on_due(due)
            wait = self._heap[0][0] - self._clock() if self._heap else None
            if wait is not None and wait <= 0:
                await asyncio.sleep(0)  # let the due work start before the next pass
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _pop_due(self) -> DueBatch:
        now = self._clock()
        out: DueBatch = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, seq, key = heapq.heappop(heap)
            if self._live.get(key) == seq:
                self.cancel(key)
                out.append((key, at))
        # Cancelled entries stay in the heap until they surface; compact when they dominate.
        if len(heap) > 1024 and len(heap) > 4 * len(self._live):
            self._heap = [e for e in heap if self._live.get(e[2]) == e[1]]
            heapq.heapify(self._heap)
        return out
