"""Checks on what clients send, shared by the socket namespace and the REST route.

Every refusal is a `config.errors` error (answered in `server.errormap`); nothing is changed before
the whole request has passed.
"""

from __future__ import annotations

from typing import Any, Literal

from config.errors import InvalidPayload, TooLarge

MAX_USER_ID = 256
SetStatus = Literal["online", "away", "invisible"]
_SET_STATUSES: tuple[SetStatus, ...] = ("online", "away", "invisible")


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be an object")
    return data


def user_ids(values: list[Any], *, limit: int, what: str = "users") -> list[str]:
    """Distinct user ids in first-seen order; `too_large` beyond `limit` entries."""
    if len(values) > limit:
        raise TooLarge(f"at most {limit} {what} per request, got {len(values)}")
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_USER_ID:
            raise InvalidPayload(f"{what} must be non-empty strings of at most {MAX_USER_ID} characters")
    return list(dict.fromkeys(values))


def users_field(data: Any, *, limit: int) -> list[str]:
    """`{"users": [user, ...]}`."""
    users = _object(data).get("users")
    if not isinstance(users, list):
        raise InvalidPayload("'users' must be a list of user ids")
    return user_ids(users, limit=limit)


def users_query(raw: str | None, *, limit: int) -> list[str]:
    """`?users=a,b,c` on the REST route."""
    values = [part.strip() for part in (raw or "").split(",") if part.strip()]
    if not values:
        raise InvalidPayload("give the users to look up as ?users=a,b,c")
    return user_ids(values, limit=limit)


def status_field(data: Any) -> SetStatus:
    """`{"status": "online" | "away" | "invisible"}`."""
    status = _object(data).get("status")
    for allowed in _SET_STATUSES:
        if status == allowed:
            return allowed
    raise InvalidPayload("'status' must be one of online, away, invisible")


def no_fields(data: Any) -> None:
    """`{}` (extra fields are ignored, as everywhere)."""
    _object(data)
