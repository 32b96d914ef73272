"""A ledger storm in its own process, made to be killed with SIGKILL mid-flight.

    python -m tests.support.spend_storm MONGO_URL DB [--users N] [--workers N] [--crash-at STEP --after N]

Each worker loops over the users doing spends (half of them paying a creator), credits and
call-style hold/capture/release, all through the real group-committed `Ledger`. With `--crash-at`,
the process SIGKILLs itself at that step of the commit protocol in its N-th batch: `entries` (entries
inserted inside the transaction, accounts not yet written), `accounts` (account versions moved,
before commit), `commit` (commit sent, before the store answers), `answer` (committed, before any
caller is answered). After an operation is acknowledged (its future resolved:
the entry is durable and applied) it prints one line and flushes:

    ok <key> <user> <delta> <held_delta> <balance_after> <held_after>
    refused <key>

so the test knows exactly which operations the process acknowledged before it died.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import structlog
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from billing import accounts
from billing.errors import InsufficientCredits
from billing.ledger import Entry, Ledger, ensure_indexes

CREATOR = "storm-creator"


def _ack(entry: Entry | None) -> None:
    if entry is not None:
        sys.stdout.write(f"ok {entry.key} {entry.user} {entry.delta} {entry.held_delta} "
                         f"{entry.balance_after} {entry.held_after}\n")
        sys.stdout.flush()


async def _worker(ledger: Ledger, worker: int, users: int) -> None:
    n = 0
    while True:
        user = f"storm-{(worker + n) % users}"
        key = f"storm:{worker}:{n}"
        try:
            if n % 6 == 0:
                _ack(await ledger.credit(user, 2, key, "purchase"))
            elif n % 6 == 3:
                hold = f"{key}:hold"
                _ack(await ledger.hold(user, 3, hold, ref=key))
                _ack(await ledger.capture(hold, 2, f"{key}:m1", "call_minute"))
                _ack(await ledger.release(hold, f"{key}:release"))
            elif n % 2:
                _ack(await ledger.spend(user, 1, key, "message", payee=accounts.earnings(CREATOR), share_pct=60))
            else:
                _ack(await ledger.spend(user, 1, key, "message"))
        except InsufficientCredits:
            sys.stdout.write(f"refused {key}\n")
            sys.stdout.flush()
        n += 1


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(step: str, after: int) -> None:
    """SIGKILL this process at `step` of its `after`-th batch transaction (by wrapping driver calls)."""
    count = {"n": 0}

    def reached() -> bool:
        count["n"] += 1
        return count["n"] >= after

    def after_call(owner: Any, name: str, collection: str | None) -> None:
        original = getattr(owner, name)

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(self, *args, **kwargs)
            ours = collection is None or (kwargs.get("session") is not None and self.name == collection)
            if ours and reached():
                _die()
            return result

        setattr(owner, name, wrapper)

    if step == "entries":
        after_call(AsyncCollection, "insert_many", "ledger")
    elif step == "accounts":
        after_call(AsyncCollection, "bulk_write", "ledger_accounts")
    elif step == "answer":
        after_call(AsyncClientSession, "commit_transaction", None)
    else:  # commit: die while the commit is on its way (sent or not: both must be safe)
        original = AsyncClientSession.commit_transaction

        async def committing(self: Any) -> None:
            if reached():
                asyncio.get_running_loop().call_soon(_die)
            await original(self)

        AsyncClientSession.commit_transaction = committing  # type: ignore[method-assign]


async def main(url: str, db_name: str, users: int, workers: int, crash_at: str | None, after: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    db = client[db_name]
    await ensure_indexes(db)
    ledger = Ledger(db, signup_bonus=10)
    await ledger.start()
    for u in range(users):
        await ledger.wallet(f"storm-{u}")
    if crash_at:
        _arm(crash_at, after)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(_worker(ledger, w, users) for w in range(workers)))


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the ack channel
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("db")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--crash-at", choices=["entries", "accounts", "commit", "answer"])
    parser.add_argument("--after", type=int, default=20, help="batches before the crash")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.db, args.users, args.workers, args.crash_at, args.after))
