"""`python -m server [run]` starts a node; `python -m server token ...` mints a dev token;
`python -m server reconcile` proves the books balance: every account == Σ its postings, Σ == 0, and
every settled call's record matches the minutes the ledger charged for it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path

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
    # A fan-out to 1,000 sockets allocates enough to trigger full collections every few rounds
    # (~130 ms each with 1,000 connections open); a higher gen-0 threshold took presence fan-out p99
    # from 208 ms to 44 ms (loadtests/bench_presence.py measures both settings).
    gc.set_threshold(100_000, 50, 100)
    try:
        app = create_app(settings)  # feature settings (chat, creators, calls) are validated here
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
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


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the books balance (every account == Σ its postings, Σ accounts == 0, every transfer
    balanced), 1 when they do not, 2 on errors."""
    from billing.ledger import Ledger
    from server.store import EmbeddedStore, make_client, redact, wait_until_reachable
    from signaling.audit import audit_calls

    async def run() -> int:
        url, embedded, offline = settings.mongo_url, None, bool(args.offline)
        if url is None:
            storage = str((settings.data_dir / "db").resolve())
            owner = _embedded_owner(storage)
            if owner is not None:
                print(f"error: the embedded store under {storage} is in use by a running server (pid {owner}); "
                      "stop it first, or reconcile against MONGO_URL", file=sys.stderr)
                return 2
            embedded = EmbeddedStore(storage, log_path=settings.data_dir / "db.log")
            embedded.start()
            url, offline = embedded.url, True  # nothing else can be writing
        client = make_client(url, timeout_s=min(5.0, settings.store_connect_timeout_s))
        try:
            await wait_until_reachable(client, settings.store_connect_timeout_s, redact(url))
            ledger = Ledger(client[settings.mongo_db])
            report = await (ledger.reconcile() if offline else ledger.audit())
            calls = await audit_calls(client[settings.mongo_db])
        except StoreUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            await client.close()
            if embedded is not None:
                embedded.stop()
        if args.json:
            print(json.dumps({"ok": report.ok, "accounts": report.accounts, "entries": report.entries,
                              "total": report.total, "totals": report.totals, "unbalanced": report.unbalanced,
                              "discrepancies": [vars(d) for d in report.discrepancies],
                              "calls": {"settled": calls.calls, "problems": calls.problems}}))
        else:
            print(f"accounts: {report.accounts}  entries: {report.entries}  total: {report.total}  "
                  f"unbalanced transfers: {len(report.unbalanced)}  discrepancies: {len(report.discrepancies)}")
            for family, balance in sorted(report.totals.items()):
                print(f"  {family}: {balance}")
            for d in report.discrepancies:
                print(f"  {d.account}: balance {d.balance} vs ledger {d.ledger_sum}; held {d.held} vs ledger "
                      f"{d.ledger_held_sum}")
            for key in report.unbalanced[:20]:
                print(f"  unbalanced transfer: {key}")
            print(f"calls settled: {calls.calls}  mismatches with the ledger: {len(calls.problems)}")
            for problem in calls.problems[:20]:
                print(f"  {problem}")
        return 0 if report.ok and calls.ok else 1

    return asyncio.run(run())


def _sessions(settings: Settings, args: argparse.Namespace) -> int:
    """`revoke` / `ban` / `unban`: write the cut-off to the store; every running node polls it and
    disconnects the affected sockets within PAIRLY_SESSION_POLL_S. Works beside running nodes, on the
    embedded store of a running `make run` too."""
    import datetime as dt

    from config.errors import AppError
    from server.revocation import RevocationStore
    from server.sessions import SessionControl
    from server.store import EmbeddedStore, make_client, redact, wait_until_reachable
    from server.users import UserStore

    storage = str((settings.data_dir / "db").resolve())
    running = None
    if settings.mongo_url is None and _embedded_owner(storage) is not None:
        running = int(Path(storage + ".port").read_text().strip())

    async def run() -> int:
        url, embedded = settings.mongo_url, None
        if url is None:
            if running is not None:
                url = f"mongodb://127.0.0.1:{running}/?directConnection=true&retryWrites=false"
            else:
                embedded = EmbeddedStore(storage, log_path=settings.data_dir / "db.log")
                embedded.start()
                url = embedded.url
        client = make_client(url, timeout_s=min(5.0, settings.store_connect_timeout_s))
        try:
            await wait_until_reachable(client, settings.store_connect_timeout_s, redact(url))
            db = client[settings.mongo_db]
            control = SessionControl(db, UserStore(db), RevocationStore(db))
            if args.command == "revoke" and args.jti:
                await control.revoke_token(args.jti, args.exp)
                print(f"revoked token {args.jti}")
            elif args.command == "revoke":
                await control.revoke_user(args.user)
                print(f"revoked every session of {args.user}")
            elif args.command == "ban":
                until = dt.datetime.fromisoformat(args.until) if args.until else None
                if until is not None and until.tzinfo is None:
                    until = until.replace(tzinfo=dt.UTC)
                await control.ban(args.user, args.reason, until)
                print(f"banned {args.user}" + (f" until {until.isoformat()}" if until else ""))
            else:
                await control.unban(args.user)
                print(f"unbanned {args.user}")
            return 0
        except (AppError, ValueError, StoreUnavailable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            await client.close()
            if embedded is not None:
                embedded.stop()

    return asyncio.run(run())


def _embedded_owner(storage: str) -> int | None:
    """The pid of a live server whose embedded store holds `storage`, else None (an orphaned store
    left by a killed server is not an owner: starting the store again reaps it)."""
    try:
        pid = int(Path(storage + ".pid").read_text().strip())
        if b"secantusd" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return ppid if ppid > 1 and Path(f"/proc/{ppid}").exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start a server node (default)")
    token = sub.add_parser("token", help="mint a dev JWT (refused in production mode)")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--role", action="append", help="repeatable; default 'user'")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default 86400)")
    reconcile = sub.add_parser("reconcile", help="check every account == sum of its postings and the sum is zero")
    reconcile.add_argument("--offline", action="store_true",
                           help="no node is writing: one exact pass instead of repeated live passes")
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON")
    revoke = sub.add_parser("revoke", help="cut off a token (--jti) or every session of a user (--user)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti")
    which.add_argument("--user")
    revoke.add_argument("--exp", type=float, help="the token's exp (unix seconds): how long to keep the entry")
    ban = sub.add_parser("ban", help="ban a user: live sockets cut off, connects and REST refused")
    ban.add_argument("--user", required=True)
    ban.add_argument("--reason", required=True)
    ban.add_argument("--until", help="ISO 8601 time the ban lifts by itself (UTC if no offset)")
    unban = sub.add_parser("unban", help="lift a ban")
    unban.add_argument("--user", required=True)
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _token(settings, args)
    configure_logging(settings)  # to stderr: stdout carries the reconcile report
    if args.command == "reconcile":
        return _reconcile(settings, args)
    if args.command in ("revoke", "ban", "unban"):
        return _sessions(settings, args)
    return _run(settings)


if __name__ == "__main__":
    sys.exit(main())
