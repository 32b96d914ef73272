"""Room names. Every connection joins its user's room, so "all devices of a user" is one emit."""

from __future__ import annotations

NAMESPACES = ("/chat", "/presence", "/call")


def user_room(user_id: str) -> str:
    return f"u:{user_id}"
