"""Presence: who is online, away or offline, across devices and nodes (PROTOCOL.md, /presence).

`build_presence` picks the store: Redis when configured (several nodes), this process otherwise;
the behaviour is the same. The transport (`server.namespaces.presence`, `rest.presence`) stays thin.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from config.settings import Settings
from server.presence.archive import PresenceArchive, ensure_indexes
from server.presence.model import PresenceConfig
from server.presence.privacy import BlockDirectory
from server.presence.service import Fanout, PresenceService
from server.presence.store import PresenceStore
from server.presence.store_local import LocalPresenceStore
from server.presence.store_redis import RedisPresenceStore

__all__ = ["Fanout", "PresenceConfig", "PresenceService", "build_presence", "ensure_indexes"]


def build_presence(
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    redis: Redis | None,
    fanout: Fanout,
    registry: CollectorRegistry | None = None,
) -> PresenceService:
    store: PresenceStore = RedisPresenceStore(redis, settings.redis_prefix) if redis else LocalPresenceStore()
    return PresenceService(
        config=PresenceConfig.from_env(settings.env()),
        store=store,
        shared=redis is not None,
        archive=PresenceArchive(db),
        blocks=BlockDirectory(db),
        fanout=fanout,
        node_id=settings.node_id,
        registry=registry,
    )
