"""Locust smoke runs: every user class of loadtests/locustfile.py against real `python -m server` nodes,
on one node without Redis and on two nodes sharing Redis (pairs split across the nodes).

Locust monkey-patches the interpreter with gevent, so it runs as a subprocess, as `make loadtest` does;
its CSV report is the evidence: each class's requests counted, none failed.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.apps import ROOT, NodeProcess

# `*` only covers events without a default of their own, so those are raised one by one.
RATE_LIMITS = ",".join(f"{event}=1000/1" for event in (
    "*", "message:send", "typing", "presence:subscribe", "call:invite", "call:signal", "purchase:create"))
# Raised limits for a load run (docs/loadtest.md): no rate limiting, credits for every message and
# minute, a 1 s billed minute so callers see minutes billed within the run.
LOAD_ENV = {"PAIRLY_RATE_LIMITS": RATE_LIMITS, "PAIRLY_SIGNUP_BONUS": "1000000", "PAIRLY_CALL_BILLING_INTERVAL_S": "1",
            "PAIRLY_MAX_TRANSPORTS_PER_IP": "1000"}

# A request name each user class must have completed successfully (a full cycle of each).
EXPECTED = {
    "ChatUser": [("/chat", "message:send"), ("/chat", "message:delivered"),
                 ("/chat", "message:status delivered (send→receipt)"), ("/chat", "typing start (send→recv)")],
    "PresenceUser": [("/presence", "presence:subscribe"), ("/presence", "presence:heartbeat"),
                     ("/presence", "presence:set")],
    "CallUser": [("/call", "call:ice_servers"), ("/call", "call:prepare"), ("/call", "call:incoming (invite→callee)"),
                 ("/call", "call:signal offer (relay)"), ("/call", "call:accepted (accept→caller)"),
                 ("/call", "call:signal answer (relay)"), ("/call", "call:signal ice (relay)"),
                 ("/call", "call:billed minute 2 (accept→payer)"), ("/call", "call:ended (end→callee)")],
    "PurchaseUser": [("GET", "/api/credits/packages"), ("POST", "/api/purchases"), ("GET", "/api/wallet")],
}


def run_locust(hosts: list[str], out: Path, extra_env: dict[str, str]) -> dict[tuple[str, str], tuple[int, int]]:
    """10 users of every class for 10 s; returns {(type, name): (requests, failures)} from the CSV."""
    env = {**extra_env, "LOADTEST_HOSTS": ",".join(hosts), "LOADTEST_CALL_TIMEOUT_S": "20"}
    cmd = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless", "--host", hosts[0],
           "--users", "10", "--spawn-rate", "10", "--run-time", "10s", "--stop-timeout", "5",
           "--csv", str(out / "smoke"), "--only-summary", "--loglevel", "WARNING"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "smoke_failures.csv") as f:
        failures = list(csv.DictReader(f))
    assert failures == [], failures
    with open(out / "smoke_exceptions.csv") as f:
        exceptions = list(csv.DictReader(f))
    assert exceptions == [], exceptions
    with open(out / "smoke_stats.csv") as f:
        return {(row["Type"], row["Name"]): (int(row["Request Count"]), int(row["Failure Count"]))
                for row in csv.DictReader(f) if row["Name"] != "Aggregated"}


def assert_every_class_worked(stats: dict[tuple[str, str], tuple[int, int]]) -> None:
    assert all(failed == 0 for _count, failed in stats.values()), stats
    assert stats[("sio", "connect")][0] >= 2 * 9  # two devices per Socket.IO user (9 of the 10 users)
    for user_class, names in EXPECTED.items():
        missing = [name for name in names if stats.get(name, (0, 0))[0] == 0]
        assert not missing, f"{user_class} made no successful {missing}; got {sorted(stats)}"


@pytest.fixture
def single_node(base_env: dict[str, str]) -> Iterator[NodeProcess]:
    node = NodeProcess({**base_env, **LOAD_ENV}, "locust-single")
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def test_every_user_class_on_one_node_without_redis(single_node: NodeProcess, base_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    stats = run_locust([single_node.url], tmp_path, {"PAIRLY_JWT_SECRET": base_env["PAIRLY_JWT_SECRET"]})
    assert_every_class_worked(stats)


def test_every_user_class_across_two_nodes_with_redis(nodes: Callable[..., list[NodeProcess]],
                                                      base_env: dict[str, str], tmp_path: Path) -> None:
    n0, n1 = nodes(2, **LOAD_ENV)
    # Both ends of every chat, presence and call pair on different nodes (sockets round-robin).
    stats = run_locust([n0.url, n1.url], tmp_path, {"PAIRLY_JWT_SECRET": base_env["PAIRLY_JWT_SECRET"]})
    assert_every_class_worked(stats)
