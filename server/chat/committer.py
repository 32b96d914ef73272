"""Group commit for `message:send`: exactly-once charging, crash-safe, a handful of round trips per batch.

Sends that arrive while the previous batch is being written form the next batch. Per batch:

1. insert one intent per send into `chat_intents` (`_id` = sender + client_id, the whole message
   inside; one unordered `insert_many`), then look the same keys up in `chat_messages`. A stored
   message means a resend: it is returned as it is and nothing is charged. An intent that already
   existed without a message (a send in flight on another node, or left by a crash) is adopted:
   finished by this batch with its original message id;
2. charge every fresh or adopted message through the ledger concurrently (`msg:<id>` keys — the
   ledger batches them into its own group commit and applies each key at most once);
3. store the charged messages and move both parties' conversation views (concurrently).

Only then are the callers answered, so an ack means the message and its ledger entry are durable.
The intents of finished sends (stored or refused) are deleted with the next batch's first write, off
the ack path. A crash leaves intents behind; `recover()` (at start-up and periodically, for intents
older than `recover_after_s`) stores the message iff the ledger applied `msg:<id>`, then drops the
intent. Every step is idempotent, so a send finished twice (a resend racing a recovery, two nodes
adopting the same intent) is charged once and stored once.
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
from server.chat.model import Doc
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
    def key(self) -> str:
        return str(self.doc["ck"])


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
        self._drop: list[str] = []  # intents of finished sends, deleted with the next batch
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
        drop, self._drop = self._drop, []
        with contextlib.suppress(Exception):
            await self._store.drop_intents(drop)
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
        # The same (sender, client_id) twice in one batch: later ones wait for the first one's result.
        firsts: dict[str, _Item] = {}
        followers: list[tuple[_Item, _Item]] = []
        for item in batch:
            if item.key in firsts:
                followers.append((item, firsts[item.key]))
            else:
                firsts[item.key] = item
        items = await self._check_replies(list(firsts.values()))

        # 1. intents (with the previous batches' finished intents dropped alongside), then resends.
        drop, self._drop = self._drop, []
        dup_indexes, _ = await asyncio.gather(
            self._store.insert_intents([i.doc for i in items], model.now()), self._store.drop_intents(drop)
        )
        stored = await self._store.by_client_keys(i.key for i in items)
        charge: list[_Item] = []
        adopt: list[_Item] = []
        resent: list[tuple[_Item, Doc]] = []
        for n, item in enumerate(items):
            existing = stored.get(item.key)
            if existing is not None:
                resent.append((item, existing))
                if n not in dup_indexes:
                    self._drop.append(item.key)  # the intent we just wrote for a stored message
            elif n in dup_indexes:
                adopt.append(item)
            else:
                charge.append(item)
        if adopt:
            intents = await self._store.intents_by_key(i.key for i in adopt)
            for item in adopt:
                original = intents.get(item.key)
                if original is None:  # finished and dropped between our insert and this read
                    item.future.set_exception(Conflict("the same message is being processed; retry"))
                else:
                    item.doc = original
                    charge.append(item)
        if resent:
            await self._answer_resends(resent)

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
        # 3. store and move the views.
        fresh: list[Doc] = []
        already: set[str] = set()
        if committed:
            docs = [i.doc for i, _ in committed]
            already, _ = await asyncio.gather(self._store.store_messages(docs), self._store.touch_views(docs))
            fresh = [d for d in docs if d["_id"] not in already]
        for item, balance in committed:
            if not item.future.done():
                item.future.set_result(SendResult(item.doc, balance, delivered_now=item.doc["_id"] not in already))
        # Refusals other than "not enough credits" (store trouble, a key in flight elsewhere) keep their
        # intent: a resend or the recovery sweep finishes it.
        self._drop += [i.key for i, _ in committed]
        self._drop += [i.key for i, exc in refused if isinstance(exc, InsufficientCredits)]
        for item, exc in refused:
            if not item.future.done():
                item.future.set_exception(exc)
        for follower, first in followers:
            _chain(follower, first)
        self.committed += len(fresh)
        if fresh and self._on_commit is not None:
            try:
                await self._on_commit(fresh)
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

    async def _answer_resends(self, resent: list[tuple[_Item, Doc]]) -> None:
        users = list({doc["from"] for _, doc in resent})
        wallets = await asyncio.gather(*(self._ledger.wallet(u) for u in users))
        balances = {w.user: w.balance for w in wallets}
        for item, doc in resent:
            item.future.set_result(SendResult(doc, balances[doc["from"]], delivered_now=False))

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
        """Finish sends left by a crash: store the message iff the ledger applied `msg:<id>`, drop the intent."""
        age = self._recover_after_s if min_age_s is None else min_age_s
        cutoff = model.now() - dt.timedelta(seconds=age)
        drop, self._drop = self._drop, []  # finished sends of an idle node: not crash leftovers
        await self._store.drop_intents(drop)
        pending = await self._store.intents_before(cutoff)
        if not pending:
            return 0
        keys = [f"msg:{d['_id']}" for d in pending]
        await self._ledger.recover(keys=keys, min_age_s=age)
        entries = await asyncio.gather(*(self._ledger.get_entry(k) for k in keys))
        ok = [d for d, e in zip(pending, entries, strict=True) if e is not None or self._price <= 0]
        already, _ = await asyncio.gather(self._store.store_messages(ok), self._store.touch_views(ok))
        await self._store.drop_intents([d["ck"] for d in pending])
        fresh = [d for d in ok if d["_id"] not in already]
        log.info("chat_recovered", stored=len(fresh), dropped=len(pending) - len(ok))
        if fresh and self._on_recovered is not None:
            try:
                await self._on_recovered(fresh)
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
