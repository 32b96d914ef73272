"""Stored message documents and their wire form `M` (PROTOCOL.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

Doc = dict[str, Any]

def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_key(sender: str, client_id: str) -> str:
    """The idempotency key of a send: one message per (sender, client_id)."""
    return f"{sender}\x1f{client_id}"


def message_doc(*, message_id: str, cid: str, sender: str, recipient: str, text: str, client_id: str,
                reply_to: str | None, created_at: dt.datetime) -> Doc:
    doc: Doc = {
        "_id": message_id,
        "cid": cid,
        "from": sender,
        "to": recipient,
        "parties": [sender, recipient],
        "text": text,
        "client_id": client_id,
        "created_at": created_at,
        "status": "sent",
    }
    if reply_to is not None:
        doc["reply_to"] = reply_to
    return doc


def public(doc: Doc) -> Doc:
    """The wire form `M` of a stored message."""
    m: Doc = {
        "id": doc["_id"],
        "conversation_id": doc["cid"],
        "from": doc["from"],
        "to": doc["to"],
        "text": doc["text"],
        "client_id": doc["client_id"],
        "created_at": iso(doc["created_at"]),
        "status": doc.get("status", "sent"),
    }
    if doc.get("reply_to") is not None:
        m["reply_to"] = doc["reply_to"]
    if doc.get("edited_at") is not None:
        m["edited_at"] = iso(doc["edited_at"])
    if doc.get("deleted"):
        m["deleted"] = True
    return m
