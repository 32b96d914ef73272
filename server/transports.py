"""Limits on Engine.IO transports before anyone has authenticated.

A transport costs memory from its handshake on, but auth happens only at namespace connect. So:
- a transport that has not connected a namespace within `connect_deadline_s` is closed (clients that
  answer pings but never authenticate no longer stay forever);
- at most `max_per_ip` transports per client address; beyond it the handshake is refused (401).
The client address is the TCP peer's, or the first entry of a configured header when a trusted proxy
sets it (never trust such a header without a proxy in front: clients could set it themselves).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class TransportGuard:
    def __init__(self, *, connect_deadline_s: float, max_per_ip: int, ip_header: str | None) -> None:
        self._deadline_s = connect_deadline_s
        self._max_per_ip = max_per_ip
        self._ip_key = f"HTTP_{ip_header.upper().replace('-', '_')}" if ip_header else None
        self._per_ip: dict[str, int] = {}
        self._ip_of: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def client_ip(self, environ: dict[str, Any]) -> str:
        if self._ip_key and environ.get(self._ip_key):
            return str(environ[self._ip_key]).split(",")[0].strip()[:64]
        request = environ.get("aiohttp.request")
        return str(getattr(request, "remote", None) or environ.get("REMOTE_ADDR") or "unknown")

    def admit(self, eio_sid: str, environ: dict[str, Any], close: Any) -> bool:
        """Count a new transport; False refuses it. `close(eio_sid)` is called at the deadline."""
        ip = self.client_ip(environ)
        if self._per_ip.get(ip, 0) >= self._max_per_ip:
            log.warning("transport_refused_per_ip", ip=ip, limit=self._max_per_ip)
            return False
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self._ip_of[eio_sid] = ip
        self._timers[eio_sid] = asyncio.get_running_loop().call_later(self._deadline_s, close, eio_sid)
        return True

    def authenticated(self, eio_sid: str) -> None:
        """A namespace connected on this transport: no deadline any more."""
        timer = self._timers.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()

    def pending(self, eio_sid: str) -> bool:
        return eio_sid in self._timers

    def gone(self, eio_sid: str) -> None:
        self.authenticated(eio_sid)
        ip = self._ip_of.pop(eio_sid, None)
        if ip is not None:
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
