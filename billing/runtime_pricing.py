"""Runtime pricing: operators change prices and packages without a restart (`GET/PUT /api/admin/pricing`).

The prices in force are one MongoDB document (`pricing_config`, `_id: "current"`) with a version. At
start-up a node applies it over the configured defaults (`PAIRLY_PRICE_*`, `PAIRLY_SIGNUP_BONUS`,
`PAIRLY_CREDIT_PACKAGES`: they are only the prices until an operator first sets some). A change is a
compare-and-set on the version (two operators saving at once: one gets `conflict`), applied at once
on the node that took it, and every node polls the version every `PAIRLY_PRICING_POLL_S` (1 s): one
`find_one` by `_id` a second, the same with or without Redis, and a node briefly cut off from Redis
still converges. Applying mutates the shared `Pricing` and `Catalogue` objects in place and drops the
creators' cached rates, so the next message, the next call invite and the next wallet opened use
the new figures. A call keeps the per-minute rate it was invited at (what its caller agreed to and
what its hold covers), like a creator's own rate change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from billing.creators import Creators
from billing.ledger import Ledger
from billing.packages import Catalogue, CreditPackage, parse_packages
from billing.pricing import Pricing
from config.errors import Conflict, InvalidPayload
from config.periodic import Periodic
from config.settings import ConfigError

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
PRICE_FIELDS = ("message", "audio_per_minute", "video_per_minute", "signup_bonus")
MAX_PRICE = 1_000_000
_ID = "current"


def snapshot(pricing: Pricing) -> Doc:
    """The prices in force as the API shows (and the store keeps) them."""
    return {**pricing.public(), "packages": [_package_doc(p) for p in pricing.packages]}


def _package_doc(p: CreditPackage) -> Doc:
    return {"id": p.id, "name": p.name, "credits": p.credits, "prices": {x.currency: x.amount for x in p.prices}}


class RuntimePricing:
    def __init__(self, db: AsyncDatabase[Doc], pricing: Pricing, creators: Creators, ledger: Ledger, *,
                 currencies: Iterable[str] = (), poll_s: float = 1.0) -> None:
        """`currencies`: every package must have a price in each (the payment providers' currencies)."""
        self._coll = db["pricing_config"]
        self._pricing = pricing
        self._creators = creators
        self._ledger = ledger
        self._currencies = tuple(sorted(set(currencies)))
        self._poller = Periodic("pricing_poll", poll_s, self.refresh)
        self.version = 0

    async def start(self) -> None:
        await self.refresh()
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def refresh(self) -> bool:
        """Apply the stored prices if they are newer than this node's; True when something changed."""
        head = await self._coll.find_one({"_id": _ID}, {"version": 1})
        if head is None or int(head["version"]) <= self.version:
            return False
        doc = await self._coll.find_one({"_id": _ID})
        if doc is None:
            return False
        self._apply(doc)
        return True

    def current(self) -> Doc:
        return {**snapshot(self._pricing), "version": self.version}

    async def update(self, body: Mapping[str, Any], *, actor: str) -> tuple[Doc, Doc]:
        """Validate a (partial) change and make it the prices in force everywhere: (before, after)."""
        await self.refresh()
        before = self.current()
        merged = {**{k: v for k, v in before.items() if k != "version"}, **body}
        fields, packages = self.validate(merged)
        new_version = self.version + 1
        stored: Doc = {**fields, "packages": [_package_doc(p) for p in packages], "version": new_version,
                       "updated_at": dt.datetime.now(dt.UTC), "updated_by": actor}
        if self.version == 0:
            try:
                await self._coll.insert_one({"_id": _ID, **stored})
                won = True
            except DuplicateKeyError:
                won = False
        else:
            result = await self._coll.update_one({"_id": _ID, "version": self.version}, {"$set": stored})
            won = result.modified_count == 1
        if not won:
            raise Conflict("the prices were changed by someone else meanwhile; read them again and retry")
        self._apply({"_id": _ID, **stored})
        log.info("pricing_changed", version=new_version, by=actor)
        return before, self.current()

    def validate(self, body: Mapping[str, Any]) -> tuple[Doc, list[CreditPackage]]:
        unknown = set(body) - {*PRICE_FIELDS, "packages"}
        if unknown:
            raise InvalidPayload(f"unknown fields: {', '.join(sorted(unknown))}")
        fields: Doc = {}
        for name in PRICE_FIELDS:
            value = body.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PRICE:
                raise InvalidPayload(f"{name} must be an integer 0..{MAX_PRICE}")
            fields[name] = value
        try:
            packages = parse_packages(json.dumps(body.get("packages")), var="packages")
        except ConfigError as exc:
            raise InvalidPayload(str(exc)) from None
        for currency in self._currencies:
            missing = [p.id for p in packages if p.price(currency) is None]
            if missing:
                raise InvalidPayload(f"packages {', '.join(missing)} need a price in {currency} "
                                     f"(a configured payment provider charges in it)")
        return fields, packages

    def _apply(self, doc: Doc) -> None:
        fields, packages = self.validate({k: doc[k] for k in (*PRICE_FIELDS, "packages")})
        self._pricing.apply(fields["message"], fields["audio_per_minute"], fields["video_per_minute"],
                            fields["signup_bonus"])
        catalogue: Catalogue = self._pricing.packages
        catalogue.replace(packages)
        self._ledger.set_signup_bonus(fields["signup_bonus"])
        self._creators.prices_changed()
        self.version = int(doc["version"])
        log.info("pricing_applied", version=self.version)
