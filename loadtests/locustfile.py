"""Locust Socket.IO users doing metered chat against a running server (not started here).

    PAIRLY_JWT_SECRET=... .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \\
        --users 50 --spawn-rate 10 --run-time 1m --headless

Each user connects to `/chat` with a dev token (HS256, PAIRLY_JWT_SECRET or the dev default) and
sends messages to a partner (users are paired by spawn order), reporting `message:send` ack latency
as a request and send→`message:new` latency as a second request type. Raise the server's rate
limits and signup credits for a load run (PAIRLY_RATE_LIMITS, PAIRLY_SIGNUP_BONUS).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any

import socketio
from locust import User, between, task

from config.settings import DEV_JWT_SECRET
from server.auth import mint_token

_counter = itertools.count()
_RUN = uuid.uuid4().hex[:6]


class ChatUser(User):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        n = next(_counter)
        self.me = f"lc{_RUN}-{n}"
        self.peer = f"lc{_RUN}-{n ^ 1}"
        secret = os.environ.get("PAIRLY_JWT_SECRET") or DEV_JWT_SECRET
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message:new", self._on_new, namespace="/chat")
        self.sio.connect(self.host, namespaces=["/chat"], auth={"token": mint_token(secret, self.me)},
                         transports=["websocket"], wait_timeout=20)

    def on_stop(self) -> None:
        self.sio.disconnect()

    def _on_new(self, message: dict[str, Any]) -> None:
        try:
            sent_at = float(message["text"])
        except (KeyError, ValueError):
            return
        self.environment.events.request.fire(
            request_type="sio", name="message:new (send→deliver)", response_time=(time.time() - sent_at) * 1000,
            response_length=0, exception=None, context={},
        )

    @task
    def send(self) -> None:
        started = time.time()
        exception: Exception | None = None
        try:
            ack = self.sio.call("message:send", {"to": self.peer, "client_id": uuid.uuid4().hex,
                                                 "text": repr(started)}, namespace="/chat", timeout=30)
            if not ack.get("ok"):
                exception = RuntimeError(ack["error"]["code"])
        except Exception as exc:
            exception = exc
        self.environment.events.request.fire(
            request_type="sio", name="message:send (ack)", response_time=(time.time() - started) * 1000,
            response_length=0, exception=exception, context={},
        )
