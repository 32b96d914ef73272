"""Payments: the configured providers, purchases, webhooks and the Razorpay verify flow, with one
lifecycle (start: settle what a crash left behind; a periodic sweep; stop: finish queued webhooks,
close the SDK clients)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from billing.errors import SignatureInvalid
from billing.ledger import Ledger
from billing.packages import Catalogue
from billing.providers import PaymentProvider, RazorpayProvider, providers_from_env
from billing.purchases import Purchases, Report
from billing.webhooks import Webhooks
from config.errors import InvalidPayload, NotFound
from config.settings import Env

log = structlog.get_logger(__name__)

Doc = dict[str, Any]


class Payments:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        ledger: Ledger,
        catalogue: Catalogue,
        providers: Mapping[str, PaymentProvider],
        *,
        inline_budget_s: float = 2.0,
    ) -> None:
        self.catalogue = catalogue
        self.providers = dict(providers)
        self.purchases = Purchases(db, ledger, catalogue, self.providers)
        self.webhooks = Webhooks(db, self.purchases, self.providers, inline_budget_s=inline_budget_s)
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, db: AsyncDatabase[Doc], ledger: Ledger, catalogue: Catalogue, env: Env, *,
                 production: bool) -> Payments:
        providers = providers_from_env(env, production=production, catalogue=catalogue)
        budget = env.number("PAIRLY_WEBHOOK_INLINE_BUDGET_S", 2.0, min_value=0.05)
        return cls(db, ledger, catalogue, providers, inline_budget_s=budget)

    def offered(self) -> list[Doc]:
        return [p.public() for p in self.providers.values()]

    async def verify_razorpay(self, user: str, order_id: object, payment_id: object, signature: object) -> Doc:
        """The Razorpay checkout's success callback: check the signature, then grant (once)."""
        adapter = self.providers.get("razorpay")
        if not isinstance(adapter, RazorpayProvider):
            raise InvalidPayload("provider 'razorpay' is not offered")
        for name, value in (("razorpay_order_id", order_id), ("razorpay_payment_id", payment_id),
                            ("razorpay_signature", signature)):
            if not isinstance(value, str) or not value or len(value) > 200:
                raise InvalidPayload(f"{name} must be a non-empty string")
        assert isinstance(order_id, str) and isinstance(payment_id, str) and isinstance(signature, str)
        try:
            adapter.verify_payment(order_id, payment_id, signature)
        except SignatureInvalid as exc:
            log.warning("razorpay_verify_rejected", user=user, order=order_id, payment=payment_id, reason=exc.message)
            raise
        purchase = await self.purchases.by_ref("razorpay", order_id)
        if purchase is None or purchase["user"] != user:
            log.warning("razorpay_verify_unknown_order", user=user, order=order_id, payment=payment_id)
            raise NotFound("no purchase for this order")
        return await self.purchases.record_payment(purchase["_id"], payment_id, purchase["amount"],
                                                   purchase["currency"], Report("razorpay:verify"))

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, sweep_every_s: float = 10.0) -> None:
        # The first pass runs at once but in the background: after a crash, the accounts a dead node's
        # open transaction holds stay busy until its sessions are killed (billing/writers.py), and
        # start-up must not wait for that.
        self._sweeper = asyncio.create_task(self._sweep_loop(sweep_every_s), name="payments-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.webhooks.stop()
        for provider in self.providers.values():
            await provider.close()

    async def sweep(self, *, settled_after_s: float = 5.0) -> tuple[int, int]:
        """Finish work a crash or a store failure left: unprocessed webhooks, unsettled purchases."""
        events = await self.webhooks.sweep()
        purchases = await self.purchases.resume(older_than_s=settled_after_s)
        return events, purchases

    async def _sweep_loop(self, every_s: float) -> None:
        first = True
        while True:
            try:
                await self.sweep(settled_after_s=0.0 if first else 5.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payments_sweep_failed")
            first = False
            await asyncio.sleep(every_s)
