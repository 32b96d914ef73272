"""Per-minute call billing on the ledger (DESIGN.md, Call billing).

- Before ringing, one minute at the call's rate is put on hold (`call:<id>:hold`): it cannot be spent
  on messages while the callee's phone rings, and is released if the call never connects.
- Minute 1 is captured from that hold at accept; minute n ≥ 2 is spent from the wallet at its
  boundary. Every minute's ledger key is `call:<call_id>:<n>`; the callee's earnings share (creators)
  and platform revenue are split by the ledger.
- A minute's fate is decided by the first transfer under its key: a charge, or a legless `call_void`
  entry when it could not be paid or the call ended before it began. Whoever ends a call voids the
  first minute that did not start, which fences off a late tick from the ticking node; whoever ticks
  and finds the void knows the call is over. So any node may end a call while another ticks it, and
  no minute is ever charged twice or charged after the call ended.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from billing.errors import InsufficientCredits, OperationInFlight
from billing.ledger import Entry, Ledger, Transfer, spend_transfer
from config.errors import NotFound

MINUTE_KIND = "call_minute"
VOID_KIND = "call_void"


def minute_key(call_id: str, minute: int) -> str:
    return f"call:{call_id}:{minute}"


def hold_key(call_id: str) -> str:
    return f"call:{call_id}:hold"


def charged(entry: Entry | None) -> int:
    """Credits a minute's entry took from the payer (0 for a void or a free minute)."""
    if entry is None or entry.kind != MINUTE_KIND or not entry.meta:
        return 0
    return int(entry.meta.get("credits", 0))


def minutes_started(accepted_ts: float, at_ts: float, interval_s: float) -> int:
    """Minutes begun by `at_ts` in a call accepted at `accepted_ts` (minute 1 begins at accept)."""
    return max(1, math.floor((at_ts - accepted_ts) / interval_s) + 1)


class CallBilling:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def available(self, user: str) -> int:
        return (await self.ledger.wallet(user)).available

    async def authorise(self, payer: str, call_id: str, rate: int) -> None:
        """Hold one minute (raises InsufficientCredits). Free calls hold nothing."""
        if rate > 0:
            await self.ledger.hold(payer, rate, hold_key(call_id), ref=call_id)

    async def release(self, call_id: str) -> None:
        with contextlib.suppress(NotFound):  # a free call: nothing was held
            await self.ledger.release(hold_key(call_id))

    async def charge(self, call_id: str, payer: str, minute: int, rate: int, media: str,
                     payee: str | None, share_pct: int) -> Entry | None:
        """Charge one minute, or void it when it cannot be paid. Returns the charge, or None if the
        minute is void (now or before: a replay answers what the key already decided)."""
        key = minute_key(call_id, minute)
        entry: Entry | None
        meta = {"call": call_id, "minute": minute, "media": media, "credits": rate}
        try:
            if rate == 0:
                free = Transfer(key, MINUTE_KIND, (), call_id, payer, meta=meta, strict=False)
                entry = await self.ledger.submit(free)
            elif minute == 1:
                entry = await self._capture(call_id, payer, rate, key, payee, share_pct, meta)
            else:
                entry = await self.ledger.spend(payer, rate, key, MINUTE_KIND, ref=call_id, meta=meta,
                                                payee=payee, share_pct=share_pct, strict=False)
        except InsufficientCredits:
            return await self.void(call_id, payer, minute)
        except OperationInFlight:
            entry = await self._decided(key)
        return entry if entry is not None and entry.kind == MINUTE_KIND else None

    async def charge_run(self, call_id: str, payer: str, minutes: range, rate: int, media: str,
                         payee: str | None, share_pct: int) -> tuple[list[Entry], bool]:
        """Charge consecutive minutes ≥ 2 at one rate in one go (an end catching up on unticked minutes).

        Returns the charges, in order, and whether all were charged; the first minute that could not be
        paid is voided. The transfers are queued back to back and applied in order on the payer's
        wallet, so at one rate a later minute is never paid when an earlier one was not.
        """
        transfers = []
        for minute in minutes:
            key = minute_key(call_id, minute)
            meta = {"call": call_id, "minute": minute, "media": media, "credits": rate}
            transfers.append(Transfer(key, MINUTE_KIND, (), call_id, payer, meta=meta, strict=False) if rate == 0
                             else spend_transfer(payer, rate, key, MINUTE_KIND, call_id, meta, payee, share_pct, (),
                                                 False))
        results = await self.ledger.submit_many(transfers)
        charges: list[Entry] = []
        for minute, result in zip(minutes, results, strict=True):
            entry: Entry | None
            if isinstance(result, InsufficientCredits):
                entry = await self.void(call_id, payer, minute)
            elif isinstance(result, OperationInFlight):
                entry = await self._decided(minute_key(call_id, minute))
            elif isinstance(result, BaseException):
                raise result  # settling again later charges from the first undecided minute
            else:
                entry = result
            if entry is None or entry.kind != MINUTE_KIND:
                return charges, False
            charges.append(entry)
        return charges, True

    async def void(self, call_id: str, payer: str, minute: int) -> Entry | None:
        """Decide that `minute` is not charged, unless a charge got there first (then return it)."""
        key = minute_key(call_id, minute)
        entry = await self.ledger.submit(Transfer(key, VOID_KIND, (), call_id, payer, meta={"call": call_id,
                                                                                           "minute": minute},
                                                  strict=False))
        return entry if entry.kind == MINUTE_KIND else None

    async def decided(self, call_id: str, upto: int) -> dict[int, Entry]:
        """The entries of minutes 1..upto that have been decided (charged or void)."""
        keys = {minute_key(call_id, n): n for n in range(1, upto + 1)}
        found = await self.ledger.get_entries(keys)
        return {keys[k]: e for k, e in found.items()}

    async def _capture(self, call_id: str, payer: str, rate: int, key: str, payee: str | None, share_pct: int,
                       meta: dict[str, Any]) -> Entry:
        try:
            entry = await self.ledger.capture(hold_key(call_id), rate, key, MINUTE_KIND, payee=payee,
                                              share_pct=share_pct, ref=call_id, meta=meta)
        except NotFound:  # no hold (it was released): pay from the wallet like any other minute
            return await self.ledger.spend(payer, rate, key, MINUTE_KIND, ref=call_id, meta=meta, payee=payee,
                                           share_pct=share_pct, strict=False)
        return entry

    async def _decided(self, key: str) -> Entry | None:
        return await self.ledger.get_entry(key)
