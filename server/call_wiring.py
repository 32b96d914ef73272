"""Builds the call service from the app's shared services, with the adapters `signaling.ports` asks
for: events over Socket.IO (any node), devices from the connection registry, node liveness from
Redis (none without Redis: the node is alone and settles leftovers at start-up)."""

from __future__ import annotations

from typing import Any

from billing.creators import Creators
from billing.ledger import Ledger
from server.chat.push import PushService
from server.connections import ConnectionRegistry, RedisConnections
from server.core import Core
from server.routing import LocalManager
from signaling.billing import CallBilling
from signaling.config import CallSettings
from signaling.ice import IceConfig
from signaling.probe import ProbeService, ProbeSettings, ProbeStore
from signaling.quality import QualityService, QualitySettings
from signaling.service import CallService
from signaling.store import CallStore

NAMESPACE = "/call"


class SocketCallEvents:
    def __init__(self, core: Core, manager: LocalManager) -> None:
        self._notifier = core.notifier
        self._manager = manager

    async def to_user(self, user: str, event: str, data: Any, *, skip_sid: str | None = None) -> None:
        await self._notifier.to_user(user, event, data, namespaces=(NAMESPACE,), skip_sid=skip_sid)

    async def to_device(self, node: str, sid: str, event: str, data: Any) -> None:
        await self._manager.emit_to_node(node, sid, event, data, NAMESPACE)


class RegistryDevices:
    def __init__(self, connections: ConnectionRegistry) -> None:
        self._connections = connections

    async def count(self, user: str) -> int:
        return len(await self._connections.live_sids(NAMESPACE, user))

    async def sids(self, user: str) -> set[str]:
        return await self._connections.live_sids(NAMESPACE, user)


class RedisNodes:
    """Nodes that ever held calls, in the set `<prefix>:call-nodes`; dead = liveness key expired."""

    def __init__(self, core: Core, connections: RedisConnections) -> None:
        assert core.redis is not None
        self._redis = core.redis
        self._key = f"{core.settings.redis_prefix}:call-nodes"
        self._me = core.settings.node_id
        self._connections = connections

    async def register(self, node: str) -> None:
        # Only while our liveness key is there (right after a Redis restart it may not be yet): others
        # would otherwise find us in the set, not alive, and take our calls over.
        if await self._connections.alive(node):
            await self._redis.sadd(self._key, node)

    async def dead(self) -> list[str]:
        members = await self._redis.smembers(self._key)
        nodes = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        return [n for n in nodes if n != self._me and not await self._connections.alive(n)]

    async def forget(self, node: str) -> None:
        await self._redis.srem(self._key, node)


def build_calls(core: Core, manager: LocalManager, connections: ConnectionRegistry, ledger: Ledger,
                creators: Creators, push: PushService, ice: IceConfig) -> CallService:
    settings = CallSettings.from_env(core.settings.env())
    nodes = RedisNodes(core, connections) if isinstance(connections, RedisConnections) else None
    drift = core.metrics.call_tick_drift
    store, billing, events = CallStore(core.db), CallBilling(ledger), SocketCallEvents(core, manager)
    quality = QualityService(settings=QualitySettings.from_env(core.settings.env()),
                             interval_s=settings.billing_interval_s, store=store, billing=billing, events=events)
    return CallService(
        settings=settings, node=core.settings.node_id, store=store, billing=billing,
        creators=creators, events=events, devices=RegistryDevices(connections),
        nodes=nodes, blocks=core.blocks, push=push, limiter=core.rate_limiter, ice=ice,
        spawn=lambda coro, name: core.background.spawn(coro, name=name), observe_drift=drift.observe,
        probes=ProbeStore(core.db), probe_max_age_s=ProbeSettings.from_env(core.settings.env()).max_age_s,
        quality=quality)


def build_probes(core: Core, manager: LocalManager, calls: CallService) -> ProbeService:
    """The pre-call probe of this node (its peers live here; results go to the probing socket)."""
    return ProbeService(settings=ProbeSettings.from_env(core.settings.env()), ice=calls.ice,
                        events=SocketCallEvents(core, manager), store=ProbeStore(core.db),
                        node=core.settings.node_id)
