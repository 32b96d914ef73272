"""Turns applied ledger entries into `wallet:updated` account events (PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from billing.ledger import Entry

AccountEmit = Callable[[str, str, Any], Awaitable[None]]


class WalletEvents:
    """Listener for `Ledger`: one `wallet:updated` per entry that moved the balance or the hold."""

    def __init__(self, emit: AccountEmit) -> None:
        self._emit = emit

    async def __call__(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            await self._emit(
                entry.user,
                "wallet:updated",
                {
                    "balance": entry.balance_after,
                    "delta": entry.delta,
                    "reason": entry.kind,
                    "held": entry.held_after,
                    "available": entry.available_after,
                },
            )
