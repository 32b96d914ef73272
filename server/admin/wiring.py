"""Builds the admin services and routes from the app's shared services (called once by `create_app`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import socketio

from billing.creators import Creators
from billing.ledger import Ledger
from billing.payments import Payments
from billing.pricing import Pricing
from billing.runtime_pricing import RuntimePricing
from rest.admin.deps import AdminDeps
from rest.admin.roles import AdminAuth
from server.admin.audit import AuditLog
from server.admin.notices import Notices
from server.admin.reports import Effects, Moderation
from server.admin.stats import NodeCounters, NodeStats
from server.admin.users import AdminUsers
from server.chat.service import ChatService
from server.core import Core
from server.presence.service import PresenceService
from server.sessions import LocalSockets, SessionControl
from signaling.quality_report import QualityReport
from signaling.service import CallService

Doc = dict[str, Any]


@dataclass(frozen=True)
class AdminRuntime:
    deps: AdminDeps
    services: tuple[Any, ...]
    """Background services to start with the app (`start()`/`stop()`): pricing poll, stats publisher."""


def build_admin(core: Core, sio: socketio.AsyncServer, namespaces: Sequence[LocalSockets], *, ledger: Ledger,
                calls: CallService, chat: ChatService, sessions: SessionControl, presence: PresenceService,
                pricing: Pricing, creators: Creators, payments: Payments) -> AdminRuntime:
    settings = core.settings
    env = settings.env()
    names = [ns.namespace for ns in namespaces]
    counters = NodeCounters()
    ledger.add_listener(counters)
    stats = NodeStats(settings.node_id, namespaces, counters, core.db, core.redis, settings.redis_prefix,
                      publish_s=env.number("PAIRLY_ADMIN_STATS_PUBLISH_S", 2.0, min_value=0.1))
    runtime_pricing = RuntimePricing(
        core.db, pricing, creators, ledger,
        currencies=[p.default_currency for n, p in payments.providers.items() if n != "dev"],
        poll_s=env.number("PAIRLY_PRICING_POLL_S", 1.0, min_value=0.05))
    notices = Notices(sio, core.notifier, names,
                      max_text=env.integer("PAIRLY_ADMIN_NOTICE_MAX_CHARS", 2000, min_value=1))

    async def presence_of(user: str) -> Doc:
        return (await presence.lookup(f"admin:{user}", [user]))[0]

    async def call_history(user: str, limit: int) -> list[Doc]:
        return (await calls.history(user, None, limit))[0]

    async def warn(user: str, text: str) -> None:
        await notices.send(text, "warning", user)

    users = AdminUsers(core.db, ledger, where=core.connections.where, namespaces=names, presence=presence_of,
                       call_history=call_history,
                       scan_max=env.integer("PAIRLY_ADMIN_SCAN_MAX", 5000, min_value=100))
    moderation = Moderation(core.db, Effects(delete_message=chat.delete_by_moderator, warn=warn, ban=sessions.ban),
                            context=env.integer("PAIRLY_ADMIN_REPORT_CONTEXT", 3, min_value=0))
    deps = AdminDeps(
        auth=AdminAuth.from_settings(settings, core.access, core.users, core.revocations),
        audit=AuditLog(core.db), users=users, sessions=sessions, ledger=ledger, calls=calls, chat=chat,
        notices=notices, stats=stats, pricing=runtime_pricing, moderation=moderation,
        quality=QualityReport(core.db),
        quality_scan_max=env.integer("PAIRLY_ADMIN_QUALITY_SCAN_MAX", 20_000, min_value=100))
    return AdminRuntime(deps, (runtime_pricing, stats))
