"""Presence state of one user and the pure rules that move it. No I/O, no transport, no clock.

A `Record` is the whole shared state of one user (kept in Redis or in this process, see the stores).
Every change goes through one of the transition functions below and then `settle`, which derives the
status everyone else sees from the facts (devices, mode, last activity, pending grace). The service
compares the `View` before and after a transition and publishes only when it differs, so a change
that others cannot observe (a second device, activity while online) never produces an update.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from config.settings import ConfigError, Env

Status = Literal["online", "away", "offline"]
Mode = Literal["auto", "away", "invisible"]
STATUSES: tuple[Status, ...] = ("online", "away", "offline")
MODES: tuple[Mode, ...] = ("auto", "away", "invisible")


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    away_after_s: float = 300.0
    grace_s: float = 5.0
    node_ttl_s: float = 15.0
    max_subscribe: int = 500
    max_subscriptions: int = 2000
    # How long an offline user's record stays in the shared store (last_seen is in MongoDB anyway).
    offline_record_ttl_s: float = 3600.0

    @property
    def tick_s(self) -> float:
        """Period of the node's sweep: fine enough for the smallest of the configured time bounds."""
        bounds = [self.away_after_s / 10, self.node_ttl_s / 5, 1.0]
        if self.grace_s > 0:
            bounds.append(self.grace_s / 5)
        return max(0.02, min(bounds))

    @property
    def beat_s(self) -> float:
        """How often a node refreshes its liveness key (three beats fit in one TTL)."""
        return self.node_ttl_s / 3

    @property
    def push_activity_s(self) -> float:
        """Activity is written to the shared record at most this often per user while online.

        A node that sees a user idle for `away_after_s` is then sure no other node holds newer
        activity for longer than this, so away is never declared early (see docs/presence.md).
        """
        return self.away_after_s / 4

    @classmethod
    def from_env(cls, env: Env) -> PresenceConfig:
        config = cls(
            away_after_s=env.number("PAIRLY_PRESENCE_AWAY_AFTER_S", 300.0, min_value=0.1),
            grace_s=env.number("PAIRLY_PRESENCE_GRACE_S", 5.0, min_value=0),
            node_ttl_s=env.number("PAIRLY_PRESENCE_NODE_TTL_S", 15.0, min_value=0.3),
            max_subscribe=env.integer("PAIRLY_PRESENCE_MAX_SUBSCRIBE", 500, min_value=1),
            max_subscriptions=env.integer("PAIRLY_PRESENCE_MAX_SUBSCRIPTIONS", 2000, min_value=1),
        )
        if config.max_subscriptions < config.max_subscribe:
            raise ConfigError("PAIRLY_PRESENCE_MAX_SUBSCRIPTIONS", "must be >= PAIRLY_PRESENCE_MAX_SUBSCRIBE")
        return config


@dataclass(frozen=True, slots=True)
class Record:
    """One user's shared presence state. `version` 0 means "not in the store"."""

    version: int = 0
    devices: Mapping[str, str] = field(default_factory=dict)  # connection id -> node id
    mode: Mode = "auto"
    last_active: float = 0.0
    status: Status = "offline"  # what others see (invisible users are "offline" here)
    last_seen: float | None = None  # what others see as last seen (set when status became offline)
    left_at: float | None = None  # the last device left at this time; offline once the grace is over
    left_node: str | None = None  # the node that waits out that grace

    @property
    def view(self) -> View:
        return View(self.status, self.last_seen if self.status == "offline" else None)


@dataclass(frozen=True, slots=True)
class View:
    """What a permitted viewer sees: the `P` payload without the user id."""

    status: Status
    last_seen: float | None

    def payload(self, user: str) -> dict[str, Any]:
        return {"user": user, "status": self.status, "last_seen": iso(self.last_seen)}


HIDDEN = View("offline", None)
"""What a user who blocked the viewer (or an unknown user) looks like."""


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- transitions -----------------------------------------------------------------------------------
def settle(rec: Record, now: float, cfg: PresenceConfig) -> Record:
    """Derive the visible status from the facts. Idempotent."""
    if rec.devices:
        if rec.mode == "invisible":
            target: Status = "offline"
        elif rec.mode == "away" or now - rec.last_active >= cfg.away_after_s:
            target = "away"
        else:
            target = "online"
        last_seen = rec.last_seen
        if target == "offline" and rec.status != "offline":
            last_seen = now  # turning invisible looks like leaving, now
        return replace(rec, status=target, last_seen=last_seen, left_at=None, left_node=None)
    if rec.status == "offline":
        return replace(rec, left_at=None, left_node=None)
    if rec.left_at is not None and now < rec.left_at + cfg.grace_s:
        return rec  # within the grace window: nobody is told anything yet
    gone_at = rec.left_at if rec.left_at is not None else now
    return replace(rec, status="offline", last_seen=gone_at, left_at=None, left_node=None)


def connect(rec: Record, sid: str, node: str, now: float, cfg: PresenceConfig) -> Record:
    devices = {**rec.devices, sid: node}
    return settle(replace(rec, devices=devices, last_active=max(rec.last_active, now)), now, cfg)


def disconnect(rec: Record, sid: str, node: str, now: float, cfg: PresenceConfig) -> Record:
    if sid not in rec.devices:
        return settle(rec, now, cfg)
    devices = {k: v for k, v in rec.devices.items() if k != sid}
    rec = replace(rec, devices=devices)
    if not devices and rec.status != "offline":
        rec = replace(rec, left_at=now, left_node=node)
    return settle(rec, now, cfg)


def touch(rec: Record, active_at: float, now: float, cfg: PresenceConfig) -> Record:
    """Record activity seen at `active_at` (may turn an idle user back online, or an idle one away)."""
    return settle(replace(rec, last_active=max(rec.last_active, active_at)), now, cfg)


def set_mode(rec: Record, mode: Mode, now: float, cfg: PresenceConfig) -> Record:
    """An explicit `presence:set`; it also counts as activity."""
    return settle(replace(rec, mode=mode, last_active=max(rec.last_active, now)), now, cfg)


def drop_node(rec: Record, node: str, died_at: float, now: float, cfg: PresenceConfig) -> Record:
    """A node died: forget its devices; users left with none are offline at once (no grace: the node
    TTL already was one). A grace another, live node is waiting out is left to that node."""
    devices = {k: v for k, v in rec.devices.items() if v != node}
    rec = replace(rec, devices=devices)
    if devices or rec.status == "offline":
        return settle(rec, now, cfg)
    if rec.left_at is None:
        return replace(rec, status="offline", last_seen=died_at, left_node=None)
    if rec.left_node == node:
        return replace(rec, status="offline", last_seen=rec.left_at, left_at=None, left_node=None)
    return rec


def visible(rec: Record | None, dead: Mapping[str, float]) -> View:
    """The view of a record read for a snapshot, ignoring devices on nodes known to be dead."""
    if rec is None:
        return HIDDEN
    if rec.devices and rec.status != "offline" and all(n in dead for n in rec.devices.values()):
        return View("offline", max(dead[n] for n in rec.devices.values()))
    return rec.view
