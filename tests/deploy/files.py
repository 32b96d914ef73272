"""Readers for the deploy files (compose.yaml, deploy/nginx.conf, deploy/k8s/) and for the settings
the server really reads, so the deploy tests compare them without Docker or a cluster."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from config.settings import read_dotenv

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
NGINX = ROOT / "deploy" / "nginx.conf"
K8S = ROOT / "deploy" / "k8s"
SOURCE_PACKAGES = ("server", "rest", "billing", "signaling", "config")

# The stores keep their conventional names; everything else the server reads is PAIRLY_-prefixed.
SETTING_NAME = re.compile(r"^(?:PAIRLY_[A-Z0-9_]+|MONGO_URL|MONGO_DB|REDIS_URL|REDIS_PREFIX)$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def example_env_names() -> set[str]:
    return set(read_dotenv(ROOT / "config" / "example.env"))


def settings_read_by_code() -> set[str]:
    """Every setting name that appears as a whole string literal in the server's source: what
    `config/settings.py` and the feature modules read through `Env`."""
    names: set[str] = set()
    for package in SOURCE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and SETTING_NAME.match(node.value):
                    names.add(node.value)
    return names


# --- compose -----------------------------------------------------------------------------------------

class MissingVariable(Exception):
    """`${VAR:?message}` (or `${VAR?message}`) with VAR not supplied: compose refuses to start."""

    def __init__(self, var: str, message: str) -> None:
        super().__init__(f"{var}: {message}")
        self.var = var


_REF = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`."""

    def one(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        present = value is not None and (value != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return value if present and value is not None else arg
        if op in (":?", "?"):
            if not present or value is None:
                raise MissingVariable(name, arg)
            return value
        if op in (":+", "+"):
            return arg if present else ""
        return value or ""

    return _REF.sub(one, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def compose_raw() -> dict[str, Any]:
    """compose.yaml as YAML (anchors and `<<` merges resolved), before interpolation."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose(env: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with the operator's variables `env`."""
    resolved = interpolate_tree(compose_raw(), env)
    assert isinstance(resolved, dict)
    return resolved


def app_nodes(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile: the server nodes."""
    nodes = {}
    for name, service in doc["services"].items():
        build = service.get("build")
        context = build.get("context") if isinstance(build, dict) else build
        if context in (".", "./"):
            nodes[name] = service
    return nodes


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def duration_s(value: str | int | float) -> float:
    """A compose duration ("15s", "1m30s", "500ms") in seconds."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a compose duration: {value!r}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


# --- nginx -------------------------------------------------------------------------------------------

def nginx_text() -> str:
    return "\n".join(line.split("#", 1)[0] for line in NGINX.read_text().splitlines())


def nginx_block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block (nested braces balanced)."""
    start = re.search(re.escape(header) + r"\s*\{", text)
    assert start is not None, f"no `{header}` block in nginx.conf"
    depth, pos = 1, start.end()
    while depth:
        char = text[pos]
        depth += {"{": 1, "}": -1}.get(char, 0)
        pos += 1
    return text[start.end():pos - 1]


def nginx_directives(block: str, name: str) -> list[list[str]]:
    """The arguments of every `name ...;` directive in `block` (any depth)."""
    return [m.group(1).split() for m in re.finditer(rf"(?:^|[;{{}}\s]){re.escape(name)}\s+([^;{{}}]*);", block)]


# --- kubernetes --------------------------------------------------------------------------------------

def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    """Every manifest under deploy/k8s/, by file name."""
    return {path.name: [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
            for path in sorted(K8S.glob("*.yaml"))}


def k8s_object(kind: str) -> dict[str, Any]:
    found = [d for docs in k8s_docs().values() for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
