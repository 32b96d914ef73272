"""The presence service of one node: devices, subscriptions, activity, and the sweep that keeps time.

Transport-free: connections are opaque ids, and emits go through the `Fanout` the transport hands
in. The shared state lives in a `PresenceStore` (this process, or Redis for several nodes); every
change is a transition from `server.presence.model` written compare-and-set, and an update is
published only when what others see changed.

Time-driven work (idle -> away, the end of a grace window, pushing activity to the shared record,
the node's liveness beat and cleaning up after dead nodes) runs in ONE sweep task per node, driven
by a heap of due times, so idle users cost nothing between their deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from config.errors import TooLarge
from server.blocks import BlockChange
from server.outage import Outage
from server.presence import model
from server.presence.archive import PresenceArchive
from server.presence.model import HIDDEN, Mode, PresenceConfig, Record, Status, View
from server.presence.privacy import BlockDirectory
from server.presence.requests import SetStatus
from server.presence.store import PresenceStore, Write

log = structlog.get_logger(__name__)

Payload = dict[str, Any]
IndexOp = tuple[Literal["+", "-"], str] | None
Rule = Callable[[str, Record, float], tuple[Record, IndexOp]]
TimerKind = Literal["push", "idle", "grace"]

_MAX_ATTEMPTS = 8
_CONCURRENT_READS = 16  # snapshot reads in flight at once (a reconnect storm must not drain the pool)
_RETRY_MAX_S = 2.0
_MODE_FOR: dict[SetStatus, Mode] = {"online": "auto", "away": "away", "invisible": "invisible"}


def _chain(rules: dict[str, list[Rule]]) -> Rule:
    """One rule applying each user's queued rules in order; the last index change wins."""

    def rule(user: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
        index: IndexOp = None
        for step in rules[user]:
            rec, op = step(user, rec, now)
            index = op or index
        return rec, index

    return rule


def _release(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class Fanout(Protocol):
    """What the service needs from the transport (implemented in `server.namespaces.presence`)."""

    async def join(self, conn: str, users: Sequence[str]) -> None:
        """Let connection `conn` receive the updates of `users` (on whatever node they happen)."""
        ...

    async def leave(self, conn: str, users: Sequence[str]) -> None: ...

    async def publish(self, user: str, payload: Payload) -> None:
        """`presence:update` to every connection watching `user`, on every node."""
        ...

    async def send(self, conn: str, payload: Payload) -> None:
        """`presence:update` to one connection of this node."""
        ...


@dataclass(slots=True)
class _Local:
    """What this node knows about a user it holds connections of."""

    conns: set[str] = field(default_factory=set)
    last_active: float = 0.0  # latest activity seen here
    shared_active: float = 0.0  # last activity in the shared record when we last read or wrote it
    status: Status = "offline"  # as last read or written
    mode: Mode = "auto"


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.updates = Counter("pairly_presence_updates_total", "presence:update fan-outs published",
                               registry=registry)
        self.sweep = Histogram("pairly_presence_sweep_seconds", "Duration of one presence sweep",
                               buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0), registry=registry)


class PresenceService:
    def __init__(
        self,
        *,
        config: PresenceConfig,
        store: PresenceStore,
        shared: bool,
        archive: PresenceArchive,
        blocks: BlockDirectory,
        fanout: Fanout,
        node_id: str,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._store = store
        self._shared = shared  # several nodes share the store (Redis)
        self._archive = archive
        self._blocks = blocks
        self._fanout = fanout
        self._clock = clock
        self._metrics = _Metrics(registry)
        # One identity per process: a restarted node never inherits (and so never hides) the
        # devices its previous incarnation left behind; survivors clean those up.
        self.node = f"{node_id}.{secrets.token_hex(3)}"
        self._conns: dict[str, str] = {}  # connection -> user
        self._subs: dict[str, set[str]] = {}  # connection -> users it watches
        self._local: dict[str, _Local] = {}
        self._timers: list[tuple[float, int, TimerKind, str]] = []
        self._armed: set[tuple[TimerKind, str]] = set()
        self._seq = itertools.count()
        self._urgent: set[str] = set()
        self._dead: dict[str, float] = {}
        self._block_epoch = 0
        self._block_lock = asyncio.Lock()
        self._last_beat = 0.0
        self._suspect = False
        self._outage = Outage("presence_store")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Connects and disconnects waiting for the next group commit, in arrival order per user.
        self._queued: dict[str, list[Rule]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._committer: asyncio.Task[None] | None = None
        self._reads = asyncio.Semaphore(_CONCURRENT_READS)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        now = self._clock()
        await self._store.beat(self.node, now, self.config.node_ttl_s)
        self._last_beat = now
        self._tasks = [asyncio.create_task(self._run(), name="presence-sweep")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        for conn, user in list(self._conns.items()):  # normally the socket drain already did this
            self._left(conn, user)
        if self._committer is not None:
            await asyncio.wait([self._committer], timeout=3.0)
            self._committer.cancel()
        graces = [user for kind, user in self._armed if kind == "grace"]
        if self._shared:
            # Survivors take our users offline once the grace is over, unless they came back to them.
            await self._guard(self._store.beat(self.node, self._clock(), max(self.config.grace_s, 0.05)), "beat")
        elif graces:
            # Nobody is left to wait out the grace: end it now, dated when each user left.
            def finish(_: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
                end = (rec.left_at or now) + self.config.grace_s
                return model.settle(rec, max(now, end), self.config), ("-", self.node)

            await self._guard(self._apply(graces, finish), "grace_finish")
        await self._guard(self._archive.flush(), "last_seen_flush")

    # -- connections --------------------------------------------------------------------------------
    async def connected(self, conn: str, user: str) -> None:
        now = self._clock()
        self._conns[conn] = user
        local = self._local.setdefault(user, _Local())
        local.conns.add(conn)
        local.last_active = max(local.last_active, now)

        def rule(_: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
            return model.connect(rec, conn, self.node, now, self.config), ("+", self.node)

        await self._enqueue(user, rule)

    async def disconnected(self, conn: str, user: str) -> None:
        await self._left(conn, user)

    def _left(self, conn: str, user: str) -> asyncio.Future[None]:
        self._conns.pop(conn, None)
        self._subs.pop(conn, None)  # the transport drops its rooms with the connection
        local = self._local.get(user)
        if local is not None:
            local.conns.discard(conn)
            if not local.conns:
                del self._local[user]

        def rule(_: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
            new = model.disconnect(rec, conn, self.node, now, self.config)
            keep = user in self._local or (new.left_at is not None and new.left_node == self.node)
            return new, None if keep else ("-", self.node)

        return self._enqueue(user, rule)

    def _enqueue(self, user: str, rule: Rule) -> asyncio.Future[None]:
        """Group commit of connects and disconnects: what arrives while a batch is written goes into the
        next one, so a churn or reconnect storm costs one load and one save pipeline per batch. The
        future resolves after the first attempt; a failed batch stays queued and is retried (in
        order, with backoff) so a store hiccup never leaves a ghost device behind."""
        self._queued.setdefault(user, []).append(rule)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit(), name="presence-commit")
        return waiter

    async def _commit(self) -> None:
        backoff = 0.05
        waiters: list[asyncio.Future[None]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, {}
                waiters, self._waiters = self._waiters, []
                try:
                    retry = await self._apply(list(batch), _chain(batch))
                    backoff = 0.05
                except Exception as exc:
                    self._suspect = True
                    self._outage.failed(exc, users=len(batch))
                    retry = list(batch)
                for user in retry:  # ahead of anything newer for the same user
                    self._queued[user] = batch[user] + self._queued.get(user, [])
                _release(waiters)
                if retry:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _RETRY_MAX_S)
        finally:  # cancelled at stop: nobody waits forever
            _release(waiters + self._waiters)

    # -- activity -----------------------------------------------------------------------------------
    def activity(self, user: str) -> None:
        """Any client event of `user` (synchronous: installed as `Core.activity`)."""
        local = self._local.get(user)
        if local is None:
            return
        now = self._clock()
        local.last_active = now
        if local.status == "away" and local.mode == "auto":
            self._urgent.add(user)  # back from idle: tell everyone at the next (immediate) sweep
            self._wake.set()
        else:
            self._arm("push", user, local.shared_active + self.config.push_activity_s)

    async def heartbeat(self, user: str) -> None:
        """`presence:heartbeat`: activity is already marked; an idle user turns online before the ack."""
        local = self._local.get(user)
        if local is not None and local.status == "away" and local.mode == "auto":
            self._urgent.discard(user)
            await self._apply([user], self._touch_rule)

    async def set_status(self, user: str, status: SetStatus) -> None:
        mode = _MODE_FOR[status]
        await self._archive.set_mode(user, mode)

        def rule(_: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
            return model.set_mode(rec, mode, now, self.config), None

        await self._apply([user], rule)

    # -- subscriptions ------------------------------------------------------------------------------
    async def subscribe(self, conn: str, viewer: str, users: Sequence[str]) -> list[Payload]:
        cfg = self.config
        if len(users) > cfg.max_subscribe:
            raise TooLarge(f"at most {cfg.max_subscribe} users per presence:subscribe, got {len(users)}")
        watched = self._subs.setdefault(conn, set())
        fresh = [u for u in users if u not in watched]
        if len(watched) + len(fresh) > cfg.max_subscriptions:
            raise TooLarge(
                f"a connection may watch at most {cfg.max_subscriptions} users; it watches {len(watched)}"
                f" and asked for {len(fresh)} more"
            )
        watched.update(fresh)  # reserved before any await, so concurrent requests respect the cap
        try:
            blockers = await self._join(conn, viewer, fresh)
            return await self.lookup(viewer, users, blockers)
        except BaseException:
            watched.difference_update(fresh)
            with contextlib.suppress(Exception):
                await self._fanout.leave(conn, fresh)
            raise
        finally:
            if conn not in self._conns:  # the connection ended meanwhile: so did its subscriptions
                self._subs.pop(conn, None)

    async def _join(self, conn: str, viewer: str, users: Sequence[str]) -> frozenset[str]:
        """Join the rooms of `users` except those who blocked `viewer`; a block event racing this is
        noticed through the epoch and applied before returning."""
        joined: set[str] = set()
        while True:
            epoch = self._block_epoch
            blockers = await self._blocks.blockers_of(viewer)
            if conn not in self._conns:
                return blockers  # gone meanwhile: its rooms went with it
            allowed = {u for u in users if u not in blockers}
            await self._fanout.leave(conn, sorted(joined - allowed))
            await self._fanout.join(conn, [u for u in users if u in allowed and u not in joined])
            joined = allowed
            if epoch == self._block_epoch:
                if conn not in self._conns:  # left during the join: drop what the join re-created
                    await self._fanout.leave(conn, list(joined))
                return blockers

    async def unsubscribe(self, conn: str, users: Sequence[str]) -> None:
        watched = self._subs.get(conn)
        if not watched:
            return
        drop = [u for u in users if u in watched]
        watched.difference_update(drop)
        await self._fanout.leave(conn, drop)

    def subscriptions(self, conn: str) -> int:
        return len(self._subs.get(conn, ()))

    async def lookup(self, viewer: str, users: Sequence[str], blockers: frozenset[str] | None = None) -> list[Payload]:
        """What `viewer` may see of `users` now (snapshot and REST)."""
        if blockers is None:
            blockers = await self._blocks.blockers_of(viewer)
        shown = [u for u in users if u not in blockers]
        async with self._reads:
            records = dict(zip(shown, await self._store.load(shown), strict=True))
            views = {u: model.visible(r, self._dead) for u, r in records.items() if r is not None}
            forgotten = [u for u, r in records.items() if r is None]
            if forgotten:  # offline long enough for the shared record to expire: MongoDB has last_seen
                seen = await self._archive.last_seen(forgotten)
                for u in forgotten:
                    views[u] = View("offline", seen.get(u))
        return [views.get(u, HIDDEN).payload(u) for u in users]

    async def block_changed(self, change: BlockChange) -> None:
        """A block or unblock made on any node (`server.blocks.BlockEvents`): fix this node's
        connections of the blocked user that watch the blocker, and tell them what they may now see.

        The pair is re-read from the store rather than taken from the notification: notifications
        of a block and an unblock made on two nodes at once may arrive in either order, and the
        last one handled must leave the state the store holds."""
        self._block_epoch += 1
        blocker, blocked = change.blocker, change.blocked
        local = self._local.get(blocked)
        conns = [c for c in (local.conns if local else ()) if blocker in self._subs.get(c, ())]
        if not conns:
            return  # (a subscription starting now sees the change itself: see `_join`)
        async with self._block_lock:  # one at a time: the last to read the store is the last to apply
            now_blocked = await self._blocks.is_blocked(blocker, blocked)
            payload = HIDDEN.payload(blocker) if now_blocked else (await self.lookup(blocked, [blocker]))[0]
            for conn in [c for c in conns if blocker in self._subs.get(c, ())]:  # some may have gone
                if now_blocked:
                    await self._fanout.leave(conn, [blocker])
                else:
                    await self._fanout.join(conn, [blocker])
                await self._fanout.send(conn, payload)

    # -- the sweep ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            delay = self.config.tick_s
            if self._timers:
                delay = min(delay, max(0.0, self._timers[0][0] - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            started = time.perf_counter()
            try:
                await self._sweep()
            except Exception as exc:
                # Our devices may not have reached the shared store (or it lost them: a Redis restart
                # comes back empty): write them again at the first beat that gets through.
                self._suspect = True
                self._outage.failed(exc)
            self._metrics.sweep.observe(time.perf_counter() - started)

    async def _sweep(self) -> None:
        now = self._clock()
        due: dict[TimerKind, set[str]] = {"push": set(), "idle": set(), "grace": set()}
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, user = heapq.heappop(self._timers)
            self._armed.discard((kind, user))
            due[kind].add(user)
        idle = {u for u in due["idle"] if self._idle_due(u, now)}
        touch = sorted({u for u in self._urgent | due["push"] | idle if u in self._local})
        self._urgent = set()
        graces = sorted(due["grace"])
        try:  # whatever fails or stays contended is retried at the next sweep: nothing is dropped
            if touch:
                self._urgent.update(await self._apply(touch, self._touch_rule))
            if graces:
                graces = await self._apply(graces, self._grace_rule)
        except Exception:
            self._urgent.update(touch)
            raise
        finally:
            for user in graces:
                self._arm("grace", user, now + self.config.tick_s)
        await self._nodes(now)
        await self._archive.flush()

    def _idle_due(self, user: str, now: float) -> bool:
        local = self._local.get(user)
        if local is None or local.status != "online" or local.mode != "auto":
            return False
        if now - local.last_active < self.config.away_after_s:
            self._arm("idle", user, local.last_active + self.config.away_after_s)
            return False
        return True

    def _touch_rule(self, user: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
        local = self._local.get(user)
        active = local.last_active if local is not None else 0.0
        return model.touch(rec, active, now, self.config), None

    def _grace_rule(self, user: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
        new = model.settle(rec, now, self.config)
        keep = user in self._local or (new.left_at is not None and new.left_node == self.node)
        return new, None if keep else ("-", self.node)

    async def _nodes(self, now: float) -> None:
        """Beat our liveness every `beat_s`; look for dead nodes every sweep (one store call)."""
        if now - self._last_beat >= self.config.beat_s or self._suspect:
            late = now - self._last_beat > self.config.node_ttl_s
            await self._store.beat(self.node, now, self.config.node_ttl_s)
            self._last_beat = now
            if late:  # our liveness lapsed (a stalled loop): survivors may have dropped our devices
                log.warning("presence_liveness_lapsed", node=self.node)
            if late or self._suspect:
                await self._reregister()
                self._suspect = False
                self._outage.ok()
        self._dead = {n: at for n, at in (await self._store.dead_nodes()).items() if n != self.node}
        for node, died_at in list(self._dead.items()):
            await self._reap(node, died_at)

    async def _reap(self, node: str, died_at: float) -> None:
        if not await self._store.claim(node, self.node, max(self.config.node_ttl_s, 5.0)):
            return
        users = await self._store.node_users(node)
        log.info("presence_reaping_node", node=node, users=len(users))

        def rule(_: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
            return model.drop_node(rec, node, died_at, now, self.config), ("-", node)

        if users:
            await self._apply(users, rule)
        if await self._store.forget_node(node):
            self._dead.pop(node, None)

    async def _reregister(self) -> None:
        def rule(user: str, rec: Record, now: float) -> tuple[Record, IndexOp]:
            local = self._local.get(user)
            mine = {c: self.node for c in (local.conns if local else ())}
            return model.settle(replace(rec, devices={**rec.devices, **mine}), now, self.config), ("+", self.node)

        await self._apply(list(self._local), rule)

    # -- the one write path -------------------------------------------------------------------------
    async def _apply(self, users: Iterable[str], rule: Rule) -> list[str]:
        """Apply `rule` to each user's current record, compare-and-set, re-reading on conflict; then
        publish what others see change. Users the shared store has forgotten start from MongoDB.
        Returns the users still contended after every attempt (the caller retries them later)."""
        pending = list(dict.fromkeys(users))
        for _ in range(_MAX_ATTEMPTS):
            if not pending:
                return []
            records = await self._store.load(pending)
            seeds = await self._archive.seeds([u for u, r in zip(pending, records, strict=True) if r is None])
            now = self._clock()
            writes: list[Write] = []
            before: dict[str, Record] = {}
            for user, rec in zip(pending, records, strict=True):
                current = rec or seeds.get(user) or Record()
                new, index = rule(user, current, now)
                if new == current and index is None:
                    self._observe(user, current)
                    continue
                new = replace(new, version=current.version + 1)
                idle = not new.devices and new.left_at is None
                writes.append(Write(user, new, index, self.config.offline_record_ttl_s if idle else None))
                before[user] = current
            results = await self._store.save(writes)
            pending = []
            for write, ok in zip(writes, results, strict=True):
                if not ok:
                    pending.append(write.user)
                    continue
                self._observe(write.user, write.record)
                await self._announce(write.user, before[write.user].view, write.record.view)
        if pending:
            log.warning("presence_write_contended", users=len(pending))
        return pending

    def _observe(self, user: str, rec: Record) -> None:
        """Refresh what this node knows from a record just read or written, and arm its timers."""
        if rec.left_at is not None and rec.left_node == self.node:
            self._arm("grace", user, rec.left_at + self.config.grace_s)
        local = self._local.get(user)
        if local is None:
            return
        local.status, local.mode, local.shared_active = rec.status, rec.mode, rec.last_active
        if local.last_active > rec.last_active:
            self._arm("push", user, rec.last_active + self.config.push_activity_s)
        if rec.status == "online" and rec.mode == "auto":
            self._arm("idle", user, max(rec.last_active, local.last_active) + self.config.away_after_s)

    async def _announce(self, user: str, before: View, after: View) -> None:
        if before == after:
            return
        if after.last_seen is not None and after.last_seen != before.last_seen:
            self._archive.last_seen_at(user, after.last_seen)
        self._metrics.updates.inc()
        try:
            await self._fanout.publish(user, after.payload(user))
        except Exception:  # the state is written; a failed emit must not make the caller retry it
            log.exception("presence_publish_failed", user=user)

    def _arm(self, kind: TimerKind, user: str, when: float) -> None:
        key = (kind, user)
        if key in self._armed:
            return
        self._armed.add(key)
        heapq.heappush(self._timers, (when, next(self._seq), kind, user))
        if when <= self._clock():
            self._wake.set()

    async def _guard(self, work: Any, what: str, timeout_s: float = 5.0) -> None:
        """A shutdown step: bounded, and a failure is logged, never raised (the process is leaving)."""
        try:
            await asyncio.wait_for(work, timeout_s)
        except Exception:
            log.exception("presence_stop_step_failed", step=what)
