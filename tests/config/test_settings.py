from __future__ import annotations

import subprocess
import sys

import pytest

from config.settings import DEV_JWT_SECRET, ConfigError, load_settings
from tests.support.apps import ROOT

STRONG = "s" * 40


def test_defaults_are_the_embedded_dev_setup() -> None:
    s = load_settings({})
    assert s.mode == "dev" and s.port == 8080 and s.embedded_store and s.redis_url is None
    assert s.jwt.secret == DEV_JWT_SECRET and s.jwt.algorithms == ("HS256",)
    assert s.embedded_oplog_max_entries == 0  # no oplog: a standalone embedded store
    assert s.limits.rate_for("message:send") is not None
    assert s.limits.rate_for("anything-else") == s.limits.rate_limits["*"]


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"PAIRLY_PORT": "eighty"}, "PAIRLY_PORT"),
        ({"PAIRLY_MODE": "staging"}, "PAIRLY_MODE"),
        ({"MONGO_URL": "postgres://x"}, "MONGO_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"PAIRLY_MAX_CONNECTIONS_PER_USER": "0"}, "PAIRLY_MAX_CONNECTIONS_PER_USER"),
        ({"PAIRLY_RATE_LIMITS": "message:send=ten/1"}, "PAIRLY_RATE_LIMITS"),
        ({"PAIRLY_LOG_LEVEL": "loud"}, "PAIRLY_LOG_LEVEL"),
        ({"PAIRLY_JWT_ALGORITHMS": "RS256"}, "PAIRLY_JWT_ALGORITHMS"),
        ({"PAIRLY_MAX_PAYLOAD_BYTES": "5000", "PAIRLY_MAX_FRAME_BYTES": "2000"}, "PAIRLY_MAX_FRAME_BYTES"),
        ({"PAIRLY_EMBEDDED_OPLOG_MAX_ENTRIES": "-1"}, "PAIRLY_EMBEDDED_OPLOG_MAX_ENTRIES"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.var == var
    assert var in str(err.value)


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({}, "PAIRLY_JWT_SECRET"),
        ({"PAIRLY_JWT_SECRET": DEV_JWT_SECRET}, "PAIRLY_JWT_SECRET"),
        ({"PAIRLY_JWT_SECRET": "short"}, "PAIRLY_JWT_SECRET"),
        ({"PAIRLY_JWT_SECRET": STRONG, "PAIRLY_CORS_ORIGINS": "*"}, "PAIRLY_CORS_ORIGINS"),
        ({"PAIRLY_JWT_SECRET": STRONG, "PAIRLY_METRICS_TOKEN": ""}, "PAIRLY_METRICS_TOKEN"),
        ({"PAIRLY_JWT_SECRET": STRONG, "PAIRLY_METRICS_PUBLIC": "false"}, "PAIRLY_METRICS_TOKEN"),
        ({"PAIRLY_JWT_SECRET": STRONG, "PAIRLY_METRICS_PUBLIC": "maybe"}, "PAIRLY_METRICS_PUBLIC"),
    ],
)
def test_production_refuses_unsafe_settings(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"PAIRLY_MODE": "production", **env})
    assert err.value.var == var


def test_production_with_strong_secret_loads() -> None:
    s = load_settings({"PAIRLY_MODE": "production", "PAIRLY_JWT_SECRET": STRONG, "MONGO_URL": "mongodb://db:27017",
                       "PAIRLY_METRICS_TOKEN": "scrape"})
    assert s.is_production and s.log_format == "json" and s.cors_origins == () and s.host == "0.0.0.0"
    assert s.metrics_token == "scrape"


def test_metrics_token_is_optional_in_dev_and_public_is_an_explicit_production_choice() -> None:
    assert load_settings({}).metrics_token is None
    public = load_settings({"PAIRLY_MODE": "production", "PAIRLY_JWT_SECRET": STRONG, "PAIRLY_METRICS_PUBLIC": "true"})
    assert public.is_production and public.metrics_token is None


def test_jwt_max_ttl_defaults_to_30_days_and_is_configurable() -> None:
    assert load_settings({}).jwt.max_ttl_s == 30 * 24 * 3600
    assert load_settings({"PAIRLY_JWT_MAX_TTL_S": "600"}).jwt.max_ttl_s == 600
    with pytest.raises(ConfigError) as err:
        load_settings({"PAIRLY_JWT_MAX_TTL_S": "0"})
    assert err.value.var == "PAIRLY_JWT_MAX_TTL_S"


def test_rate_limits_override_and_keep_defaults() -> None:
    s = load_settings({"PAIRLY_RATE_LIMITS": "message:send=100/2, typing=1/1"})
    assert s.limits.rate_limits["message:send"].events == 100
    assert s.limits.rate_limits["message:send"].per_seconds == 2
    assert "*" in s.limits.rate_limits


def test_dotenv_is_read_and_environment_wins(tmp_path, monkeypatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nPAIRLY_PORT=9001\nexport PAIRLY_NODE_ID='from-dotenv'\n")
    monkeypatch.setenv("PAIRLY_NODE_ID", "from-env")
    monkeypatch.delenv("PAIRLY_PORT", raising=False)
    s = load_settings(dotenv=dotenv)
    assert s.port == 9001 and s.node_id == "from-env"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60)


def test_process_exits_non_zero_naming_the_bad_variable() -> None:
    result = _cli(env={"PAIRLY_PORT": "nope"})
    assert result.returncode == 2
    assert "PAIRLY_PORT" in result.stderr


def test_token_command_mints_in_dev_and_refuses_in_production() -> None:
    ok = _cli("token", "--user", "alice", "--role", "admin", env={})
    assert ok.returncode == 0 and ok.stdout.count(".") == 2
    refused = _cli("token", "--user", "alice", env={"PAIRLY_MODE": "production", "PAIRLY_JWT_SECRET": STRONG,
                                                    "PAIRLY_METRICS_PUBLIC": "true"})
    assert refused.returncode == 2 and "production" in refused.stderr


def test_dev_mode_listens_on_loopback_unless_told_otherwise() -> None:
    assert load_settings({}).host == "127.0.0.1"
    assert load_settings({"PAIRLY_HOST": "0.0.0.0"}).host == "0.0.0.0"
