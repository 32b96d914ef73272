"""The store for operator commands (`reconcile`, `revoke`, `ban`, `unban`), opened one way.

With `MONGO_URL`, that store. Without it, the embedded store: the running server's (its port is in
`<storage>.port`), so the commands work beside `make run`; or, when no server runs, one started here for
the command and stopped after it (then nothing else can be writing: `exclusive` is true).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from config.settings import Settings
from server.store import EmbeddedStore, make_client, redact, wait_until_reachable

# Generous: a full scan keeps the embedded store (one busy process) from answering the driver's
# monitor for a while, and a monitor timeout would cancel the scan.
_TOOL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ToolStore:
    db: AsyncDatabase[Any]
    exclusive: bool
    """True when this command started the store itself: no server can be writing."""


def embedded_owner(storage: str) -> int | None:
    """The pid of a live server whose embedded store holds `storage`, else None (an orphaned store
    left by a killed server is not an owner: starting the store again reaps it)."""
    try:
        pid = int(Path(storage + ".pid").read_text().strip())
        if b"secantusd" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return ppid if ppid > 1 and Path(f"/proc/{ppid}").exists() else None


def _running_port(storage: str) -> int | None:
    """The port of the embedded store a running server holds under `storage`, if any."""
    if embedded_owner(storage) is None:
        return None
    return int(Path(storage + ".port").read_text().strip())


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[ToolStore]:
    """Raises `StoreUnavailable` when the store does not answer within PAIRLY_STORE_CONNECT_TIMEOUT_S."""
    url, embedded, exclusive = settings.mongo_url, None, False
    if url is None:
        storage = str((settings.data_dir / "db").resolve())
        port = _running_port(storage)
        if port is not None:
            url = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
        else:
            embedded = EmbeddedStore(storage, log_path=settings.data_dir / "db.log")
            embedded.start()
            url, exclusive = embedded.url, True
    client = make_client(url, timeout_s=_TOOL_TIMEOUT_S)
    try:
        await wait_until_reachable(client, settings.store_connect_timeout_s, redact(url))
        yield ToolStore(client[settings.mongo_db], exclusive)
    finally:
        await client.close()
        if embedded is not None:
            embedded.stop()
