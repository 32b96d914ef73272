"""kill -9 of a process in the middle of a ledger storm, at every step of the commit protocol:
afterwards balance == Σ postings for every account and Σ balances == 0 (the `python -m server
reconcile` CLI and `Ledger.reconcile` both prove it), every operation the process acknowledged is
there with the balance it reported, and no wallet went below zero."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from billing.ledger import Ledger
from tests.support.apps import ROOT
from tests.support.services import log_dir

USERS = 6


async def _read_acks(stream: asyncio.StreamReader, acked: dict[str, tuple[int, ...]], until: int | None) -> int:
    refused = 0
    while until is None or len(acked) < until:
        line = await asyncio.wait_for(stream.readline(), 30) if until is not None else await stream.readline()
        if not line:
            break
        parts = line.decode().split()
        if parts and parts[0] == "ok":
            acked[parts[1]] = tuple(int(p) for p in parts[3:])
        elif parts and parts[0] == "refused":
            refused += 1
    return refused


@pytest.mark.parametrize("crash_at", [None, "entries", "accounts", "commit", "answer"])
async def test_sigkill_mid_storm_then_reconcile_finds_no_discrepancy(mongo_url: str, crash_at: str | None) -> None:
    db_name = f"t_{uuid.uuid4().hex[:10]}"
    args = ["--crash-at", crash_at, "--after", "15"] if crash_at else []
    with (log_dir() / f"spend-storm-{db_name}.log").open("wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.spend_storm", mongo_url, db_name, "--users", str(USERS),
            "--workers", "48", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        acked: dict[str, tuple[int, ...]] = {}
        refused = await _read_acks(proc.stdout, acked, until=None if crash_at else 600)
        if crash_at is None:
            os.kill(proc.pid, signal.SIGKILL)  # mid-storm: batches in flight
            refused += await _read_acks(proc.stdout, acked, until=None)  # lines written before it died
        assert await proc.wait() == -signal.SIGKILL

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[db_name]
    # The operator's check, as a real process against the same store (live-safe mode).
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "reconcile", "--json", cwd=ROOT,
        env={**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": db_name, "PAIRLY_MODE": "dev"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] is True and report["discrepancies"] == [] and report["total"] == 0

    # A restarted single node frees whatever the dead process's open transaction held, then serves.
    ledger = Ledger(db, exclusive=True)
    await ledger.start()
    await asyncio.wait_for(ledger.credit("storm-0", 5, "after-restart:credit", "purchase"), 10)
    fresh = await asyncio.wait_for(ledger.spend("storm-0", 1, "after-restart", "message"), 10)
    await ledger.stop()
    final = await ledger.reconcile()
    assert final.ok and final.total == 0, final
    for key, (delta, held_delta, balance_after, held_after) in acked.items():
        entry = await ledger.get_entry(key)
        assert entry is not None, key
        assert (entry.delta, entry.held_delta, entry.balance_after, entry.held_after) == (
            delta, held_delta, balance_after, held_after), key
    async for account in db["ledger_accounts"].find():
        assert account["balance"] >= 0 or account["_id"].startswith("platform:"), account
        assert account.get("held", 0) >= 0
    # The creator earned exactly the carry rule's share of what fans paid them (per shard).
    async for shard in db["ledger_accounts"].find({"_id": {"$regex": "^earnings:"}}):
        assert shard["balance"] == shard["gross"] * 60 // 100
    print(f"crash_at={crash_at} acked={len(acked)} refused={refused} entries={final.entries} "
          f"after_restart={fresh is not None}")
    await client.drop_database(db_name)
    await client.close()


async def test_reconcile_cli_reports_a_wallet_that_differs(mongo_url: str) -> None:
    db_name = f"t_{uuid.uuid4().hex[:10]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    ledger = Ledger(client[db_name], signup_bonus=10)
    await ledger.credit("cli-ok", 5, "admin:cli-ok", "admin")
    await ledger.credit("cli-bad", 5, "admin:cli-bad", "admin")
    await client[db_name]["ledger_accounts"].update_one({"_id": "wallet:cli-bad"}, {"$inc": {"balance": 7}})
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "reconcile", cwd=ROOT,
        env={**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": db_name, "PAIRLY_MODE": "dev"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 1
    text = out.decode()
    assert "discrepancies: 1" in text and "total: 7" in text
    assert "wallet:cli-bad: balance 22 vs ledger 15" in text
    await client.drop_database(db_name)
    await client.close()
