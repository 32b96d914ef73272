"""The shared services every namespace and route receives (built once, in `server.app`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from config.settings import Settings
from server.access import AccessControl
from server.background import Background
from server.blocks import BlockStore
from server.connections import ConnectionRegistry
from server.metrics import Metrics
from server.notify import Notifier
from server.ratelimit import RateLimiter
from server.revocation import RevocationStore
from server.users import UserStore


@dataclass
class Core:
    settings: Settings
    metrics: Metrics
    db: AsyncDatabase[dict[str, Any]]
    redis: Redis | None
    access: AccessControl
    users: UserStore
    revocations: RevocationStore
    connections: ConnectionRegistry
    rate_limiter: RateLimiter
    notifier: Notifier
    background: Background
    blocks: BlockStore
    # Called (synchronously, no await) with the user id on every handled client event; presence
    # uses it to keep active users from turning `away`.
    activity: Callable[[str], None] = field(default=lambda _user: None)
