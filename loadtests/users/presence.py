"""Presence watchers: a watcher subscribed to a buddy, heartbeats, and the buddy changing status."""

from __future__ import annotations

import time

from locust import between, task

from loadtests.users.common import AckError, LoadUser

NS = "/presence"


class PresenceUser(LoadUser):
    """One watcher and the buddy it watches; `presence:set` on the buddy is timed to the watcher."""

    wait_time = between(0.2, 1.0)
    weight = 2

    def on_start(self) -> None:
        self.watcher = self.connect("watch", [NS], [(NS, "presence:update")])
        self.buddy = self.connect("buddy", [NS], [])
        self.status = "online"
        self.request(self.watcher, NS, "presence:subscribe", {"users": [self.buddy.user]})

    def on_stop(self) -> None:
        self.watcher.close()
        self.buddy.close()

    @task(3)
    def heartbeat(self) -> None:
        try:
            self.request(self.watcher, NS, "presence:heartbeat", {})
        except AckError:
            return

    @task(1)
    def subscribe(self) -> None:
        try:
            ack = self.request(self.watcher, NS, "presence:subscribe", {"users": [self.buddy.user]})
            if not any(p.get("user") == self.buddy.user for p in ack.get("presence", [])):
                self.report(NS, "presence:subscribe", time.time(), AckError("buddy_missing"))
        except AckError:
            return

    @task(2)
    def set_status(self) -> None:
        status = "away" if self.status == "online" else "online"
        started = time.time()
        try:
            self.request(self.buddy, NS, "presence:set", {"status": status})
            self.status = status
            self.expect(self.watcher, NS, "presence:update", f"presence:update {status} (set→watcher)", started,
                        lambda p: p.get("user") == self.buddy.user and p.get("status") == status)
        except AckError:
            return
