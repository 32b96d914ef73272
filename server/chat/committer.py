"""Group commit for `message:send`: exactly-once charging, crash-safe, a handful of round trips per batch.

Sends that arrive while the previous batch is being written form the next batch. Per batch:

1. insert the messages as `pending` (one unordered `insert_many`; unique on (from, client_id)). A
   duplicate is a resend: an `ok` message is returned as it is, charging nothing; a `pending` one
   (in flight on another node, or left by a crash) is adopted and finished by this batch;
2. charge every fresh or adopted message through the ledger concurrently (`msg:<id>` keys — the
   ledger batches them into its own group commit and applies each key at most once);
3. settle: upsert the conversation views of the charged messages, delete the refused ones, mark
   the charged ones `ok` (see `ChatStore.settle`).

Only then are the callers answered, so an ack means the message and its ledger entry are durable.
A crash leaves `pending` messages; `recover()` (at start-up and periodically, for messages older
than `recover_after_s`) marks them ok iff the ledger applied `msg:<id>`, else deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from billing.errors import InsufficientCredits
from billing.ledger import Entry, Ledger
from config.errors import AppError, Conflict, NotFound, Unavailable
from server.chat import model
from server.chat.model import OK, PENDING, Doc
from server.chat.store import ChatStore

log = structlog.get_logger(__name__)

CommitListener = Callable[[Sequence[Doc]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SendResult:
    doc: Doc
    balance: int
    delivered_now: bool
    """False for a resend of a message that had already been committed: nothing to deliver again."""


@dataclass(slots=True)
class _Item:
    doc: Doc
    future: asyncio.Future[SendResult]

    @property
    def key(self) -> tuple[str, str]:
        return self.doc["from"], self.doc["client_id"]


class Committer:
    def __init__(self, store: ChatStore, ledger: Ledger, price: int, *, max_batch: int = 500,
                 recover_after_s: float = 15.0, on_commit: CommitListener | None = None,
                 on_recovered: CommitListener | None = None) -> None:
        self._store = store
        self._ledger = ledger
        self._price = price
        self._max_batch = max_batch
        self._recover_after_s = recover_after_s
        self._on_commit = on_commit
        self._on_recovered = on_recovered
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._recoverer: asyncio.Task[None] | None = None
        self.batches = 0
        self.committed = 0

    def set_listeners(self, *, on_commit: CommitListener | None, on_recovered: CommitListener | None) -> None:
        self._on_commit = on_commit
        self._on_recovered = on_recovered

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, recover_every_s: float = 10.0) -> None:
        await self.recover()
        self._runner = asyncio.create_task(self._run(), name="chat-commit")
        self._recoverer = asyncio.create_task(self._recover_loop(recover_every_s), name="chat-recover")

    async def stop(self) -> None:
        if self._recoverer is not None:
            self._recoverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recoverer
        while self._queue:
            await self._commit_once()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    # -- submit -----------------------------------------------------------------------------------
    async def submit(self, doc: Doc) -> SendResult:
        """Commit one pending message document (built by the service). Raises the refusal, if any."""
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(doc, future))
        self._wake.set()
        if self._runner is None:  # not started (tools, scripts): commit inline
            await self._commit_once()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                try:
                    await self._commit_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("chat_batch_failed")
                    await asyncio.sleep(0.05)

    async def _commit_once(self) -> None:
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        if not batch:
            return
        try:
            await self._commit(batch)
        except Exception as exc:
            failure = exc if isinstance(exc, AppError) else Unavailable("message store unavailable; retry")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            raise

    # -- one batch --------------------------------------------------------------------------------
    async def _commit(self, batch: list[_Item]) -> None:
        self.batches += 1
        # The same (from, client_id) twice in one batch: later ones wait for the first one's result.
        firsts: dict[tuple[str, str], _Item] = {}
        followers: list[tuple[_Item, _Item]] = []
        for item in batch:
            if item.key in firsts:
                followers.append((item, firsts[item.key]))
            else:
                firsts[item.key] = item
        items = await self._check_replies(list(firsts.values()))

        # 1. pending inserts; duplicates are resends.
        dup_indexes = await self._store.insert_pending([i.doc for i in items])
        charge = [i for n, i in enumerate(items) if n not in dup_indexes]
        resends = [i for n, i in enumerate(items) if n in dup_indexes]
        if resends:
            charge += await self._resolve_resends(resends)

        # 2. charge.
        committed: list[tuple[_Item, int]] = []
        refused: list[tuple[_Item, Exception]] = []
        if charge:
            outcomes = await self._charge([i.doc for i in charge])
            for item, outcome in zip(charge, outcomes, strict=True):
                if isinstance(outcome, int):
                    committed.append((item, outcome))
                else:
                    refused.append((item, outcome))
            # 3. settle. Refusals other than "not enough credits" (store trouble, a key in flight
            # elsewhere) leave the message pending: a resend or the recovery sweep finishes it.
            await self._store.settle(
                [i.doc for i, _ in committed],
                [i.doc["_id"] for i, exc in refused if isinstance(exc, InsufficientCredits)],
            )
        for item, balance in committed:
            item.doc["state"] = OK
            if not item.future.done():
                item.future.set_result(SendResult(item.doc, balance, delivered_now=True))
        for item, exc in refused:
            if not item.future.done():
                item.future.set_exception(exc)
        for follower, first in followers:
            _chain(follower, first)
        self.committed += len(committed)
        if committed and self._on_commit is not None:
            try:
                await self._on_commit([i.doc for i, _ in committed])
            except Exception:
                log.exception("chat_commit_listener_failed")

    async def _check_replies(self, items: list[_Item]) -> list[_Item]:
        replies = [i for i in items if i.doc.get("reply_to")]
        if not replies:
            return items
        found = await self._store.existing_ids([i.doc["reply_to"] for i in replies], [i.doc["cid"] for i in replies])
        keep: list[_Item] = []
        for item in items:
            reply_to = item.doc.get("reply_to")
            if reply_to is not None and reply_to not in found:
                item.future.set_exception(NotFound("reply_to: no such message in this conversation"))
            else:
                keep.append(item)
        return keep

    async def _resolve_resends(self, resends: list[_Item]) -> list[_Item]:
        """Answer resends of committed messages; return the pending ones to adopt into this batch."""
        existing = await self._store.by_client_ids(i.key for i in resends)
        adopt: list[_Item] = []
        done: list[tuple[_Item, Doc]] = []
        for item in resends:
            doc = existing.get(item.key)
            if doc is None:  # refused and deleted between our insert and this read: ask for a retry
                item.future.set_exception(Conflict("the same message is being processed; retry"))
            elif doc.get("state") == PENDING:
                item.doc = doc
                adopt.append(item)
            else:
                done.append((item, doc))
        if done:
            users = list({doc["from"] for _, doc in done})
            wallets = await asyncio.gather(*(self._ledger.wallet(u) for u in users))
            balances = {w.user: w.balance for w in wallets}
            for item, doc in done:
                item.future.set_result(SendResult(doc, balances[doc["from"]], delivered_now=False))
        return adopt

    async def _charge(self, docs: list[Doc]) -> list[int | Exception]:
        """The sender's balance after each charge, or the refusal."""
        if self._price <= 0:
            users = list({d["from"] for d in docs})
            wallets = await asyncio.gather(*(self._ledger.wallet(u) for u in users))
            balances = {w.user: w.balance for w in wallets}
            return [balances[d["from"]] for d in docs]
        results = await asyncio.gather(
            *(self._ledger.spend(d["from"], self._price, key=f"msg:{d['_id']}", kind="message", ref=d["_id"])
              for d in docs),
            return_exceptions=True,
        )
        outcomes: list[int | Exception] = []
        for result in results:
            if isinstance(result, Entry):
                outcomes.append(result.balance_after)
            elif isinstance(result, AppError):
                outcomes.append(result)
            elif isinstance(result, Exception):
                log.error("chat_charge_failed", exc_info=result)
                outcomes.append(Unavailable("billing unavailable; retry"))
            else:
                raise result
        return outcomes

    # -- crash recovery ---------------------------------------------------------------------------
    async def _recover_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat_recover_failed")

    async def recover(self, min_age_s: float | None = None) -> int:
        """Settle messages left pending by a crash: ok iff the ledger applied `msg:<id>`, else delete."""
        age = self._recover_after_s if min_age_s is None else min_age_s
        cutoff = model.now() - dt.timedelta(seconds=age)
        pending = await self._store.pending_before(cutoff)
        if not pending:
            return 0
        keys = [f"msg:{d['_id']}" for d in pending]
        await self._ledger.recover(keys=keys, min_age_s=age)
        entries = await asyncio.gather(*(self._ledger.get_entry(k) for k in keys))
        ok = [d for d, e in zip(pending, entries, strict=True) if e is not None or self._price <= 0]
        gone = [d["_id"] for d, e in zip(pending, entries, strict=True) if e is None and self._price > 0]
        await self._store.settle(ok, gone)
        log.info("chat_recovered", committed=len(ok), deleted=len(gone))
        if ok and self._on_recovered is not None:
            for doc in ok:
                doc["state"] = OK
            try:
                await self._on_recovered(ok)
            except Exception:
                log.exception("chat_recover_listener_failed")
        return len(pending)


def _chain(follower: _Item, first: _Item) -> None:
    def copy(done: asyncio.Future[SendResult]) -> None:
        if follower.future.done():
            return
        exc = done.exception()
        if exc is not None:
            follower.future.set_exception(exc)
        else:
            result = done.result()
            follower.future.set_result(SendResult(result.doc, result.balance, delivered_now=False))

    if first.future.done():
        copy(first.future)
    else:
        first.future.add_done_callback(copy)
