"""What only the SQLite history store promises: files, durability settings, schema versions, index repair."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.storage.sqlite import SqliteHistoryStore, SqliteHistoryStores
from claw_adapters.storage.sqlite_schema import SCHEMA_VERSION, SchemaTooNew
from claw_core.errors import Invalid, Unavailable
from claw_core.model import Message, Role, SessionKey, Thread


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[SqliteHistoryStores]:
    stores = SqliteHistoryStores(tmp_path / "data")
    yield stores
    await stores.close()


def db_path(tmp_path: Path, workspace: str = "default") -> Path:
    return tmp_path / "data" / "history" / f"{workspace}.sqlite3"


def thread(thread_id: str) -> Thread:
    return Thread(id=thread_id, session_key=SessionKey("main", "default", thread_id).format(), created_at=1)


async def seed(store: SqliteHistoryStore) -> None:
    await store.create_thread(thread("t1"))
    await store.upsert_message(Message("m1", "t1", Role.USER, "remember the lighthouse", 1), now=1)


async def search_ids(store: SqliteHistoryStore, query: str) -> list[str]:
    hits, _ = await store.search(query, offset=0, limit=10)
    return [hit.message_id for hit in hits]


def raw(path: Path, *statements: str) -> None:
    """Change the database behind the store's back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def test_history_persists_across_close_and_reopen(tmp_path: Path, stores: SqliteHistoryStores) -> None:
    await seed(await stores.open("default"))
    await stores.close()

    reopened = SqliteHistoryStores(tmp_path / "data")
    try:
        store = await reopened.open("default")
        assert (await store.get_thread("t1")) == thread("t1").with_changes(updated_at=1)
        assert await search_ids(store, "lighthouse") == ["m1"]
    finally:
        await reopened.close()


async def test_each_workspace_is_a_private_file_under_data_dir_history(
    tmp_path: Path, stores: SqliteHistoryStores
) -> None:
    await seed(await stores.open("default"))
    path = db_path(tmp_path)
    assert mode(tmp_path / "data") == 0o700
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert mode(Path(f"{path}-wal")) == 0o600


async def test_the_database_is_in_wal_mode_at_the_current_schema_version(
    tmp_path: Path, stores: SqliteHistoryStores
) -> None:
    await stores.open("default")
    assert pragma(db_path(tmp_path), "journal_mode") == "wal"
    assert pragma(db_path(tmp_path), "user_version") == SCHEMA_VERSION


async def test_a_search_index_dropped_behind_the_stores_back_is_rebuilt_on_open(
    tmp_path: Path, stores: SqliteHistoryStores
) -> None:
    await seed(await stores.open("default"))
    await stores.close()
    raw(db_path(tmp_path), "DROP TABLE messages_fts")

    reopened = SqliteHistoryStores(tmp_path / "data")
    try:
        store = await reopened.open("default")
        assert await search_ids(store, "lighthouse") == ["m1"]
        await store.upsert_message(Message("m2", "t1", Role.USER, "another lighthouse", 2), now=2)
        assert await search_ids(store, "lighthouse") == ["m2", "m1"]
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM messages_fts_data WHERE id > 10",  # the index pages: readable structure, failing queries
        "DELETE FROM messages_fts_data",  # the structure record too: FTS5 cannot even attach to the table
        "DROP TABLE messages_fts_idx",
        "UPDATE messages_fts_config SET v = 99 WHERE k = 'version'",
    ],
)
async def test_a_corrupt_search_index_is_rebuilt_on_open(
    tmp_path: Path, stores: SqliteHistoryStores, damage: str
) -> None:
    await seed(await stores.open("default"))
    await stores.close()
    raw(db_path(tmp_path), damage)

    reopened = SqliteHistoryStores(tmp_path / "data")
    try:
        assert await search_ids(await reopened.open("default"), "lighthouse") == ["m1"]
    finally:
        await reopened.close()


async def test_rebuild_search_index_repairs_an_open_store(tmp_path: Path, stores: SqliteHistoryStores) -> None:
    store = await stores.open("default")
    await seed(store)
    raw(db_path(tmp_path), "DELETE FROM messages_fts_data")
    with pytest.raises(sqlite3.DatabaseError):
        await store.search("lighthouse", offset=0, limit=10)
    await store.rebuild_search_index()
    assert await search_ids(store, "lighthouse") == ["m1"]


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path, stores: SqliteHistoryStores) -> None:
    await stores.open("default")
    await stores.close()
    raw(db_path(tmp_path), f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    newer = SqliteHistoryStores(tmp_path / "data")
    with pytest.raises(SchemaTooNew, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade claw-connector"):
        await newer.open("default")
    assert isinstance(SchemaTooNew("x"), Unavailable)
    assert pragma(db_path(tmp_path), "user_version") == SCHEMA_VERSION + 1  # left untouched
    await newer.close()


async def test_drop_deletes_the_database_and_its_wal_files(tmp_path: Path, stores: SqliteHistoryStores) -> None:
    await seed(await stores.open("gone"))
    await seed(await stores.open("kept"))
    await stores.drop("gone")
    assert names_in(tmp_path / "data" / "history") == [
        "kept.sqlite3",
        "kept.sqlite3-shm",
        "kept.sqlite3-wal",
    ]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
async def test_workspace_names_never_become_paths(tmp_path: Path, stores: SqliteHistoryStores, name: str) -> None:
    with pytest.raises(Invalid):
        await stores.open(name)
    assert names_in(tmp_path) == []


def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteHistoryStores(tmp_path, synchronous="NORMAL; DROP TABLE threads")


async def test_full_synchronous_is_applied(tmp_path: Path) -> None:
    store = await SqliteHistoryStore.open(tmp_path / "full.sqlite3", synchronous="full")
    try:
        await seed(store)
    finally:
        await store.close()
    with pytest.raises(Unavailable):
        await store.count_threads()


async def test_waiting_for_a_locked_database_does_not_block_the_event_loop(
    tmp_path: Path, stores: SqliteHistoryStores
) -> None:
    store = await stores.open("default")
    blocker = sqlite3.connect(db_path(tmp_path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(store.create_thread(thread("t1")))
    await asyncio.sleep(0.2)  # this returns only because the loop is free while the write waits for the lock
    assert not write.done()
    blocker.execute("COMMIT")
    blocker.close()
    await write
    assert await store.count_threads() == 1
