"""`python -m server [run]` starts a node; `python -m server token ...` mints a dev token."""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog

from config.logging import configure_logging
from config.settings import ConfigError, Settings, load_settings
from server.auth import mint_token
from server.store import StoreUnavailable


def _run(settings: Settings) -> int:
    from aiohttp import web

    from server.app import create_app

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a hard dependency on Linux
        pass
    log = structlog.get_logger("server")
    app = create_app(settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host

    async def _ready(_: web.Application) -> None:
        log.info(
            "listening",
            url=f"http://{shown}:{settings.port}",
            mode=settings.mode,
            node=settings.node_id,
            store="embedded" if settings.embedded_store else "external",
            redis=bool(settings.redis_url),
        )
        if not settings.is_production:
            print(
                f"\nPairly realtime server on http://{shown}:{settings.port}  (Socket.IO path /socket.io/)\n"
                "Mint a dev token:  .venv/bin/python -m server token --user alice --name Alice\n",
                file=sys.stderr,
                flush=True,
            )

    app.on_startup.append(_ready)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=None,
            access_log=None,
            shutdown_timeout=settings.shutdown_timeout_s,
            handle_signals=True,
        )
    except StoreUnavailable as exc:
        log.error("store_unavailable", error=str(exc))
        return 1
    log.info("stopped")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    if settings.is_production:
        print("error: 'token' mints dev tokens and is refused in production mode", file=sys.stderr)
        return 2
    secret = settings.jwt.signing_key
    if secret is None:
        print("error: dev tokens need PAIRLY_JWT_SECRET (HS256); an RS256 public key cannot sign", file=sys.stderr)
        return 2
    print(
        mint_token(
            secret,
            args.user,
            name=args.name,
            roles=args.role or ["user"],
            ttl_s=args.ttl,
            issuer=settings.jwt.issuer,
            audience=settings.jwt.audience,
            algorithm=settings.jwt.algorithms[0],
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start a server node (default)")
    token = sub.add_parser("token", help="mint a dev JWT (refused in production mode)")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--role", action="append", help="repeatable; default 'user'")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default 86400)")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(settings, args)
    configure_logging(settings)
    return _run(settings)


if __name__ == "__main__":
    sys.exit(main())
