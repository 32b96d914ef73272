"""Callers: a caller and a callee socket go through a whole billed call, every step timed."""

from __future__ import annotations

import os
import time

from locust import between, task

from loadtests.users.common import AckError, LoadUser, matching

NS = "/call"
EVENTS = [(NS, e) for e in ("call:incoming", "call:accepted", "call:signal", "call:billed", "call:ended")]


class CallUser(LoadUser):
    """ice servers, prepare, invite → incoming, offer relayed, accept → accepted, answer and ICE relayed,
    LOADTEST_CALL_MINUTES billed minutes (start the server with a short PAIRLY_CALL_BILLING_INTERVAL_S),
    end → ended on both sides. The SDP and candidates are placeholders: the server relays them unread."""

    wait_time = between(0.2, 1.0)
    weight = 2
    timeout = float(os.environ.get("LOADTEST_CALL_TIMEOUT_S", "90"))  # must exceed the billed minute

    def on_start(self) -> None:
        self.caller = self.connect("caller", [NS], EVENTS)
        # With LOADTEST_HOSTS the callee is on the next node, unless LOADTEST_CALLS_SAME_NODE=1.
        same = os.environ.get("LOADTEST_CALLS_SAME_NODE") == "1"
        self.callee = self.connect("callee", [NS], EVENTS, self.caller.url if same else None)
        self.minutes = max(1, int(os.environ.get("LOADTEST_CALL_MINUTES", "2")))

    def on_stop(self) -> None:
        self.caller.close()
        self.callee.close()

    @task
    def call(self) -> None:
        try:
            self._call()
        except AckError:
            return

    def _call(self) -> None:
        caller, callee = self.caller, self.callee
        self.request(caller, NS, "call:ice_servers", {})
        self.request(caller, NS, "call:prepare", {"to": callee.user, "media": "audio"})
        started = time.time()
        call_id = self.request(caller, NS, "call:invite", {"to": callee.user, "media": "audio"})["call_id"]
        try:
            self._connected_call(call_id, started)
        finally:
            if caller.sio.connected:  # always hang up, so a failed step does not leave the pair busy
                started = time.time()
                self.request(caller, NS, "call:end", {"call_id": call_id})
                for sock, side in ((caller, "caller"), (callee, "callee")):
                    self.expect(sock, NS, "call:ended", f"call:ended (end→{side})", started,
                                lambda e: e.get("call_id") == call_id)

    def _connected_call(self, call_id: str, invited: float) -> None:
        caller, callee = self.caller, self.callee
        mine = lambda d: d.get("call_id") == call_id  # noqa: E731 - a one-line predicate
        self.expect(callee, NS, "call:incoming", "call:incoming (invite→callee)", invited, mine)
        started = time.time()
        self.request(caller, NS, "call:signal", {"call_id": call_id, "type": "offer", "payload": {"sdp": "v=0 offer"}},
                     name="call:signal offer")
        self.expect(callee, NS, "call:signal", "call:signal offer (relay)", started,
                    lambda s: mine(s) and s.get("type") == "offer")
        started = time.time()
        self.request(callee, NS, "call:accept", {"call_id": call_id})
        accepted = started
        self.expect(caller, NS, "call:accepted", "call:accepted (accept→caller)", started, mine)
        started = time.time()
        self.request(callee, NS, "call:signal", {"call_id": call_id, "type": "answer",
                                                 "payload": {"sdp": "v=0 answer"}}, name="call:signal answer")
        self.expect(caller, NS, "call:signal", "call:signal answer (relay)", started,
                    lambda s: mine(s) and s.get("type") == "answer")
        started = time.time()
        self.request(caller, NS, "call:signal", {"call_id": call_id, "type": "ice",
                                                 "payload": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}},
                     name="call:signal ice")
        self.expect(callee, NS, "call:signal", "call:signal ice (relay)", started,
                    lambda s: mine(s) and s.get("type") == "ice")
        for minute in range(1, self.minutes + 1):
            self.expect(caller, NS, "call:billed", f"call:billed minute {minute} (accept→payer)", accepted,
                        matching({"call_id": call_id, "minute": minute}))
