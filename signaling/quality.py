"""In-call quality (`call:stats`) and quality-aware billing (docs/call-quality.md).

Either party of an accepted call reports samples `{rtt_ms?, jitter_ms?, loss_pct?, bitrate_kbps?}`
(a browser's `getStats()` figures). Each sample is validated, rate-limited per user (the
`call:stats` entry of `PAIRLY_RATE_LIMITS`, default 10 per 10 s), bounded per party and call, and
folded into the call record under the billed minute it falls in: `quality.minutes.<n>.<role>` keeps
count/sum/min/max per metric, the sample MOS (E-model, `rtt_ms` required) and how many samples were
below the refund threshold. It is one atomic `$inc/$min/$max` update of the record, so any node may
take a party's sample: no Redis state, no owner involved.

Refunds (`PAIRLY_CALL_QUALITY_REFUND`, off by default): a billed minute is refunded when, for both
parties, at least `min_samples` samples have a MOS and more than half of them are below
`refund_mos`. A minute is judged `grace_s` after it ends (the owner's timer) and again when the call
is settled (every billed minute; this also covers minutes whose timer died with a node). The refund
reverses the minute's ledger entry under the key `call:<id>:<minute>:refund`, so it happens at most
once whoever judges it, and the record lists it with its reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog

from billing import accounts
from billing.ledger import Entry, Leg, Transfer
from config.errors import Conflict, InvalidPayload, RateLimited
from config.settings import ConfigError, Env
from signaling import mos as quality
from signaling.billing import MINUTE_KIND, CallBilling, charged, minutes_started
from signaling.model import ACCEPTED, Doc, now, ts
from signaling.ports import CallEvents
from signaling.store import CallStore
from signaling.validate import call_id as parse_call_id

log = structlog.get_logger(__name__)

REFUND_KIND = "call_refund"
ROLES = ("caller", "callee")
# metric -> (min, max) accepted
METRICS: dict[str, tuple[float, float]] = {
    "rtt_ms": (0.0, 60_000.0), "jitter_ms": (0.0, 60_000.0), "loss_pct": (0.0, 100.0), "bitrate_kbps": (0.0, 1e6)}


def refund_key(call_id: str, minute: int) -> str:
    return f"call:{call_id}:{minute}:refund"


@dataclass(frozen=True)
class QualitySettings:
    max_stats_per_party: int = 2000
    """Samples one party may store in one call; later ones are refused."""
    refund: bool = False
    refund_mos: float = 2.5
    min_samples: int = 3
    """A party needs this many samples with a MOS in a minute for the minute to be judged."""
    grace_s: float = 5.0
    """A minute is judged this long after it ends (late samples still count)."""

    @classmethod
    def from_env(cls, env: Env) -> QualitySettings:
        mos_floor = env.number("PAIRLY_CALL_QUALITY_REFUND_MOS", cls.refund_mos, min_value=1.0)
        if mos_floor > 4.5:
            raise ConfigError("PAIRLY_CALL_QUALITY_REFUND_MOS", "must be between 1.0 and 4.5")
        return cls(
            max_stats_per_party=env.integer("PAIRLY_CALL_MAX_STATS_PER_PARTY", cls.max_stats_per_party, min_value=1),
            refund=env.flag("PAIRLY_CALL_QUALITY_REFUND", cls.refund),
            refund_mos=mos_floor,
            min_samples=env.integer("PAIRLY_CALL_QUALITY_MIN_SAMPLES", cls.min_samples, min_value=1),
            grace_s=env.number("PAIRLY_CALL_QUALITY_GRACE_S", cls.grace_s, min_value=0.0),
        )


def parse_stats(data: Any) -> tuple[str, dict[str, float]]:
    """`call:stats`: (call_id, metrics) with at least one metric, each a finite number in range."""
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be an object")
    cid = parse_call_id(data)
    unknown = set(data) - set(METRICS) - {"call_id"}
    if unknown:
        raise InvalidPayload(f"unknown field {sorted(unknown)[0]!r}; allowed: call_id, {', '.join(METRICS)}")
    metrics: dict[str, float] = {}
    for name, (low, high) in METRICS.items():
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not low <= value <= high:
            raise InvalidPayload(f"{name} must be a number from {low:g} to {high:g}")
        metrics[name] = float(value)
    if not metrics:
        raise InvalidPayload(f"at least one of {', '.join(METRICS)} is required")
    return cid, metrics


class QualityService:
    def __init__(self, *, settings: QualitySettings, interval_s: float, store: CallStore, billing: CallBilling,
                 events: CallEvents) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.store = store
        self.billing = billing
        self.events = events

    # -- call:stats --------------------------------------------------------------------------------
    async def stats(self, user: str, data: Any) -> Doc:
        call_id, metrics = parse_stats(data)
        doc, role = await self.store.party_call(user, call_id)
        if doc["state"] != ACCEPTED:
            raise Conflict("stats are taken during an accepted call only")
        minute = minutes_started(ts(doc["accepted_at"]), time.time(), self.interval_s)
        score = None
        if "rtt_ms" in metrics:
            score = quality.mos(metrics["rtt_ms"], metrics.get("jitter_ms", 0.0), metrics.get("loss_pct", 0.0))
        base = f"quality.minutes.{minute}.{role}"
        inc: Doc = {f"quality.samples.{role}": 1, f"{base}.n": 1}
        low: Doc = {}
        high: Doc = {}
        for name, value in {**metrics, **({"mos": score} if score is not None else {})}.items():
            inc[f"{base}.{name}.n"] = 1
            inc[f"{base}.{name}.sum"] = value
            low[f"{base}.{name}.min"] = value
            high[f"{base}.{name}.max"] = value
        if score is not None and score < self.settings.refund_mos:
            inc[f"{base}.poor"] = 1
        result = await self.store.calls.update_one(
            {"_id": call_id, "state": ACCEPTED,
             f"quality.samples.{role}": {"$not": {"$gte": self.settings.max_stats_per_party}}},
            {"$inc": inc, "$min": low, "$max": high})
        if result.modified_count != 1:
            fresh = await self.store.get(call_id)
            if fresh is None or fresh["state"] != ACCEPTED:
                raise Conflict("the call has ended")
            raise RateLimited(f"at most {self.settings.max_stats_per_party} samples per party and call")
        return {"minute": minute, "mos": score}

    # -- refunds -----------------------------------------------------------------------------------
    def judge_at(self, accepted_ts: float, minute: int) -> float | None:
        """When the owner judges `minute` (None: refunds are off)."""
        if not self.settings.refund:
            return None
        return accepted_ts + minute * self.interval_s + self.settings.grace_s

    async def judge(self, call_id: str, minutes: list[int]) -> None:
        """Refund each of `minutes` that was billed and unusable for both parties (idempotent)."""
        if not self.settings.refund or not minutes:
            return
        doc = await self.store.get(call_id)
        if doc is None:
            return
        decided = await self.billing.decided(call_id, max(minutes))
        for minute in minutes:
            reason = self.poor_reason(doc, minute)
            entry = decided.get(minute)
            if reason is None or entry is None or entry.kind != MINUTE_KIND or charged(entry) <= 0:
                continue
            try:
                await self._refund(doc, minute, entry, reason)
            except Exception:
                log.exception("call_refund_failed", call=call_id, minute=minute)

    def poor_reason(self, doc: Doc, minute: int) -> str | None:
        """Why `minute` was unusable, or None if it was not (or not enough is known)."""
        bucket = doc.get("quality", {}).get("minutes", {}).get(str(minute), {})
        scores = []
        for role in ROLES:
            party = bucket.get(role) or {}
            samples = int(party.get("mos", {}).get("n", 0))
            poor = int(party.get("poor", 0))
            if samples < self.settings.min_samples or poor * 2 <= samples:
                return None
            scores.append(f"{role} MOS {party['mos']['sum'] / samples:.2f} ({poor}/{samples} samples poor)")
        return f"MOS below {self.settings.refund_mos:g} for most of the minute: " + ", ".join(scores)

    async def _refund(self, doc: Doc, minute: int, entry: Entry, reason: str) -> None:
        call_id, payer = doc["_id"], doc["caller"]
        credits = charged(entry)
        # Reverse the minute: the payer's wallet gets the credits back from whoever received them
        # (platform revenue, the creator's earnings). Hold and wallet legs of a captured minute 1 only
        # moved the payer's own credits, so they are not reversed.
        received = [p for p in entry.postings if not p.account.startswith(("wallet:", "hold:")) and p.delta]
        if sum(p.delta for p in received) != credits:
            log.error("call_refund_unbalanced", call=call_id, minute=minute)
            return
        legs = (Leg(accounts.wallet(payer), credits), *(Leg(p.account, -p.delta) for p in received))
        refund = await self.billing.ledger.submit(Transfer(
            refund_key(call_id, minute), REFUND_KIND, legs, call_id, payer,
            meta={"call": call_id, "minute": minute, "credits": -credits, "reason": reason}))
        await self.store.calls.update_one(
            {"_id": call_id, "quality.refunds.minute": {"$ne": minute}},
            {"$push": {"quality.refunds": {"minute": minute, "credits": credits, "reason": reason, "at": now()}}})
        if refund.replayed:
            return
        log.info("call_minute_refunded", call=call_id, minute=minute, credits=credits)
        await self.events.to_user(payer, "call:billed", {"call_id": call_id, "minute": minute, "credits": -credits,
                                                         "balance": refund.balance_after, "refunded": True})

