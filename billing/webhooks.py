"""Provider webhooks, independent of HTTP: verify, record durably, process, answer fast.

`receive()`:
1. the adapter verifies the signature on the raw body (forged or expired → `SignatureInvalid`);
2. the event is recorded in `webhook_events` under `<provider>:<event id>` before any work: a
   duplicate delivery of an event already processed is answered from its record and does nothing;
3. the event is processed inline for at most `inline_budget_s` (a few store writes and one
   group-committed ledger batch, normally milliseconds); if that runs long the answer is sent
   anyway ("queued") and the work finishes in the background. An event left `received` by a crash is
   processed again by `sweep()`. Processing is idempotent (see `billing.purchases`), so a second
   run — or a duplicate that races the first — changes nothing.

The provider API is never called from here: every fact comes from the signed event itself.
Permanent problems (amount/currency mismatch, malformed event) are answered 400 and recorded as
`rejected`; an event for a purchase we do not know is recorded as `ignored` and answered 200 so the
provider stops retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from billing.errors import PaymentMismatch, SignatureInvalid
from billing.providers.base import PaymentProvider, WebhookEvent
from billing.purchases import Purchases, Report
from config.errors import AppError, InvalidPayload, NotFound

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
EVENT_TTL_S = 60 * 24 * 3600  # longer than any provider retries (Stripe: 3 days, Razorpay: 24 h)
MAX_SWEEPS = 30  # an event still failing after this many sweeps is marked `failed` for an operator
_PERMANENT: dict[str, type[AppError]] = {"PaymentMismatch": PaymentMismatch, "InvalidPayload": InvalidPayload}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Webhooks:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        purchases: Purchases,
        providers: Mapping[str, PaymentProvider],
        *,
        inline_budget_s: float = 2.0,
    ) -> None:
        self._events = db["webhook_events"]
        self._purchases = purchases
        self._providers = providers
        self._budget_s = inline_budget_s
        self._tasks: set[asyncio.Task[Doc]] = set()

    async def receive(self, provider: str, body: bytes, headers: Mapping[str, str]) -> Doc:
        adapter = self._providers.get(provider)
        if adapter is None or provider == "dev":
            raise NotFound(f"provider {provider!r} is not configured")
        try:
            event = adapter.verify_webhook(body, headers)
        except SignatureInvalid as exc:
            log.warning("webhook_rejected", provider=provider, reason=exc.message, bytes=len(body))
            raise
        doc_id = f"{provider}:{event.id}"
        record: Doc = {"_id": doc_id, "provider": provider, "event_id": event.id, "type": event.type,
                       "body": event.body, "status": "received", "received_at": _now(), "deliveries": 1}
        try:
            await self._events.insert_one(record)
        except DuplicateKeyError:
            existing = await self._events.find_one_and_update({"_id": doc_id}, {"$inc": {"deliveries": 1}})
            if existing is not None and existing["status"] not in ("received", "failed"):
                log.info("webhook_duplicate", provider=provider, event_id=event.id, type=event.type,
                         status=existing["status"])
                if existing["status"] == "rejected":
                    error = existing.get("error") or {}
                    raise _PERMANENT.get(error.get("kind", ""), InvalidPayload)(error.get("message")) from None
                return {"received": True, "duplicate": True, "outcome": existing.get("outcome")}
            # Still `received` (being processed elsewhere, or left by a crash) or `failed`: processing
            # is idempotent, so do it (again) rather than answer before it is done.
        task = asyncio.create_task(self._process(event), name=f"webhook:{doc_id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        done, _ = await asyncio.wait({task}, timeout=self._budget_s)
        if task not in done:
            log.warning("webhook_queued", provider=provider, event_id=event.id, type=event.type,
                        budget_s=self._budget_s)
            return {"received": True, "queued": True}
        result = task.result()
        return {"received": True, **result}

    def _finished(self, task: asyncio.Task[Doc]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, AppError):
                log.error("webhook_processing_failed", task=task.get_name(), exc_info=exc)

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def sweep(self, *, older_than_s: float = 30.0, limit: int = 100) -> int:
        """Process events recorded but never finished (the process died, or the store failed)."""
        cutoff = _now() - dt.timedelta(seconds=older_than_s)
        stuck = await self._events.find({"status": "received", "received_at": {"$lt": cutoff}}).limit(limit).to_list()
        for doc in stuck:
            if doc.get("sweeps", 0) >= MAX_SWEEPS:
                log.error("webhook_abandoned", provider=doc["provider"], event_id=doc["event_id"], type=doc["type"],
                          sweeps=doc.get("sweeps"))
                await self._events.update_one({"_id": doc["_id"], "status": "received"},
                                              {"$set": {"status": "failed", "processed_at": _now()}})
                continue
            await self._events.update_one({"_id": doc["_id"]}, {"$inc": {"sweeps": 1}})
            event = WebhookEvent(doc["provider"], doc["event_id"], doc["type"], doc["body"], json.loads(doc["body"]))
            with contextlib.suppress(AppError):
                await self._process(event)
        if stuck:
            log.info("webhooks_swept", count=len(stuck))
        return len(stuck)

    # -- processing -------------------------------------------------------------------------------
    async def _process(self, event: WebhookEvent) -> Doc:
        doc_id = f"{event.provider}:{event.id}"
        report = Report(source=doc_id)
        try:
            if event.provider == "stripe":
                outcome = await self._stripe(event, report)
            else:
                outcome = await self._razorpay(event, report)
        except (PaymentMismatch, InvalidPayload) as exc:
            log.warning("webhook_rejected", provider=event.provider, event_id=event.id, type=event.type,
                        reason=exc.message)
            await self._events.update_one({"_id": doc_id}, {"$set": {
                "status": "rejected", "processed_at": _now(),
                "error": {"kind": type(exc).__name__, "message": exc.message}}})
            raise
        status = "ignored" if outcome in ("ignored", "unknown_purchase") else "processed"
        if outcome == "unknown_purchase":
            log.warning("webhook_unknown_purchase", provider=event.provider, event_id=event.id, type=event.type)
        await self._events.update_one({"_id": doc_id}, {"$set": {
            "status": status, "outcome": outcome, "processed_at": _now()}})
        log.info("webhook_processed", provider=event.provider, event_id=event.id, type=event.type, outcome=outcome)
        return {"outcome": outcome}

    async def _stripe(self, event: WebhookEvent, report: Report) -> str:
        data = event.data.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise InvalidPayload("event without data.object")
        kind = event.type
        if kind.startswith("payment_intent."):
            purchase = await self._stripe_purchase(obj.get("id"), obj.get("metadata"))
        elif kind.startswith(("refund.", "charge.refund", "charge.dispute.")) or kind == "charge.refunded":
            purchase = await self._stripe_purchase(obj.get("payment_intent"), obj.get("metadata"))
        else:
            return "ignored"
        if purchase is None:
            return "unknown_purchase"
        pid = purchase["_id"]
        p = self._purchases
        if kind == "payment_intent.succeeded":
            amount = obj.get("amount_received") or obj.get("amount")
            await p.record_payment(pid, _text(obj, "id"), amount, obj.get("currency"), report)
            return "payment_recorded"
        if kind == "payment_intent.payment_failed":
            error = obj.get("last_payment_error")
            reason = error.get("message") if isinstance(error, dict) else None
            await p.record_failure(pid, _text(obj, "id"), str(reason or "payment failed"), report)
            return "failure_recorded"
        if kind == "payment_intent.canceled":
            await p.record_canceled(pid, report)
            return "cancel_recorded"
        if kind == "charge.refunded":
            refunds = obj.get("refunds")
            listed = refunds.get("data") if isinstance(refunds, dict) else None
            for refund in listed if isinstance(listed, list) else []:
                if isinstance(refund, dict):
                    await p.record_refund(pid, _text(refund, "id"), refund.get("amount"), refund.get("currency"),
                                          _text(refund, "status"), report)
            await p.record_refunded_total(pid, obj.get("amount_refunded"), obj.get("currency"), report)
            return "refund_recorded"
        if kind.startswith(("refund.", "charge.refund.")):
            await p.record_refund(pid, _text(obj, "id"), obj.get("amount"), obj.get("currency"),
                                  _text(obj, "status"), report)
            return "refund_recorded"
        if kind.startswith("charge.dispute."):
            await p.record_dispute(pid, _text(obj, "id"), obj.get("amount"), obj.get("currency"),
                                   _text(obj, "status"), report)
            return "dispute_recorded"
        return "ignored"

    async def _stripe_purchase(self, intent_id: object, metadata: object) -> Doc | None:
        if isinstance(intent_id, str):
            found = await self._purchases.by_ref("stripe", intent_id)
            if found is not None:
                return found
        purchase_id = metadata.get("purchase_id") if isinstance(metadata, dict) else None
        if isinstance(purchase_id, str):
            found = await self._purchases.get(purchase_id)
            if found is not None and found["provider"] == "stripe" and found.get("provider_ref") in (None, intent_id):
                return found
        return None

    async def _razorpay(self, event: WebhookEvent, report: Report) -> str:
        payload = event.data.get("payload")
        if not isinstance(payload, dict):
            raise InvalidPayload("event without payload")
        kind = event.type
        payment = _entity(payload, "payment")
        if kind in ("payment.captured", "order.paid", "payment.failed"):
            if payment is None:
                raise InvalidPayload(f"{kind} without payload.payment.entity")
            purchase = await self._razorpay_purchase(payment, None)
            if purchase is None:
                return "unknown_purchase"
            if kind == "payment.failed":
                reason = payment.get("error_description") or payment.get("error_code") or "payment failed"
                await self._purchases.record_failure(purchase["_id"], _text(payment, "id"), str(reason), report)
                return "failure_recorded"
            await self._purchases.record_payment(purchase["_id"], _text(payment, "id"), payment.get("amount"),
                                                 _lower(payment.get("currency")), report)
            return "payment_recorded"
        if kind.startswith("refund."):
            refund = _entity(payload, "refund")
            if refund is None:
                raise InvalidPayload(f"{kind} without payload.refund.entity")
            purchase = await self._razorpay_purchase(payment, refund.get("payment_id"))
            if purchase is None:
                return "unknown_purchase"
            await self._purchases.record_refund(purchase["_id"], _text(refund, "id"), refund.get("amount"),
                                                _lower(refund.get("currency")), _text(refund, "status"), report)
            return "refund_recorded"
        if kind.startswith("payment.dispute."):
            dispute = _entity(payload, "dispute")
            if dispute is None:
                raise InvalidPayload(f"{kind} without payload.dispute.entity")
            purchase = await self._razorpay_purchase(payment, dispute.get("payment_id"))
            if purchase is None:
                return "unknown_purchase"
            status = _text(dispute, "status")
            if kind in ("payment.dispute.won", "payment.dispute.lost") and status not in ("won", "lost"):
                status = kind.rsplit(".", 1)[1]
            await self._purchases.record_dispute(purchase["_id"], _text(dispute, "id"), dispute.get("amount"),
                                                 _lower(dispute.get("currency")), status, report)
            return "dispute_recorded"
        return "ignored"

    async def _razorpay_purchase(self, payment: Doc | None, payment_id: object) -> Doc | None:
        order_id = payment.get("order_id") if payment else None
        if isinstance(order_id, str):
            found = await self._purchases.by_ref("razorpay", order_id)
            if found is not None:
                return found
        pay_id = payment.get("id") if payment else payment_id
        if isinstance(pay_id, str):
            return await self._purchases.by_payment("razorpay", pay_id)
        return None


def _entity(payload: Doc, name: str) -> Doc | None:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else None


def _text(obj: Doc, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidPayload(f"event object without a valid {key!r}")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    col = db["webhook_events"]
    await col.create_index([("status", 1), ("received_at", 1)])
    await col.create_index("received_at", expireAfterSeconds=EVENT_TTL_S, name="received_at_ttl")
