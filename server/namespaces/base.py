"""What every namespace shares: connect auth and caps, and one wrapper around every event.

The wrapper validates size and rate, binds log context, measures, and turns any exception into the
protocol's ack payload (through `server.errormap`). Subclasses declare `events`, a table from the
wire event name to a handler `(caller, data) -> dict | None`; the dict is the ack's body after
`"ok": true`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import socketio
import structlog

from config.errors import AppError, InvalidPayload, RateLimited, TooLarge
from server.auth import AuthRefused, Identity, token_from
from server.core import Core
from server.errormap import OUTAGES, ack_error, refusal_data
from server.parser import RESERVED_EVENTS, ClientEvent
from server.rooms import user_room

log = structlog.get_logger(__name__)

Ack = dict[str, Any]
Handler = Callable[["Caller", Any], Awaitable[Ack | None]]


@dataclass(frozen=True, slots=True)
class Caller:
    sid: str
    identity: Identity
    namespace: str

    @property
    def user_id(self) -> str:
        return self.identity.user_id


def payload_size(data: Any) -> int:
    """Encoded JSON size in bytes; binary or non-JSON values are refused as invalid payloads, and so
    are strings that are not valid Unicode (a lone surrogate such as "\\ud800" is valid JSON but
    cannot be stored: it would fail the store write of everything batched with it)."""
    if data is None:
        return 0
    try:
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except UnicodeEncodeError:
        raise InvalidPayload("strings must be valid Unicode (no lone surrogates)") from None
    except (TypeError, ValueError):
        raise InvalidPayload("payload must be JSON (no binary attachments)") from None


class BaseNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    # Events answered without an ack and dropped silently when over their rate (e.g. typing).
    droppable: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, namespace: str, core: Core) -> None:
        super().__init__(namespace)
        self.core = core
        self.callers: dict[str, Caller] = {}
        self._limits = core.settings.limits
        self._metrics = core.metrics
        self._handlers: Mapping[str, Handler] = self.handlers()
        self._metric_children: dict[str, tuple[Any, Any]] = {}

    def handlers(self) -> Mapping[str, Handler]:
        """Wire event name -> handler. Subclasses override."""
        return {}

    # -- lifecycle hooks for subclasses ------------------------------------------------------------
    async def connected(self, caller: Caller) -> None:
        """Called after a connect has been accepted and the sid has joined its user room."""

    async def disconnected(self, caller: Caller, reason: str) -> None:
        """Called after a sid has left."""

    # -- socketio entry points ---------------------------------------------------------------------
    async def trigger_event(self, event: str, *args: Any) -> Any:
        # A client may send an EVENT named `connect`/`disconnect`; the server marks those as
        # `ClientEvent` and they are answered as unknown events below, never as lifecycle calls.
        if not isinstance(event, ClientEvent):
            if event == "connect":
                return await self._connect(args[0], args[1], args[2] if len(args) > 2 else None)
            if event == "disconnect":
                return await self._disconnect(args[0], str(args[1]) if len(args) > 1 else "unknown")
        return await self._dispatch(event, args[0], args[1] if len(args) > 1 else None, len(args) > 2)

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any) -> bool:
        ns = self.namespace
        structlog.contextvars.bind_contextvars(sid=sid, namespace=ns)
        core = self.core
        try:
            identity = await core.access.authenticate(token_from(auth, environ))
            limit = self._limits.max_connections_per_user
            if not await core.connections.add(ns, identity.user_id, sid, limit):
                raise AuthRefused("limit_reached", f"at most {limit} connections per user on {ns}")
        except AuthRefused as exc:
            self._metrics.connects_refused.labels(ns, exc.code).inc()
            log.info("connect_refused", code=exc.code, reason=exc.message)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, refusal_data(exc.code, exc.message)) from None
        except OUTAGES as exc:
            # The checks could not be made (store or Redis down): refuse with a code the client can
            # retry on, at once, rather than let the connect time out.
            self._metrics.connects_refused.labels(ns, "unavailable").inc()
            log.warning("connect_unavailable", error=type(exc).__name__)
            message = "service temporarily unavailable; retry shortly"
            raise socketio.exceptions.ConnectionRefusedError(message, refusal_data("unavailable", message)) from None
        caller = Caller(sid=sid, identity=identity, namespace=ns)
        self.callers[sid] = caller
        await self.enter_room(sid, user_room(identity.user_id))
        self._metrics.connections.labels(ns).inc()
        structlog.contextvars.bind_contextvars(user=identity.user_id)
        log.debug("connected")
        core.background.spawn(core.users.seen(identity), name="user-seen")
        await self.connected(caller)
        return True

    async def _disconnect(self, sid: str, reason: str) -> None:
        caller = self.callers.pop(sid, None)
        if caller is None:
            return
        self._metrics.connections.labels(self.namespace).dec()
        try:
            await self.core.connections.remove(self.namespace, caller.user_id, sid)
        finally:
            await self.disconnected(caller, reason)

    async def _dispatch(self, event: str, sid: str, data: Any, extra_args: bool) -> Ack | None:
        caller = self.callers.get(sid)
        if caller is None:  # an event racing the disconnect
            return None
        structlog.contextvars.bind_contextvars(sid=sid, namespace=self.namespace, user=caller.user_id, event=event)
        started = time.perf_counter()
        handler = None if event in RESERVED_EVENTS else self._handlers.get(event)
        code = "ok"
        try:
            if handler is None:
                raise InvalidPayload(f"unknown event {event[:64]!r}")
            if extra_args:
                raise InvalidPayload("send a single payload object")
            if payload_size(data) > self._limits.max_payload_bytes:
                raise TooLarge(f"payload exceeds {self._limits.max_payload_bytes} bytes")
            rate = self._limits.rate_for(event)
            if rate is not None:
                wait = await self.core.rate_limiter.take(caller.user_id, event, rate)
                if wait > 0:
                    raise RateLimited(f"too many {event} events", retry_after_s=wait)
            self.core.activity(caller.user_id)
            result = await handler(caller, data)
            ack: Ack = {"ok": True}
            if result:
                ack.update(result)
            return ack
        except AppError as exc:
            code = exc.code
            if event in self.droppable:
                return None
            return ack_error(exc)
        except Exception as exc:
            code = "internal"
            return ack_error(exc)
        finally:
            label = event if handler is not None else "unknown"
            count, latency = self._event_metrics(label)
            count.inc()
            latency.observe(time.perf_counter() - started)
            if code != "ok":
                self._metrics.events_failed.labels(label, code).inc()

    def _event_metrics(self, label: str) -> tuple[Any, Any]:
        # Resolving labelled children costs a lock and a dict walk; cache them per event name.
        cached = self._metric_children.get(label)
        if cached is None:
            cached = (self._metrics.events.labels(label), self._metrics.handler_latency.labels(label))
            self._metric_children[label] = cached
        return cached
