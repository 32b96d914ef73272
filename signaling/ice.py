"""ICE servers for `call:ice_servers` (and later `call:prepare`): STUN URLs, and TURN URLs with
coturn REST-API credentials.

coturn's `use-auth-secret` scheme (the "TURN REST API"): the username is `"<expiry_unix>:<user_id>"`
and the credential is `base64(HMAC-SHA1(secret, username))`; coturn recomputes the HMAC with the same
static secret and refuses the username once its expiry has passed. So credentials are minted per
user, need no shared state between nodes, and expire on their own after `ttl_s`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from config.settings import ConfigError, Env

DEFAULT_STUN = ("stun:stun.l.google.com:19302",)
DEFAULT_TTL_S = 86_400


def turn_credentials(secret: str, user: str, expiry_unix: int) -> tuple[str, str]:
    """(username, credential) as coturn's `use-auth-secret` expects them."""
    username = f"{expiry_unix}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class IceConfig:
    stun_urls: tuple[str, ...] = DEFAULT_STUN
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    ttl_s: int = DEFAULT_TTL_S

    @classmethod
    def from_env(cls, env: Env) -> IceConfig:
        stun = env.items("PAIRLY_STUN_URLS", DEFAULT_STUN)
        if stun == ("none",):
            stun = ()
        turn = env.items("PAIRLY_TURN_URLS")
        for name, urls, schemes in (("PAIRLY_STUN_URLS", stun, ("stun:", "stuns:")),
                                    ("PAIRLY_TURN_URLS", turn, ("turn:", "turns:"))):
            bad = [u for u in urls if not u.startswith(schemes) or len(u) > 300]
            if bad:
                raise ConfigError(name, f"URLs must start with {' or '.join(schemes)}; got {bad[0]!r}")
        secret = env.text("PAIRLY_TURN_SECRET")
        if turn and not secret:
            raise ConfigError("PAIRLY_TURN_SECRET", "is required when PAIRLY_TURN_URLS is set (coturn use-auth-secret)")
        if secret is not None and len(secret) < 16:
            raise ConfigError("PAIRLY_TURN_SECRET", "must be at least 16 characters")
        ttl = env.integer("PAIRLY_TURN_TTL_S", DEFAULT_TTL_S, min_value=60)
        return cls(stun, turn, secret, ttl)

    def servers(self, user: str, now_unix: float) -> list[dict[str, Any]]:
        """The RTCPeerConnection `iceServers` list for `user` (TURN credentials valid for `ttl_s`)."""
        out: list[dict[str, Any]] = []
        if self.stun_urls:
            out.append({"urls": list(self.stun_urls)})
        if self.turn_urls and self.turn_secret:
            username, credential = turn_credentials(self.turn_secret, user, int(now_unix) + self.ttl_s)
            out.append({"urls": list(self.turn_urls), "username": username, "credential": credential})
        return out
