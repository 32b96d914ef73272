"""What every Socket.IO load user shares: dev tokens, host choice, an event inbox, stats reporting.

Locust monkey-patches the standard library with gevent when it is imported, so python-socketio's
*sync* client (threads, websocket-client) runs on greenlets here; nothing in this package may be
imported into an asyncio process such as the test suite (tests run locust as a subprocess).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import socketio
from locust import User

from config.settings import DEV_JWT_SECRET
from server.auth import mint_token

RUN = uuid.uuid4().hex[:6]  # user ids are unique per locust run, so reruns never share wallets
_ids = itertools.count()
_hosts = itertools.count()


def new_user_id(kind: str) -> str:
    return f"lt{RUN}-{kind}{next(_ids)}"


def token(user: str) -> str:
    return mint_token(os.environ.get("PAIRLY_JWT_SECRET") or DEV_JWT_SECRET, user)


def pick_host(default: str | None) -> str:
    """LOADTEST_HOSTS (comma separated node URLs) spreads sockets round-robin over several nodes, so
    pairs talk across nodes through Redis; without it every socket goes to locust's --host."""
    hosts = [h.strip() for h in os.environ.get("LOADTEST_HOSTS", "").split(",") if h.strip()]
    if hosts:
        return hosts[next(_hosts) % len(hosts)]
    if not default:
        raise ValueError("no host: pass --host (make loadtest LOADTEST_HOST=...) or set LOADTEST_HOSTS")
    return default


def matching(wanted: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """A payload predicate: every key of `wanted` has that value."""
    return lambda data: all(data.get(k) == v for k, v in wanted.items())


class AckError(Exception):
    """A refused ack or a missing event; the message is the error code, so failures group by it."""


class Inbox:
    """Server events received by one socket, awaitable with a timeout (greenlet-friendly)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[tuple[str, dict[str, Any], float]] = []

    def push(self, event: str, data: Any) -> None:
        with self._cond:
            self._events.append((event, data if isinstance(data, dict) else {}, time.time()))
            del self._events[:-200]  # keep memory bounded over a long run
            self._cond.notify_all()

    def wait(self, event: str, match: Callable[[dict[str, Any]], bool], timeout: float) -> tuple[dict[str, Any], float]:
        """The first `event` whose payload satisfies `match`, and the time it arrived; consumed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (name, data, at) in enumerate(self._events):
                    if name == event and match(data):
                        del self._events[i]
                        return data, at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AckError(f"timeout waiting for {event}")
                self._cond.wait(left)


class Socket:
    """One device: a python-socketio client on some namespaces, recording listed events."""

    def __init__(self, host: str | None, user: str, namespaces: list[str], events: Iterable[tuple[str, str]],
                 node: str | None = None) -> None:
        """`node` pins the socket to that URL; otherwise `pick_host` chooses."""
        self.user = user
        self.url = node or pick_host(host)
        self.inbox = Inbox()
        self.sio = socketio.Client(reconnection=False)
        for namespace, event in events:
            self.sio.on(event, self._recorder(event), namespace=namespace)
        self.sio.connect(self.url, namespaces=namespaces, auth={"token": token(user)},
                         transports=["websocket"], wait_timeout=20)

    def _recorder(self, event: str) -> Callable[[Any], None]:
        return lambda data: self.inbox.push(event, data)

    def close(self) -> None:
        self.sio.disconnect()


class LoadUser(User):
    """Base for Socket.IO users: `request()` times one acked event and reports it to locust."""

    abstract = True
    timeout = 30.0

    def report(self, kind: str, name: str, started: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(request_type=kind, name=name,
                                             response_time=(time.time() - started) * 1000,
                                             response_length=0, exception=exc, context={})

    def connect(self, kind: str, namespaces: list[str], events: Iterable[tuple[str, str]],
                node: str | None = None) -> Socket:
        """A new device of a new user, its connect (all namespaces) reported as `sio connect`."""
        started = time.time()
        try:
            sock = Socket(self.host, new_user_id(kind), namespaces, events, node)
        except socketio.exceptions.ConnectionError as exc:  # e.g. limit_reached, auth_invalid
            self.report("sio", "connect", started, AckError(str(exc)[:120]))
            raise
        self.report("sio", "connect", started)
        return sock

    def request(self, sock: Socket, namespace: str, event: str, payload: dict[str, Any],
                name: str | None = None) -> dict[str, Any]:
        """Emit with an ack; report latency, or a failure named by the error code. Raises AckError."""
        started = time.time()
        try:
            ack = sock.sio.call(event, payload, namespace=namespace, timeout=self.timeout)
        except socketio.exceptions.TimeoutError:
            exc = AckError("ack_timeout")
        except socketio.exceptions.SocketIOError:  # the namespace is gone: the server dropped us
            exc = AckError("disconnected")
        else:
            if isinstance(ack, dict) and ack.get("ok"):
                self.report(namespace, name or event, started)
                return ack
            error = ack.get("error", {}) if isinstance(ack, dict) else {}
            exc = AckError(str(error.get("code", "bad_ack")))
        self.report(namespace, name or event, started, exc)
        raise exc

    def expect(self, sock: Socket, namespace: str, event: str, name: str, since: float,
               match: Callable[[dict[str, Any]], bool] = lambda _d: True) -> dict[str, Any]:
        """Wait for a server event; report the time from `since` (the cause) to its arrival."""
        try:
            data, at = sock.inbox.wait(event, match, self.timeout)
        except AckError as exc:
            self.report(namespace, name, since, exc)
            raise
        self.environment.events.request.fire(request_type=namespace, name=name, response_time=(at - since) * 1000,
                                             response_length=0, exception=None, context={})
        return data
