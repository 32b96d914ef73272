"""Turns committed ledger entries into account events (PROTOCOL.md): `wallet:updated` to a user for
every entry that moved their wallet, `earnings:updated` to a creator as they earn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from billing import accounts
from billing.ledger import Entry

log = structlog.get_logger(__name__)

AccountEmit = Callable[[str, str, Any], Awaitable[None]]
Balances = Callable[[list[str]], Awaitable[dict[str, int]]]


class WalletEvents:
    """Ledger listener: `wallet:updated` when an entry moved a wallet's balance or hold.

    Hears a committed batch at a time; consecutive movements of one wallet for the same reason in a
    batch (a burst of messages) become one event with the summed delta and the final figures, so a
    busy sender gets one update per batch rather than one per message. Different reasons stay
    separate events, in order.
    """

    def __init__(self, emit: AccountEmit) -> None:
        self._emit = emit

    async def __call__(self, entries: Sequence[Entry]) -> None:
        pending: dict[str, dict[str, Any]] = {}
        out: list[tuple[str, dict[str, Any]]] = []
        for entry in entries:
            for p in entry.postings:
                user = accounts.owner(p.account)
                if user is None or not p.account.startswith("wallet:") or not (p.delta or p.held):
                    continue
                event = pending.get(user)
                if event is not None and event["reason"] != entry.kind:
                    out.append((user, pending.pop(user)))
                    event = None
                if event is None:
                    event = pending[user] = {"balance": 0, "delta": 0, "reason": entry.kind, "held": 0,
                                             "available": 0, "ref": entry.ref}
                event.update(balance=p.balance_after + p.held_after, held=p.held_after,
                             available=p.balance_after, ref=entry.ref)
                event["delta"] += p.delta + p.held
        out.extend(pending.items())
        for user, event in out:
            await self._emit(user, "wallet:updated", event)


@dataclass
class _Pending:
    delta: int = 0
    reason: str = ""
    ref: str | None = None
    timer: asyncio.TimerHandle | None = None


class EarningsEvents:
    """Ledger listener: `earnings:updated {balance, delta, reason, ref}` to a creator's devices.

    At most one event per `interval_s` per creator: the first earning is sent at once, later ones
    within the interval are summed into one event at its end (a busy creator or a call's minute
    ticks never flood their devices). The balance is read when the event is sent (earnings accounts
    are sharded, so no single posting knows the total).
    """

    def __init__(self, emit: AccountEmit, balances: Balances, spawn: Callable[[Awaitable[None]], None], *,
                 interval_s: float = 1.0) -> None:
        self._emit = emit
        self._balances = balances
        self._spawn = spawn
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}

    async def __call__(self, entries: Sequence[Entry]) -> None:
        now = time.monotonic()
        due: list[str] = []
        for entry in entries:
            for p in entry.postings:
                if not p.account.startswith("earnings:") or p.delta == 0:
                    continue
                creator = accounts.owner(p.account) or ""
                pending = self._pending.setdefault(creator, _Pending())
                pending.delta += p.delta
                pending.reason, pending.ref = entry.kind, entry.ref
                if pending.timer is None and creator not in due:
                    wait = self._last.get(creator, 0.0) + self._interval_s - now
                    if wait <= 0:
                        due.append(creator)
                    else:
                        pending.timer = asyncio.get_running_loop().call_later(wait, self._flush_later, creator)
        if due:
            await self._flush(due)

    def _flush_later(self, creator: str) -> None:
        pending = self._pending.get(creator)
        if pending is not None:
            pending.timer = None
        self._spawn(self._flush([creator]))

    async def _flush(self, creators: list[str]) -> None:
        now = time.monotonic()
        batch = {c: self._pending.pop(c) for c in creators if c in self._pending}
        if not batch:
            return
        for c in batch:
            self._last[c] = now
        if len(self._last) > 100_000:
            self._last = {c: t for c, t in self._last.items() if now - t < self._interval_s}
        try:
            totals = await self._balances([accounts.earnings(c) for c in batch])
        except Exception:
            log.exception("earnings_balance_read_failed")
            return
        for creator, pending in batch.items():
            await self._emit(creator, "earnings:updated", {
                "balance": totals.get(accounts.earnings(creator), 0), "delta": pending.delta,
                "reason": pending.reason, "ref": pending.ref})
