"""The embedded store's settings: no retryable writes, a small oplog; an external MONGO_URL keeps the defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from server.app import EMBEDDED, MONGO, create_app
from server.store import EmbeddedStore, make_client, wait_until_reachable
from tests.support.apps import make_settings


class _Inserts(monitoring.CommandListener):
    """Records the `insert` commands a client sends."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@pytest.fixture(scope="module")
def store() -> Iterator[EmbeddedStore]:
    """An embedded store of its own (whatever MONGO_URL says), with a tiny oplog cap."""
    embedded = EmbeddedStore(":memory:", oplog_max_entries=10)
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
async def recorded() -> AsyncIterator[list[tuple[AsyncMongoClient[dict[str, Any]], _Inserts]]]:
    opened: list[tuple[AsyncMongoClient[dict[str, Any]], _Inserts]] = []
    yield opened
    for client, _ in opened:
        await client.close()


async def _client(store: EmbeddedStore, url: str,
                  opened: list[tuple[AsyncMongoClient[dict[str, Any]], _Inserts]]) -> tuple[Any, _Inserts]:
    listener = _Inserts()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, event_listeners=[listener])
    opened.append((client, listener))
    await wait_until_reachable(client, 20, url)
    return client, listener


async def test_clients_of_the_embedded_store_send_no_retryable_writes(store: EmbeddedStore, recorded) -> None:
    client, seen = await _client(store, store.url, recorded)
    assert client.options.retry_writes is False
    await client.t_store.docs.insert_one({"_id": "plain"})
    assert "txnNumber" not in seen.commands[-1]
    # Transactions (the ledger's) are unaffected: they always carry a transaction number.
    async with client.start_session() as session, await session.start_transaction():
        await client.t_store.docs.insert_one({"_id": "in-txn"}, session=session)
    assert "txnNumber" in seen.commands[-1]
    assert await client.t_store.docs.count_documents({}) == 2


async def test_an_external_url_keeps_the_driver_default(store: EmbeddedStore, recorded) -> None:
    external = f"mongodb://127.0.0.1:{store.port}/?directConnection=true"  # same server, URL as an operator writes it
    client, seen = await _client(store, external, recorded)
    assert client.options.retry_writes is True
    await client.t_store.docs.insert_one({"_id": "external"})
    assert "txnNumber" in seen.commands[-1]


async def test_the_app_uses_the_settings_for_each_kind_of_store(tmp_path) -> None:
    embedded_app = create_app(make_settings({"PAIRLY_DATA_DIR": str(tmp_path),
                                             "PAIRLY_EMBEDDED_OPLOG_MAX_ENTRIES": "2500"}))
    external_app = create_app(make_settings({"MONGO_URL": "mongodb://db.example:27017/?replicaSet=rs0"}))
    try:
        assert embedded_app[MONGO].options.retry_writes is False
        assert embedded_app[EMBEDDED].oplog_max_entries == 2500
        assert external_app[MONGO].options.retry_writes is True
        assert EMBEDDED not in external_app
    finally:  # nothing was started: the clients never connected
        await embedded_app[MONGO].close()
        await external_app[MONGO].close()


async def test_make_client_keeps_what_the_url_says(store: EmbeddedStore) -> None:
    embedded, external = make_client(store.url), make_client("mongodb://db.example:27017/")
    try:
        assert embedded.options.retry_writes is False
        assert external.options.retry_writes is True
    finally:
        await embedded.close()
        await external.close()


async def test_the_oplog_is_capped(store: EmbeddedStore, recorded) -> None:
    client, _ = await _client(store, store.url, recorded)
    oplog = client.local["oplog.rs"]
    for batch in range(5):  # SecantusDB prunes every 1,000 writes, down to the cap
        await client.t_store.capped.insert_many([{"batch": batch, "i": i} for i in range(600)])
    # 3,000 inserts: with SecantusDB's default cap (100,000) all of them would still be there.
    assert await oplog.count_documents({"ns": "t_store.capped"}) <= 1_300


async def test_by_default_the_embedded_store_keeps_no_oplog_and_runs_transactions(recorded) -> None:
    embedded = EmbeddedStore(":memory:")
    embedded.start()
    try:
        client, _ = await _client(embedded, embedded.url, recorded)
        async with client.start_session() as session, await session.start_transaction():
            await client.t_store.tx.insert_one({"x": 1}, session=session)
        await client.t_store.plain.insert_many([{"i": i} for i in range(100)])
        assert await client.t_store.tx.count_documents({}) == 1
        assert await client.local["oplog.rs"].count_documents({}) == 0
    finally:
        embedded.stop()
