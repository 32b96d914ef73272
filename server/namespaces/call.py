"""`/call` namespace (PROTOCOL.md). Connect auth and caps come from `BaseNamespace`; the domain is in
`signaling/`. Built so far: `call:ice_servers`; the call lifecycle, relay and billing are the calls
issue's (every other event answers `invalid_payload: unknown event` until then)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from server.core import Core
from server.namespaces.base import Ack, BaseNamespace, Caller, Handler
from signaling.ice import IceConfig


class CallNamespace(BaseNamespace):
    def __init__(self, namespace: str, core: Core, ice: IceConfig) -> None:
        self.ice = ice
        super().__init__(namespace, core)

    def handlers(self) -> Mapping[str, Handler]:
        return {"call:ice_servers": self._ice_servers}

    async def _ice_servers(self, caller: Caller, data: Any) -> Ack:
        # The payload is `{}`; anything else in it is ignored (nothing to validate, nothing changes).
        return {"ice_servers": self.ice.servers(caller.user_id, time.time()), "ttl": self.ice.ttl_s}
