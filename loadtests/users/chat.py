"""Chatters: a conversation between two sockets, metered sends, delivery receipts, reads, typing."""

from __future__ import annotations

import random
import time
import uuid

from locust import between, task

from loadtests.users.common import AckError, LoadUser, Socket, matching

NS = "/chat"
EVENTS = [(NS, "message:new"), (NS, "message:status"), (NS, "typing")]


class ChatUser(LoadUser):
    """Each locust user is one pair (a, b): both ends are observed, so every latency is end to end."""

    wait_time = between(0.05, 0.3)
    weight = 3

    def on_start(self) -> None:
        self.a = self.connect("chat", [NS], EVENTS)
        self.b = self.connect("chat", [NS], EVENTS)
        self.last_received: dict[str, str] = {}  # receiver -> newest message id it got

    def on_stop(self) -> None:
        self.a.close()
        self.b.close()

    def _pair(self) -> tuple[Socket, Socket]:
        return (self.a, self.b) if random.random() < 0.5 else (self.b, self.a)

    @task(6)
    def send(self) -> None:
        sender, receiver = self._pair()
        client_id = uuid.uuid4().hex
        started = time.time()
        try:
            self.request(sender, NS, "message:send", {"to": receiver.user, "client_id": client_id, "text": "hi"})
            msg = self.expect(receiver, NS, "message:new", "message:new (send→recv)", started,
                              lambda m: m.get("client_id") == client_id)
            self.last_received[receiver.user] = msg["id"]
            self.request(receiver, NS, "message:delivered", {"ids": [msg["id"]]})
            self.expect(sender, NS, "message:status", "message:status delivered (send→receipt)", started,
                        lambda s: s.get("status") == "delivered" and msg["id"] in s.get("ids", []))
        except AckError:
            return  # already reported as a failure

    @task(1)
    def read(self) -> None:
        reader, peer = self._pair()
        up_to = self.last_received.pop(reader.user, None)  # a status comes only for newly read ids
        if up_to is None:
            return
        started = time.time()
        try:
            self.request(reader, NS, "conversation:read", {"with": peer.user, "up_to": up_to})
            self.expect(peer, NS, "message:status", "message:status read (read→receipt)", started,
                        lambda s: s.get("status") == "read" and up_to in s.get("ids", []))
        except AckError:
            return

    @task(2)
    def typing(self) -> None:
        typist, peer = self._pair()
        try:
            for state in ("start", "stop"):
                started = time.time()
                typist.sio.emit("typing", {"to": peer.user, "state": state}, namespace=NS)  # no ack by design
                self.expect(peer, NS, "typing", f"typing {state} (send→recv)", started,
                            matching({"from": typist.user, "state": state}))
        except AckError:
            return
