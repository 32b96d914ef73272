"""Real `python -m server` processes: graceful SIGTERM, store down at start-up, embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from pymongo import AsyncMongoClient

from server.auth import mint_token
from server.chat.committer import send_key
from server.store import free_port
from tests.conftest import TEST_SECRET
from tests.support.apps import ROOT, NodeProcess
from tests.support.clients import connect


async def test_sigterm_under_open_connections_exits_cleanly(nodes) -> None:
    (node,) = nodes(1, PAIRLY_LOG_LEVEL="info")
    clients = [await connect(node.url, f"u{i}", mint_token(TEST_SECRET, f"u{i}")) for i in range(5)]
    waiters = [asyncio.create_task(c.next("/chat", "server:shutdown")) for c in clients]
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    notices = await asyncio.gather(*waiters)
    assert all(n == {"reason": "restart"} for n in notices)
    code = await asyncio.to_thread(node.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 10
    for c in clients:
        for _ in range(50):
            if not c.sio.connected:
                break
            await asyncio.sleep(0.05)
        assert not c.sio.connected
        await c.close()
    assert '"stopped"' in node.log_text()


async def test_chat_sends_acked_around_sigterm_are_durable(nodes, base_env) -> None:
    """Every send acked before (or while) the node stops is stored and charged: the socket drain must not
    cut off the chat committer or the ledger, which drain in the cleanup contexts after it."""
    (node,) = nodes(1, PAIRLY_SHUTDOWN_TIMEOUT_S="4",
                    PAIRLY_RATE_LIMITS="*=1000/1,message:send=1000/1,typing=1000/1")
    alice = await connect(node.url, "alice", mint_token(TEST_SECRET, "alice"), ("/chat",))
    bob = await connect(node.url, "bob", mint_token(TEST_SECRET, "bob"), ("/chat",), transports=("polling",))
    try:
        ids = [f"c{i}" for i in range(30)]
        sends = [asyncio.create_task(c.call("/chat", "message:send", {"to": to, "client_id": cid, "text": cid},
                                            timeout=6))
                 for cid in ids for c, to in ((alice, "bob"), (bob, "alice"))]
        ten_done = asyncio.Event()
        for t in sends:
            t.add_done_callback(lambda _: ten_done.set() if sum(x.done() for x in sends) >= 10 else None)
        await ten_done.wait()
        node.signal(signal.SIGTERM)  # with the rest in flight
        acks = await asyncio.gather(*sends, return_exceptions=True)
        assert await asyncio.to_thread(node.wait, 10) == 0
    finally:
        await alice.close()
        await bob.close()
    acked = [a for a in acks if isinstance(a, dict) and a.get("ok")]
    assert acked
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(base_env["MONGO_URL"])
    try:
        db = client[base_env["MONGO_DB"]]
        wanted = {a["message"]["id"] for a in acked}
        stored = {d["_id"] async for d in db["chat_messages"].find({"_id": {"$in": list(wanted)}})}
        assert stored == wanted
        keys = [send_key(a["message"]["from"], a["message"]["client_id"]) for a in acked]
        assert await db["ledger"].count_documents({"_id": {"$in": keys}}) == len(acked)
    finally:
        await client.close()


def test_store_down_at_start_gives_a_clear_error_quickly() -> None:
    dead = free_port()
    env = {"PATH": "/usr/bin:/bin", "MONGO_URL": f"mongodb://127.0.0.1:{dead}/?directConnection=true",
           "PAIRLY_STORE_CONNECT_TIMEOUT_S": "1.5", "PAIRLY_PORT": str(free_port()), "PAIRLY_LOG_FORMAT": "json"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "store_unavailable" in result.stderr and "not reachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_default_keeps_data_and_stops_its_store(tmp_path) -> None:
    env = {"PAIRLY_DATA_DIR": str(tmp_path / "var"), "MONGO_URL": "", "REDIS_URL": "",
           "PAIRLY_JWT_SECRET": TEST_SECRET}
    node = NodeProcess(env, "embedded")
    try:
        node.wait_ready(60)
        with urllib.request.urlopen(node.url + "/readyz", timeout=2) as resp:
            assert resp.status == 200
        assert (tmp_path / "var" / "db").is_dir()
        pid = int((tmp_path / "var" / "db.pid").read_text())
    finally:
        node.stop()
    assert node.proc.returncode == 0
    # The child store is gone with the server.
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                alive = b"secantusd" in fh.read()
        except OSError:
            alive = False
        if not alive:
            break
        time.sleep(0.1)
    assert not alive


async def test_sigterm_with_polling_and_websocket_clients_exits_within_the_budget(tmp_path) -> None:
    """Regression: a long-polling client made SIGTERM hang forever (Engine.IO's close() waits for a poll
    that can never come once the listener is closed), and polling clients missed later namespaces' notice."""
    budget = 4.0
    env = {"PAIRLY_DATA_DIR": str(tmp_path / "var"), "MONGO_URL": "", "REDIS_URL": "",
           "PAIRLY_JWT_SECRET": TEST_SECRET, "PAIRLY_SHUTDOWN_TIMEOUT_S": str(budget)}
    node = NodeProcess(env, "drain")
    clients = []
    try:
        node.wait_ready(60)
        pid = int((tmp_path / "var" / "db.pid").read_text())
        namespaces = ("/chat", "/presence")
        ws = await connect(node.url, "ws-user", mint_token(TEST_SECRET, "ws-user"), namespaces)
        clients.append(ws)
        poll = await connect(node.url, "poll-user", mint_token(TEST_SECRET, "poll-user"), namespaces,
                             transports=("polling",))
        clients.append(poll)
        assert ws.sio.transport() == "websocket" and poll.sio.transport() == "polling"
        waiters = [asyncio.create_task(c.next(ns, "server:shutdown", timeout=budget + 5))
                   for c in clients for ns in namespaces]
        await asyncio.sleep(0.3)  # the polling client's long-poll GET is pending, as in production
        started = time.monotonic()
        node.signal(signal.SIGTERM)
        notices = await asyncio.gather(*waiters)
        assert notices == [{"reason": "restart"}] * 4
        code = await asyncio.to_thread(node.wait, budget + 10)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < budget + 1.5, f"shutdown took {elapsed:.1f}s, budget {budget}s"
        assert '"sockets_drained"' in node.log_text() and '"stopped"' in node.log_text()
    finally:
        for c in clients:
            await c.close()
        node.stop()
    assert not await asyncio.to_thread(_store_alive_after, pid, 5.0)


def _store_alive_after(pid: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                alive = b"secantusd" in fh.read()
        except OSError:
            alive = False
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


async def test_sigterm_exits_at_the_deadline_even_with_the_store_hung(tmp_path) -> None:
    """Work queued behind a store that stopped answering (here: frozen with SIGSTOP, sends in flight)
    must not hold the process past PAIRLY_SHUTDOWN_TIMEOUT_S; the frozen store is killed on the way out."""
    budget = 3.0
    env = {"PAIRLY_DATA_DIR": str(tmp_path / "var"), "MONGO_URL": "", "REDIS_URL": "",
           "PAIRLY_JWT_SECRET": TEST_SECRET, "PAIRLY_SHUTDOWN_TIMEOUT_S": str(budget),
           "PAIRLY_SIGNUP_BONUS": "100"}
    node = NodeProcess(env, "hung-store")
    pid = 0
    try:
        node.wait_ready(60)
        pid = int((tmp_path / "var" / "db.pid").read_text())
        sender = await connect(node.url, "hs-ann", mint_token(TEST_SECRET, "hs-ann"), ("/chat",))
        first = await sender.call("/chat", "message:send", {"to": "hs-bob", "client_id": "c0", "text": "hi"})
        assert first["ok"]
        os.kill(pid, signal.SIGSTOP)
        for i in range(1, 20):  # these wait on the frozen store
            await sender.sio.emit("message:send", {"to": "hs-bob", "client_id": f"c{i}", "text": "hi"},
                                  namespace="/chat")
        await asyncio.sleep(0.3)
        node.signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.wait, budget + 20)
        assert code == 0
        assert '"shutdown_deadline_reached"' in node.log_text()
        await sender.close()
    finally:
        node.stop()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert not await asyncio.to_thread(_store_alive_after, pid, 5.0)
