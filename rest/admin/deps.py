"""What the admin routes are built from (constructed once in `server.app`), and query-string helpers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from billing.ledger import Ledger
from billing.runtime_pricing import RuntimePricing
from config.errors import InvalidPayload
from rest.admin.roles import AdminAuth
from rest.schema import parse_time
from server.admin.audit import AuditLog
from server.admin.notices import Notices
from server.admin.reports import Moderation
from server.admin.stats import NodeStats
from server.admin.users import AdminUsers
from server.chat.service import ChatService
from server.sessions import SessionControl
from signaling.quality_report import QualityReport
from signaling.service import CallService

_MAX_QUERY = 200


@dataclass(frozen=True)
class AdminDeps:
    auth: AdminAuth
    audit: AuditLog
    users: AdminUsers
    sessions: SessionControl
    ledger: Ledger
    calls: CallService
    chat: ChatService
    notices: Notices
    stats: NodeStats
    pricing: RuntimePricing
    moderation: Moderation
    quality: QualityReport
    quality_scan_max: int


def text_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > _MAX_QUERY:
        raise InvalidPayload(f"{name} is longer than {_MAX_QUERY} characters")
    return value


def int_param(request: web.Request, name: str) -> int | None:
    value = text_param(request, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidPayload(f"{name} must be an integer") from None


def bool_param(request: web.Request, name: str) -> bool | None:
    value = text_param(request, name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise InvalidPayload(f"{name} must be true or false")
    return value.lower() == "true"


def future_until(data: dict[str, object]) -> dt.datetime | None:
    """A body's optional `until` (ban expiry), which must lie in the future."""
    raw = data.get("until")
    if not raw:
        return None
    until = parse_time(str(raw), "body.until")
    if until <= dt.datetime.now(dt.UTC):
        raise InvalidPayload("body.until must be in the future")
    return until


def time_param(request: web.Request, name: str) -> dt.datetime | None:
    value = text_param(request, name)
    return None if value is None else parse_time(value, name)


def choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = text_param(request, name)
    if value is not None and value not in choices:
        raise InvalidPayload(f"{name} must be one of {', '.join(choices)}")
    return value
