"""A ledger storm in its own process, made to be killed with SIGKILL mid-flight.

    python -m tests.support.spend_storm MONGO_URL DB [--users N] [--workers N]

Each worker loops over the users doing spends, credits and call-style hold/capture/release, all
through the real group-committed `Ledger`. After an operation is acknowledged (its future resolved:
the entry is durable and applied) it prints one line and flushes:

    ok <key> <user> <delta> <held_delta> <balance_after> <held_after>
    refused <key>

so the test knows exactly which operations the process acknowledged before it died.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import structlog
from pymongo import AsyncMongoClient

from billing.errors import InsufficientCredits
from billing.ledger import Entry, Ledger, ensure_indexes


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
            else:
                _ack(await ledger.spend(user, 1, key, "message"))
        except InsufficientCredits:
            sys.stdout.write(f"refused {key}\n")
            sys.stdout.flush()
        n += 1


async def main(url: str, db_name: str, users: int, workers: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    db = client[db_name]
    await ensure_indexes(db)
    ledger = Ledger(db, signup_bonus=10)
    await ledger.start()
    await ledger.ensure_wallets(f"storm-{u}" for u in range(users))
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
    args = parser.parse_args()
    asyncio.run(main(args.url, args.db, args.users, args.workers))
