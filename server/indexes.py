"""Every package's indexes, created idempotently at start-up."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from billing import ledger, payouts, purchases, webhooks
from server import blocks, sessions, users
from server.admin import audit as admin_audit
from server.chat import store as chat_store
from server.presence import archive as presence_archive
from signaling import store as call_store


async def ensure_all(db: AsyncDatabase[dict[str, Any]]) -> None:
    await users.ensure_indexes(db)
    await sessions.ensure_indexes(db)
    await blocks.ensure_indexes(db)
    await ledger.ensure_indexes(db)
    await purchases.ensure_indexes(db)
    await payouts.ensure_indexes(db)
    await webhooks.ensure_indexes(db)
    await chat_store.ensure_indexes(db)
    await presence_archive.ensure_indexes(db)
    await call_store.ensure_indexes(db)
    await admin_audit.ensure_indexes(db)
