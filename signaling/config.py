"""Call settings (PAIRLY_CALL_*), read once at start-up; every limit has a safe default."""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Env


@dataclass(frozen=True)
class CallSettings:
    ring_timeout_s: float = 30.0
    reconnect_grace_s: float = 20.0
    billing_interval_s: float = 60.0
    """Length of a billed "minute". Shorter only for tests and benchmarks."""
    max_sdp_bytes: int = 16 * 1024
    max_ice_per_party: int = 64
    signals_per_s: int = 100
    """`call:signal` events per second per call (both parties together)."""
    sweep_s: float = 5.0
    """How often a node looks for calls owned by, or held open by devices on, nodes that died."""

    @classmethod
    def from_env(cls, env: Env) -> CallSettings:
        return cls(
            ring_timeout_s=env.number("PAIRLY_CALL_RING_TIMEOUT_S", cls.ring_timeout_s, min_value=1.0),
            reconnect_grace_s=env.number("PAIRLY_CALL_RECONNECT_GRACE_S", cls.reconnect_grace_s, min_value=0.5),
            billing_interval_s=env.number("PAIRLY_CALL_BILLING_INTERVAL_S", cls.billing_interval_s, min_value=0.5),
            max_sdp_bytes=env.integer("PAIRLY_CALL_MAX_SDP_BYTES", cls.max_sdp_bytes, min_value=512),
            max_ice_per_party=env.integer("PAIRLY_CALL_MAX_ICE_PER_PARTY", cls.max_ice_per_party, min_value=1),
            signals_per_s=env.integer("PAIRLY_CALL_SIGNALS_PER_S", cls.signals_per_s, min_value=1),
            sweep_s=env.number("PAIRLY_CALL_SWEEP_S", cls.sweep_s, min_value=0.2),
        )
