"""The call service: lifecycle, relay and billing of `/call` (PROTOCOL.md), over the call store.

Every action is a compare-and-set on the call record, so it may run on any node; whoever wins an
end settles the call (billing, hold, slots, record) and emits `call:ended` once. The node that
accepted a call owns it and ticks its minutes on its timer wheel; another node takes a dead owner's
calls over (`_take_over`), and a single node without Redis settles what a previous process left
open at start-up (`_settle_leftovers`). `signaling.billing` explains why no minute is charged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from billing.creators import Creators
from billing.errors import InsufficientCredits
from billing.ledger import Entry
from config.errors import Blocked, Busy, Conflict, Forbidden, InvalidPayload, RateLimited
from config.settings import RateLimit
from signaling.billing import MINUTE_KIND, CallBilling, charged, minutes_started
from signaling.config import CallSettings
from signaling.ice import IceConfig
from signaling.model import (
    ACCEPTED,
    ENDED,
    OPEN,
    RINGING,
    Doc,
    ended_payload,
    new_call_id,
    now,
    other,
    public,
    role_of,
    ts,
)
from signaling.ports import Blocks, CallEvents, Devices, Limiter, Nodes, Push
from signaling.probe import ProbeStore, verdict
from signaling.quality import QualityService
from signaling.store import CallStore
from signaling.timers import DueBatch, Timers
from signaling.validate import Signal

log = structlog.get_logger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any], str], None]


@dataclass(slots=True)
class _Ticking:
    """A call this node bills: what it needs at each minute without reading the record again."""

    call_id: str
    payer: str
    payee: str | None
    share_pct: int
    rates: dict[str, int]
    accepted_ts: float
    media: str
    next_minute: int
    warned: set[int] = field(default_factory=set)


class CallService:
    def __init__(self, *, settings: CallSettings, node: str, store: CallStore, billing: CallBilling,
                 creators: Creators, events: CallEvents, devices: Devices, nodes: Nodes | None, blocks: Blocks,
                 push: Push, limiter: Limiter, ice: IceConfig, spawn: Spawn,
                 observe_drift: Callable[[float], None] = lambda _s: None,
                 probes: ProbeStore | None = None, probe_max_age_s: float = 3600.0,
                 quality: QualityService | None = None) -> None:
        self.settings = settings
        self.node = node
        self.store = store
        self.billing = billing
        self.creators = creators
        self.events = events
        self.devices = devices
        self.nodes = nodes  # None: this node is the only one (no Redis)
        self.blocks = blocks
        self.push = push
        self.limiter = limiter
        self.ice = ice
        self._spawn = spawn
        self._observe_drift = observe_drift
        self.timers = Timers(self._due)
        self.ticking: dict[str, _Ticking] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._signal_rate = RateLimit(settings.signals_per_s, 1.0)
        self.probes = probes  # each user's latest probe (signaling.probe)
        self.probe_max_age_s = probe_max_age_s
        self.quality = quality  # call:stats and quality refunds (signaling.quality)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.timers.start()
        if self.nodes is None:
            await self._settle_leftovers()
        else:
            await self.nodes.register(self.node)
            self._sweeper = asyncio.create_task(self._sweep(), name="call-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.timers.stop()

    # -- client actions ----------------------------------------------------------------------------
    async def prepare(self, user: str, to: str, media: str) -> Doc:
        """The pre-call gate: price, affordability, reachability and ICE servers in one round trip."""
        if to == user:
            raise InvalidPayload("you cannot call yourself")
        rates = await self.creators.rates(to)
        rate = rates.per_minute(media)
        available = await self.billing.available(user)
        callee: Doc
        if await self.blocks.either_blocked(user, to):
            callee = {"reachable": False, "via": None, "reason": "blocked"}
        elif await self.devices.count(to) > 0:
            callee = {"reachable": True, "via": "online"}
        elif self.push.enabled:
            callee = {"reachable": True, "via": "push"}
        else:
            callee = {"reachable": False, "via": None, "reason": "offline"}
        at = time.time()
        probe = verdict((await self.probes.latest([user])).get(user), at) if self.probes else None
        return {"rate_per_minute": rate, "affordable_minutes": available // rate if rate else None,
                "callee": callee, "ice_servers": self.ice.servers(user, at), "ttl": self.ice.ttl_s,
                "probe": probe, "suggest_probe": probe is None or probe["age_s"] > self.probe_max_age_s}

    async def invite(self, user: str, sid: str, to: str, media: str) -> Doc:
        if to == user:
            raise InvalidPayload("you cannot call yourself")
        if await self.blocks.either_blocked(user, to):
            raise Blocked("you cannot call this user")
        rates = await self.creators.rates(to)
        payee, share = self.creators.payee(rates, to)
        rate = rates.per_minute(media)
        call_id, at = new_call_id(), now()
        if not await self.store.take_slot(user, call_id, at):
            raise Busy("you are already in a call")
        offline = await self.devices.count(to) == 0
        doc: Doc = {
            "_id": call_id, "caller": user, "callee": to, "parties": [user, to], "media": media,
            "rates": {"audio": rates.audio_per_minute, "video": rates.video_per_minute},
            "payee": payee, "share_pct": share, "state": RINGING, "reason": None,
            "invited_at": at, "accepted_at": None, "ended_at": None,
            "ring_deadline": at + dt.timedelta(seconds=self.settings.ring_timeout_s),
            "dev": {"caller": {"sid": sid, "node": self.node}, "callee": None},
            "owner": self.node, "nodes": [self.node], "media_changes": [{"at": at, "media": media, "minute": 1}],
            "ice": {}, "offline": offline, "billed_minutes": 0, "credits": 0, "duration_s": 0,
            "settled": False, "quality": await self._probes_of(user, to),
        }
        # The record first: a crash after the hold leaves a record whose settlement releases it.
        await self.store.insert(doc)
        try:
            await self.billing.authorise(user, call_id, rate)
        except InsufficientCredits:
            await self.store.calls.delete_one({"_id": call_id})
            await self.store.free_slots([user], call_id)
            raise
        if not await self.store.take_slot(to, call_id, at):
            await self._end(call_id, "busy", (RINGING,))
            return {"call_id": call_id, "rate_per_minute": rate}
        self.timers.schedule((call_id, "ring"), ts(doc["ring_deadline"]))
        await self.events.to_user(to, "call:incoming", {"call_id": call_id, "from": user, "media": media})
        if offline:
            self.push.notify(f"call:{call_id}:incoming", to, "call:incoming",
                             {"call_id": call_id, "from": user, "media": media})
        return {"call_id": call_id, "rate_per_minute": rate}

    async def accept(self, user: str, sid: str, call_id: str) -> Doc:
        doc, role = await self._party_call(user, call_id)
        if role != "callee":
            raise Conflict("only the callee can accept a call")
        if doc["state"] != RINGING:
            raise Conflict(f"the call is {doc['state']}")
        accepted = await self.store.accept(call_id, sid, self.node, now())
        if accepted is None:
            raise Conflict("the call is no longer ringing")
        self.timers.cancel((call_id, "ring"))
        ticking = self._own(accepted, next_minute=1)
        entry = await self._charge(ticking, 1)
        if entry is None:
            await self._end(call_id, "insufficient_credits", (ACCEPTED,))
            raise Conflict("the call ended: the caller cannot pay for it")
        ticking.next_minute = 2
        await self.events.to_user(doc["caller"], "call:accepted", {"call_id": call_id})
        await self.events.to_device(self.node, sid, "call:accepted", {"call_id": call_id})
        await self.events.to_user(user, "call:ended", ended_payload(accepted, "answered_elsewhere"), skip_sid=sid)
        await self._billed(ticking, 1, entry)
        return {"call_id": call_id, "rate_per_minute": ticking.rates[ticking.media]}

    async def reject(self, user: str, call_id: str) -> Doc:
        _, role = await self._party_call(user, call_id)
        if role != "callee":
            raise Conflict("only the callee can reject a call; the caller cancels it")
        return await self._end_or_conflict(call_id, "rejected", (RINGING,))

    async def cancel(self, user: str, call_id: str) -> Doc:
        _, role = await self._party_call(user, call_id)
        if role != "caller":
            raise Conflict("only the caller can cancel a call; the callee rejects it")
        return await self._end_or_conflict(call_id, "cancelled", (RINGING,))

    async def hang_up(self, user: str, call_id: str) -> Doc:
        """`call:end`: completes an accepted call; on a ringing one it cancels (caller) or rejects (callee)."""
        doc, role = await self._party_call(user, call_id)
        if doc["state"] == RINGING:
            reason = "cancelled" if role == "caller" else "rejected"
            return await self._end_or_conflict(call_id, reason, (RINGING,))
        return await self._end_or_conflict(call_id, "completed", (ACCEPTED,))

    async def signal(self, user: str, sid: str, sig: Signal) -> Doc:
        doc, role = await self._party_call(user, sig.call_id)
        if await self.limiter.take(sig.call_id, "call:signal/call", self._signal_rate) > 0:
            raise RateLimited(f"at most {self.settings.signals_per_s} signals per second per call")
        state = doc["state"]
        if state == ENDED:
            raise Conflict("the call has ended")
        if state == RINGING and role != "caller":
            raise Conflict("accept the call before signalling")
        await self._bind(doc, role, user, sid)
        if sig.type == "ice" and not await self.store.count_ice(sig.call_id, role, self.settings.max_ice_per_party):
            raise RateLimited(f"at most {self.settings.max_ice_per_party} ICE candidates per call and party")
        out = {"call_id": sig.call_id, "from": user, "type": sig.type, "payload": sig.payload}
        peer = doc["dev"].get(other(role))
        if peer is None:  # ringing: the first offer (and its candidates) go to every ringing device
            await self.events.to_user(doc["callee"], "call:signal", out)
        else:
            await self.events.to_device(peer["node"], peer["sid"], "call:signal", out)
        return {}

    async def change_media(self, user: str, call_id: str, media: str) -> Doc:
        doc, role = await self._party_call(user, call_id)
        if doc["state"] != ACCEPTED:
            raise Conflict("media can change only during an accepted call")
        minute = minutes_started(ts(doc["accepted_at"]), time.time(), self.settings.billing_interval_s) + 1
        if doc["media"] != media:
            changed = await self.store.set_media(call_id, media, minute, now())
            if changed is None:
                raise Conflict("the call has ended")
            peer = changed["dev"].get(other(role))
            if peer is not None:
                await self.events.to_device(peer["node"], peer["sid"], "call:media",
                                            {"call_id": call_id, "media": media, "from": user})
        rate = doc["rates"][media] if doc.get("payee") else self.creators.defaults().per_minute(media)
        return {"media": media, "rate_per_minute": rate, "from_minute": minute}

    async def device_gone(self, user: str) -> None:
        """A `/call` socket of `user` disconnected: give their call, if any, the reconnect grace."""
        call_id = await self.store.slot(user)
        if call_id is not None:
            self.timers.schedule((call_id, f"grace:{user}"), time.time() + self.settings.reconnect_grace_s)

    async def block_changed(self, blocker: str, blocked: str) -> None:
        call_id = await self.store.slot(blocker)
        if call_id is None:
            return
        doc = await self.store.get(call_id)
        if doc is not None and doc["state"] in OPEN and blocked in doc["parties"]:
            await self._end(call_id, "blocked", OPEN)

    async def end_by_admin(self, call_id: str) -> Doc | None:
        ended = await self._end(call_id, "ended_by_admin", OPEN)
        return None if ended is None else ended_payload(ended)

    async def end_user_call(self, user: str) -> Doc | None:
        """End the call `user` is in or ringing in, if any (`ended_by_admin`: a ban)."""
        call_id = await self.store.slot(user)
        return None if call_id is None else await self.end_by_admin(call_id)

    async def history(self, user: str, before: str | None, limit: int) -> tuple[list[Doc], str | None]:
        docs = await self.store.history(user, before, limit + 1)
        more = len(docs) > limit
        docs = docs[:limit]
        return [public(d, user) for d in docs], (docs[-1]["_id"] if more and docs else None)

    # -- helpers -----------------------------------------------------------------------------------
    async def _probes_of(self, caller: str, callee: str) -> Doc:
        """The parties' latest probe verdicts, attached to the call record at invite."""
        if self.probes is None:
            return {}
        latest, at = await self.probes.latest([caller, callee]), time.time()
        return {"probes": {"caller": verdict(latest.get(caller), at), "callee": verdict(latest.get(callee), at)}}

    async def _party_call(self, user: str, call_id: str) -> tuple[Doc, str]:
        return await self.store.party_call(user, call_id)

    async def _bind(self, doc: Doc, role: str, user: str, sid: str) -> None:
        """Signals come from the party's device in the call; after a reconnect (the old socket gone)
        the first device that signals takes its place."""
        mine = doc["dev"].get(role)
        if mine is not None and mine["sid"] == sid:
            return
        if mine is None:  # the callee before accepting: refused earlier
            raise Conflict("accept the call before signalling")
        if mine["sid"] in await self.devices.sids(user):
            raise Forbidden("the call is on another of your devices")
        if not await self.store.bind_device(doc["_id"], role, mine["sid"], sid, self.node):
            raise Conflict("the call changed; retry")
        doc["dev"][role] = {"sid": sid, "node": self.node}
        self.timers.cancel((doc["_id"], f"grace:{user}"))

    async def _end_or_conflict(self, call_id: str, reason: str, states: tuple[str, ...]) -> Doc:
        ended = await self._end(call_id, reason, states)
        if ended is None:
            doc = await self.store.get(call_id)
            raise Conflict(f"the call is {doc['state'] if doc else 'gone'}")
        return {"call": ended_payload(ended)}

    async def _end(self, call_id: str, reason: str, states: tuple[str, ...]) -> Doc | None:
        """End a call if it is in one of `states` and settle it; None if it was not (someone else won)."""
        doc = await self.store.end(call_id, reason, states, self.node, now())
        if doc is None:
            return None
        return await self._settle(doc, catch_up=True)

    async def _settle(self, doc: Doc, *, catch_up: bool) -> Doc:
        """Decide every minute, release the hold, free the slots, write the totals, emit `call:ended`.

        catch_up: charge minutes that began before the end but were not ticked yet (an end racing a
        boundary, or a takeover). Without it (a restart settling a previous process's calls) only what
        was charged stands, and the end is put where the paid time ran out.
        """
        call_id = doc["_id"]
        self.timers.cancel_call(call_id)
        self.ticking.pop(call_id, None)
        interval = self.settings.billing_interval_s
        ended_ts = ts(doc["ended_at"])
        minutes: list[Entry] = []
        duration = 0.0
        if doc.get("accepted_at") is not None:
            accepted_ts = ts(doc["accepted_at"])
            due = minutes_started(accepted_ts, ended_ts if catch_up else time.time(), interval)
            minutes = await self._decide_minutes(doc, due, catch_up=catch_up)
            if not catch_up:
                ended_ts = min(ended_ts, accepted_ts + len(minutes) * interval)
            duration = max(0.0, ended_ts - accepted_ts)
        await self.billing.release(call_id)
        await self.store.free_slots(doc["parties"], call_id)
        totals = {"billed_minutes": len(minutes), "credits": sum(charged(e) for e in minutes),
                  "duration_s": round(duration), "ended_at": dt.datetime.fromtimestamp(ended_ts, dt.UTC)}
        await self.store.finish(call_id, totals)
        doc.update(totals, settled=True)
        payload = ended_payload(doc)
        for party in doc["parties"]:
            await self.events.to_user(party, "call:ended", payload)
        if doc["reason"] == "missed":
            self.push.notify(f"call:{call_id}:missed", doc["callee"], "call:missed",
                             {"call_id": call_id, "from": doc["caller"], "media": doc["media"]})
        log.info("call_ended", call=call_id, reason=doc["reason"], minutes=len(minutes), credits=totals["credits"])
        if self.quality is not None:  # judge every billed minute for a quality refund (idempotent)
            self._spawn(self.quality.judge(call_id, list(range(1, len(minutes) + 1))), "call-quality")
        return doc

    async def _decide_minutes(self, doc: Doc, due: int, *, catch_up: bool) -> list[Entry]:
        """Decide minutes 1..due+1 of an ended call; the charged ones, in order.

        Minutes are charged in order, so the first one not charged ends the count and fences off any
        later tick (see signaling.billing). A catch-up (minutes begun but not ticked, many when ticks
        ran late under load) charges each run of same-rate minutes in one group commit, not one commit
        per minute: an end must not queue behind its own backlog.
        """
        call_id = doc["_id"]
        decided = await self.billing.decided(call_id, due + 1)
        minutes: list[Entry] = []
        n = 1
        while n <= due + 1:
            entry = decided.get(n)
            if entry is not None:
                if entry.kind != MINUTE_KIND:
                    break
                minutes.append(entry)
                n += 1
                continue
            if not catch_up or n > due:
                entry = await self.billing.void(call_id, doc["caller"], n)
            elif n == 1:
                entry = await self._charge(self._own(doc, 1, track=False), 1)
            else:
                t = self._own(doc, n, track=False)
                end = n
                while (end < due and decided.get(end + 1) is None
                       and self._own(doc, end + 1, track=False).media == t.media):
                    end += 1
                charged_run, complete = await self.billing.charge_run(
                    call_id, t.payer, range(n, end + 1), self._rate(t, n), t.media, t.payee, t.share_pct)
                minutes.extend(charged_run)
                if not complete:
                    break
                n = end + 1
                continue
            if entry is None:
                break
            minutes.append(entry)
            n += 1
        return minutes

    def _own(self, doc: Doc, next_minute: int, *, track: bool = True) -> _Ticking:
        """Start ticking a call here from `next_minute` (or, untracked, just the figures to charge it)."""
        rates = doc["rates"]
        media = doc["media"]
        for change in doc.get("media_changes", ()):
            if change["minute"] <= next_minute:
                media = change["media"]
        t = _Ticking(doc["_id"], doc["caller"], doc.get("payee"), int(doc.get("share_pct", 0)), rates,
                     ts(doc["accepted_at"]), media, next_minute)
        if track:
            self.ticking[doc["_id"]] = t
            if next_minute > 1:
                self.timers.schedule((doc["_id"], "tick"), self._boundary(t, next_minute))
        return t

    def _rate(self, t: _Ticking, minute: int) -> int:
        """What `minute` costs. Minute 1 is paid out of the hold taken at invite, at the invite's rate. Later
        minutes of a call at the platform's prices cost the prices in force when they begin (an operator's
        change reaches calls in progress from their next minute); a creator's call keeps the creator's
        rates as they were at invite (creators' changes apply from the next call)."""
        if minute >= 2 and t.payee is None:
            return self.creators.defaults().per_minute(t.media)
        return t.rates[t.media]

    def _boundary(self, t: _Ticking, minute: int) -> float:
        return t.accepted_ts + (minute - 1) * self.settings.billing_interval_s

    async def _charge(self, t: _Ticking, minute: int) -> Entry | None:
        return await self.billing.charge(t.call_id, t.payer, minute, self._rate(t, minute), t.media, t.payee,
                                         t.share_pct)

    async def _billed(self, t: _Ticking, minute: int, entry: Entry) -> None:
        """After a charge: `call:billed`, the low-balance warnings, and the next tick."""
        balance = entry.balance_after if entry.postings else (await self.billing.ledger.wallet(t.payer)).balance
        await self.events.to_user(t.payer, "call:billed", {"call_id": t.call_id, "minute": minute,
                                                           "credits": charged(entry), "balance": balance})
        judge_at = self.quality.judge_at(t.accepted_ts, minute) if self.quality is not None else None
        if judge_at is not None:
            self.timers.schedule((t.call_id, f"quality:{minute}"), judge_at)
        if self.ticking.get(t.call_id) is not t:
            return
        self.timers.schedule((t.call_id, "tick"), self._boundary(t, minute + 1))
        rate = self._rate(t, minute + 1)
        available = entry.available_after if entry.postings else balance
        if rate > 0 and available < rate:
            await self._warn_low(t, minute + 1)
            half = self._boundary(t, minute + 1) - self.settings.billing_interval_s / 2
            if half > time.time():
                self.timers.schedule((t.call_id, "warn"), half)

    async def _warn_low(self, t: _Ticking, next_minute: int) -> None:
        left = max(0, math.ceil(self._boundary(t, next_minute) - time.time()))
        await self.events.to_user(t.payer, "call:low_balance", {"call_id": t.call_id, "seconds_left": left})

    # -- timers ------------------------------------------------------------------------------------
    def _due(self, batch: DueBatch) -> None:
        ticks: list[tuple[str, float]] = []
        for (call_id, what), at in batch:
            if what == "tick":
                ticks.append((call_id, at))
            elif what == "ring":
                self._spawn(self._end(call_id, "missed", (RINGING,)), "call-ring-timeout")
            elif what == "warn":
                self._spawn(self._warn(call_id), "call-low-balance")
            elif what.startswith("grace:"):
                self._spawn(self._grace_over(call_id, what[len("grace:"):]), "call-grace")
            elif what.startswith("quality:") and self.quality is not None:
                self._spawn(self.quality.judge(call_id, [int(what[len("quality:"):])]), "call-quality")
        if ticks:
            self._spawn(self._tick(ticks), "call-tick")

    async def _tick(self, due: list[tuple[str, float]]) -> None:
        """Charge the minutes that began: one read of the records, then the charges (group-committed)."""
        try:
            view = await self.store.tick_view([c for c, _ in due])
        except Exception:
            log.exception("call_tick_read_failed", calls=len(due))
            for call_id, _ in due:  # try again shortly rather than lose the minute
                if call_id in self.ticking:
                    self.timers.schedule((call_id, "tick"), time.time() + 1.0)
            return
        work = []
        for call_id, at in due:
            t = self.ticking.get(call_id)
            if t is None:
                continue
            doc = view.get(call_id)
            if doc is None or doc["state"] != ACCEPTED or doc.get("owner") != self.node:
                self.ticking.pop(call_id, None)  # ended, or another node took it over
                continue
            t.media = doc["media"]
            work.append(self._tick_one(t, at))
        await asyncio.gather(*work)

    async def _tick_one(self, t: _Ticking, at: float) -> None:
        minute = t.next_minute
        self._observe_drift(max(0.0, time.time() - at))
        try:
            entry = await self._charge(t, minute)
        except Exception:
            log.exception("call_tick_failed", call=t.call_id, minute=minute)
            if self.ticking.get(t.call_id) is t:
                self.timers.schedule((t.call_id, "tick"), time.time() + 1.0)
            return
        if entry is None:  # could not be paid, or the call was ended elsewhere (the end voided it)
            self.ticking.pop(t.call_id, None)
            await self._end(t.call_id, "insufficient_credits", (ACCEPTED,))
            return
        t.next_minute = minute + 1
        await self._billed(t, minute, entry)

    async def _warn(self, call_id: str) -> None:
        t = self.ticking.get(call_id)
        if t is None:
            return
        rate = self._rate(t, t.next_minute)
        if await self.billing.available(t.payer) < rate:
            await self._warn_low(t, t.next_minute)

    async def _grace_over(self, call_id: str, user: str) -> None:
        doc = await self.store.get(call_id)
        if doc is None or doc["state"] not in OPEN:
            return
        role = role_of(doc, user)
        device = doc["dev"].get(role) if role else None
        if device is None:  # the callee while ringing: not on a device yet (the ring timeout decides)
            return
        if device["sid"] in await self.devices.sids(user):
            return
        await self._end(call_id, "disconnected", OPEN)

    # -- crashes -----------------------------------------------------------------------------------
    async def _settle_leftovers(self) -> None:
        """One node, no Redis: whatever a previous process left open is ended `disconnected` and
        settled with only the minutes it charged."""
        count = 0
        async for doc in self.store.unsettled():
            if doc["state"] in OPEN:
                ended = await self.store.end(doc["_id"], "disconnected", OPEN, self.node, now())
                if ended is None:
                    continue
                doc = ended
            await self._settle(doc, catch_up=False)
            count += 1
        if count:
            log.info("calls_settled_at_start", calls=count)

    async def _sweep(self) -> None:
        assert self.nodes is not None
        while True:
            await asyncio.sleep(self.settings.sweep_s)
            try:
                # Again every sweep: a Redis restart forgets the set, and a node missing from it is
                # never taken over if it dies.
                await self.nodes.register(self.node)
                for dead in await self.nodes.dead():
                    await self._take_over(dead)
                    await self.nodes.forget(dead)
            except Exception:
                log.exception("call_sweep_failed")

    async def _take_over(self, dead: str) -> None:
        """Calls of a node that died: its owned calls are adopted here (one node wins each), and a
        party whose device was on it gets the reconnect grace."""
        adopted = 0
        async for doc in self.store.touching(dead):
            call_id = doc["_id"]
            if doc["state"] in OPEN:
                for role in ("caller", "callee"):
                    device = doc["dev"].get(role)
                    if device is not None and device["node"] == dead:
                        self.timers.schedule((call_id, f"grace:{doc[role]}"),
                                             time.time() + self.settings.reconnect_grace_s)
            if doc.get("owner") != dead:
                continue
            mine = await self.store.adopt(call_id, dead, self.node)
            if mine is None:
                continue
            adopted += 1
            await self._resume(mine)
        if adopted:
            log.info("calls_taken_over", node=dead, calls=adopted)

    async def _resume(self, doc: Doc) -> None:
        call_id = doc["_id"]
        if doc["state"] == ENDED:
            await self._settle(doc, catch_up=True)
        elif doc["state"] == RINGING:
            self.timers.schedule((call_id, "ring"), ts(doc["ring_deadline"]))
        else:
            due = minutes_started(ts(doc["accepted_at"]), time.time(), self.settings.billing_interval_s)
            decided = await self.billing.decided(call_id, due + 1)
            n = 1
            while n in decided and decided[n].kind == MINUTE_KIND:
                n += 1
            if n in decided:  # a minute was voided: the call could not be paid
                await self._end(call_id, "insufficient_credits", (ACCEPTED,))
                return
            self._own(doc, n)
            if n == 1:  # accepted, but minute 1 was never charged: charge it now
                self.timers.schedule((call_id, "tick"), time.time())
