"""The credits ledger: double-entry transfers, group-committed, one transaction per batch.

Every credit movement is a `Transfer` between accounts (`billing.accounts`) whose deltas sum to
zero, keyed by its idempotency key. Transfers that arrive while the previous batch is being written
form the next batch (`billing.group_commit`). Per batch:

1. keys already in the ledger are answered from their entry (a replay: nothing moves);
2. the batch is planned in memory against the accounts' current state (a per-node cache, refreshed
   on a miss): each transfer in arrival order either applies — every checked leg keeps its account
   at or above zero — or is refused with `InsufficientCredits`; the plan yields each posting's
   balance after it, and each account's new state;
3. one multi-document transaction inserts the batch's entries (insert-only, `_id` = key, plus any
   attached documents such as the chat messages they pay for) and moves every touched account with
   one compare-and-set on its version `v` — one write per account per batch, however many
   transfers touched it. A version that moved (another node wrote the account) aborts the
   transaction; the batch re-reads those accounts and is planned again.

So there is no pending state and nothing to recover: a batch is durable entirely or not at all,
whatever instant the process is killed; an entry exists iff it was applied; balance == Σ postings
for every account and Σ balances == 0 at every commit, which `reconcile()` proves. Callers are
answered only after the commit, so an ack means durable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from bson.errors import BSONError
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from billing import accounts
from billing.errors import InsufficientCredits, OperationInFlight
from billing.group_commit import GroupCommit, Pending, chain, dedupe
from billing.writers import WriterSessions
from config.errors import AppError, InvalidPayload, NotFound, Unavailable

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
MAX_BATCH = 500
MAX_ATTEMPTS = 12
# Store errors about a document itself (bad value, too large, key too long, bad field name, type):
# only the transfer that carries it is refused.
_UNSTORABLE = frozenset({2, 14, 52, 10334, 17280})
_CACHE_MAX = 200_000


# -- what callers ask for -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Leg:
    account: str
    """A logical account (`billing.accounts`); sharded ones resolve to the payer's shard."""
    delta: int
    held: int = 0
    """Change of a wallet's `held` figure (credits of the wallet's owner sitting in call holds)."""
    checked: bool = False
    """Refuse the transfer if this leg would take the account's balance (or held) below zero."""


@dataclass(frozen=True, slots=True)
class Split:
    """`amount` paid to `payee` (an earnings account) at `pct` percent by the carry rule
    (`accounts.share`); the rest to platform revenue."""

    payee: str
    amount: int
    pct: int


@dataclass(frozen=True, slots=True)
class Transfer:
    key: str
    kind: str
    legs: tuple[Leg, ...]
    ref: str | None = None
    payer: str = ""
    """Whose shard of sharded accounts this transfer writes (see `billing.accounts`)."""
    splits: tuple[Split, ...] = ()
    meta: Doc | None = None
    attach: tuple[tuple[str, Doc], ...] = ()
    """(collection, document) inserted in the same transaction as the entry."""
    strict: bool = True
    """A replay must be the same operation (kind, first leg); else `OperationInFlight`."""


# -- what the ledger answers ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Posting:
    doc_id: str
    """The account document written (a shard for sharded accounts)."""
    delta: int
    held: int
    balance_after: int
    held_after: int

    @property
    def account(self) -> str:
        return accounts.logical(self.doc_id)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    kind: str
    ref: str | None
    postings: tuple[Posting, ...]
    created_at: dt.datetime
    meta: Doc | None = None
    replayed: bool = False
    """True when this result is the first application of a key seen again."""

    # The first posting is the primary one (the payer's or receiver's wallet, by convention).
    @property
    def primary(self) -> Posting:
        return self.postings[0] if self.postings else Posting("", 0, 0, 0, 0)

    @property
    def user(self) -> str:
        return accounts.owner(self.primary.account) or ""

    @property
    def delta(self) -> int:
        """The change of the primary account's total (for a wallet: available + held)."""
        return self.primary.delta + self.primary.held

    @property
    def held_delta(self) -> int:
        return self.primary.held

    @property
    def balance_after(self) -> int:
        """A wallet's total credits after this entry: available + held (what users see as balance)."""
        p = self.primary
        return p.balance_after + p.held_after

    @property
    def held_after(self) -> int:
        return self.primary.held_after

    @property
    def available_after(self) -> int:
        return self.primary.balance_after

    def posting(self, account: str) -> Posting | None:
        for p in self.postings:
            if p.account == account:
                return p
        return None

    def view(self, account: str) -> Doc:
        """The entry as the owner of `account` lists it."""
        p = self.posting(account) or Posting(account, 0, 0, 0, 0)
        out: Doc = {"id": self.key, "delta": p.delta + p.held, "kind": self.kind, "ref": self.ref,
                    "created_at": self.created_at.isoformat()}
        if account.startswith("wallet:"):
            out.update(held_delta=p.held, balance_after=p.balance_after + p.held_after, held_after=p.held_after)
        elif not accounts.is_sharded(account):
            out["balance_after"] = p.balance_after
        return out

    def public(self) -> Doc:
        return self.view(self.primary.account)

    def with_replayed(self) -> Entry:
        return Entry(self.key, self.kind, self.ref, self.postings, self.created_at, self.meta, replayed=True)

    @classmethod
    def from_doc(cls, doc: Doc, replayed: bool = False) -> Entry:
        postings = tuple(Posting(str(p[0]), int(p[1]), int(p[2]), int(p[3]), int(p[4])) for p in doc.get("p", ()))
        created = dt.datetime.fromtimestamp(float(doc["t"]), dt.UTC)
        return cls(doc["_id"], doc["k"], doc.get("ref"), postings, created, doc.get("meta"), replayed)


@dataclass(frozen=True, slots=True)
class Wallet:
    user: str
    available: int
    held: int

    @property
    def balance(self) -> int:
        return self.available + self.held


@dataclass(slots=True)
class _State:
    v: str | None
    """The version token of the last write (a batch attempt's id); None: the account does not exist yet."""
    balance: int
    held: int
    gross: int

    def copy(self) -> _State:
        return _State(self.v, self.balance, self.held, self.gross)


@dataclass
class Discrepancy:
    account: str
    balance: int
    ledger_sum: int
    held: int
    ledger_held_sum: int

    @property
    def user(self) -> str:  # older reports named wallets by user
        return accounts.owner(self.account) or self.account


@dataclass
class ReconcileReport:
    accounts: int
    entries: int
    total: int = 0
    """Σ balances over every account: 0 when the books balance."""
    unbalanced: list[str] = field(default_factory=list)
    """Transfers whose postings do not sum to zero."""
    discrepancies: list[Discrepancy] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    """Balance per account family (wallets, earnings, platform:revenue, ...)."""

    @property
    def ok(self) -> bool:
        return not self.discrepancies and not self.unbalanced and self.total == 0

    @property
    def wallets(self) -> int:
        return self.accounts


ChangeListener = Callable[[Sequence[Entry]], Awaitable[None]]


class _Stale(Exception):
    """An account moved since it was read: re-read and plan again."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Ledger:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        signup_bonus: int = 0,
        on_change: ChangeListener | None = None,
        max_batch: int = MAX_BATCH,
        exclusive: bool = False,
        writer_beat_s: float = 5.0,
        writer_stale_s: float = 15.0,
    ) -> None:
        """`exclusive`: this process is the only writer (one node, no Redis) — see `billing.writers`."""
        self._db = db
        self._entries = db["ledger"]
        self._accounts = db["ledger_accounts"]
        self._signup_bonus = signup_bonus
        self._listeners: list[ChangeListener] = [on_change] if on_change else []
        self._cache: dict[str, _State] = {}
        self._writers = WriterSessions(db, exclusive=exclusive, beat_every_s=writer_beat_s,
                                       stale_after_s=writer_stale_s)
        self._last_t = 0.0
        self._engine: GroupCommit[Transfer, Entry] = GroupCommit(
            "ledger", self._commit, max_batch=max_batch,
            on_error=lambda exc: exc if isinstance(exc, AppError) else Unavailable("ledger unavailable; retry"))
        # Listeners (wallet and earnings events) hear each batch in commit order, from their own runner.
        self._notices: GroupCommit[list[Entry], None] = GroupCommit("ledger-notices", self._notify, max_batch=64)
        self.conflicts = 0

    def set_signup_bonus(self, bonus: int) -> None:
        """Runtime pricing: wallets opened from now on get `bonus` (opened ones keep theirs)."""
        self._signup_bonus = bonus

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    @property
    def batches(self) -> int:
        return self._engine.batches

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._writers.start()
        await self._notices.start()
        await self._engine.start()

    async def stop(self) -> None:
        await self._engine.stop()
        await self._notices.stop()
        await self._writers.stop()

    async def _notify(self, batches: list[Pending[list[Entry], None]]) -> None:
        entries = [e for p in batches for e in p.item]
        for listener in self._listeners:
            try:
                await listener(entries)
            except Exception:
                log.exception("ledger_listener_failed")

    # -- operations -------------------------------------------------------------------------------
    async def submit(self, transfer: Transfer) -> Entry:
        if not transfer.key or len(transfer.key) > 200:
            raise InvalidPayload("idempotency key must be 1..200 characters")
        return await self._engine.submit(transfer)

    async def submit_many(self, transfers: Sequence[Transfer]) -> list[Entry | BaseException]:
        """Transfers queued back to back and applied in this order (each answers alone: an entry or
        the error it raised) — one wallet's call minutes, where a later one must not pass an earlier one."""
        for t in transfers:
            if not t.key or len(t.key) > 200:
                raise InvalidPayload("idempotency key must be 1..200 characters")
        return await self._engine.submit_many(transfers)

    async def credit(self, user: str, amount: int, key: str, kind: str, ref: str | None = None,
                     meta: Doc | None = None, *, source: str = accounts.PLATFORM_PROMOTIONS) -> Entry:
        """Give `user` credits from `source` (a purchase's clearing account, promotions, ...)."""
        _positive(amount)
        return await self.submit(Transfer(key, kind, (Leg(accounts.wallet(user), amount), Leg(source, -amount)),
                                          ref, user, meta=meta))

    async def spend(self, user: str, amount: int, key: str, kind: str, ref: str | None = None,
                    meta: Doc | None = None, *, payee: str | None = None, share_pct: int = 0,
                    attach: tuple[tuple[str, Doc], ...] = (), strict: bool = True) -> Entry:
        """Take `amount` from the available balance, or raise InsufficientCredits.

        With `payee` (an earnings account) `share_pct` percent goes there by the carry rule and the
        rest to platform revenue; without, everything goes to platform revenue.
        """
        _positive(amount)
        return await self.submit(spend_transfer(user, amount, key, kind, ref, meta, payee, share_pct, attach,
                                                 strict))

    async def adjust(self, user: str, delta: int, key: str, kind: str, ref: str | None = None,
                     meta: Doc | None = None, *, counter: str = accounts.PLATFORM_PROMOTIONS) -> Entry:
        """Unconditional correction (refund, dispute, admin): may take the wallet below zero."""
        if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
            raise InvalidPayload("delta must be a non-zero integer")
        return await self.submit(Transfer(key, kind, (Leg(accounts.wallet(user), delta), Leg(counter, -delta)),
                                          ref, user, meta=meta))

    async def hold(self, user: str, amount: int, key: str, ref: str | None = None) -> Entry:
        """Reserve `amount` of the available balance in the hold account `hold:<key>` (a call)."""
        _positive(amount)
        return await self.submit(Transfer(key, "hold", (
            Leg(accounts.wallet(user), -amount, held=amount, checked=True), Leg(accounts.hold(key), amount)),
            ref, user, meta={"hold": key}))

    async def capture(self, hold_key: str, amount: int, key: str, kind: str = "capture", *,
                      payee: str | None = None, share_pct: int = 0, ref: str | None = None,
                      meta: Doc | None = None) -> Entry:
        """Charge `amount` out of a hold (never more than it has left), split like `spend`."""
        _positive(amount)
        user = await self._hold_owner(hold_key)
        legs: tuple[Leg, ...] = (Leg(accounts.wallet(user), 0, held=-amount, checked=True),
                Leg(accounts.hold(hold_key), -amount, checked=True))
        split = (Split(payee, amount, share_pct),) if payee else ()
        if not payee:
            legs += (Leg(accounts.PLATFORM_REVENUE, amount),)
        return await self.submit(Transfer(key, kind, legs, ref, user, split, {**(meta or {}), "hold": hold_key}))

    async def release(self, hold_key: str, key: str | None = None) -> Entry | None:
        """Return whatever is left of a hold to the available balance. None if nothing was left."""
        user = await self._hold_owner(hold_key)
        left = await self.hold_remaining(hold_key)
        if left <= 0:
            return None
        return await self.submit(Transfer(key or f"{hold_key}:release", "release", (
            Leg(accounts.wallet(user), left, held=-left, checked=True),
            Leg(accounts.hold(hold_key), -left, checked=True)), None, user, meta={"hold": hold_key}))

    async def hold_remaining(self, hold_key: str) -> int:
        doc = await self._accounts.find_one({"_id": accounts.hold(hold_key)}, {"balance": 1})
        return int(doc["balance"]) if doc else 0

    async def _hold_owner(self, hold_key: str) -> str:
        entry = await self.get_entry(hold_key)
        if entry is None or entry.kind != "hold":
            raise NotFound("no such hold")
        return entry.user

    # -- reading ----------------------------------------------------------------------------------
    async def wallet(self, user: str) -> Wallet:
        """The user's wallet, opening it (with the signup bonus, once) on first use."""
        doc = await self._accounts.find_one({"_id": accounts.wallet(user)})
        if doc is None and self._signup_bonus > 0:
            await self.submit(self._signup(user))
            doc = await self._accounts.find_one({"_id": accounts.wallet(user)})
        if doc is None:
            return Wallet(user, 0, 0)
        state = _State(str(doc["v"]), int(doc["balance"]), int(doc.get("held", 0)), int(doc.get("gross", 0)))
        self._cache[accounts.wallet(user)] = state
        return Wallet(user, state.balance, state.held)

    async def peek_wallet(self, user: str) -> Wallet | None:
        """The wallet if it was ever opened; unlike `wallet`, never opens it (operators' reads)."""
        doc = await self._accounts.find_one({"_id": accounts.wallet(user)})
        return None if doc is None else Wallet(user, int(doc["balance"]), int(doc.get("held", 0)))

    def cached_balance(self, user: str) -> int | None:
        """This node's last known total balance of a wallet (no store access; may lag other nodes)."""
        state = self._cache.get(accounts.wallet(user))
        return None if state is None else state.balance + state.held

    async def balance(self, account: str) -> int:
        """An account's balance (the sum of its shards for a sharded account)."""
        docs = self._accounts.find({"_id": {"$in": accounts.shards(account)}}, {"balance": 1})
        return sum([int(d["balance"]) async for d in docs])

    async def balances(self, names: Iterable[str]) -> dict[str, int]:
        wanted = list(set(names))
        ids = [s for a in wanted for s in accounts.shards(a)]
        out = dict.fromkeys(wanted, 0)
        async for d in self._accounts.find({"_id": {"$in": ids}}, {"balance": 1}):
            name = accounts.logical(d["_id"])
            if name in out:
                out[name] += int(d["balance"])
        return out

    async def shard_balances(self, account: str) -> dict[str, int]:
        return {d["_id"]: int(d["balance"])
                async for d in self._accounts.find({"_id": {"$in": accounts.shards(account)}}, {"balance": 1})}

    async def entries(self, user: str, *, before: str | None = None, limit: int = 50) -> tuple[list[Entry], str | None]:
        """A wallet's entries, newest first (see `account_entries`)."""
        return await self.account_entries(accounts.wallet(user), before=before, limit=limit)

    async def account_entries(self, account: str, *, before: str | None = None,
                              limit: int = 50) -> tuple[list[Entry], str | None]:
        """Entries that moved a listed account, newest first; the cursor is the last entry's `t`."""
        query: Doc = {"u": account}
        if before is not None:
            try:
                query["t"] = {"$lt": float(before)}
            except ValueError:
                raise InvalidPayload("bad cursor") from None
        docs = await self._entries.find(query).sort("t", -1).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        cursor = repr(docs[-1]["t"]) if more and docs else None
        return [Entry.from_doc(d) for d in docs], cursor

    async def get_entry(self, key: str) -> Entry | None:
        doc = await self._entries.find_one({"_id": key})
        return Entry.from_doc(doc) if doc else None

    async def get_entries(self, keys: Iterable[str]) -> dict[str, Entry]:
        wanted = list(set(keys))
        if not wanted:
            return {}
        return {d["_id"]: Entry.from_doc(d) async for d in self._entries.find({"_id": {"$in": wanted}})}

    def _signup(self, user: str) -> Transfer:
        bonus = self._signup_bonus
        return Transfer(f"signup:{user}", "signup_bonus",
                        (Leg(accounts.wallet(user), bonus), Leg(accounts.PLATFORM_PROMOTIONS, -bonus)), None, user)

    # -- one batch --------------------------------------------------------------------------------
    async def _commit(self, batch: list[Pending[Transfer, Entry]]) -> None:
        firsts, followers = dedupe(batch, lambda t: t.key)
        for follower, first in followers:
            chain(follower, first, Entry.with_replayed)
        await self._commit_isolated(firsts)

    async def _commit_isolated(self, live: list[Pending[Transfer, Entry]]) -> None:
        """Commit `live`; if the store refuses the batch for a reason no retry cures (a document it
        cannot store), split it and commit the halves, so one bad transfer fails alone."""
        try:
            await self._commit_live(live)
        except (BSONError, OperationFailure, ValueError) as exc:
            if isinstance(exc, OperationFailure) and exc.code not in _UNSTORABLE:
                raise
            if len(live) == 1:
                log.warning("ledger_transfer_refused_by_store", key=live[0].item.key[:80], error=str(exc)[:200])
                live[0].fail(InvalidPayload("this operation cannot be stored"))
                return
            self._forget(live)
            half = len(live) // 2
            await self._commit_isolated(live[:half])
            await self._commit_isolated(live[half:])

    async def _commit_live(self, live: list[Pending[Transfer, Entry]]) -> None:
        # Keys seen before are found by the entries insert itself (a duplicate key aborts the
        # attempt, which then answers them as replays): no lookup per batch for the rare resend.
        committed: list[Entry] = []
        attempt = 0
        while live:
            attempt += 1
            batch_id = secrets.token_hex(8)
            try:
                committed = await self._attempt(live, batch_id)
                break
            except (_Stale, DuplicateKeyError, BulkWriteError, OperationFailure, ConnectionFailure) as exc:
                self.conflicts += 1
                log.debug("ledger_batch_retry", reason=type(exc).__name__, code=getattr(exc, "code", None),
                          attempt=attempt)
                if not isinstance(exc, (_Stale, BulkWriteError, DuplicateKeyError, ConnectionFailure)) \
                        and not _retryable(exc):
                    raise
                self._forget(live)
                if attempt >= MAX_ATTEMPTS:
                    for p in live:
                        p.fail(OperationInFlight("the ledger is busy with the same accounts; retry"))
                    return
                await asyncio.sleep(random.uniform(0.0, 0.005 * 2 ** min(attempt, 6)))
                # A duplicate key is a transfer committed meanwhile (elsewhere, or by this attempt if
                # its commit outcome was lost): answer those, plan the rest again.
                live = await self._answer_replays(live, batch_id=batch_id)
        if committed and self._listeners:
            self._notices.offer(committed)  # off the commit path: the next batch starts at once
            if not self._notices.running:  # tools and scripts without start()
                await self._notices.flush()

    async def _answer_replays(self, items: list[Pending[Transfer, Entry]],
                              batch_id: str | None) -> list[Pending[Transfer, Entry]]:
        """Answer items whose key is already in the ledger; return the rest."""
        found = {d["_id"]: d async for d in self._entries.find({"_id": {"$in": [p.item.key for p in items]}})}
        if not found:
            return items
        rest: list[Pending[Transfer, Entry]] = []
        for p in items:
            doc = found.get(p.item.key)
            if doc is None:
                rest.append(p)
                continue
            entry = Entry.from_doc(doc, replayed=doc.get("b") != batch_id or batch_id is None)
            if p.item.strict and not _same_operation(p.item, entry):
                p.fail(OperationInFlight("idempotency key reused for a different operation"))
            else:
                p.resolve(entry)
        return rest

    async def _attempt(self, live: list[Pending[Transfer, Entry]], batch_id: str) -> list[Entry]:
        transfers = [p.item for p in live]
        states, cached = await self._load(transfers)
        plan = _Plan(states, self._signup_bonus, self._signup, self._tick, batch_id)
        outcomes = [plan.apply(t) for t in transfers]
        # A refusal is final only if decided on what the store holds: a write is checked against the
        # stored version, a refusal writes nothing — so one planned on this node's cached state (which
        # another node may have moved since: a purchase, a hold placed there) is planned again on fresh
        # reads. Found by a two-node load run: a capture refused on a stale cached wallet.
        stale = {acc for t, o in zip(transfers, outcomes, strict=True) if isinstance(o, InsufficientCredits)
                 for acc in _touched(t) if acc in cached}
        if stale:
            for acc in stale:
                self._cache.pop(acc, None)
            states, _ = await self._load(transfers)
            plan = _Plan(states, self._signup_bonus, self._signup, self._tick, batch_id)
            outcomes = [plan.apply(t) for t in transfers]
        # A key already applied is answered with its entry even when its operation could not be paid
        # now (a resend after the credits were spent): replays are otherwise found by the insert, and a
        # refused transfer inserts nothing. Refusals write nothing, so dropping the answered ones from
        # the batch leaves the plan of the others as it is.
        refused = [p for p, o in zip(live, outcomes, strict=True) if isinstance(o, InsufficientCredits)]
        if refused:
            still = {id(p) for p in await self._answer_replays(refused, batch_id=None)}
            answered = {id(p) for p in refused} - still
            if answered:
                kept = [i for i, p in enumerate(live) if id(p) not in answered]
                live = [live[i] for i in kept]
                transfers = [transfers[i] for i in kept]
                outcomes = [outcomes[i] for i in kept]
        if not plan.docs:  # everything refused
            for p, outcome in zip(live, outcomes, strict=True):
                assert isinstance(outcome, Exception)
                p.fail(outcome)
            return []
        now = _now()
        for doc in plan.docs:
            doc["b"] = batch_id
        # Compare-and-set on the version token each account had when planned; a new account must
        # still be absent (its upsert collides with a concurrent creation as a duplicate key).
        writes = [
            UpdateOne({"_id": acc, "v": plan.start[acc] if plan.start[acc] is not None else {"$exists": False}},
                      {"$set": {"v": s.v, "balance": s.balance, "held": s.held, "gross": s.gross, "at": now}},
                      upsert=plan.start[acc] is None)
            for acc, s in plan.states.items() if s.v != plan.start[acc]
        ]
        attach: dict[str, list[Doc]] = {}
        for t, outcome in zip(transfers, outcomes, strict=True):
            if isinstance(outcome, Entry):
                for coll, doc in t.attach:
                    attach.setdefault(coll, []).append(doc)
        async with self._db.client.start_session() as session:
            await self._writers.register(session)
            async with await session.start_transaction():
                await self._entries.insert_many(plan.docs, ordered=True, session=session)
                for coll, docs in attach.items():
                    await self._db[coll].insert_many(docs, ordered=True, session=session)
                if writes:
                    result = await self._accounts.bulk_write(writes, ordered=True, session=session)
                    if result.matched_count + result.upserted_count != len(writes):
                        raise _Stale()
        for acc, s in plan.states.items():
            self._cache[acc] = s
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        committed: list[Entry] = []
        for p, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Entry):
                entry = Entry(outcome.key, outcome.kind, outcome.ref, outcome.postings, now, outcome.meta)
                committed.append(entry)
                p.resolve(entry)
            else:
                p.fail(outcome)
        return plan.extra_entries(now) + committed

    def _tick(self) -> float:
        t = max(time.time(), self._last_t + 1e-6)
        self._last_t = t
        return t

    async def _load(self, transfers: Sequence[Transfer]) -> tuple[dict[str, _State | None], set[str]]:
        """The accounts' states, and which of them came from this node's cache (not read now)."""
        ids = {acc for t in transfers for acc in _touched(t)}
        states: dict[str, _State | None] = {}
        cached: set[str] = set()
        missing = []
        for acc in ids:
            hit = self._cache.get(acc)
            if hit is None:
                missing.append(acc)
                states[acc] = None
            else:
                states[acc] = hit.copy()
                cached.add(acc)
        if missing:
            async for d in self._accounts.find({"_id": {"$in": missing}}):
                states[d["_id"]] = _State(str(d["v"]), int(d["balance"]), int(d.get("held", 0)),
                                          int(d.get("gross", 0)))
        return states, cached

    def _forget(self, live: Iterable[Pending[Transfer, Entry]]) -> None:
        for p in live:
            for acc in _touched(p.item):
                self._cache.pop(acc, None)

    # -- proof ------------------------------------------------------------------------------------
    async def reconcile(self) -> ReconcileReport:
        """Prove Σ postings == balance (and held) for every account, Σ balances == 0, and every
        transfer balanced. Reads entries, then accounts: exact when nothing writes meanwhile (see
        `audit` for a live system)."""
        sums: dict[str, list[int]] = {}
        report = ReconcileReport(accounts=0, entries=0)
        # Small batches: each getMore stays short, so a busy store still answers its monitor.
        async for doc in self._entries.find({}, {"p": 1}, batch_size=2000):
            report.entries += 1
            total = 0
            for acc, d, h, *_ in doc.get("p", ()):
                s = sums.setdefault(acc, [0, 0])
                s[0] += int(d)
                s[1] += int(h)
                total += int(d)
            if total != 0:
                report.unbalanced.append(str(doc["_id"]))
        seen: set[str] = set()
        async for acc in self._accounts.find({}, {"balance": 1, "held": 1}):
            report.accounts += 1
            name = acc["_id"]
            seen.add(name)
            balance, held = int(acc["balance"]), int(acc.get("held", 0))
            report.total += balance
            family = _family(accounts.logical(name))
            report.totals[family] = report.totals.get(family, 0) + balance
            d, h = sums.get(name, [0, 0])
            if balance != d or held != h:
                report.discrepancies.append(Discrepancy(name, balance, d, held, h))
        for name, (d, h) in sums.items():
            if name not in seen and (d or h):
                report.discrepancies.append(Discrepancy(name, 0, d, 0, h))
        return report

    async def audit(self, *, passes: int = 5, pause_s: float = 0.3) -> ReconcileReport:
        """`reconcile()` while other nodes write: a batch can commit between reading the entries and
        reading the accounts, so a difference counts only if it persists over `passes` attempts."""
        report = await self.reconcile()
        for _ in range(max(0, passes - 1)):
            if report.ok:
                break
            await asyncio.sleep(pause_s)
            report = await self.reconcile()
        return report


class _Plan:
    """A batch applied in memory: postings, refusals, and each account's state after the batch."""

    def __init__(self, states: dict[str, _State | None], bonus: int, signup: Callable[[str], Transfer],
                 tick: Callable[[], float], token: str) -> None:
        self.start: dict[str, str | None] = {a: (s.v if s else None) for a, s in states.items()}
        self.states: dict[str, _State] = {a: (s or _State(None, 0, 0, 0)) for a, s in states.items()}
        self._exists = {a for a, s in states.items() if s is not None and s.v is not None}
        self._token = token
        self._bonus = bonus
        self._signup = signup
        self._tick = tick
        self.docs: list[Doc] = []
        self._extra: list[Entry] = []

    def _state(self, acc: str) -> _State:
        state = self.states.get(acc)
        if state is None:  # not loaded: only reachable for accounts `_touched` lists, so never
            state = self.states[acc] = _State(None, 0, 0, 0)
            self.start[acc] = None
        return state

    def apply(self, t: Transfer) -> Entry | Exception:
        # A wallet seen for the first time opens with the signup bonus, as its own transfer first.
        if self._bonus > 0 and not t.key.startswith("signup:"):
            for leg in t.legs:
                if leg.account.startswith("wallet:") and leg.account not in self._exists:
                    self._exists.add(leg.account)
                    opened = self.apply(self._signup(leg.account[len("wallet:"):]))
                    if isinstance(opened, Entry):
                        self._extra.append(opened)
        moves: list[tuple[str, int, int, bool]] = [
            (accounts.shard_of(leg.account, t.payer), leg.delta, leg.held, leg.checked) for leg in t.legs]
        gross: list[tuple[str, int]] = []
        for s in t.splits:
            payee = accounts.shard_of(s.payee, t.payer)
            part = accounts.share(self._state(payee).gross, s.amount, s.pct)
            gross.append((payee, s.amount))
            moves.append((payee, part, 0, False))
            moves.append((accounts.shard_of(accounts.PLATFORM_REVENUE, t.payer), s.amount - part, 0, False))
        if sum(d for _, d, _, _ in moves) != 0:
            return InvalidPayload("transfer does not balance")
        # Check every checked leg against the state before anything moves.
        trial: dict[str, tuple[int, int]] = {}
        for acc, d, h, checked in moves:
            b0, h0 = trial.get(acc, (self._state(acc).balance, self._state(acc).held))
            trial[acc] = (b0 + d, h0 + h)
            if not checked:
                continue
            if (h < 0 and h0 + h < 0) or (d < 0 and b0 + d < 0 and acc.startswith("hold:")):
                return InsufficientCredits("not enough credits on hold")
            if d < 0 and b0 + d < 0:
                return InsufficientCredits(f"needs {-d} credits, {b0} available")
        postings: list[Posting] = []
        for acc, d, h, _ in moves:
            state = self._state(acc)
            state.v = self._token  # one new version per account per batch: this attempt's token
            state.balance += d
            state.held += h
            self._exists.add(acc)
            if d or h or acc.startswith("wallet:"):
                postings.append(Posting(acc, d, h, state.balance, state.held))
        for payee, amount in gross:
            self._state(payee).gross += amount
        doc: Doc = {"_id": t.key, "k": t.kind, "ref": t.ref, "t": self._tick(),
                    "p": [[p.doc_id, p.delta, p.held, p.balance_after, p.held_after] for p in postings],
                    "u": sorted({p.account for p in postings if accounts.is_listed(p.account)})}
        if t.meta:
            doc["meta"] = t.meta
        self.docs.append(doc)
        return Entry(t.key, t.kind, t.ref, tuple(postings), _now(), t.meta)

    def extra_entries(self, now: dt.datetime) -> list[Entry]:
        return [Entry(e.key, e.kind, e.ref, e.postings, now, e.meta) for e in self._extra]


def spend_transfer(user: str, amount: int, key: str, kind: str, ref: str | None, meta: Doc | None,
                    payee: str | None, share_pct: int, attach: tuple[tuple[str, Doc], ...], strict: bool) -> Transfer:
    legs: tuple[Leg, ...] = (Leg(accounts.wallet(user), -amount, checked=True),)
    splits: tuple[Split, ...] = ()
    if payee:
        splits = (Split(payee, amount, share_pct),)
    else:
        legs += (Leg(accounts.PLATFORM_REVENUE, amount),)
    return Transfer(key, kind, legs, ref, user, splits, meta, attach, strict)


def _touched(t: Transfer) -> set[str]:
    """Every account document a transfer may write (the signup bonus's source included)."""
    ids = {accounts.shard_of(leg.account, t.payer) for leg in t.legs}
    for s in t.splits:
        ids.add(accounts.shard_of(s.payee, t.payer))
        ids.add(accounts.shard_of(accounts.PLATFORM_REVENUE, t.payer))
    for leg in t.legs:
        if leg.account.startswith("wallet:"):
            ids.add(accounts.shard_of(accounts.PLATFORM_PROMOTIONS, leg.account[len("wallet:"):]))
    return ids


def _same_operation(t: Transfer, entry: Entry) -> bool:
    if t.kind != entry.kind or not t.legs or not entry.postings:
        return t.kind == entry.kind
    first = t.legs[0]
    return entry.primary.account == accounts.logical(accounts.shard_of(first.account, t.payer)) and \
        entry.primary.delta == first.delta


def _retryable(exc: OperationFailure) -> bool:
    return exc.has_error_label("TransientTransactionError") or exc.code in (112, 11000, 251)


def _family(account: str) -> str:
    for prefix in ("wallet:", "earnings:", "payout:", "hold:", "platform:clearing:"):
        if account.startswith(prefix):
            return prefix.rstrip(":")
    return account


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidPayload("amount must be a positive integer")


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # Listing a user's wallet/earnings/payout entries, newest first. Platform legs are not indexed.
    await db["ledger"].create_index([("u", 1), ("t", -1)])
