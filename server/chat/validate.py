"""Payload parsing for every `/chat` event: typed requests out, `InvalidPayload`/`TooLarge` otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.errors import InvalidPayload, TooLarge
from server.chat.ids import is_message_id

MAX_USER_ID = 128
MAX_IDS = 500


def _obj(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be an object")
    return data


def _str(data: dict[str, Any], key: str, *, max_len: int, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidPayload(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{key} must be a string")
    if not value:
        raise InvalidPayload(f"{key} must not be empty")
    if len(value) > max_len:
        raise InvalidPayload(f"{key} must be at most {max_len} characters")
    return value


def user_id(data: dict[str, Any], key: str) -> str:
    value = _str(data, key, max_len=MAX_USER_ID)
    assert value is not None
    if any(ord(ch) < 32 for ch in value):
        raise InvalidPayload(f"{key} must not contain control characters")
    return value


def message_id(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not is_message_id(value):
        raise InvalidPayload(f"{key} must be a message id")
    return str(value)


def _limit(data: dict[str, Any], default: int, maximum: int) -> int:
    value = data.get("limit")
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise InvalidPayload(f"limit must be an integer 1..{maximum}")
    return value


def text(data: dict[str, Any], max_text: int) -> str:
    value = data.get("text")
    if not isinstance(value, str):
        raise InvalidPayload("text must be a string")
    if len(value) > max_text:
        raise TooLarge(f"text exceeds {max_text} characters")
    if not value.strip():
        raise InvalidPayload("text must not be empty")
    return value


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    client_id: str
    text: str
    reply_to: str | None


def send(data: Any, *, max_text: int, max_client_id: int) -> Send:
    d = _obj(data)
    client_id = _str(d, "client_id", max_len=max_client_id)
    assert client_id is not None
    return Send(to=user_id(d, "to"), client_id=client_id, text=text(d, max_text),
                reply_to=message_id(d, "reply_to", required=False))


def ids(data: Any) -> list[str]:
    d = _obj(data)
    value = d.get("ids")
    if not isinstance(value, list) or not value or len(value) > MAX_IDS:
        raise InvalidPayload(f"ids must be a list of 1..{MAX_IDS} message ids")
    if not all(is_message_id(v) for v in value):
        raise InvalidPayload("ids must be message ids")
    return [str(v) for v in value]


def read(data: Any) -> tuple[str, str]:
    d = _obj(data)
    up_to = message_id(d, "up_to")
    assert up_to is not None
    return user_id(d, "with"), up_to


def typing(data: Any) -> tuple[str, str]:
    d = _obj(data)
    state = d.get("state")
    if state not in ("start", "stop"):
        raise InvalidPayload("state must be 'start' or 'stop'")
    return user_id(d, "to"), str(state)


def history(data: Any, maximum: int) -> tuple[str, str | None, int]:
    d = _obj(data)
    return user_id(d, "with"), message_id(d, "before", required=False), _limit(d, 50, maximum)


def listing(data: Any, maximum: int) -> tuple[str | None, int]:
    d = _obj(data)
    return message_id(d, "before", required=False), _limit(d, 50, maximum)


def sync(data: Any, maximum: int) -> tuple[str | None, int]:
    d = _obj(data)
    return message_id(d, "since", required=False), _limit(d, maximum, maximum)


def edit(data: Any, max_text: int) -> tuple[str, str]:
    d = _obj(data)
    mid = message_id(d, "id")
    assert mid is not None
    return mid, text(d, max_text)


def delete(data: Any) -> tuple[str, str]:
    d = _obj(data)
    mid = message_id(d, "id")
    assert mid is not None
    scope = d.get("for")
    if scope not in ("me", "everyone"):
        raise InvalidPayload("for must be 'me' or 'everyone'")
    return mid, str(scope)


def other_user(data: Any) -> str:
    return user_id(_obj(data), "user")


def report(data: Any, max_reason: int) -> tuple[str, str]:
    d = _obj(data)
    mid = message_id(d, "id")
    reason = _str(d, "reason", max_len=max_reason)
    assert mid is not None and reason is not None
    return mid, reason
