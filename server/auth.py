"""Token verification for connects and REST: JWTs issued by the platform's identity service.

`TokenVerifier.verify` checks signature, exp/nbf (with leeway), iss/aud when configured, that the
time claims are JSON numbers and the lifetime is at most `PAIRLY_JWT_MAX_TTL_S`, and maps every
failure to one protocol refusal code. Revocation, bans and connection caps are checked by
`server.access.AccessControl`, which owns the stores.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from config.errors import AppError
from config.settings import JwtSettings


class AuthRefused(AppError):
    """A connect or request refused for an auth reason; `code` is one of PROTOCOL.md's refusal codes."""

    http_status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        if code in ("banned", "auth_revoked"):
            self.http_status = 403
        elif code == "limit_reached":
            self.http_status = 429


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    name: str | None
    roles: tuple[str, ...]
    jti: str | None
    issued_at: float | None
    expires_at: float | None

    def has_role(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


class TokenVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        self._key = settings.public_key or settings.secret or ""

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthRefused("auth_missing", "a token is required")
        s = self._settings
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=list(s.algorithms),
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": s.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthRefused("auth_expired", "token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthRefused("auth_invalid", f"token rejected: {exc}") from None
        _check_times(claims, s.max_ttl_s)
        return _identity(claims)


TIME_CLAIMS = ("exp", "iat", "nbf")


def _check_times(claims: Mapping[str, Any], max_ttl_s: float) -> None:
    # PyJWT converts numeric strings ("9999999999") with int(); RFC 7519 NumericDate is a number.
    for name in TIME_CLAIMS:
        if name in claims:
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AuthRefused("auth_invalid", f"token claim {name!r} must be a number")
    exp = float(claims["exp"])
    start = float(claims["iat"]) if "iat" in claims else time.time()
    if exp - start > max_ttl_s:
        raise AuthRefused("auth_invalid", f"token lifetime exceeds {max_ttl_s:.0f} s (PAIRLY_JWT_MAX_TTL_S)")


def _identity(claims: Mapping[str, Any]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise AuthRefused("auth_invalid", "token subject must be a non-empty string")
    roles = claims.get("roles", ["user"])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthRefused("auth_invalid", "roles must be a list of strings")
    name = claims.get("name")
    iat = claims.get("iat")
    jti = claims.get("jti")
    # Interned: a device's three namespace connects (and its rooms, presence and registry entries)
    # then share one copy of each string instead of holding their own (docs/memory.md).
    return Identity(
        user_id=sys.intern(sub),
        name=sys.intern(name) if isinstance(name, str) else None,
        roles=tuple(sys.intern(r) for r in roles),
        jti=sys.intern(jti) if isinstance(jti, str) else None,
        issued_at=float(iat) if isinstance(iat, int | float) else None,
        expires_at=float(claims["exp"]),
    )


def mint_token(
    secret: str,
    user_id: str,
    *,
    name: str | None = None,
    roles: list[str] | None = None,
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str = "HS256",
    now: float | None = None,
) -> str:
    """Mint an HS-signed token (dev command and tests; the platform issues real ones)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        "roles": roles or ["user"],
    }
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=algorithm)


def mint_dev_token(settings: JwtSettings, user_id: str, *, name: str | None = None,
                   roles: list[str] | None = None, ttl_s: int = 3600) -> str:
    """A token signed with the configured HS secret, with the claims `python -m server token` gives a
    plain user (the demo's dev sign-in). ValueError when only a public key is set."""
    if settings.signing_key is None:
        raise ValueError("dev tokens need PAIRLY_JWT_SECRET (HS256); an RS256 public key cannot sign")
    return mint_token(settings.signing_key, user_id, name=name, roles=roles, ttl_s=ttl_s,
                      issuer=settings.issuer, audience=settings.audience, algorithm=settings.algorithms[0])


def token_from(auth: object, headers: Mapping[str, str]) -> str | None:
    """The token from a Socket.IO `auth` payload, else an `Authorization: Bearer` header."""
    if isinstance(auth, dict):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    header = headers.get("Authorization") or headers.get("HTTP_AUTHORIZATION") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
