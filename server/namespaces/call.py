"""`/call` namespace (PROTOCOL.md): thin — validate, call the call service, ack.

Connect auth, caps, payload size and per-event rate limits come from `BaseNamespace`; the domain
(lifecycle, relay, billing, crash safety) is in `signaling/`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from server.core import Core
from server.namespaces.base import Ack, BaseNamespace, Caller, Handler
from signaling import validate
from signaling.probe import ProbeService
from signaling.service import CallService


class CallNamespace(BaseNamespace):
    def __init__(self, namespace: str, core: Core, service: CallService, probes: ProbeService) -> None:
        self.service = service
        self.probes = probes
        super().__init__(namespace, core)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "call:ice_servers": self._ice_servers,
            "call:prepare": self._prepare,
            "call:invite": self._invite,
            "call:accept": self._accept,
            "call:reject": self._reject,
            "call:cancel": self._cancel,
            "call:end": self._end,
            "call:signal": self._signal,
            "call:media": self._media,
            "call:stats": self._stats,
            "call:probe": self._probe,
        }

    async def disconnected(self, caller: Caller, reason: str) -> None:
        await self.service.device_gone(caller.user_id)
        await self.probes.device_gone(caller.sid)

    async def _ice_servers(self, caller: Caller, data: Any) -> Ack:
        # The payload is `{}`; anything else in it is ignored (nothing to validate, nothing changes).
        ice = self.service.ice
        return {"ice_servers": ice.servers(caller.user_id, time.time()), "ttl": ice.ttl_s}

    async def _prepare(self, caller: Caller, data: Any) -> Ack:
        to, media = validate.target(data)
        return await self.service.prepare(caller.user_id, to, media)

    async def _invite(self, caller: Caller, data: Any) -> Ack:
        to, media = validate.target(data)
        return await self.service.invite(caller.user_id, caller.sid, to, media)

    async def _accept(self, caller: Caller, data: Any) -> Ack:
        return await self.service.accept(caller.user_id, caller.sid, validate.call_id(data))

    async def _reject(self, caller: Caller, data: Any) -> Ack:
        return await self.service.reject(caller.user_id, validate.call_id(data))

    async def _cancel(self, caller: Caller, data: Any) -> Ack:
        return await self.service.cancel(caller.user_id, validate.call_id(data))

    async def _end(self, caller: Caller, data: Any) -> Ack:
        return await self.service.hang_up(caller.user_id, validate.call_id(data))

    async def _signal(self, caller: Caller, data: Any) -> Ack:
        sig = validate.signal(data, self.service.settings.max_sdp_bytes)
        return await self.service.signal(caller.user_id, caller.sid, sig)

    async def _media(self, caller: Caller, data: Any) -> Ack:
        call_id, media = validate.media_change(data)
        return await self.service.change_media(caller.user_id, call_id, media)

    async def _stats(self, caller: Caller, data: Any) -> Ack:
        assert self.service.quality is not None
        return await self.service.quality.stats(caller.user_id, data)

    async def _probe(self, caller: Caller, data: Any) -> Ack:
        return await self.probes.probe(caller.user_id, caller.sid, data)
