"""What a call is: its states, end reasons, the record's shape and the payloads derived from it.

A call record (collection `calls`) is the one source of truth every node reads and changes with
compare-and-set updates:

    _id, caller, callee, parties: [caller, callee], media, rates: {audio, video} (the callee's rates
    when invited: a rate change applies to the next call, never mid-call), payee, share_pct,
    state: ringing | accepted | ended, reason, invited_at, accepted_at, ended_at, ring_deadline,
    dev: {caller: {sid, node}, callee: {sid, node} | None}   the devices taking part,
    owner: node that ticks (or settles) the call; nodes: the devices' nodes — both removed once settled,
    media_changes: [{at, media, minute}], ice: {caller: n, callee: n}, offline: bool (pushed),
    billed_minutes, credits, duration_s, settled: bool,
    quality: {probes: {caller, callee}, samples: {role: n}, minutes: {n: {role: figures}}, refunds: [...]}
    (signaling.quality)
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Any

from signaling.mos import public_quality

Doc = dict[str, Any]

RINGING, ACCEPTED, ENDED = "ringing", "accepted", "ended"
OPEN = (RINGING, ACCEPTED)
MEDIA = ("audio", "video")
REASONS = ("completed", "rejected", "cancelled", "missed", "busy", "blocked", "answered_elsewhere",
           "disconnected", "insufficient_credits", "ended_by_admin")
SIGNAL_TYPES = ("offer", "answer", "ice", "renegotiate")


def new_call_id() -> str:
    """Sortable by creation time (history pages by id), unguessable (a third user cannot probe ids)."""
    return f"c{int(time.time() * 1000):011x}{secrets.token_hex(8)}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ts(value: Any) -> float:
    """Epoch seconds of a stored datetime (the store hands them back naive, in UTC)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    return float(value)


def role_of(doc: Doc, user: str) -> str | None:
    if user == doc["caller"]:
        return "caller"
    if user == doc["callee"]:
        return "callee"
    return None


def other(role: str) -> str:
    return "callee" if role == "caller" else "caller"


def ended_payload(doc: Doc, reason: str | None = None) -> Doc:
    """`E` of PROTOCOL.md."""
    return {"call_id": doc["_id"], "reason": reason or doc.get("reason"), "duration_s": doc.get("duration_s", 0),
            "billed_minutes": doc.get("billed_minutes", 0), "credits": doc.get("credits", 0)}


def iso(value: Any) -> str | None:
    return dt.datetime.fromtimestamp(ts(value), dt.UTC).isoformat() if value is not None else None


def public(doc: Doc, viewer: str) -> Doc:
    """A call as its parties see it in their history."""
    out: Doc = {
        "call_id": doc["_id"], "caller": doc["caller"], "callee": doc["callee"],
        "direction": "outgoing" if viewer == doc["caller"] else "incoming",
        "media": doc["media"], "state": doc["state"], "reason": doc.get("reason"),
        "invited_at": iso(doc.get("invited_at")), "accepted_at": iso(doc.get("accepted_at")),
        "ended_at": iso(doc.get("ended_at")), "duration_s": doc.get("duration_s", 0),
        "billed_minutes": doc.get("billed_minutes", 0), "credits": doc.get("credits", 0),
        "rate_per_minute": doc["rates"][doc["media"]],
        "media_changes": [{"at": iso(c["at"]), "media": c["media"], "minute": c["minute"]}
                          for c in doc.get("media_changes", ())],
    }
    if doc.get("quality"):
        out["quality"] = public_quality(doc["quality"], "caller" if viewer == doc["caller"] else "callee")
    return out
