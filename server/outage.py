"""Logging a backing service's outage once, not once per failed call.

During a Redis outage every sweep, publish and listener fails many times a second; a traceback for each
buries the one line an operator needs. `Outage.failed` logs the first failure of a stretch (with its
error, without a traceback for plain connection errors) and `Outage.ok` logs the recovery with how long
it lasted. Anything that is not a connection error is still logged in full, every time.
"""

from __future__ import annotations

import time

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def unreachable(exc: BaseException) -> bool:
    return isinstance(exc, UNREACHABLE)


class Outage:
    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, **fields: object) -> None:
        if not unreachable(exc):
            log.error(f"{self.what}_failed", exc_info=exc, **fields)
            return
        if self.since is None:
            self.since = time.monotonic()
            log.warning(f"{self.what}_unreachable", error=str(exc) or type(exc).__name__, **fields)

    def ok(self) -> bool:
        """Record a success; True when it ends an outage."""
        if self.since is None:
            return False
        log.info(f"{self.what}_recovered", after_s=round(time.monotonic() - self.since, 2))
        self.since = None
        return True
