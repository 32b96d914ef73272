"""Offline push: a signed webhook job when the recipient has no connected device; retried, deduplicated."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp import web

from server.app import CHAT as CHAT_KEY
from server.store import free_port
from tests.server.call.conftest import until
from tests.server.chat.conftest import CHAT, sent

SECRET = "push-secret-for-tests"


class Receiver:
    """A local push service: verifies the signature, fails the first attempt of each job, counts."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}
        self.bad_signatures = 0
        self.arrived = asyncio.Event()
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Pairly-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        job_id = request.headers["X-Pairly-Job-Id"]
        self.attempts[job_id] = self.attempts.get(job_id, 0) + 1
        if self.attempts[job_id] == 1:
            return web.Response(status=503)  # the first try fails: the server must retry
        self.jobs.setdefault(job_id, json.loads(body))
        self.arrived.set()
        return web.Response(status=200)


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/push", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    yield rec
    await runner.cleanup()


@pytest.fixture
def env(base_env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    return {**base_env, "PAIRLY_PUSH_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/push",
            "PAIRLY_PUSH_WEBHOOK_SECRET": SECRET, "PAIRLY_PUSH_BACKOFF_S": "0.01"}


async def test_push_only_when_offline_signed_retried_deduplicated(app_server, clients, receiver) -> None:
    alice = await clients(app_server, "alice", namespaces=[CHAT])
    bob = await clients(app_server, "bob", namespaces=[CHAT])
    await sent(alice, "bob", "bob is online: no push")
    offline = await sent(alice, "carol", "carol is offline: push me")
    await asyncio.wait_for(receiver.arrived.wait(), 5)
    job_id = f"msg:{offline['id']}"
    assert list(receiver.jobs) == [job_id]
    job = receiver.jobs[job_id]
    assert job["type"] == "message:new" and job["user"] == "carol" and job["id"] == job_id
    assert job["data"] == {"message_id": offline["id"], "conversation_id": offline["conversation_id"],
                           "from": "alice", "preview": "carol is offline: push me"}
    assert receiver.attempts[job_id] == 2 and receiver.bad_signatures == 0
    # The same job again (a recovery sweep, a resend) is not pushed twice by this node.
    push = app_server.app[CHAT_KEY].push
    assert push.notify(job_id, "carol", "message:new", {}) is False
    await until(lambda: push.sent)  # counted when the sender has read the receiver's answer, just after it arrived
    assert push.sent == 1
    await bob.close()


async def test_push_disabled_without_config(base_env, clients) -> None:
    from tests.support.apps import make_settings, running_app

    async with running_app(make_settings(base_env)) as app:
        assert app.app[CHAT_KEY].push.enabled is False
        alice = await clients(app, "alice", namespaces=[CHAT])
        await sent(alice, "nobody", "no webhook configured")
        assert app.app[CHAT_KEY].push.notify("x", "nobody", "message:new", {}) is False
