"""Payload parsing for the `/call` events: typed values out, `InvalidPayload` otherwise."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from config.errors import InvalidPayload
from signaling.model import MEDIA, SIGNAL_TYPES

MAX_USER_ID = 128
MAX_CANDIDATE = 2048
_CALL_ID = re.compile(r"^c[0-9a-f]{11,12}[0-9a-f]{16}$")


def _obj(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidPayload("payload must be an object")
    return data


def user(data: dict[str, Any], key: str = "to") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"{key} must be a user id")
    if len(value) > MAX_USER_ID or any(ord(ch) < 32 for ch in value):
        raise InvalidPayload(f"{key} must be at most {MAX_USER_ID} printable characters")
    return value


def media(data: dict[str, Any]) -> str:
    value = data.get("media", "audio")
    if value not in MEDIA:
        raise InvalidPayload("media must be 'audio' or 'video'")
    return str(value)


def target(data: Any) -> tuple[str, str]:
    """`call:invite` / `call:prepare`: (callee, media)."""
    body = _obj(data)
    return user(body), media(body)


def call_id(data: Any) -> str:
    value = _obj(data).get("call_id")
    if not isinstance(value, str) or not _CALL_ID.match(value):
        raise InvalidPayload("call_id must be a call id")
    return value


def media_change(data: Any) -> tuple[str, str]:
    body = _obj(data)
    if body.get("media") not in MEDIA:
        raise InvalidPayload("media must be 'audio' or 'video'")
    return call_id(body), str(body["media"])


@dataclass(frozen=True, slots=True)
class Signal:
    call_id: str
    type: str
    payload: dict[str, Any]


def signal(data: Any, max_sdp_bytes: int) -> Signal:
    body = _obj(data)
    cid = call_id(body)
    kind = body.get("type")
    if kind not in SIGNAL_TYPES:
        raise InvalidPayload(f"type must be one of {', '.join(SIGNAL_TYPES)}")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise InvalidPayload("payload must be an object")
    if kind == "ice":
        candidate = payload.get("candidate")
        # null or "" is the end-of-candidates marker
        if candidate is not None and (not isinstance(candidate, str) or len(candidate) > MAX_CANDIDATE):
            raise InvalidPayload(f"payload.candidate must be a string of at most {MAX_CANDIDATE} characters")
    else:
        sdp = payload.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            raise InvalidPayload("payload.sdp must be a non-empty string")
        if len(sdp.encode()) > max_sdp_bytes:
            raise InvalidPayload(f"payload.sdp exceeds {max_sdp_bytes} bytes")
    return Signal(cid, str(kind), payload)
