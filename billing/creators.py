"""Creators: who earns, their share, and the rates they set within the operator's bounds.

A user is a creator when their token carries the role `creator`; the role is recorded on the user's
record whenever they connect or call the REST API (`users.roles`), so a fan's node can tell whether
the recipient of a message or call is a creator without the creator's token. Creators may set their
own message price and per-minute call rates (`users.rates`) within `CreatorPolicy`'s bounds; a rate
change applies from the next message or the next call (a call keeps the rate it started with).
Lookups are cached per node for `ttl_s` (the hot path does no store read per message).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from billing.pricing import Pricing
from config.errors import InvalidPayload
from config.settings import ConfigError, Env
from config.ttlcache import TtlCache

Doc = dict[str, Any]
RATE_FIELDS = ("message", "audio_per_minute", "video_per_minute")


@dataclass(frozen=True)
class CreatorPolicy:
    share_pct: int = 60
    """The creator's share of what is paid to them (PAIRLY_CREATOR_SHARE_PCT); the rest is the platform's."""
    min_rates: tuple[int, int, int] = (1, 1, 1)
    max_rates: tuple[int, int, int] = (100, 500, 1000)
    """Bounds for creator-set (message, audio/min, video/min) rates (PAIRLY_CREATOR_RATE_MIN/MAX)."""

    @classmethod
    def from_env(cls, env: Env) -> CreatorPolicy:
        share = env.integer("PAIRLY_CREATOR_SHARE_PCT", cls.share_pct, min_value=0)
        if share > 100:
            raise ConfigError("PAIRLY_CREATOR_SHARE_PCT", f"must be 0..100, got {share}")
        lo = _triple(env, "PAIRLY_CREATOR_RATE_MIN", cls.min_rates)
        hi = _triple(env, "PAIRLY_CREATOR_RATE_MAX", cls.max_rates)
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            raise ConfigError("PAIRLY_CREATOR_RATE_MIN", "must not exceed PAIRLY_CREATOR_RATE_MAX")
        return cls(share, lo, hi)

    def bounds(self) -> dict[str, dict[str, int]]:
        triples = zip(RATE_FIELDS, self.min_rates, self.max_rates, strict=True)
        return {f: {"min": lo, "max": hi} for f, lo, hi in triples}


def _triple(env: Env, name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    raw = env.items(name)
    if not raw:
        return default
    try:
        values = tuple(int(x) for x in raw)
    except ValueError:
        raise ConfigError(name, "must be three integers: message,audio_per_minute,video_per_minute") from None
    if len(values) != 3 or any(v < 0 for v in values):
        raise ConfigError(name, "must be three non-negative integers: message,audio_per_minute,video_per_minute")
    return values[0], values[1], values[2]


@dataclass(frozen=True, slots=True)
class Rates:
    """What a recipient charges: credits per message and per call minute, and whether they earn."""

    message: int
    audio_per_minute: int
    video_per_minute: int
    creator: bool

    def per_minute(self, media: str) -> int:
        return self.video_per_minute if media == "video" else self.audio_per_minute

    def public(self) -> Doc:
        return {"message": self.message, "audio_per_minute": self.audio_per_minute,
                "video_per_minute": self.video_per_minute, "creator": self.creator}


class Creators:
    def __init__(self, db: AsyncDatabase[Doc], pricing: Pricing, policy: CreatorPolicy, *, ttl_s: float = 5.0) -> None:
        self._users = db["users"]
        self._pricing = pricing
        self.policy = policy
        self._cache: TtlCache[str, Rates] = TtlCache(self._read, ttl_s=ttl_s)

    def defaults(self, creator: bool = False) -> Rates:
        p = self._pricing
        return Rates(p.message, p.audio_per_minute, p.video_per_minute, creator)

    def prices_changed(self) -> None:
        """The platform's prices changed (runtime pricing): forget cached rates built on the old ones."""
        self._cache.clear()

    async def rates(self, user: str) -> Rates:
        """What messaging or calling `user` costs now (the platform's prices unless a creator set theirs)."""
        return await self._cache.get(user)

    async def _read(self, user: str) -> Rates:
        return self._from_doc(await self._users.find_one({"_id": user}, {"roles": 1, "rates": 1}))

    def _from_doc(self, doc: Doc | None) -> Rates:
        creator = bool(doc and "creator" in (doc.get("roles") or ()))
        base = self.defaults(creator)
        if not creator or not doc or not isinstance(doc.get("rates"), dict):
            return base
        own = doc["rates"]
        values = [own.get(f) if isinstance(own.get(f), int) else getattr(base, f) for f in RATE_FIELDS]
        # Bounds may have tightened since the creator set their rates: clamp, never refuse.
        clamped = [min(max(v, lo), hi) for v, lo, hi in zip(values, self.policy.min_rates, self.policy.max_rates,
                                                             strict=True)]
        return Rates(clamped[0], clamped[1], clamped[2], True)

    async def mark(self, user: str, roles: tuple[str, ...]) -> None:
        """Record the roles a user's token carries (REST calls; sockets record them on connect)."""
        await self._users.update_one({"_id": user}, {"$set": {"roles": list(roles)},
                                                     "$setOnInsert": {"first_seen": dt.datetime.now(dt.UTC)}},
                                     upsert=True)
        self._cache.invalidate(user)

    async def set_rates(self, user: str, body: object) -> Rates:
        """Validate and store a creator's own rates (a partial update); returns the rates now in force."""
        if not isinstance(body, dict) or not body:
            raise InvalidPayload(f"body must be an object with some of {', '.join(RATE_FIELDS)}")
        unknown = set(body) - set(RATE_FIELDS)
        if unknown:
            raise InvalidPayload(f"unknown fields: {', '.join(sorted(unknown))}")
        update: Doc = {}
        for f, lo, hi in zip(RATE_FIELDS, self.policy.min_rates, self.policy.max_rates, strict=True):
            if f not in body:
                continue
            value = body[f]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise InvalidPayload(f"{f} must be an integer {lo}..{hi}")
            update[f"rates.{f}"] = value
        await self._users.update_one({"_id": user}, {"$set": update}, upsert=True)
        self._cache.invalidate(user)
        return await self.rates(user)

    def payee(self, rates: Rates, recipient: str) -> tuple[str | None, int]:
        """(earnings account or None, share percent) for a payment to `recipient`."""
        if not rates.creator:
            return None, 0
        return f"earnings:{recipient}", self.policy.share_pct
