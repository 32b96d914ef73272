"""Room names. Every connection joins its user's room, so "all devices of a user" is one emit."""

from __future__ import annotations

import sys

NAMESPACES = ("/chat", "/presence", "/call")


def user_room(user_id: str) -> str:
    return sys.intern(f"u:{user_id}")  # one copy per user across namespaces (docs/memory.md)
