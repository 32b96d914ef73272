"""The one place that wires the application: stores, Socket.IO, namespaces, REST, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp_cors
import socketio
import structlog
from aiohttp import web
from pymongo import AsyncMongoClient
from redis.asyncio import BlockingConnectionPool, Redis

from billing.creators import CreatorPolicy, Creators
from billing.ledger import Ledger
from billing.payments import Payments
from billing.payouts import Payouts
from billing.pricing import Pricing
from billing.wallet_events import EarningsEvents, WalletEvents
from config.settings import Settings
from rest.admin import admin_routes
from rest.calls import call_routes
from rest.earnings import earnings_routes
from rest.health import health_routes
from rest.middleware import make_middleware
from rest.openapi import openapi_routes
from rest.payouts import payout_routes
from rest.presence import presence_routes
from rest.purchases import purchase_routes
from rest.wallet import wallet_routes
from rest.webhooks import webhook_routes
from server import indexes
from server.access import AccessControl
from server.admin.wiring import build_admin
from server.auth import TokenVerifier
from server.background import Background
from server.blocks import BlockEvents, BlockStore, RedisBlockEvents
from server.call_wiring import build_calls, build_probes
from server.chat.wiring import ChatRuntime, build_chat
from server.connections import ConnectionRegistry, LocalConnections, RedisConnections
from server.core import Core
from server.demo.routes import DemoConfig, demo_routes
from server.metrics import Metrics
from server.namespaces.call import CallNamespace
from server.namespaces.chat import ChatNamespace
from server.namespaces.presence import PresenceNamespace, SocketFanout
from server.notify import Notifier
from server.parser import DualParserServer
from server.polling import oversized_polling_refusal, read_polling_bodies_whole
from server.presence import build_presence
from server.ratelimit import LocalRateLimiter, RateLimiter, SharedRateLimiter
from server.revocation import RevocationStore
from server.routing import LocalManager, RoutedRedisManager
from server.sessions import SessionControl, SessionWatcher, local_kicker
from server.shutdown import SocketRequests, drain_sockets
from server.store import EmbeddedStore, StoreUnavailable, make_client, redact, wait_until_reachable
from server.transports import TransportGuard
from server.users import UserStore
from signaling.ice import IceConfig
from signaling.probe import ProbeService
from signaling.service import CallService

log = structlog.get_logger(__name__)

CORE = web.AppKey("core", Core)
SIO = web.AppKey("sio", socketio.AsyncServer)
MONGO = web.AppKey("mongo", AsyncMongoClient)
LEDGER = web.AppKey("ledger", Ledger)
PRICING = web.AppKey("pricing", Pricing)
CREATORS = web.AppKey("creators", Creators)
PAYOUTS = web.AppKey("payouts", Payouts)
PAYMENTS = web.AppKey("payments", Payments)
EMBEDDED = web.AppKey("embedded_store", EmbeddedStore)
CHAT = web.AppKey("chat", ChatRuntime)
CALLS = web.AppKey("calls", CallService)
PROBES = web.AppKey("probes", ProbeService)
SESSIONS = web.AppKey("sessions", SessionControl)
SOCKET_REQUESTS = web.AppKey("socket_requests", SocketRequests)
# Share of PAIRLY_SHUTDOWN_TIMEOUT_S for telling clients and closing their transports; the rest is for
# the cleanup contexts (presence, chat, ledger, stores, embedded store).
SOCKET_DRAIN_SHARE = 0.4


def create_app(settings: Settings) -> web.Application:
    """Build the whole application. Nothing connects until the app starts (see the cleanup contexts)."""
    metrics = Metrics()
    embedded: EmbeddedStore | None = None
    if settings.mongo_url is None:
        embedded = EmbeddedStore(
            str((settings.data_dir / "db").resolve()), log_path=settings.data_dir / "db.log",
            oplog_max_entries=settings.embedded_oplog_max_entries,
        )
    mongo_url = settings.mongo_url or (embedded.url if embedded else "")
    mongo = make_client(mongo_url, metrics, timeout_s=min(5.0, settings.store_connect_timeout_s))
    db = mongo[settings.mongo_db]
    # A blocking pool: a burst (a reconnect storm) waits for a free connection instead of failing
    # with MaxConnectionsError, which redis-py's default pool raises past 100 commands in flight.
    # A connect timeout bounds how long a request waits for an unreachable Redis (it then answers
    # `unavailable`, server/errormap.py). No read timeout: the pub/sub connections idle by design.
    redis_timeout = settings.env().number("PAIRLY_REDIS_CONNECT_TIMEOUT_S", 2.0, min_value=0.1)
    redis = (Redis.from_pool(BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=100, timeout=10, socket_connect_timeout=redis_timeout,
        health_check_interval=30)) if settings.redis_url else None)

    manager: LocalManager
    connections: ConnectionRegistry
    limiter: RateLimiter
    block_events: BlockEvents
    if redis is not None:
        # What a Redis outage keeps of cross-node emits, to publish when it is back (server/routing.py).
        manager = RoutedRedisManager(
            redis, settings.redis_prefix, settings.node_id,
            outbox_max=int(settings.env().number("PAIRLY_REDIS_OUTBOX_MAX", 10_000, min_value=0)),
            outbox_max_age_s=settings.env().number("PAIRLY_REDIS_OUTBOX_MAX_AGE_S", 30.0, min_value=0.0))
        # A node whose liveness key is older than this is dead: its connections stop counting and
        # another node takes its calls over.
        connections = RedisConnections(redis, settings.redis_prefix, settings.node_id,
                                       ttl_s=settings.env().number("PAIRLY_NODE_TTL_S", 15.0, min_value=1.0))
        limiter = SharedRateLimiter(redis, settings.redis_prefix)
        block_events = RedisBlockEvents(redis, settings.redis_prefix, settings.node_id)
    else:
        manager = LocalManager()
        connections = LocalConnections(settings.node_id)
        limiter = LocalRateLimiter()
        block_events = BlockEvents()

    sio = DualParserServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=list(settings.cors_origins) if settings.cors_origins != ("*",) else "*",
        max_http_buffer_size=settings.limits.max_frame_bytes,
        guard=TransportGuard(connect_deadline_s=settings.limits.connect_deadline_s,
                             max_per_ip=settings.limits.max_transports_per_ip,
                             ip_header=settings.limits.client_ip_header),
        logger=False,
        engineio_logger=False,
    )
    users = UserStore(db)
    revocations = RevocationStore(db)
    core = Core(
        settings=settings,
        metrics=metrics,
        db=db,
        redis=redis,
        access=AccessControl(TokenVerifier(settings.jwt), users, revocations),
        users=users,
        revocations=revocations,
        connections=connections,
        rate_limiter=limiter,
        notifier=Notifier(sio),
        background=Background(),
        blocks=BlockStore(db, events=block_events),
    )

    pricing = Pricing.from_env(settings.env())
    # Without Redis this node is the only writer (see billing/writers.py).
    env = settings.env()
    ledger = Ledger(db, signup_bonus=pricing.signup_bonus, exclusive=redis is None,
                    writer_beat_s=env.number("PAIRLY_LEDGER_WRITER_BEAT_S", 5.0, min_value=0.1),
                    writer_stale_s=env.number("PAIRLY_LEDGER_WRITER_STALE_S", 15.0, min_value=0.5))
    ledger.add_listener(WalletEvents(core.notifier.account_event))
    ledger.add_listener(EarningsEvents(
        core.notifier.account_event, ledger.balances,
        lambda coro: core.background.spawn(coro, name="earnings-event")))  # type: ignore[arg-type]
    creators = Creators(db, pricing, CreatorPolicy.from_env(settings.env()))
    payments = Payments.from_env(db, ledger, pricing.packages, settings.env(), production=settings.is_production)

    chat = build_chat(core, ledger, creators)
    chat_namespace = ChatNamespace("/chat", core, chat.service)
    sio.register_namespace(chat_namespace)
    presence = build_presence(settings, db, redis, SocketFanout(sio), metrics.registry)
    core.activity = presence.activity
    block_events.subscribe(presence.block_changed)  # blocks made on any node apply to live subscriptions
    presence_namespace = PresenceNamespace("/presence", core, presence)
    sio.register_namespace(presence_namespace)
    calls = build_calls(core, manager, connections, ledger, creators, chat.push, IceConfig.from_env(settings.env()))
    block_events.subscribe(lambda change: calls.block_changed(change.blocker, change.blocked)
                           if change.now_blocked else _nothing())
    probes = build_probes(core, manager, calls)
    call_namespace = CallNamespace("/call", core, calls, probes)
    sio.register_namespace(call_namespace)
    # Revocations and bans reach live sockets on every node (server/sessions.py).
    sessions = SessionControl(db, users, revocations)
    watcher = SessionWatcher(db, local_kicker(sio, [chat_namespace, presence_namespace, call_namespace],
                                              on_ban=calls.end_user_call),
                             poll_s=env.number("PAIRLY_SESSION_POLL_S", 0.5, min_value=0.05))
    # Admin and moderation over REST (rest/admin/, server/admin/): roles, audit, runtime pricing, stats.
    admin = build_admin(core, sio, [chat_namespace, presence_namespace, call_namespace], ledger=ledger,
                        calls=calls, chat=chat.service, sessions=sessions, presence=presence, pricing=pricing,
                        creators=creators, payments=payments)

    app = web.Application(
        middlewares=[oversized_polling_refusal(settings.limits.max_frame_bytes), make_middleware(metrics)],
        client_max_size=1024 * 1024)
    app[CORE] = core
    app[SIO] = sio
    app[MONGO] = mongo
    app[LEDGER] = ledger
    app[PRICING] = pricing
    app[CREATORS] = creators
    app[PAYMENTS] = payments
    app[CHAT] = chat
    app[CALLS] = calls
    app[PROBES] = probes
    app[SESSIONS] = sessions
    if embedded is not None:
        app[EMBEDDED] = embedded
    app[SOCKET_REQUESTS] = SocketRequests()  # in-flight Socket.IO requests, so shutdown can end them
    app.middlewares.append(app[SOCKET_REQUESTS].middleware)
    sio.attach(app)
    read_polling_bodies_whole(sio.eio)
    routes = health_routes(core, mongo)
    app.add_routes(routes)
    app.add_routes(presence_routes(core, presence))
    app.add_routes(wallet_routes(core, ledger))
    app.add_routes(call_routes(core, calls))
    # Creator earnings and payouts; the payouts sweeper runs once the stores and the ledger are up.
    payouts = app[PAYOUTS] = Payouts.from_env(db, ledger, payments.providers, settings.env())
    app.add_routes(earnings_routes(core, ledger, creators, payouts))
    app.add_routes(payout_routes(core, payouts, admin.deps.auth, admin.deps.audit))
    app.add_routes(admin_routes(admin.deps))
    app.on_startup.append(lambda _: payouts.start())
    app.on_shutdown.append(lambda _: payouts.stop())
    app.add_routes(purchase_routes(core, ledger, pricing, payments))
    app.add_routes(webhook_routes(payments.webhooks))
    app.add_routes(openapi_routes())
    demo = DemoConfig.from_settings(settings)  # refused in production (server/demo/routes.py)
    if demo.enabled:
        app.add_routes(demo_routes(settings, demo))
    _setup_cors(app, settings)

    app.cleanup_ctx.append(_store_ctx(embedded, mongo_url))
    app.cleanup_ctx.append(_redis_ctx(manager, connections))
    app.cleanup_ctx.append(_service_ctx(block_events))
    app.cleanup_ctx.append(_service_ctx(ledger))
    app.cleanup_ctx.append(_service_ctx(payments))
    app.cleanup_ctx.append(chat.lifecycle())
    app.cleanup_ctx.append(_service_ctx(calls))
    for service in admin.services:
        app.cleanup_ctx.append(_service_ctx(service))
    app.cleanup_ctx.append(_service_ctx(probes))
    app.cleanup_ctx.append(_service_ctx(watcher))
    app.cleanup_ctx.append(_service_ctx(presence))
    app.on_shutdown.append(_drain_sockets)
    return app


async def _nothing() -> None:
    return None


def _setup_cors(app: web.Application, settings: Settings) -> None:
    if not settings.cors_origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=True, expose_headers="*", allow_headers="*"
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in settings.cors_origins})
    for route in list(app.router.routes()):
        if not route.resource or not route.resource.canonical.startswith("/socket.io"):
            cors.add(route)


def _store_ctx(embedded: EmbeddedStore | None, url: str) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        core, mongo = app[CORE], app[MONGO]
        settings = core.settings
        if embedded is not None and not embedded.alive():
            embedded.start()
            log.info("embedded_store_started", port=embedded.port, storage=embedded.storage)
        try:
            await wait_until_reachable(mongo, settings.store_connect_timeout_s, redact(url))
            await indexes.ensure_all(core.db)
        except StoreUnavailable:
            await mongo.close()
            if embedded is not None:
                embedded.stop()
            raise
        try:
            yield
        finally:
            await core.background.drain(settings.shutdown_timeout_s / 2)
            await mongo.close()
            if embedded is not None:
                embedded.stop()

    return ctx


def _redis_ctx(manager: LocalManager, connections: ConnectionRegistry) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        core = app[CORE]
        if core.redis is not None:
            try:
                await asyncio.wait_for(core.redis.ping(), timeout=core.settings.store_connect_timeout_s)
            except Exception as exc:
                where = redact(core.settings.redis_url or "")
                raise StoreUnavailable(f"Redis at {where} not reachable: {exc}") from None
        await manager.start()
        await connections.start()
        try:
            yield
        finally:
            await connections.stop()
            await manager.stop()
            if core.redis is not None:
                with contextlib.suppress(Exception):
                    await core.redis.aclose()

    return ctx


class _Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _service_ctx(service: _Service) -> Any:
    """Start a background service with the app and stop it on cleanup, in reverse order of start.

    Order matters and is set by the order of registration: block events start once Redis answers and
    stop after every service that may block or listen (presence); the ledger stops after payments (queued
    webhook work finishes while the ledger still runs) and writes every queued credit movement before
    the store closes; presence stops after the socket drain (hands pending graces over, flushes
    last_seen).
    """

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return ctx


async def _drain_sockets(app: web.Application) -> None:
    """Tell local clients we are going away (`server:shutdown` on each namespace they joined), then close
    their Engine.IO transports so they reconnect elsewhere, within a share of the shutdown budget
    whatever the clients do (server/shutdown.py has the why)."""
    budget = app[CORE].settings.shutdown_timeout_s * SOCKET_DRAIN_SHARE
    started = asyncio.get_running_loop().time()
    stats = await drain_sockets(app[SIO], app[SOCKET_REQUESTS], budget)
    log.info("sockets_drained", seconds=round(asyncio.get_running_loop().time() - started, 3), **stats)
