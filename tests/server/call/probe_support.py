"""Shared by the probe and quality tests: an app environment whose WebRTC stays on loopback."""

from __future__ import annotations

from typing import Any

from tests.server.call.conftest import CALL, ok
from tests.support.clients import Client
from tests.support.webrtc import ProbePeer

# No STUN/TURN (nothing leaves the machine), host candidates on 127.0.0.1 only, short probes.
LOOPBACK_ENV = {"PAIRLY_STUN_URLS": "none", "PAIRLY_ICE_HOST_ADDRESSES": "127.0.0.1",
                "PAIRLY_PROBE_DURATION_S": "1", "PAIRLY_PROBE_INTERVAL_MS": "50",
                "PAIRLY_PROBE_TIMEOUT_S": "2", "PAIRLY_PROBE_ECHO_GRACE_S": "1"}


async def run_probe(client: Client, peer: ProbePeer, timeout: float = 15.0) -> dict[str, Any]:
    """Offer, answer, echo until the result arrives; the peer is closed afterwards."""
    try:
        result = client.next(CALL, "call:probe:result", timeout=timeout)
        ack = await ok(client, "call:probe", await peer.offer())
        assert ack["type"] == "answer" and ack["probe_id"].startswith("p")
        await peer.accept(ack)
        got: dict[str, Any] = await result
        assert got["probe_id"] == ack["probe_id"]
        return got
    finally:
        await peer.close()
