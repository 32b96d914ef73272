"""Operator commands beside a running server on the embedded store (server/tools_store.py): they use
the server's store instead of refusing or starting a second one."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from server.auth import mint_token
from tests.conftest import TEST_SECRET
from tests.support.apps import ROOT, NodeProcess
from tests.support.clients import connect


async def test_reconcile_audits_the_books_of_a_running_embedded_server(tmp_path) -> None:
    env = {"PAIRLY_DATA_DIR": str(tmp_path / "var"), "MONGO_URL": "", "REDIS_URL": "",
           "PAIRLY_JWT_SECRET": TEST_SECRET, "PAIRLY_SIGNUP_BONUS": "20"}
    node = NodeProcess(env, "tools")
    try:
        node.wait_ready(60)
        ann = await connect(node.url, "ts-ann", mint_token(TEST_SECRET, "ts-ann"), ("/chat",))
        for i in range(3):
            ack = await ann.call("/chat", "message:send", {"to": "ts-bob", "client_id": f"c{i}", "text": "hi"})
            assert ack["ok"], ack
        await ann.close()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "reconcile", "--json", cwd=ROOT, env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["ok"] and report["entries"] >= 4 and report["total"] == 0
        # The server is still the store's owner and keeps serving.
        again = await connect(node.url, "ts-ann", mint_token(TEST_SECRET, "ts-ann"), ("/chat",))
        ack = await again.call("/chat", "message:send", {"to": "ts-bob", "client_id": "c9", "text": "hi"})
        assert ack["ok"], ack
        await again.close()
    finally:
        node.stop()
    assert node.proc.returncode == 0
