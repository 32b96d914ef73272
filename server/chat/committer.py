"""`message:send` on the ledger: the message is stored in the same transaction as its charge.

A send is one ledger transfer keyed by the send's idempotency key (`msg:<sender>\\x1f<client_id>`):
the payer's wallet pays the recipient's price — to platform revenue, or split with the recipient's
earnings when they are a creator — and the message document rides along as an attachment, inserted
in the ledger's batch transaction (`billing.ledger`). So group commit, exactly-once charging, crash
safety and resend handling are the ledger's: a message is stored iff it was charged, an ack means
both are durable, and a resend of the same `client_id` is a replay of the same key that returns the
original message and charges nothing. With a price of 0 the transfer has no legs and only records
the key (free messages stay idempotent). Nothing is left to recover after a crash; the conversation
views, written off the ack path, are repaired by `views.ViewFlusher`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from billing.creators import Creators
from billing.ledger import Entry, Ledger, Transfer
from config.errors import NotFound, Unavailable
from server.chat.model import Doc, client_key
from server.chat.store import ChatStore
from server.chat.views import ViewFlusher

CommitListener = Callable[[Sequence[Doc]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SendResult:
    doc: Doc
    balance: int
    delivered_now: bool
    """False for a resend of a message that had already been committed: nothing to deliver again."""
    price: int = 0
    """Credits charged for this message (the rate actually applied)."""


def send_key(sender: str, client_id: str) -> str:
    return f"msg:{client_key(sender, client_id)}"


class Committer:
    def __init__(self, store: ChatStore, ledger: Ledger, creators: Creators, views: ViewFlusher, *,
                 on_commit: CommitListener | None = None) -> None:
        self._store = store
        self._ledger = ledger
        self._creators = creators
        self._views = views
        self._on_commit = on_commit

    def set_listener(self, on_commit: CommitListener | None) -> None:
        self._on_commit = on_commit

    async def submit(self, doc: Doc) -> SendResult:
        """Charge and store one message document (built by the service). Raises the refusal, if any."""
        reply_to = doc.get("reply_to")
        if reply_to is not None and not await self._store.exists_in(reply_to, doc["cid"]):
            raise NotFound("reply_to: no such message in this conversation")
        sender, recipient = doc["from"], doc["to"]
        rates = await self._creators.rates(recipient)
        price = rates.message
        key = send_key(sender, doc["client_id"])
        attach = (("chat_messages", doc),)
        entry: Entry
        if price > 0:
            payee, pct = self._creators.payee(rates, recipient)
            entry = await self._ledger.spend(sender, price, key, "message", ref=doc["_id"], payee=payee,
                                             share_pct=pct, attach=attach, strict=False)
        else:
            entry = await self._ledger.submit(Transfer(key, "message", (), doc["_id"], sender, attach=attach,
                                                       strict=False))
        if entry.replayed:
            return await self._resent(entry, sender)
        self._views.offer(doc)
        if self._on_commit is not None:
            await self._on_commit([doc])
        balance = entry.balance_after if entry.postings else await self._balance(sender)
        return SendResult(doc, balance, delivered_now=True, price=-entry.delta)

    async def _resent(self, entry: Entry, sender: str) -> SendResult:
        original = await self._store.get(entry.ref or "")
        if original is None:  # the entry exists, so its message does (same transaction); a read lag
            raise Unavailable("message store unavailable; retry")
        balance = await self._balance(sender)
        return SendResult(original, balance, delivered_now=False, price=-entry.delta)

    async def _balance(self, user: str) -> int:
        cached = self._ledger.cached_balance(user)
        return cached if cached is not None else (await self._ledger.wallet(user)).balance
