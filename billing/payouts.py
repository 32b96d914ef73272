"""Creator payouts: earnings credits → money in the creator's account at a payout provider.

Lifecycle (docs/earnings.md):

1. **request** (creator): one ledger transfer, key `payout:<user>:<idempotency key>`, moves `amount`
   credits from the creator's earnings shards (checked legs, taken from shard 0 upwards until
   covered) to `payout:<user>`. The payout record is inserted *in the same transaction* (the
   transfer's `attach`), so a record exists iff its credits moved. The same idempotency key returns
   the same payout; with a different amount or currency it is a conflict.
2. **approve** (admin): claim the payout (compare-and-set on its `version`), ask the provider to
   send the money (idempotent per payout id), record the provider's transfer id, then the ledger
   transfer `payout:<id>:paid` (payout:<user> → platform:payouts) and status `approved`.
   A provider failure records `failed` with the error (retryable; nothing moved in the ledger).
3. **reject** (admin): status `rejected`, then the ledger transfer `payout:<id>:rejected`
   (payout:<user> → earnings:<user>) returns the credits.

Approve and reject exclude each other: every change is a compare-and-set on `version`; a rejected
payout cannot be approved (409) and an approved one cannot be rejected (409); a payout whose money
may have left (an approval attempt was made) is rejected only after the provider confirms it holds
no transfer for it. A crash between steps leaves a claim (`approving`) or an unreturned rejection;
approving/rejecting again finishes it, and the sweeper (every 30 s) does so by itself.

Money: `credits * rate` (PAIRLY_PAYOUT_RATES, major units per credit) in minor units, computed with
Decimal and rounded down (a creator is never paid more than the rate; at most one minor unit less).
The amount is fixed when the payout is requested.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from billing import accounts
from billing.errors import InsufficientCredits, OperationInFlight, ProviderError
from billing.ledger import Ledger, Leg, Transfer
from billing.packages import Price, minor_digits
from billing.providers import DevPayoutProvider, PaymentProvider, PayoutProvider, StripeProvider, TransferRequest
from config.errors import AppError, Conflict, InvalidPayload, NotFound, Unavailable
from config.settings import ConfigError, Env

log = structlog.get_logger(__name__)

Doc = dict[str, Any]

STATUSES = ("requested", "approved", "rejected", "failed")
MAX_CREDITS = 10**12
_KEY_RE = re.compile(r"^[\x21-\x7e]{8,100}$")
_CURRENCY_RE = re.compile(r"^[a-z]{3}$")
_ACCOUNT_RE = re.compile(r"^acct_[A-Za-z0-9]{6,64}$")
_CAS_ATTEMPTS = 20
_REQUEST_ATTEMPTS = 4
_MAX_REASON = 500
SWEEPER = "sweeper"


def _now() -> dt.datetime:
    """Now, at the store's precision (milliseconds), so a fresh answer equals a later read."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PayoutPolicy:
    min_credits: int = 100
    """Smallest payout request, in credits (PAIRLY_PAYOUT_MIN_CREDITS)."""
    currency: str = "usd"
    """Currency payouts are made in unless a request names another (PAIRLY_PAYOUT_CURRENCY)."""
    rates: Mapping[str, Decimal] = field(default_factory=lambda: {"usd": Decimal("0.01"), "inr": Decimal("0.8")})
    """Major units of money per credit, per currency (PAIRLY_PAYOUT_RATES)."""

    @classmethod
    def from_env(cls, env: Env) -> PayoutPolicy:
        default = cls()
        minimum = env.integer("PAIRLY_PAYOUT_MIN_CREDITS", default.min_credits, min_value=1)
        rates = dict(default.rates)
        raw = env.items("PAIRLY_PAYOUT_RATES")
        if raw:
            rates = {}
            for item in raw:
                code, sep, value = item.partition("=")
                code = code.strip().lower()
                if not sep or not _CURRENCY_RE.match(code):
                    raise ConfigError("PAIRLY_PAYOUT_RATES", f"entry {item!r} must look like 'usd=0.01'")
                try:
                    rate = Decimal(value.strip())
                except InvalidOperation:
                    raise ConfigError("PAIRLY_PAYOUT_RATES", f"{code}: {value.strip()!r} is not a number") from None
                if not rate.is_finite() or rate <= 0:
                    raise ConfigError("PAIRLY_PAYOUT_RATES", f"{code}: the rate must be a positive number")
                rates[code] = rate
        currency = (env.text("PAIRLY_PAYOUT_CURRENCY", default.currency) or default.currency).lower()
        if currency not in rates:
            raise ConfigError("PAIRLY_PAYOUT_CURRENCY", f"{currency!r} has no rate in PAIRLY_PAYOUT_RATES")
        return cls(minimum, currency, rates)

    def currency_of(self, requested: object) -> str:
        if requested is None:
            return self.currency
        if not isinstance(requested, str) or requested.lower() not in self.rates:
            raise InvalidPayload(f"currency must be one of {', '.join(sorted(self.rates))}")
        return requested.lower()

    def money(self, credits: int, currency: str | None = None) -> Price:
        """`credits` in minor units of `currency`, rounded down (exact Decimal arithmetic)."""
        code = currency or self.currency
        with localcontext() as ctx:
            ctx.prec = 60
            minor = (Decimal(credits) * self.rates[code]).scaleb(minor_digits(code))
            return Price(code, int(minor.to_integral_value(rounding=ROUND_FLOOR)))

    def public(self, balance: int | None = None) -> Doc:
        info: Doc = {"currency": self.currency, "rates": {c: str(r) for c, r in sorted(self.rates.items())},
                     "min_credits": self.min_credits}
        if balance is not None:
            value = self.money(max(balance, 0))
            info["balance_value"] = {"amount_minor": value.amount, "currency": value.currency,
                                     "display": value.display()}
        return info


def payout_provider(providers: Mapping[str, PaymentProvider]) -> PayoutProvider | None:
    """Stripe (Connect transfers) when configured; else dev where the dev purchase provider is offered
    (dev mode only: production refuses it); else none (approvals answer 503)."""
    stripe = providers.get("stripe")
    if isinstance(stripe, StripeProvider):
        return stripe
    if "dev" in providers:
        return DevPayoutProvider()
    return None


class Payouts:
    def __init__(self, db: AsyncDatabase[Doc], ledger: Ledger, policy: PayoutPolicy,
                 provider: PayoutProvider | None, *, lease_s: float = 60.0, sweep_every_s: float = 30.0) -> None:
        self._col = db["payouts"]
        self._users = db["users"]
        self._ledger = ledger
        self.policy = policy
        self.provider = provider
        self._lease = dt.timedelta(seconds=lease_s)
        self._sweep_every_s = sweep_every_s
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, db: AsyncDatabase[Doc], ledger: Ledger, providers: Mapping[str, PaymentProvider],
                 env: Env) -> Payouts:
        return cls(db, ledger, PayoutPolicy.from_env(env), payout_provider(providers))

    # -- the creator's payout account -------------------------------------------------------------
    async def set_account(self, user: str, body: Mapping[str, Any]) -> Doc:
        account = body.get("stripe_account")
        if set(body) - {"stripe_account"}:
            raise InvalidPayload("only stripe_account may be set")
        if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
            raise InvalidPayload("stripe_account must be a Stripe connected account id (acct_...)")
        await self._users.update_one({"_id": user}, {"$set": {"payout_account": {
            "stripe_account": account, "updated_at": _now()}}}, upsert=True)
        log.info("payout_account_set", user=user, stripe_account=account)
        return {"stripe_account": account}

    async def account(self, user: str) -> str | None:
        doc = await self._users.find_one({"_id": user}, {"payout_account": 1})
        found = (doc or {}).get("payout_account") or {}
        value = found.get("stripe_account")
        return value if isinstance(value, str) else None

    # -- requests ---------------------------------------------------------------------------------
    async def request(self, user: str, amount: object, idempotency_key: object,
                      currency: object = None) -> tuple[Doc, bool]:
        """Create (or, for a key seen before, return) a payout. Returns (document, created)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_CREDITS:
            raise InvalidPayload("amount must be a positive integer (credits)")
        if amount < self.policy.min_credits:
            raise InvalidPayload(f"the smallest payout is {self.policy.min_credits} credits")
        if not isinstance(idempotency_key, str) or not _KEY_RE.match(idempotency_key):
            raise InvalidPayload("idempotency_key must be 8..100 printable ASCII characters")
        code = self.policy.currency_of(currency)
        money = self.policy.money(amount, code)
        if money.amount <= 0:
            raise InvalidPayload(f"{amount} credits are worth less than one minor unit of {code}")
        existing = await self._col.find_one({"user": user, "idempotency_key": idempotency_key})
        if existing is not None:
            return _same_request(existing, amount, code), False
        destination = None
        if self.provider is not None and self.provider.needs_destination:
            destination = await self.account(user)
            if destination is None:
                raise InvalidPayload("set a payout account first: PUT /api/creator/payout-account")
        now = _now()
        doc: Doc = {
            "_id": "po_" + secrets.token_hex(12), "user": user, "amount": amount, "status": "requested",
            "idempotency_key": idempotency_key, "created_at": now, "decided_at": None, "decided_by": None,
            "transfer_ref": None, "provider": self.provider.name if self.provider else None,
            "destination": destination, "money": {"amount_minor": money.amount, "currency": code},
            "attempts": 0, "version": 0,
        }
        key = f"payout:{user}:{idempotency_key}"

        async def seen_before(refusal: AppError) -> tuple[Doc, bool]:
            # A concurrent request with the same key may have committed meanwhile: answer it.
            existing = await self._col.find_one({"user": user, "idempotency_key": idempotency_key})
            if existing is None:
                raise refusal
            return _same_request(existing, amount, code), False

        for attempt in range(_REQUEST_ATTEMPTS):
            shards = await self._ledger.shard_balances(accounts.earnings(user))
            available = sum(max(b, 0) for b in shards.values())
            if available < amount:
                return await seen_before(
                    InsufficientCredits(f"needs {amount} credits, {available} earned and available"))
            legs = (Leg(accounts.payout(user), amount), *_take(shards, amount))
            try:
                entry = await self._ledger.submit(Transfer(
                    key, "payout_request", legs, ref=doc["_id"], payer=user, meta={"payout": doc["_id"]},
                    attach=(("payouts", doc),)))
            except InsufficientCredits:
                if attempt + 1 == _REQUEST_ATTEMPTS:
                    return await seen_before(InsufficientCredits(f"needs {amount} credits; retry"))
                continue  # a shard moved since it was read (another payout): read again
            except OperationInFlight as exc:  # the key was applied with another amount
                return await seen_before(exc)
            if entry.replayed:
                return await seen_before(OperationInFlight())
            log.info("payout_requested", payout=doc["_id"], user=user, amount=amount, money=money.amount,
                     currency=code)
            return doc, True
        raise OperationInFlight()  # pragma: no cover - the loop returns or raises

    # -- reading ----------------------------------------------------------------------------------
    async def get(self, payout_id: str) -> Doc:
        doc = await self._col.find_one({"_id": payout_id})
        if doc is None:
            raise NotFound("no such payout")
        return doc

    async def list_for(self, user: str, *, limit: int = 50) -> list[Doc]:
        return await self._col.find({"user": user}).sort("created_at", -1).limit(limit).to_list()

    async def listing(self, status: str | None, *, limit: int = 50) -> list[Doc]:
        if status is not None and status not in STATUSES:
            raise InvalidPayload(f"status must be one of {', '.join(STATUSES)}")
        query: Doc = {"status": status} if status else {}
        return await self._col.find(query).sort("created_at", -1).limit(limit).to_list()

    async def paid_out(self, user: str) -> int:
        """Credits of this creator's payouts whose money was sent (their `:paid` transfer applied)."""
        total = 0
        in_flight: dict[str, int] = {}
        async for d in self._col.find({"user": user, "status": {"$in": ["approved", "requested", "failed"]}},
                                      {"amount": 1, "status": 1, "transfer_ref": 1}):
            if d["status"] == "approved":
                total += int(d["amount"])
            elif d.get("transfer_ref"):  # approval under way: paid iff its ledger transfer exists
                in_flight[_paid_key(d["_id"])] = int(d["amount"])
        if in_flight:
            found = await self._ledger.get_entries(in_flight)
            total += sum(in_flight[k] for k in found)
        return total

    # -- decisions --------------------------------------------------------------------------------
    async def approve(self, payout_id: str, admin: str) -> Doc:
        """Send the money and settle the ledger. Idempotent: an approved payout is returned as is."""
        provider = self._require_provider()
        token = secrets.token_hex(8)
        now = _now()

        def claim(d: Doc) -> bool:
            if d["status"] == "approved":
                return False
            if d["status"] == "rejected":
                raise Conflict("the payout was rejected")
            held = d.get("approving")
            if held and not d.get("transfer_ref") and now - _aware(held["at"]) < self._lease:
                raise Conflict("the payout is being approved; retry")
            # The sweeper resumes an abandoned approval on behalf of the admin who started it.
            d["approving"] = {"token": token, "by": held["by"] if held and admin == SWEEPER else admin, "at": now}
            if not d.get("transfer_ref"):
                d["attempts"] = int(d.get("attempts", 0)) + 1
            return True

        doc = await self._transition(payout_id, claim)
        if doc["status"] == "approved":
            return doc
        return await self._finish_approval(doc, provider)

    async def _finish_approval(self, doc: Doc, provider: PayoutProvider) -> Doc:
        payout_id = doc["_id"]
        ref = doc.get("transfer_ref")
        if not ref:
            try:
                ref = await self._send(doc, provider)
            except ProviderError as exc:
                await self._record_failure(doc, exc)
                raise

            def record(d: Doc) -> bool:
                if d.get("transfer_ref"):
                    return False
                d["transfer_ref"] = ref
                d["provider"] = provider.name
                d.pop("error", None)
                return True

            doc = await self._transition(payout_id, record)
            if doc["status"] == "rejected":
                # Only if this approval outlived its claim (a provider call slower than the lease) and
                # an admin rejected meanwhile: the money left, the credits went back. Support decides.
                log.error("payout_sent_after_rejection", payout=payout_id, user=doc["user"], transfer=ref)
                raise Conflict("the payout was rejected while its transfer was being sent")
        await self._ledger.submit(Transfer(
            _paid_key(payout_id), "payout_paid",
            (Leg(accounts.payout(doc["user"]), -int(doc["amount"]), checked=True),
             Leg(accounts.PLATFORM_PAYOUTS, int(doc["amount"]))),
            ref=payout_id, payer=doc["user"], meta={"payout": payout_id, "transfer": doc["transfer_ref"]}))
        now = _now()

        def done(d: Doc) -> bool:
            if d["status"] == "approved":
                return False
            held = d.pop("approving", None) or {}
            d.update(status="approved", decided_at=now, decided_by=held.get("by"))
            d.pop("error", None)
            return True

        doc = await self._transition(payout_id, done)
        log.info("payout_approved", payout=payout_id, user=doc["user"], amount=doc["amount"],
                 transfer=doc["transfer_ref"], provider=doc["provider"], by=doc["decided_by"])
        return doc

    async def _send(self, doc: Doc, provider: PayoutProvider) -> str:
        request = TransferRequest(payout_id=doc["_id"], user=doc["user"], credits=int(doc["amount"]),
                                  amount=int(doc["money"]["amount_minor"]), currency=doc["money"]["currency"],
                                  destination=doc.get("destination"))
        if int(doc.get("attempts", 0)) > 1:
            # An earlier attempt may have sent the money and failed to tell us (a timeout, a crash).
            found = await provider.find_transfer(doc["_id"])
            if found is not None:
                return found
        return await provider.send_transfer(request)

    async def _record_failure(self, doc: Doc, exc: ProviderError) -> None:
        token = doc["approving"]["token"]
        now = _now()

        def failed(d: Doc) -> bool:
            if d["status"] != "requested" and d["status"] != "failed":
                return False
            if (d.get("approving") or {}).get("token") != token or d.get("transfer_ref"):
                return False  # someone else took the approval over
            d.pop("approving", None)
            d["status"] = "failed"
            d["error"] = {"message": str(exc.details.get("provider_message") or exc.message)[:300],
                          "code": exc.details.get("provider_code") or exc.details.get("provider_error"),
                          "status": exc.details.get("provider_status"), "at": now}
            return True

        with contextlib.suppress(AppError):
            await self._transition(doc["_id"], failed)
        log.warning("payout_transfer_failed", payout=doc["_id"], user=doc["user"], reason=exc.message,
                    **{k: v for k, v in exc.details.items() if k.startswith("provider_")})

    async def reject(self, payout_id: str, admin: str, reason: object = None) -> Doc:
        """Return the credits to the creator's earnings. Idempotent: finishes an earlier rejection."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > _MAX_REASON):
            raise InvalidPayload(f"reason must be a string of at most {_MAX_REASON} characters")
        doc = await self.get(payout_id)
        if doc["status"] == "rejected":
            return await self._return_credits(doc)
        seen_attempts = int(doc.get("attempts", 0))
        if seen_attempts > 0 and not doc.get("transfer_ref") and doc["status"] != "approved":
            # An approval was attempted: make sure no money left before giving the credits back.
            ref = await self._require_provider().find_transfer(payout_id)
            if ref is not None:
                await self._transition(payout_id, lambda d: _set_ref(d, ref))
                raise Conflict("the provider already sent this payout; approve it to settle")
        now = _now()

        def decide(d: Doc) -> bool:
            if d["status"] == "rejected":
                return False
            if d["status"] == "approved" or d.get("transfer_ref"):
                raise Conflict("the payout was approved")
            held = d.get("approving")
            if held and now - _aware(held["at"]) < self._lease:
                raise Conflict("the payout is being approved")
            if int(d.get("attempts", 0)) != seen_attempts:
                raise Conflict("an approval was attempted meanwhile; retry")
            d.pop("approving", None)
            d.update(status="rejected", decided_at=now, decided_by=admin, reason=reason or "", returned=False)
            return True

        doc = await self._transition(payout_id, decide)
        log.info("payout_rejected", payout=payout_id, user=doc["user"], amount=doc["amount"], by=admin)
        return await self._return_credits(doc)

    async def _return_credits(self, doc: Doc) -> Doc:
        if doc.get("returned"):
            return doc
        await self._ledger.submit(Transfer(
            f"payout:{doc['_id']}:rejected", "payout_rejected",
            (Leg(accounts.payout(doc["user"]), -int(doc["amount"]), checked=True),
             Leg(accounts.earnings(doc["user"]), int(doc["amount"]))),
            ref=doc["_id"], payer=doc["user"], meta={"payout": doc["_id"]}))

        def returned(d: Doc) -> bool:
            if d.get("returned"):
                return False
            d["returned"] = True
            return True

        return await self._transition(doc["_id"], returned)

    def _require_provider(self) -> PayoutProvider:
        if self.provider is None:
            raise Unavailable("no payout provider is configured (set PAIRLY_STRIPE_SECRET_KEY)")
        return self.provider

    async def _transition(self, payout_id: str, mutate: Callable[[Doc], bool]) -> Doc:
        """Read, mutate a copy, write it back if `version` did not move; retry otherwise."""
        for _ in range(_CAS_ATTEMPTS):
            doc = await self.get(payout_id)
            new = copy.deepcopy(doc)
            if not mutate(new):
                return doc
            new["version"] = int(doc.get("version", 0)) + 1
            result = await self._col.replace_one({"_id": payout_id, "version": doc.get("version", 0)}, new)
            if result.matched_count:
                return new
        raise OperationInFlight("the payout is being updated concurrently; retry")

    # -- recovery ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="payouts-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def sweep(self) -> int:
        """Finish what a crash left: rejections whose credits were not returned, approvals whose
        claim expired (their admin decided; the provider call is idempotent per payout)."""
        done = 0
        cutoff = _now() - self._lease
        async for doc in self._col.find({"status": "rejected", "returned": False}).limit(100):
            await self._return_credits(doc)
            done += 1
        if self.provider is not None:
            stale = [d["_id"] async for d in self._col.find({"approving.at": {"$lt": cutoff}}, {"_id": 1}).limit(100)]
            for payout_id in stale:
                try:
                    await self.approve(payout_id, SWEEPER)
                    done += 1
                except AppError as exc:
                    log.warning("payout_resume_deferred", payout=payout_id, code=exc.code, reason=exc.message)
        if done:
            log.info("payouts_resumed", count=done)
        return done

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payouts_sweep_failed")
            await asyncio.sleep(self._sweep_every_s)


def _paid_key(payout_id: str) -> str:
    return f"payout:{payout_id}:paid"


def _set_ref(d: Doc, ref: str) -> bool:
    if d.get("transfer_ref"):
        return False
    d["transfer_ref"] = ref
    return True


def _same_request(existing: Doc, amount: int, currency: str) -> Doc:
    if existing["amount"] != amount or existing["money"]["currency"] != currency:
        raise Conflict("idempotency_key was already used for a different payout")
    return existing


def _take(shards: Mapping[str, int], amount: int) -> list[Leg]:
    """Checked debit legs on the earnings shards, from shard 0 upwards, until `amount` is covered."""
    legs: list[Leg] = []
    left = amount
    for doc_id in sorted(shards, key=lambda s: int(s.rsplit(accounts.SEP, 1)[1])):
        part = min(shards[doc_id], left)
        if part <= 0:
            continue
        legs.append(Leg(doc_id, -part, checked=True))
        left -= part
        if left == 0:
            break
    return legs


def public(doc: Doc) -> Doc:
    """A payout as creators and admins see it."""
    money = doc.get("money") or {}
    view: Doc = {
        "id": doc["_id"], "user": doc["user"], "amount": doc["amount"], "status": doc["status"],
        "idempotency_key": doc["idempotency_key"],
        "money": {"amount_minor": int(money["amount_minor"]), "currency": money["currency"],
                  "display": Price(money["currency"], int(money["amount_minor"])).display()} if money else None,
        "provider": doc.get("provider"), "transfer_ref": doc.get("transfer_ref"),
        "created_at": _iso(doc.get("created_at")), "decided_at": _iso(doc.get("decided_at")),
        "decided_by": doc.get("decided_by"),
    }
    if doc.get("status") == "rejected":
        view["reason"] = doc.get("reason") or ""
    if doc.get("error"):
        err = doc["error"]
        view["error"] = {"message": err.get("message"), "code": err.get("code"), "at": _iso(err.get("at"))}
    if doc.get("approving"):
        view["approving"] = {"by": doc["approving"].get("by"), "at": _iso(doc["approving"].get("at"))}
    return view


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    col = db["payouts"]
    await col.create_index([("user", 1), ("idempotency_key", 1)], unique=True)
    await col.create_index([("user", 1), ("created_at", -1)])
    await col.create_index([("status", 1), ("created_at", -1)])
    await col.create_index([("approving.at", 1)], sparse=True)
