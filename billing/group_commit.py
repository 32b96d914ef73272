"""Group commit: one small engine for every writer that batches (ledger, chat views, call billing).

Callers `submit()` an item and await its result; a single runner takes whatever queued up while the
previous batch was being written and hands it to the writer's `commit(batch)` as one batch, so the
number of store round trips is per batch, not per item. `offer()` queues an item nobody awaits
(coalesced side writes). The engine owns the mechanics every writer needs and nobody should copy:

- one runner task, woken by `submit`/`offer`, optional `linger_s` to let a batch fill;
- `select` decides which queued items form the next batch (the rest wait for the next one);
- a failed `commit` fails its unanswered items with `on_error(exc)` and the runner keeps going;
- `stop()` drains: everything queued is committed before the runner ends;
- `recover()` runs at start and then every `recover_every_s` (crash leftovers, periodic sweeps);
- without `start()` (tools, scripts) `submit` commits inline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R] | None
    """None for `offer()`ed items: nobody waits for them."""

    def resolve(self, result: R) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(exc)



Commit = Callable[[list[Pending[T, R]]], Awaitable[None]]
Select = Callable[[list[Pending[T, R]]], tuple[list[Pending[T, R]], list[Pending[T, R]]]]


def take_first(limit: int) -> Select[T, R]:
    """The default batch selection: the oldest `limit` items."""

    def select(queue: list[Pending[T, R]]) -> tuple[list[Pending[T, R]], list[Pending[T, R]]]:
        return queue[:limit], queue[limit:]

    return select


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        name: str,
        commit: Commit[T, R],
        *,
        max_batch: int = 500,
        select: Select[T, R] | None = None,
        linger_s: float = 0.0,
        recover: Callable[[], Awaitable[object]] | None = None,
        recover_every_s: float = 10.0,
        on_error: Callable[[Exception], BaseException] = lambda exc: exc,
        retry_pause_s: float = 0.05,
    ) -> None:
        self.name = name
        self._commit = commit
        self._select: Select[T, R] = select or take_first(max_batch)
        self._linger_s = linger_s
        self._recover = recover
        self._recover_every_s = recover_every_s
        self._on_error = on_error
        self._retry_pause_s = retry_pause_s
        self._queue: list[Pending[T, R]] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._recoverer: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0
        self.items = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._runner is not None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._recover is not None:
            await self._recover()
            self._recoverer = asyncio.create_task(self._recover_loop(), name=f"{self.name}-recover")
        self._stopping = False
        self._runner = asyncio.create_task(self._run(), name=f"{self.name}-commit")

    async def stop(self) -> None:
        """Commit everything queued, then stop the runner and the recovery loop.

        The runner is never cancelled mid-batch: it finishes what it has, drains the queue and ends.
        """
        if self._recoverer is not None:
            self._recoverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recoverer
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        self._recoverer = self._runner = None
        while self._queue:  # submitted while the runner was ending
            with contextlib.suppress(Exception):
                await self._commit_once()

    # -- submitting -------------------------------------------------------------------------------
    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(item, future))
        self._wake.set()
        if self._runner is None:  # not started (tools, scripts) or stopping: commit inline
            await self._commit_once()
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """Queue `items` back to back (nothing else between them, batches taken in order) and wait for
        all: a caller whose items depend on each other's order (one wallet's minutes) relies on it."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.append(Pending(item, future))
            futures.append(future)
        self._wake.set()
        if self._runner is None:
            await self.flush()
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def offer(self, item: T) -> None:
        """Queue an item whose result nobody awaits (committed with the next batch)."""
        self._queue.append(Pending(item, None))
        self._wake.set()

    async def flush(self) -> None:
        """Commit everything queued now, inline (tests, tools)."""
        while self._queue:
            await self._commit_once()

    # -- the runner -------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if self._linger_s > 0 and not self._stopping:
                await asyncio.sleep(self._linger_s)
            try:
                await self._commit_once()
            except Exception:
                await asyncio.sleep(self._retry_pause_s)

    async def _commit_once(self) -> None:
        batch, self._queue = self._select(self._queue)
        if not batch:
            return
        self.batches += 1
        self.items += len(batch)
        try:
            await self._commit(batch)
        except Exception as exc:
            log.exception("group_commit_failed", engine=self.name, items=len(batch))
            failure = self._on_error(exc)
            for pending in batch:
                pending.fail(failure)
            raise

    async def _recover_loop(self) -> None:
        assert self._recover is not None
        while True:
            await asyncio.sleep(self._recover_every_s)
            try:
                await self._recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("group_commit_recover_failed", engine=self.name)


def chain(follower: Pending[T, R], first: Pending[T, R], copy: Callable[[R], R]) -> None:
    """Answer `follower` with `first`'s outcome (the same idempotency key twice in one batch)."""
    if follower.future is None or first.future is None:
        return

    def done(f: asyncio.Future[R]) -> None:
        if f.cancelled():
            follower.fail(asyncio.CancelledError())
        elif f.exception() is not None:
            follower.fail(f.exception())  # type: ignore[arg-type]
        else:
            follower.resolve(copy(f.result()))

    first.future.add_done_callback(done)


def dedupe(batch: Sequence[Pending[T, R]], key: Callable[[T], str]) -> tuple[list[Pending[T, R]],
                                                                             list[tuple[Pending[T, R], Pending[T, R]]]]:
    """Split a batch into first occurrences and (follower, first) pairs by key."""
    firsts: dict[str, Pending[T, R]] = {}
    followers: list[tuple[Pending[T, R], Pending[T, R]]] = []
    for pending in batch:
        k = key(pending.item)
        if k in firsts:
            followers.append((pending, firsts[k]))
        else:
            firsts[k] = pending
    return list(firsts.values()), followers
