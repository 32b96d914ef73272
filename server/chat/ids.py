"""Message ids: fixed-width lowercase hex strings that sort in creation order.

Layout (22 hex chars): 12 chars of milliseconds since the epoch (48 bits), 6 chars of a per-process
monotonic counter, 4 chars of a per-process random node tag. Within one process ids are strictly
increasing even if the wall clock steps back (the previous timestamp is reused and the counter keeps
going); across processes they sort by creation millisecond, ties broken by counter then node tag.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

ID_LENGTH = 22
_ID_RE = re.compile(r"^[0-9a-f]{22}$")
_COUNTER_MAX = 0xFFFFFF


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def id_time_ms(message_id: str) -> int:
    """The creation millisecond encoded in an id."""
    return int(message_id[:12], 16)


class IdGenerator:
    def __init__(self, node_tag: int | None = None) -> None:
        self._tag = f"{(secrets.randbits(16) if node_tag is None else node_tag) & 0xFFFF:04x}"
        self._last_ms = 0
        self._counter = 0

    @property
    def tag(self) -> str:
        """This generator's node tag: the last 4 characters of every id it makes."""
        return self._tag

    def next(self) -> str:
        now = int(time.time() * 1000)
        if now > self._last_ms:
            self._last_ms = now
            self._counter = 0
        else:
            self._counter += 1
            if self._counter > _COUNTER_MAX:
                self._last_ms += 1
                self._counter = 0
        return f"{self._last_ms:012x}{self._counter:06x}{self._tag}"


def conversation_id(a: str, b: str) -> str:
    """Deterministic id of the conversation between two users (order-independent, opaque, 32 hex)."""
    lo, hi = (a, b) if a <= b else (b, a)
    return hashlib.sha256(f"{lo}\x1f{hi}".encode()).hexdigest()[:32]
