"""Settings: read once from the environment (plus an optional `.env`), validated at start-up.

Every variable is documented in `config/example.env`. A bad value raises `ConfigError` naming the
variable, and the process exits non-zero with that message.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["dev", "production"]

# Only for the embedded dev default; production mode refuses it.
DEV_JWT_SECRET = "pairly-dev-secret-do-not-use-in-production-0000"
# Oplog cap of the embedded store (SecantusDB's default: 100,000); see docs/architecture.md.
EMBEDDED_OPLOG_MAX_ENTRIES = 0
_MIN_SECRET_LEN = 32
_RATE_RE = re.compile(r"^\s*([\w:*.-]+)\s*=\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")

# Per-event token buckets: (events, per seconds). "*" applies to every event without its own entry.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "*": (30, 1.0),
    "message:send": (10, 1.0),
    "typing": (5, 1.0),
    "presence:subscribe": (10, 10.0),
    "call:invite": (5, 10.0),
    "call:signal": (50, 1.0),
    "call:probe": (3, 60.0),
    "call:stats": (10, 10.0),
}


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, var: str, problem: str) -> None:
        super().__init__(f"{var}: {problem}")
        self.var = var


@dataclass(frozen=True)
class RateLimit:
    events: int
    per_seconds: float


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 64 * 1024
    max_frame_bytes: int = 1024 * 1024
    max_connections_per_user: int = 10
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    connect_deadline_s: float = 10.0
    """An Engine.IO transport that has not connected a namespace by then is closed."""
    max_transports_per_ip: int = 200
    client_ip_header: str | None = None
    """Take the client address from this header (first entry) — only behind a proxy that sets it."""

    def rate_for(self, event: str) -> RateLimit | None:
        return self.rate_limits.get(event) or self.rate_limits.get("*")


@dataclass(frozen=True)
class JwtSettings:
    secret: str | None
    public_key: str | None
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None
    leeway_s: float
    max_ttl_s: float = 30 * 24 * 3600
    """Longest token lifetime accepted: `exp - iat`, or `exp - now` for a token without `iat`."""

    @property
    def signing_key(self) -> str | None:
        """The key dev tokens are minted with (HS secrets only)."""
        return self.secret


@dataclass(frozen=True)
class Settings:
    mode: Mode
    host: str
    port: int
    node_id: str
    data_dir: Path
    mongo_url: str | None
    mongo_db: str
    store_connect_timeout_s: float
    embedded_oplog_max_entries: int
    redis_url: str | None
    redis_prefix: str
    jwt: JwtSettings
    cors_origins: tuple[str, ...]
    limits: Limits
    log_level: str
    log_format: Literal["console", "json"]
    shutdown_timeout_s: float
    extra: Mapping[str, str] = field(default_factory=dict)
    """The raw environment, for feature modules that read their own variables through `Env`."""
    metrics_token: str | None = None
    """When set, `GET /metrics` requires `Authorization: Bearer <token>`; unset, it is open."""

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def embedded_store(self) -> bool:
        return self.mongo_url is None

    def env(self) -> Env:
        return Env(self.extra)


class Env:
    """Typed accessors over a mapping of variables; every error names its variable."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self._src = source

    def text(self, name: str, default: str | None = None) -> str | None:
        raw = self._src.get(name)
        if raw is None or raw.strip() == "":
            return default
        return str(raw).strip()

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(name, "is required")
        return value

    def integer(self, name: str, default: int, *, min_value: int | None = None) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {raw!r}") from None
        if min_value is not None and value < min_value:
            raise ConfigError(name, f"must be >= {min_value}, got {value}")
        return value

    def number(self, name: str, default: float, *, min_value: float | None = None) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {raw!r}") from None
        if min_value is not None and value < min_value:
            raise ConfigError(name, f"must be >= {min_value}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def items(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return default
        return tuple(part.strip() for part in raw.split(",") if part.strip())


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal `.env` file: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :]
        key, sep, value = stripped.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{lineno}", "expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _parse_rate_limits(var: str, raw: str | None) -> dict[str, RateLimit]:
    limits = {k: RateLimit(n, s) for k, (n, s) in DEFAULT_RATE_LIMITS.items()}
    if raw is None:
        return limits
    for item in raw.split(","):
        if not item.strip():
            continue
        match = _RATE_RE.match(item)
        if match is None:
            raise ConfigError(var, f"entry {item.strip()!r} must look like 'event=COUNT/SECONDS'")
        event, count, seconds = match.group(1), int(match.group(2)), float(match.group(3))
        if count < 1 or seconds <= 0:
            raise ConfigError(var, f"entry {item.strip()!r} needs COUNT >= 1 and SECONDS > 0")
        limits[event] = RateLimit(count, seconds)
    return limits


def load_settings(environ: Mapping[str, str] | None = None, *, dotenv: Path | None = None) -> Settings:
    """Build validated settings from `environ` (default: the process environment plus `.env`)."""
    if environ is None:
        merged = read_dotenv(dotenv or Path(".env"))
        merged.update(os.environ)
        environ = merged
    env = Env(environ)

    mode = env.choice("PAIRLY_MODE", "dev", ("dev", "production"))
    production = mode == "production"

    secret = env.text("PAIRLY_JWT_SECRET")
    public_key = env.text("PAIRLY_JWT_PUBLIC_KEY")
    public_key_file = env.text("PAIRLY_JWT_PUBLIC_KEY_FILE")
    if public_key_file:
        try:
            public_key = Path(public_key_file).read_text()
        except OSError as exc:
            raise ConfigError("PAIRLY_JWT_PUBLIC_KEY_FILE", f"cannot read {public_key_file}: {exc}") from None
    if public_key and secret:
        raise ConfigError("PAIRLY_JWT_SECRET", "set either a secret (HS256) or a public key (RS256), not both")
    if public_key is None and secret is None:
        if production:
            raise ConfigError("PAIRLY_JWT_SECRET", "is required in production (or PAIRLY_JWT_PUBLIC_KEY)")
        secret = DEV_JWT_SECRET
    if secret is not None and production:
        if secret == DEV_JWT_SECRET:
            raise ConfigError("PAIRLY_JWT_SECRET", "the built-in dev secret is refused in production")
        if len(secret) < _MIN_SECRET_LEN:
            raise ConfigError("PAIRLY_JWT_SECRET", f"must be at least {_MIN_SECRET_LEN} characters in production")
    default_algs = ("RS256",) if public_key else ("HS256",)
    algorithms = env.items("PAIRLY_JWT_ALGORITHMS", default_algs)
    allowed = {"HS256", "HS384", "HS512"} if secret else {"RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"}
    bad = [a for a in algorithms if a not in allowed]
    if bad or not algorithms:
        raise ConfigError(
            "PAIRLY_JWT_ALGORITHMS", f"{', '.join(bad) or 'empty'} not usable with the configured key"
        )
    jwt = JwtSettings(
        secret=secret,
        public_key=public_key,
        algorithms=algorithms,
        issuer=env.text("PAIRLY_JWT_ISSUER"),
        audience=env.text("PAIRLY_JWT_AUDIENCE"),
        leeway_s=env.number("PAIRLY_JWT_LEEWAY_S", 30.0, min_value=0),
        max_ttl_s=env.number("PAIRLY_JWT_MAX_TTL_S", 30 * 24 * 3600.0, min_value=1),
    )

    mongo_url = env.text("MONGO_URL")
    if mongo_url is not None and not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGO_URL", "must start with mongodb:// or mongodb+srv://")
    redis_url = env.text("REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")

    max_payload = env.integer("PAIRLY_MAX_PAYLOAD_BYTES", 64 * 1024, min_value=256)
    max_frame = env.integer("PAIRLY_MAX_FRAME_BYTES", 1024 * 1024, min_value=1024)
    if max_frame < max_payload:
        raise ConfigError("PAIRLY_MAX_FRAME_BYTES", "must be >= PAIRLY_MAX_PAYLOAD_BYTES")
    limits = Limits(
        max_payload_bytes=max_payload,
        max_frame_bytes=max_frame,
        max_connections_per_user=env.integer("PAIRLY_MAX_CONNECTIONS_PER_USER", 10, min_value=1),
        rate_limits=_parse_rate_limits("PAIRLY_RATE_LIMITS", env.text("PAIRLY_RATE_LIMITS")),
        connect_deadline_s=env.number("PAIRLY_CONNECT_DEADLINE_S", 10.0, min_value=0.1),
        max_transports_per_ip=env.integer("PAIRLY_MAX_TRANSPORTS_PER_IP", 200, min_value=1),
        client_ip_header=env.text("PAIRLY_CLIENT_IP_HEADER"),
    )

    log_format = env.choice("PAIRLY_LOG_FORMAT", "json" if production else "console", ("console", "json"))
    level = env.choice("PAIRLY_LOG_LEVEL", "info", ("debug", "info", "warning", "error"))
    cors = env.items("PAIRLY_CORS_ORIGINS", () if production else ("*",))
    if production and "*" in cors:
        raise ConfigError("PAIRLY_CORS_ORIGINS", "'*' is refused in production; list the app origins")

    # Metrics reveal user counts (connections per namespace), event names and error rates: in
    # production they need a scrape token unless they are made public on purpose.
    metrics_token = env.text("PAIRLY_METRICS_TOKEN")
    metrics_public = env.flag("PAIRLY_METRICS_PUBLIC", False)
    if production and metrics_token is None and not metrics_public:
        raise ConfigError(
            "PAIRLY_METRICS_TOKEN",
            "is required in production (/metrics reveals user counts and event names); "
            "or set PAIRLY_METRICS_PUBLIC=true to serve /metrics without a token",
        )

    return Settings(
        mode="production" if production else "dev",
        # Dev mode (built-in JWT secret, dev payments) listens on loopback unless told otherwise.
        host=env.text("PAIRLY_HOST") or ("0.0.0.0" if production else "127.0.0.1"),
        port=env.integer("PAIRLY_PORT", 8080, min_value=0),
        node_id=env.text("PAIRLY_NODE_ID") or secrets.token_hex(4),
        data_dir=Path(env.text("PAIRLY_DATA_DIR", "var") or "var"),
        mongo_url=mongo_url,
        mongo_db=env.text("MONGO_DB", "pairly") or "pairly",
        store_connect_timeout_s=env.number("PAIRLY_STORE_CONNECT_TIMEOUT_S", 15.0, min_value=0.1),
        embedded_oplog_max_entries=env.integer(
            "PAIRLY_EMBEDDED_OPLOG_MAX_ENTRIES", EMBEDDED_OPLOG_MAX_ENTRIES, min_value=0
        ),
        redis_url=redis_url,
        redis_prefix=env.text("REDIS_PREFIX", "pairly") or "pairly",
        jwt=jwt,
        cors_origins=cors,
        limits=limits,
        log_level=level,
        log_format="json" if log_format == "json" else "console",
        shutdown_timeout_s=env.number("PAIRLY_SHUTDOWN_TIMEOUT_S", 8.0, min_value=0.5),
        extra=dict(environ),
        metrics_token=metrics_token,
    )
