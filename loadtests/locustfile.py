"""Locust load users for every Pairly user type, against a running server (not started here).

    make loadtest LOADTEST_HOST=http://127.0.0.1:8080 USERS=50 SPAWN_RATE=10 RUN_TIME=60s

Chatters (`/chat`), presence watchers (`/presence`), callers (`/call`) and purchasers (REST) live in
`loadtests/users/`, one module each; see docs/loadtest.md for the server settings a load run needs
(raised rate limits and signup credits, a short billed minute) and what is reported.
"""

from loadtests.users.calls import CallUser
from loadtests.users.chat import ChatUser
from loadtests.users.presence import PresenceUser
from loadtests.users.purchase import PurchaseUser

__all__ = ["CallUser", "ChatUser", "PresenceUser", "PurchaseUser"]
