"""Purchases: one record per attempt to buy a credit package, and exactly-once grants and debits.

A purchase document holds *facts* reported by the provider — the payment (first verified success),
refunds, disputes, failures, cancellation — and the *ledger operations* those facts call for. Every
report goes through one step, whatever its source (webhook, Razorpay verify call, dev provider):

1. read the purchase, merge the fact (monotonic: a refund that failed never becomes pending again,
   a closed dispute never reopens, a failure after the payment is ignored), derive the status;
2. plan the ledger operations the facts now require that are not planned yet, each with a unique
   idempotency key (`<provider>:<payment id>` for the grant, `<provider>:refund:<id>`,
   `<provider>:dispute:<id>`, `...:reversed` / `...:won` for reversals);
3. write facts + planned operations + status with a compare-and-set on `version` (a concurrent
   report retries from 1), marking the purchase `unsettled`;
4. apply the planned operations to the ledger (idempotent by key) and record them as `applied`.

So the order, duplication or delay of reports does not matter: the planned operations are a
function of the facts, recorded once, and each is applied at most once by the ledger whatever
retries or crashes happen. A crash between 3 and 4 leaves the purchase `unsettled`; `resume()`
(at start-up and periodically) applies what is missing.

Grants need a verified payment. A refund or dispute reported before the payment is recorded as a
fact and debits nothing; when the payment arrives, the grant and the debit are planned together.
Debits for one purchase never exceed its credits; they may take the wallet below zero (refund after
spend) through `Ledger.adjust`.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from billing import accounts
from billing.errors import OperationInFlight, PaymentMismatch
from billing.ledger import Ledger
from billing.packages import Catalogue
from billing.providers.base import PaymentProvider, PaymentRequest
from config.errors import AppError, Conflict, InvalidPayload, NotFound

log = structlog.get_logger(__name__)

Doc = dict[str, Any]

_KEY_RE = re.compile(r"^[\x21-\x7e]{8,100}$")
_CAS_ATTEMPTS = 50
_MAX_FAILURES_KEPT = 10
_MAX_HISTORY = 100

# Refund statuses (Stripe: pending/requires_action/succeeded/failed/canceled; Razorpay:
# pending/processed/failed). A terminal status is never replaced by a non-terminal one.
_REFUND_TERMINAL = frozenset({"succeeded", "processed", "failed", "canceled", "cancelled"})
_REFUND_VOID = frozenset({"failed", "canceled", "cancelled"})
# Dispute statuses (Stripe: warning_* are inquiries, no money moved; Razorpay: open, under_review,
# action_required, won, lost, closed = accepted/lost).
_DISPUTE_TERMINAL = frozenset({"won", "lost", "closed", "warning_closed"})
_DISPUTE_NO_DEBIT = frozenset({"won", "warning_closed", "warning_needs_response", "warning_under_review"})

STATUSES = ("created", "pending", "failed", "canceled", "succeeded", "partially_refunded", "refunded", "disputed")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


@dataclass(frozen=True, slots=True)
class Report:
    """What happened, for logs and the purchase history."""

    source: str
    """e.g. `stripe:evt_123`, `razorpay:verify`, `dev`."""


class Purchases:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        ledger: Ledger,
        catalogue: Catalogue,
        providers: Mapping[str, PaymentProvider],
    ) -> None:
        self._col = db["purchases"]
        self._ledger = ledger
        self._catalogue = catalogue
        self._providers = providers

    # -- creating purchases -----------------------------------------------------------------------
    def provider(self, name: object) -> PaymentProvider:
        if not isinstance(name, str) or name not in self._providers:
            offered = ", ".join(self._providers) or "none"
            raise InvalidPayload(f"provider {name!r} is not offered; offered: {offered}")
        return self._providers[name]

    async def create(self, user: str, package_id: object, provider_name: object, idempotency_key: object,
                     currency: object = None) -> tuple[Doc, bool]:
        """Create (or, for a key seen before, return) the purchase. Returns (document, created)."""
        provider = self.provider(provider_name)
        package = self._catalogue.get(package_id)
        if not isinstance(idempotency_key, str) or not _KEY_RE.match(idempotency_key):
            raise InvalidPayload("idempotency_key must be 8..100 printable ASCII characters")
        if currency is None:
            currency = provider.default_currency
        if not isinstance(currency, str):
            raise InvalidPayload("currency must be a string")
        price = package.price(currency)
        if price is None:
            raise InvalidPayload(f"package {package.id!r} has no price in {currency!r}")
        now = _now()
        doc: Doc = {
            "_id": "pur_" + secrets.token_hex(12),
            "user": user,
            "idempotency_key": idempotency_key,
            "provider": provider.name,
            "package_id": package.id,
            "package_name": package.name,
            "credits": package.credits,
            "amount": price.amount,
            "currency": price.currency,
            "status": "created",
            "history": [{"status": "created", "at": now, "source": "api"}],
            "payment": None,
            "extra_payments": [],
            "failures": [],
            "canceled": False,
            "refunds": [],
            "refunded_total": 0,
            "disputes": [],
            "ops": [],
            "applied": [],
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }
        created = True
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._col.find_one({"user": user, "idempotency_key": idempotency_key})
            if existing is None:  # pragma: no cover - the unique index says it exists
                raise OperationInFlight() from None
            same = (existing["provider"], existing["package_id"], existing["currency"]) == (
                provider.name, package.id, price.currency)
            if not same:
                raise Conflict("idempotency_key was already used for a different purchase") from None
            doc, created = existing, False
        if created:
            log.info("purchase_created", purchase=doc["_id"], user=user, provider=provider.name,
                     package=package.id, amount=price.amount, currency=price.currency)
        if doc.get("provider_ref") is None:
            doc = await self._open_checkout(doc, provider)
        if provider.completes_immediately and doc.get("payment") is None:
            doc = await self.record_payment(doc["_id"], doc["_id"], doc["amount"], doc["currency"], Report("dev"))
        elif doc.get("unsettled"):
            doc = await self.settle(doc["_id"])
        return doc, created

    async def _open_checkout(self, doc: Doc, provider: PaymentProvider) -> Doc:
        checkout = await provider.create_payment(PaymentRequest(
            purchase_id=doc["_id"], user=doc["user"], package_id=doc["package_id"], credits=doc["credits"],
            amount=doc["amount"], currency=doc["currency"]))

        def mutate(d: Doc) -> bool:
            if d.get("provider_ref") is not None:
                return False  # a concurrent request with the same key got there first; keep its checkout
            d["provider_ref"] = checkout.ref
            d["checkout"] = checkout.client
            return True

        return await self._transition(doc["_id"], mutate, Report(provider.name))

    # -- reading ----------------------------------------------------------------------------------
    async def get(self, purchase_id: str) -> Doc | None:
        return await self._col.find_one({"_id": purchase_id})

    async def get_for(self, user: str, purchase_id: str) -> Doc:
        doc = await self._col.find_one({"_id": purchase_id, "user": user})
        if doc is None:
            raise NotFound("no such purchase")
        return doc

    async def list_for(self, user: str, *, limit: int = 20) -> list[Doc]:
        return await self._col.find({"user": user}).sort("created_at", -1).limit(limit).to_list()

    async def by_ref(self, provider: str, ref: str) -> Doc | None:
        return await self._col.find_one({"provider": provider, "provider_ref": ref})

    async def by_payment(self, provider: str, payment_id: str) -> Doc | None:
        return await self._col.find_one({"provider": provider, "payment.id": payment_id})

    # -- facts ------------------------------------------------------------------------------------
    async def record_payment(self, purchase_id: str, payment_id: str, amount: object, currency: object,
                             report: Report) -> Doc:
        """A verified successful payment: grants the package's credits once per purchase."""
        doc = await self._existing(purchase_id)
        _check_money(doc, amount, currency, report, "payment")

        def mutate(d: Doc) -> bool:
            payment = d.get("payment")
            if payment is None:
                d["payment"] = {"id": payment_id, "amount": amount, "currency": d["currency"],
                                "at": _now(), "source": report.source}
                return True
            if payment["id"] == payment_id or payment_id in d["extra_payments"]:
                return False
            # A second successful payment for one purchase (e.g. a user paying twice on one order):
            # recorded for support to refund; it grants nothing more.
            log.warning("purchase_duplicate_payment", purchase=purchase_id, payment=payment_id,
                        first=payment["id"], source=report.source)
            d["extra_payments"].append(payment_id)
            return True

        await self._transition(purchase_id, mutate, report)
        return await self.settle(purchase_id)

    async def record_failure(self, purchase_id: str, payment_id: str | None, reason: str, report: Report) -> Doc:
        """A failed attempt. Ignored once paid (a late failure never undoes a success)."""

        def mutate(d: Doc) -> bool:
            if d.get("payment") is not None:
                log.info("purchase_stale_failure_ignored", purchase=purchase_id, source=report.source)
                return False
            if any(f.get("source") == report.source for f in d["failures"]):
                return False
            d["failures"] = [*d["failures"], {"payment_id": payment_id, "reason": reason[:200], "at": _now(),
                                              "source": report.source}][-_MAX_FAILURES_KEPT:]
            return True

        return await self._transition(purchase_id, mutate, report)

    async def record_canceled(self, purchase_id: str, report: Report) -> Doc:
        def mutate(d: Doc) -> bool:
            if d.get("payment") is not None or d.get("canceled"):
                return False
            d["canceled"] = True
            return True

        return await self._transition(purchase_id, mutate, report)

    async def record_refund(self, purchase_id: str, refund_id: str, amount: object, currency: object,
                            status: str, report: Report) -> Doc:
        doc = await self._existing(purchase_id)
        _check_money(doc, amount, currency, report, "refund", partial=True)
        return await self._record_item(purchase_id, "refunds", refund_id, amount, status, _REFUND_TERMINAL, report)

    async def record_refunded_total(self, purchase_id: str, amount_refunded: object, currency: object,
                                    report: Report) -> Doc:
        """The cumulative refunded amount (Stripe `charge.refunded` without its refund list)."""
        doc = await self._existing(purchase_id)
        _check_money(doc, amount_refunded, currency, report, "refund", partial=True)
        assert isinstance(amount_refunded, int)

        def mutate(d: Doc) -> bool:
            if amount_refunded <= d["refunded_total"]:
                return False
            d["refunded_total"] = amount_refunded
            return True

        await self._transition(purchase_id, mutate, report)
        return await self.settle(purchase_id)

    async def record_dispute(self, purchase_id: str, dispute_id: str, amount: object, currency: object,
                             status: str, report: Report) -> Doc:
        doc = await self._existing(purchase_id)
        _check_money(doc, amount, currency, report, "dispute", partial=True)
        return await self._record_item(purchase_id, "disputes", dispute_id, amount, status, _DISPUTE_TERMINAL,
                                       report)

    async def _record_item(self, purchase_id: str, field: str, item_id: str, amount: object, status: str,
                           terminal: frozenset[str], report: Report) -> Doc:
        status = status.lower()

        def mutate(d: Doc) -> bool:
            items: list[Doc] = d[field]
            for item in items:
                if item["id"] == item_id:
                    if item["status"] == status or (item["status"] in terminal and status not in terminal):
                        return False  # duplicate, or a late report of an earlier state
                    item["status"] = status
                    item["amount"] = amount
                    return True
            items.append({"id": item_id, "amount": amount, "status": status, "at": _now()})
            return True

        await self._transition(purchase_id, mutate, report, trigger=item_id)
        return await self.settle(purchase_id)

    async def _existing(self, purchase_id: str) -> Doc:
        doc = await self._col.find_one({"_id": purchase_id})
        if doc is None:
            raise NotFound("no such purchase")
        return doc

    # -- the one write path -----------------------------------------------------------------------
    async def _transition(self, purchase_id: str, mutate: Callable[[Doc], bool], report: Report,
                          trigger: str | None = None) -> Doc:
        for _ in range(_CAS_ATTEMPTS):
            doc = await self._existing(purchase_id)
            new = copy.deepcopy(doc)
            if not mutate(new):
                return doc
            planned = plan(new, trigger or report.source)
            new["ops"] = [*doc["ops"], *planned]
            new["status"] = status_of(new)
            now = _now()
            new["updated_at"] = now
            fields = ("provider_ref", "checkout", "payment", "extra_payments", "failures", "canceled", "refunds",
                      "refunded_total", "disputes", "ops", "status", "updated_at")
            update: Doc = {"$set": {f: new.get(f) for f in fields}, "$inc": {"version": 1}}
            if planned:
                update["$set"]["unsettled"] = True
            if new["status"] != doc["status"]:
                entry = {"status": new["status"], "at": now, "source": report.source}
                update["$push"] = {"history": {"$each": [entry], "$slice": -_MAX_HISTORY}}
                new["history"] = [*doc["history"], entry]
            result = await self._col.update_one({"_id": purchase_id, "version": doc["version"]}, update)
            if result.matched_count:
                new["version"] = doc["version"] + 1
                if planned:
                    new["unsettled"] = True
                if new["status"] != doc["status"]:
                    log.info("purchase_status", purchase=purchase_id, user=doc["user"], provider=doc["provider"],
                             previous=doc["status"], status=new["status"], source=report.source)
                return new
        raise OperationInFlight("the purchase is being updated concurrently; retry")

    async def settle(self, purchase_id: str) -> Doc:
        """Apply every planned ledger operation not applied yet (idempotent; safe to run anywhere)."""
        doc = await self._existing(purchase_id)
        applied = set(doc.get("applied", []))
        done: list[str] = []
        try:
            for op in doc["ops"]:
                if op["key"] in applied:
                    continue
                user, delta, key, kind = doc["user"], int(op["delta"]), str(op["key"]), str(op["kind"])
                meta = {"purchase": doc["_id"], "provider": doc["provider"]}
                # Credits come in from the provider's clearing account and leave back to it (refunds,
                # disputes, their reversals), so clearing == -(net credits sold through that provider).
                clearing = accounts.clearing(doc["provider"])
                if delta > 0 and kind == "purchase":
                    await self._ledger.credit(user, delta, key, kind, ref=doc["_id"], meta=meta, source=clearing)
                else:
                    await self._ledger.adjust(user, delta, key, kind, ref=doc["_id"], meta=meta, counter=clearing)
                done.append(op["key"])
        finally:
            if done:
                await self._col.update_one({"_id": purchase_id}, {"$addToSet": {"applied": {"$each": done}}})
        if doc.get("unsettled"):
            # Only if nothing was planned meanwhile (that transition settles its own operations).
            await self._col.update_one({"_id": purchase_id, "version": doc["version"]}, {"$unset": {"unsettled": ""}})
        doc["applied"] = [*doc.get("applied", []), *done]
        doc.pop("unsettled", None)
        return doc

    async def resume(self, *, older_than_s: float = 5.0, limit: int = 200) -> int:
        """Settle purchases left unsettled (a process died between planning and applying)."""
        cutoff = _now() - dt.timedelta(seconds=older_than_s)
        ids = [d["_id"] async for d in self._col.find({"unsettled": True, "updated_at": {"$lt": cutoff}},
                                                       {"_id": 1}).limit(limit)]
        settled = 0
        for purchase_id in ids:
            try:
                await self.settle(purchase_id)
                settled += 1
            except AppError as exc:  # e.g. accounts still held by a dead node's transaction: the next sweep retries
                log.warning("purchase_resume_deferred", purchase=purchase_id, code=exc.code, reason=exc.message)
        if ids:
            log.info("purchases_resumed", count=settled, deferred=len(ids) - settled)
        return settled


# -- pure functions over a purchase document ------------------------------------------------------
def credits_for(doc: Doc, amount: int) -> int:
    """Credits matching `amount` (minor units) of the purchase, rounded up, at most the package's."""
    if amount <= 0:
        return 0
    credits = int(doc["credits"])
    return min(credits, math.ceil(credits * amount / int(doc["amount"])))


def _ops_total(doc: Doc, *kinds: str) -> int:
    return sum(int(op["delta"]) for op in doc["ops"] if op["kind"] in kinds)


def _refunded(doc: Doc) -> int:
    return max(sum(int(r["amount"]) for r in doc["refunds"] if r["status"] not in _REFUND_VOID),
               int(doc.get("refunded_total", 0)))


def _item_key(items: list[Doc], trigger: str, fallback: str) -> str:
    """Name a debit/reversal after the refund/dispute that caused it (provider ids are global)."""
    ids = [i["id"] for i in items]
    if trigger in ids:
        return trigger
    return ids[-1] if ids else fallback


def plan(doc: Doc, trigger: str) -> list[Doc]:
    """The ledger operations the facts require that are not planned yet.

    Keys are globally unique: they carry the provider's payment, refund or dispute id.
    """
    payment = doc.get("payment")
    if payment is None:
        return []
    provider = doc["provider"]
    ops: list[Doc] = []
    keys = {op["key"] for op in doc["ops"]}

    def add(key: str, delta: int, kind: str) -> None:
        unique, n = key, 1
        while unique in keys:
            n += 1
            unique = f"{key}:{n}"
        keys.add(unique)
        ops.append({"key": unique, "delta": delta, "kind": kind})

    if not any(op["kind"] == "purchase" for op in doc["ops"]):
        add(f"{provider}:{payment['id']}", doc["credits"], "purchase")

    refunded = _refunded(doc)
    target_refund = credits_for(doc, refunded)
    disputed = sum(int(x["amount"]) for x in doc["disputes"] if x["status"] not in _DISPUTE_NO_DEBIT)
    target_dispute = min(credits_for(doc, disputed), doc["credits"] - target_refund)

    current = -_ops_total(doc, "refund", "refund_reversal")
    name = _item_key(doc["refunds"], trigger, f"{payment['id']}:total:{refunded}")
    if target_refund > current:
        add(f"{provider}:refund:{name}", -(target_refund - current), "refund")
    elif target_refund < current:
        add(f"{provider}:refund:{name}:reversed", current - target_refund, "refund_reversal")
    current = -_ops_total(doc, "dispute", "dispute_reversal")
    name = _item_key(doc["disputes"], trigger, f"{payment['id']}:dispute")
    if target_dispute > current:
        add(f"{provider}:dispute:{name}", -(target_dispute - current), "dispute")
    elif target_dispute < current:
        add(f"{provider}:dispute:{name}:won", current - target_dispute, "dispute_reversal")
    return ops


def status_of(doc: Doc) -> str:
    if doc.get("payment") is None:
        if doc.get("canceled"):
            return "canceled"
        if doc.get("failures"):
            return "failed"
        return "pending" if doc.get("provider_ref") else "created"
    if any(x["status"] not in ("won", "warning_closed") for x in doc["disputes"]):
        return "disputed"
    refunded = _refunded(doc)
    if refunded >= doc["amount"]:
        return "refunded"
    if refunded > 0:
        return "partially_refunded"
    return "succeeded"


def _check_money(doc: Doc, amount: object, currency: object, report: Report, what: str, *,
                 partial: bool = False) -> None:
    """The provider's amount/currency must match the purchase (refunds/disputes: at most its amount)."""
    ok_amount = isinstance(amount, int) and not isinstance(amount, bool) and (
        0 < amount <= doc["amount"] if partial else amount == doc["amount"])
    ok_currency = isinstance(currency, str) and currency.lower() == doc["currency"]
    if ok_amount and ok_currency:
        return
    log.warning("payment_mismatch", purchase=doc["_id"], what=what, source=report.source,
                expected_amount=doc["amount"], expected_currency=doc["currency"],
                amount=amount, currency=currency)
    raise PaymentMismatch(f"{what} of {amount} {currency} does not match the purchase "
                          f"({doc['amount']} {doc['currency']})")


def public(doc: Doc, *, checkout: bool = False) -> Doc:
    """The purchase as the app sees it."""
    view: Doc = {
        "id": doc["_id"],
        "provider": doc["provider"],
        "package_id": doc["package_id"],
        "credits": doc["credits"],
        "amount": doc["amount"],
        "currency": doc["currency"],
        "status": doc["status"],
        "created_at": _iso(doc.get("created_at")),
        "updated_at": _iso(doc.get("updated_at")),
        "history": [{"status": h["status"], "at": _iso(h.get("at"))} for h in doc.get("history", [])],
    }
    if doc.get("provider_ref"):
        view["provider_ref"] = doc["provider_ref"]
    if checkout and doc.get("checkout") and doc["status"] in ("created", "pending", "failed"):
        view.update({k: v for k, v in doc["checkout"].items() if k not in view})
    return view


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    col = db["purchases"]
    await col.create_index([("user", 1), ("idempotency_key", 1)], unique=True)
    await col.create_index([("provider", 1), ("provider_ref", 1)], unique=True,
                           partialFilterExpression={"provider_ref": {"$type": "string"}})
    await col.create_index([("provider", 1), ("payment.id", 1)], sparse=True)
    await col.create_index([("user", 1), ("created_at", -1)])
    await col.create_index([("unsettled", 1), ("updated_at", 1)], sparse=True)
