"""Real `python -m server` processes: graceful SIGTERM, store down at start-up, embedded default."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request

from server.auth import mint_token
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
