"""The group-commit engine on its own: batching, selection, failures, draining, recovery, inline use."""

from __future__ import annotations

import asyncio

import pytest

from billing.group_commit import GroupCommit, Pending, Select, chain, dedupe, take_first
from config.errors import Unavailable


class Recorder:
    """A writer that records its batches and answers each item with its double."""

    def __init__(self, delay_s: float = 0.01, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on

    async def commit(self, batch: list[Pending[int, int]]) -> None:
        self.batches.append([p.item for p in batch])
        await asyncio.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in [p.item for p in batch]:
            raise RuntimeError("store down")
        for p in batch:
            p.resolve(p.item * 2)


async def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    writer = Recorder()
    engine: GroupCommit[int, int] = GroupCommit("t", writer.commit, max_batch=100)
    await engine.start()
    first = asyncio.create_task(engine.submit(0))
    await asyncio.sleep(0)  # the runner takes [0] and starts writing
    rest = [asyncio.create_task(engine.submit(i)) for i in range(1, 51)]
    assert await asyncio.gather(first, *rest) == [i * 2 for i in range(51)]
    await engine.stop()
    assert writer.batches[0] == [0] and writer.batches[1] == list(range(1, 51))
    assert engine.batches == 2 and engine.items == 51


async def test_max_batch_and_custom_selection() -> None:
    writer = Recorder(delay_s=0)

    def evens_first(queue: list[Pending[int, int]]) -> tuple[list[Pending[int, int]], list[Pending[int, int]]]:
        ordered = [p for p in queue if p.item % 2 == 0] + [p for p in queue if p.item % 2]
        return ordered[:3], ordered[3:]

    engine: GroupCommit[int, int] = GroupCommit("t", writer.commit, select=evens_first)
    await engine.start()
    engine.offer(-2)  # occupies the runner while the others queue up
    await asyncio.sleep(0)
    results = await asyncio.gather(*(engine.submit(i) for i in range(8)))
    await engine.stop()
    assert results == [i * 2 for i in range(8)]
    assert writer.batches[1] == [0, 2, 4]
    assert sorted(i for b in writer.batches for i in b) == [-2, *range(8)]
    queue: list[Pending[int, int]] = [Pending(1, None), Pending(2, None), Pending(3, None)]
    first_two: Select[int, int] = take_first(2)
    assert first_two(queue)[0][-1].item == 2


async def test_a_failed_batch_fails_only_its_items_and_the_runner_goes_on() -> None:
    writer = Recorder(fail_on=3)
    engine: GroupCommit[int, int] = GroupCommit(
        "t", writer.commit, max_batch=2, on_error=lambda exc: Unavailable("retry"), retry_pause_s=0.001)
    await engine.start()
    results = await asyncio.gather(*(engine.submit(i) for i in range(6)), return_exceptions=True)
    await engine.stop()
    failed = [i for i, r in enumerate(results) if isinstance(r, Unavailable)]
    assert 3 in failed and len(failed) == 2  # 3 and its batch-mate
    assert all(r == i * 2 for i, r in enumerate(results) if i not in failed)


async def test_stop_drains_everything_queued_and_offered() -> None:
    writer = Recorder(delay_s=0.02)
    engine: GroupCommit[int, int] = GroupCommit("t", writer.commit, linger_s=0.05)
    await engine.start()
    tasks = [asyncio.create_task(engine.submit(i)) for i in range(5)]
    engine.offer(99)
    await asyncio.sleep(0)
    await engine.stop()  # while lingering: nothing may be lost
    assert [t.result() for t in tasks] == [0, 2, 4, 6, 8]
    assert sorted(i for b in writer.batches for i in b) == [0, 1, 2, 3, 4, 99]
    assert engine.queued == 0 and not engine.running


async def test_recover_runs_at_start_and_periodically() -> None:
    calls: list[float] = []

    async def recover() -> None:
        calls.append(asyncio.get_running_loop().time())

    engine: GroupCommit[int, int] = GroupCommit("t", Recorder().commit, recover=recover, recover_every_s=0.02)
    await engine.start()
    assert len(calls) == 1  # before start() returns
    await asyncio.sleep(0.07)
    await engine.stop()
    assert len(calls) >= 3
    count = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == count  # stopped


async def test_flush_commits_offered_items_inline() -> None:
    writer = Recorder(delay_s=0)
    offline: GroupCommit[int, int] = GroupCommit("t", writer.commit)
    offline.offer(5)
    await offline.flush()
    assert writer.batches[-1] == [5]


async def test_dedupe_and_chain_answer_followers_from_the_first() -> None:
    loop = asyncio.get_running_loop()
    items = [Pending(v, loop.create_future()) for v in (1, 2, 1, 1)]
    firsts, followers = dedupe(items, lambda v: str(v))
    assert [p.item for p in firsts] == [1, 2] and len(followers) == 2
    for follower, first in followers:
        chain(follower, first, lambda r: -r)
    firsts[0].resolve(10)
    firsts[1].fail(RuntimeError("no"))
    assert await items[2].future == -10 and await items[3].future == -10  # type: ignore[misc]
    with pytest.raises(RuntimeError):
        await items[1].future  # type: ignore[misc]
