"""The credits ledger: append-only entries, materialised wallet balances, group-committed.

Every balance change is one ledger entry whose `_id` is its idempotency key. Writes follow one
protocol, done for a whole batch of operations at once (group commit — the batch is whatever
arrived while the previous batch was being written):

1. insert the entries as `pending` (unordered `insert_many`; a duplicate key means the operation
   was seen before and its first result is returned instead);
2. apply each to its wallet with one conditional update per entry (unordered `bulk_write`): the
   update checks the condition (enough available credits, enough held), moves the numbers and
   pushes `[key, delta, held_delta]` onto the wallet's bounded `applied` list — atomically, in the
   wallet document;
3. read the wallets back: an entry applied iff its key is in `applied`; `balance_after` and
   `held_after` are derived exactly by walking that list back from the current figures;
4. mark applied entries `applied` (with their `*_after`) and delete the refused ones.

So a wallet is never changed without its pending entry already durable, and the entry's fate is
decided by the wallet document alone. A process killed at any point leaves `pending` entries that
`recover()` settles by the same rule (key in `applied` → applied, else → deleted): afterwards
balance == Σ delta and held == Σ held_delta for every wallet, which `reconcile()` proves.

Holds (calls) use the same path: a hold is an entry with `held_delta > 0` and `delta == 0`;
capturing moves credits out of the hold; releasing returns what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from billing.errors import InsufficientCredits, OperationInFlight
from config.errors import InvalidPayload, NotFound

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
# How many recent operations a wallet remembers. Recovery must run before a wallet sees this many
# newer operations after a crash; `recover()` runs at start-up and every RECOVER_EVERY_S.
APPLIED_WINDOW = 512
RECOVER_AFTER_S = 15.0
MAX_BATCH = 400
# Operations on one wallet per batch. Read-back finds an operation only while its key is still in the
# wallet's window, so one batch (plus what other nodes apply meanwhile) must stay well inside it.
MAX_PER_WALLET = 64

Condition = Literal["none", "available", "held"]


@dataclass(frozen=True, slots=True)
class Op:
    user: str
    key: str
    delta: int
    held_delta: int
    kind: str
    ref: str | None
    condition: Condition
    meta: Doc | None = None

    @property
    def need(self) -> int:
        if self.condition == "available":
            return max(-self.delta, self.held_delta)
        if self.condition == "held":
            return -self.held_delta
        return 0


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    user: str
    delta: int
    held_delta: int
    balance_after: int
    held_after: int
    kind: str
    ref: str | None
    created_at: dt.datetime
    replayed: bool = False
    """True when this result is the first application of a key seen again."""

    @property
    def available_after(self) -> int:
        return self.balance_after - self.held_after

    def public(self) -> Doc:
        return {
            "id": self.key,
            "delta": self.delta,
            "held_delta": self.held_delta,
            "balance_after": self.balance_after,
            "held_after": self.held_after,
            "kind": self.kind,
            "ref": self.ref,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_doc(cls, doc: Doc, replayed: bool = False) -> Entry:
        return cls(
            key=doc["_id"],
            user=doc["user"],
            delta=int(doc["delta"]),
            held_delta=int(doc.get("held_delta", 0)),
            balance_after=int(doc.get("balance_after") or 0),
            held_after=int(doc.get("held_after") or 0),
            kind=doc["kind"],
            ref=doc.get("ref"),
            created_at=doc["created_at"],
            replayed=replayed,
        )


@dataclass(frozen=True, slots=True)
class Wallet:
    user: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[Entry]
    attempts: int = 0


@dataclass
class Discrepancy:
    user: str
    balance: int
    ledger_sum: int
    held: int
    ledger_held_sum: int


@dataclass
class ReconcileReport:
    wallets: int
    entries: int
    pending_resolved: int
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies


ChangeListener = Callable[[Sequence[Entry]], Awaitable[None]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Ledger:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        signup_bonus: int = 0,
        on_change: ChangeListener | None = None,
    ) -> None:
        self._entries = db["ledger"]
        self._wallets = db["wallets"]
        self._signup_bonus = signup_bonus
        self._on_change = on_change
        self._known_wallets: set[str] = set()
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._recoverer: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_ops = 0

    def set_listener(self, on_change: ChangeListener | None) -> None:
        self._on_change = on_change

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, recover_every_s: float = 10.0) -> None:
        await self.recover()
        self._runner = asyncio.create_task(self._run(), name="ledger-commit")
        self._recoverer = asyncio.create_task(self._recover_loop(recover_every_s), name="ledger-recover")

    async def stop(self) -> None:
        """Finish every queued operation, then stop."""
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

    # -- public operations ------------------------------------------------------------------------
    async def credit(self, user: str, amount: int, key: str, kind: str, ref: str | None = None,
                     meta: Doc | None = None) -> Entry:
        _positive(amount)
        return await self.submit(Op(user, key, amount, 0, kind, ref, "none", meta))

    async def spend(self, user: str, amount: int, key: str, kind: str, ref: str | None = None,
                    meta: Doc | None = None) -> Entry:
        """Take `amount` from the available balance, or raise InsufficientCredits."""
        _positive(amount)
        return await self.submit(Op(user, key, -amount, 0, kind, ref, "available", meta))

    async def adjust(self, user: str, delta: int, key: str, kind: str, ref: str | None = None,
                     meta: Doc | None = None) -> Entry:
        """Admin correction, refund or dispute debit: unconditional, may take the balance below zero."""
        if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
            raise InvalidPayload("delta must be a non-zero integer")
        return await self.submit(Op(user, key, delta, 0, kind, ref, "none", meta))

    async def hold(self, user: str, amount: int, key: str, ref: str | None = None) -> Entry:
        """Reserve `amount` of the available balance (e.g. a call's first minute)."""
        _positive(amount)
        return await self.submit(Op(user, key, 0, amount, "hold", ref, "available", {"hold": key}))

    async def capture(self, hold_key: str, amount: int, key: str, kind: str = "capture") -> Entry:
        """Charge `amount` out of a hold (never more than the hold has left)."""
        _positive(amount)
        hold = await self._hold(hold_key)
        left = await self.hold_remaining(hold_key)
        if amount > left:
            existing = await self._entries.find_one({"_id": key, "state": "applied"})
            if existing is not None:
                return Entry.from_doc(existing, replayed=True)
            raise InsufficientCredits(f"hold has {left} credits left")
        op = Op(hold["user"], key, -amount, -amount, kind, hold.get("ref"), "held", {"hold": hold_key})
        return await self.submit(op)

    async def release(self, hold_key: str, key: str | None = None) -> Entry | None:
        """Return whatever is left of a hold to the available balance. None if nothing was left."""
        hold = await self._hold(hold_key)
        left = await self.hold_remaining(hold_key)
        if left <= 0:
            return None
        op = Op(hold["user"], key or f"{hold_key}:release", 0, -left, "release", hold.get("ref"), "held",
                {"hold": hold_key})
        return await self.submit(op)

    async def hold_remaining(self, hold_key: str) -> int:
        total = 0
        async for doc in self._entries.find({"meta.hold": hold_key, "state": "applied"}, {"held_delta": 1}):
            total += int(doc.get("held_delta", 0))
        return total

    async def _hold(self, hold_key: str) -> Doc:
        hold = await self._entries.find_one({"_id": hold_key, "kind": "hold", "state": "applied"})
        if hold is None:
            raise NotFound("no such hold")
        return hold

    async def submit(self, op: Op) -> Entry:
        if not op.key or len(op.key) > 200:
            raise InvalidPayload("idempotency key must be 1..200 characters")
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, future))
        self._wake.set()
        if self._runner is None:  # not started (tools, scripts): commit inline
            await self._commit_once()
        return await future

    async def wallet(self, user: str) -> Wallet:
        """The user's wallet, opening it (with the signup bonus, once) on first use."""
        await self.ensure_wallets([user])
        doc = await self._wallets.find_one({"_id": user}, {"balance": 1, "held": 1})
        assert doc is not None
        return Wallet(user, int(doc["balance"]), int(doc["held"]))

    async def entries(self, user: str, *, before: str | None = None, limit: int = 50) -> tuple[list[Entry], str | None]:
        """Applied entries, newest first; the cursor is the `seq` of the last entry returned."""
        query: Doc = {"user": user, "state": "applied"}
        if before is not None:
            try:
                query["seq"] = {"$lt": float(before)}
            except ValueError:
                raise InvalidPayload("bad cursor") from None
        docs = await self._entries.find(query).sort("seq", -1).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        cursor = repr(docs[-1]["seq"]) if more and docs else None
        return [Entry.from_doc(d) for d in docs], cursor

    async def get_entry(self, key: str) -> Entry | None:
        doc = await self._entries.find_one({"_id": key, "state": "applied"})
        return Entry.from_doc(doc) if doc else None

    # -- wallet creation --------------------------------------------------------------------------
    async def ensure_wallets(self, users: Iterable[str]) -> None:
        missing = [u for u in set(users) if u not in self._known_wallets]
        if not missing:
            return
        found = {d["_id"] async for d in self._wallets.find({"_id": {"$in": missing}}, {"_id": 1})}
        for user in missing:
            if user not in found:
                await self._open_wallet(user)
            self._known_wallets.add(user)

    async def _open_wallet(self, user: str) -> None:
        now = _now()
        bonus = self._signup_bonus
        key = f"signup:{user}"
        # Same protocol as every change: the entry exists (pending) before the wallet does.
        if bonus > 0:
            with contextlib.suppress(Exception):
                await self._entries.insert_one(_entry_doc(Op(user, key, bonus, 0, "signup_bonus", None, "none"), now))
        applied = [[key, bonus, 0]] if bonus > 0 else []
        with contextlib.suppress(Exception):  # lost a creation race: the other one won, fine
            await self._wallets.insert_one(
                {"_id": user, "balance": bonus, "held": 0, "available": bonus, "applied": applied,
                 "created_at": now, "updated_at": now}
            )
        if bonus > 0:
            await self.recover(keys=[key])

    # -- group commit -----------------------------------------------------------------------------
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
                    log.exception("ledger_batch_failed")
                    await asyncio.sleep(0.05)

    async def _commit_once(self) -> None:
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        per_wallet: dict[str, int] = {}
        for item in self._queue:
            n = per_wallet.get(item.op.user, 0)
            if len(batch) < MAX_BATCH and n < MAX_PER_WALLET:
                batch.append(item)
                per_wallet[item.op.user] = n + 1
            else:
                rest.append(item)
        self._queue = rest
        if not batch:
            return
        try:
            await self._commit(batch)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            raise

    async def _commit(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.batched_ops += len(batch)
        # Same key twice in one batch: the later one waits for the first one's result.
        firsts: dict[str, _Pending] = {}
        followers: list[tuple[_Pending, _Pending]] = []
        for item in batch:
            if item.op.key in firsts:
                followers.append((item, firsts[item.op.key]))
            else:
                firsts[item.op.key] = item
        items = list(firsts.values())
        now = _now()
        await self.ensure_wallets(i.op.user for i in items)

        # 1. pending entries; duplicates are replays of an earlier operation.
        fresh, dupes = await self._insert_pending(items, now)
        if dupes:
            await self._answer_replays(dupes)
        applied: list[Entry] = []
        if fresh:
            # 2. conditional wallet updates.
            ops = [
                UpdateOne(
                    _wallet_filter(i.op),
                    {
                        "$inc": {
                            "balance": i.op.delta,
                            "held": i.op.held_delta,
                            "available": i.op.delta - i.op.held_delta,
                        },
                        "$push": {"applied": {"$each": [[i.op.key, i.op.delta, i.op.held_delta]],
                                              "$slice": -APPLIED_WINDOW}},
                        "$set": {"updated_at": now},
                    },
                )
                for i in fresh
            ]
            await self._wallets.bulk_write(ops, ordered=False)
            # 3. read back: the wallet document says what happened.
            users = list({i.op.user for i in fresh})
            wallets = {d["_id"]: d async for d in self._wallets.find(
                {"_id": {"$in": users}}, {"balance": 1, "held": 1, "applied": 1})}
            finals: list[UpdateOne] = []
            refused: list[str] = []
            for item in fresh:
                after = _after(wallets.get(item.op.user), item.op.key)
                if after is None:
                    refused.append(item.op.key)
                    continue
                seq = time.time() + len(finals) * 1e-6
                finals.append(UpdateOne({"_id": item.op.key}, {"$set": {
                    "state": "applied", "balance_after": after[0], "held_after": after[1], "seq": seq}}))
                applied.append(Entry(item.op.key, item.op.user, item.op.delta, item.op.held_delta, after[0],
                                     after[1], item.op.kind, item.op.ref, now))
            # 4. settle the entries.
            if finals:
                await self._entries.bulk_write(finals, ordered=False)
            if refused:
                await self._entries.delete_many({"_id": {"$in": refused}, "state": "pending"})
            by_key = {e.key: e for e in applied}
            for item in fresh:
                entry = by_key.get(item.op.key)
                if entry is not None:
                    _resolve(item.future, entry)
                elif not item.future.done():
                    item.future.set_exception(_refusal(item.op, wallets.get(item.op.user)))
        for follower, first in followers:
            self._chain(follower, first)
        if applied and self._on_change is not None:
            try:
                await self._on_change(applied)
            except Exception:
                log.exception("ledger_listener_failed")

    def _chain(self, follower: _Pending, first: _Pending) -> None:
        def copy(done: asyncio.Future[Entry]) -> None:
            if follower.future.done():
                return
            if done.exception() is not None:
                follower.future.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                follower.future.set_result(_replayed(done.result()))

        first.future.add_done_callback(copy)

    async def _insert_pending(self, items: list[_Pending], now: dt.datetime) -> tuple[list[_Pending], list[_Pending]]:
        try:
            await self._entries.insert_many([_entry_doc(i.op, now) for i in items], ordered=False)
            return items, []
        except BulkWriteError as exc:
            dup_indexes = {e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000}
            other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if other:
                raise
            fresh = [i for n, i in enumerate(items) if n not in dup_indexes]
            dupes = [i for n, i in enumerate(items) if n in dup_indexes]
            return fresh, dupes

    async def _answer_replays(self, dupes: list[_Pending]) -> None:
        keys = [d.op.key for d in dupes]
        docs = {d["_id"]: d async for d in self._entries.find({"_id": {"$in": keys}})}
        retry: list[_Pending] = []
        for item in dupes:
            doc = docs.get(item.op.key)
            if doc is not None and doc.get("state") == "applied":
                if doc["user"] != item.op.user or doc["delta"] != item.op.delta:
                    item.future.set_exception(OperationInFlight("idempotency key reused for a different operation"))
                else:
                    _resolve(item.future, Entry.from_doc(doc, replayed=True))
            else:
                retry.append(item)
        if not retry:
            return
        # Pending elsewhere (another request in flight, or left by a crash): settle what the wallet
        # already decided, then try again a few times before answering `conflict`.
        await self.recover(keys=[i.op.key for i in retry], min_age_s=RECOVER_AFTER_S)
        for item in retry:
            item.attempts += 1
            if item.attempts > 20:
                item.future.set_exception(OperationInFlight())
            else:
                asyncio.get_running_loop().call_later(0.05 * item.attempts, self._requeue, item)

    def _requeue(self, item: _Pending) -> None:
        self._queue.append(item)
        self._wake.set()

    # -- crash recovery and proof -----------------------------------------------------------------
    async def _recover_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.recover(min_age_s=RECOVER_AFTER_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ledger_recover_failed")

    async def recover(self, *, keys: Sequence[str] | None = None, min_age_s: float = RECOVER_AFTER_S) -> int:
        """Settle pending entries: applied iff the wallet recorded the key. Returns how many were settled.

        With `keys`, only those (entries younger than `min_age_s` included when they are already in
        the wallet's list — they were applied; a young entry not yet applied is left alone, it may be
        in flight on another node).
        """
        query: Doc = {"state": "pending"}
        cutoff = _now() - dt.timedelta(seconds=min_age_s)
        if keys is not None:
            query["_id"] = {"$in": list(keys)}
        else:
            query["created_at"] = {"$lt": cutoff}
        pending = await self._entries.find(query).to_list()
        if not pending:
            return 0
        users = list({p["user"] for p in pending})
        wallets = {d["_id"]: d async for d in self._wallets.find({"_id": {"$in": users}})}
        settled = 0
        for doc in pending:
            after = _after(wallets.get(doc["user"]), doc["_id"])
            if after is not None:
                await self._entries.update_one(
                    {"_id": doc["_id"], "state": "pending"},
                    {"$set": {"state": "applied", "balance_after": after[0], "held_after": after[1],
                              "seq": doc["created_at"].timestamp()}},
                )
                settled += 1
            elif doc["created_at"] < cutoff:
                await self._entries.delete_one({"_id": doc["_id"], "state": "pending"})
                settled += 1
        if settled:
            log.info("ledger_recovered", settled=settled)
        return settled

    async def reconcile(self, *, settle: bool = True) -> ReconcileReport:
        """Prove balance == Σ delta and held == Σ held_delta for every wallet; report any that differ."""
        resolved = await self.recover(min_age_s=0.0) if settle else 0
        sums: dict[str, tuple[int, int, int]] = {}
        pipeline: list[Doc] = [
            {"$match": {"state": "applied"}},
            {"$group": {"_id": "$user", "delta": {"$sum": "$delta"}, "held": {"$sum": "$held_delta"},
                        "n": {"$sum": 1}}},
        ]
        async for row in await self._entries.aggregate(pipeline):
            sums[row["_id"]] = (int(row["delta"]), int(row["held"]), int(row["n"]))
        report = ReconcileReport(wallets=0, entries=sum(v[2] for v in sums.values()), pending_resolved=resolved)
        seen: set[str] = set()
        async for wallet in self._wallets.find({}, {"balance": 1, "held": 1}):
            report.wallets += 1
            user = wallet["_id"]
            seen.add(user)
            delta, held, _ = sums.get(user, (0, 0, 0))
            if int(wallet["balance"]) != delta or int(wallet["held"]) != held:
                report.discrepancies.append(Discrepancy(user, int(wallet["balance"]), delta, int(wallet["held"]), held))
        for user, (delta, held, _) in sums.items():
            if user not in seen:
                report.discrepancies.append(Discrepancy(user, 0, delta, 0, held))
        return report

    async def audit(self, *, passes: int = 3, pause_s: float = 0.5) -> ReconcileReport:
        """`reconcile()` that is safe while other nodes are writing.

        Settles only what is already decided — pending entries the wallet recorded (whatever their
        age) and pending entries older than RECOVER_AFTER_S — never a young one that may still be in
        flight. A batch can land between reading the entries and reading the wallets, so a wallet
        that differs is only reported if it still differs after `passes` attempts.
        """
        resolved = 0
        report = ReconcileReport(wallets=0, entries=0, pending_resolved=0)
        for attempt in range(max(1, passes)):
            if attempt:
                await asyncio.sleep(pause_s)
            resolved += await self.recover()
            keys = [d["_id"] async for d in self._entries.find({"state": "pending"}, {"_id": 1})]
            if keys:
                resolved += await self.recover(keys=keys)
            report = await self.reconcile(settle=False)
            if report.ok:
                break
        report.pending_resolved = resolved
        return report


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidPayload("amount must be a positive integer")


def _entry_doc(op: Op, now: dt.datetime) -> Doc:
    doc: Doc = {"_id": op.key, "user": op.user, "delta": op.delta, "held_delta": op.held_delta,
                "kind": op.kind, "ref": op.ref, "state": "pending", "created_at": now}
    if op.meta:
        doc["meta"] = op.meta
    return doc


def _wallet_filter(op: Op) -> Doc:
    query: Doc = {"_id": op.user}
    if op.condition == "available":
        query["available"] = {"$gte": op.need}
    elif op.condition == "held":
        query["held"] = {"$gte": op.need}
    return query


def _after(wallet: Doc | None, key: str) -> tuple[int, int] | None:
    """(balance, held) right after `key` was applied, walking back from the wallet's current figures."""
    if wallet is None:
        return None
    balance, held = int(wallet["balance"]), int(wallet["held"])
    for k, delta, held_delta in reversed(wallet.get("applied", [])):
        if k == key:
            return balance, held
        balance -= int(delta)
        held -= int(held_delta)
    return None


def _refusal(op: Op, wallet: Doc | None) -> Exception:
    if op.condition == "held":
        return InsufficientCredits("not enough credits on hold")
    available = int(wallet.get("available", 0)) if wallet else 0
    return InsufficientCredits(f"needs {op.need} credits, {available} available")


def _resolve(future: asyncio.Future[Entry], entry: Entry) -> None:
    if not future.done():
        future.set_result(entry)


def _replayed(entry: Entry) -> Entry:
    return Entry(entry.key, entry.user, entry.delta, entry.held_delta, entry.balance_after, entry.held_after,
                 entry.kind, entry.ref, entry.created_at, replayed=True)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db["ledger"].create_index([("user", 1), ("seq", -1)])
    await db["ledger"].create_index([("state", 1), ("created_at", 1)])
    await db["ledger"].create_index("meta.hold", sparse=True)
