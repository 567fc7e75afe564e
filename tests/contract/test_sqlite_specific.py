"""What only the SQLite history store promises: files, durability settings, schema versions, index repair."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.storage.sqlite import (
    _HAS_REPLY,
    _LATEST_PENDING,
    _LATEST_PENDING_PK,
    _MESSAGES_NEAR,
    SqliteHistoryStore,
    SqliteHistoryStores,
)
from claw_adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, ensure_search_index
from claw_core.errors import Invalid, Unavailable
from claw_core.model import Message, Role, SessionKey, Thread, UnreadThread
from claw_core.ports import RunRecord


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


async def test_a_sqlite_too_old_for_the_schema_is_a_clear_error(
    tmp_path: Path, stores: SqliteHistoryStores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(Unavailable, match=r"needs SQLite 3\.35\.0 or later; this Python has 3\.34\.1"):
        await stores.open("default")


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


# --- schema version 2: runs, and the index behind exactly-once replies ---


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name").fetchall()
    finally:
        conn.close()


def version_1_database(path: Path) -> None:
    """A database as the release that knew only schema version 1 left it, with some history in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        ensure_search_index(conn)
        conn.execute(
            "INSERT INTO threads (id, session_key, title, unread_count, metadata, created_at, updated_at) "
            "VALUES ('t1', 'agent:main:default:chat:t1', 'Old', 1, '{\"k\":1}', 1, 2)"
        )
        conn.executemany(
            "INSERT INTO messages (id, thread_id, role, content, status, metadata, seq, timestamp, created_at) "
            "VALUES (?, 't1', ?, ?, 'sent', ?, NULL, ?, ?)",
            [
                ("m1", "user", "remember the lighthouse", None, 10, 11),
                ("m2", "assistant", "the lighthouse it is", '{"runId":"old-run"}', 20, 21),
                ("m3", "assistant", "", '{"pending":true}', 30, 31),
            ],
        )
        conn.execute("INSERT INTO unread_messages (thread_id, message_id) VALUES ('t1', 'm2')")
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_version_1_database_is_migrated_on_open_with_its_history_intact(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    version_1_database(path)
    assert "runs" not in {name for _, name, _ in schema_of(path)}

    stores = SqliteHistoryStores(tmp_path / "data")
    try:
        store = await stores.open("default")
        assert pragma(path, "user_version") == SCHEMA_VERSION == 3
        assert await store.get_thread("t1") == Thread(
            "t1", "agent:main:default:chat:t1", "Old", unread_count=1, metadata={"k": 1}, created_at=1, updated_at=2
        )
        page = await store.page_messages("t1", limit=10)
        assert [(m.id, m.role, m.metadata, m.timestamp, m.created_at) for m in page.messages] == [
            ("m1", Role.USER, None, 10, 11),
            ("m2", Role.ASSISTANT, {"runId": "old-run"}, 20, 21),
            ("m3", Role.ASSISTANT, {"pending": True}, 30, 31),
        ]
        # the rebuilt table renders the old rows as the objects do
        rendered = await store.render_messages("t1", limit=10)
        assert json.loads(rendered.json) == [m.to_json() for m in page.messages]
        assert await store.unread_threads() == [UnreadThread("t1", "Old", 1, "", ("m2",))]
        assert await search_ids(store, "lighthouse") == ["m2", "m1"]
        # the new index covers the rows that were there before it: the old run's reply is already stored
        old_reply = Message("x", "t1", Role.ASSISTANT, "again", 40, metadata={"runId": "old-run"})
        assert await store.store_reply(old_reply, run_id="old-run", now=50) is None
        # and the new table works, cascade included
        await store.record_run(RunRecord("new-run", "agent:main:default:chat:t1", "t1", 45))
        new_reply = Message("y", "t1", Role.ASSISTANT, "fresh", 46, metadata={"runId": "new-run"})
        filled = await store.store_reply(new_reply, run_id="new-run", now=50)
        assert filled is not None and (filled.id, filled.content) == ("m3", "fresh")
        assert await store.open_runs() == []
    finally:
        await stores.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


async def test_a_migrated_database_has_exactly_the_schema_of_a_new_one(tmp_path: Path) -> None:
    version_1_database(tmp_path / "data" / "history" / "old.sqlite3")
    stores = SqliteHistoryStores(tmp_path / "data")
    try:
        await stores.open("old")
        await stores.open("new")
    finally:
        await stores.close()
    assert schema_of(db_path(tmp_path, "old")) == schema_of(db_path(tmp_path, "new"))


async def analysed_history(tmp_path: Path) -> Path:
    """A history with thousands of assistant messages in one thread, and statistics that say so."""
    stores = SqliteHistoryStores(tmp_path / "data")
    try:
        store = await stores.open("default")
        for thread_id in ("t1", "t2"):
            await store.create_thread(thread(thread_id))
        for index in range(3_000):
            role = Role.ASSISTANT if index % 3 else Role.USER
            await store.upsert_message(
                Message(f"m{index}", "t1", role, "text", index, metadata={"runId": f"r{index}"}), now=1
            )
        await store.upsert_message(Message("p", "t1", Role.ASSISTANT, "", 5, metadata={"pending": True}), now=1)
    finally:
        await stores.close()
    raw(db_path(tmp_path), "ANALYZE")
    return db_path(tmp_path)


@pytest.mark.parametrize(
    ("sql", "values", "index"),
    [
        (_HAS_REPLY, ("t1", "r7"), "messages_run (thread_id=? AND <expr>=?)"),
        (_LATEST_PENDING, ("t1",), "messages_pending (thread_id=?)"),
        (_LATEST_PENDING_PK, ("t1",), "messages_pending (thread_id=?)"),
        (
            _MESSAGES_NEAR,
            ("t1", "user", 1_000, 50),
            "messages_thread_role_time (thread_id=? AND role=? AND timestamp>?",
        ),
    ],
    ids=["reply-of-run", "latest-pending", "latest-pending-pk", "messages-near"],
)
async def test_runs_and_replies_are_looked_up_through_their_index(
    tmp_path: Path, sql: str, values: tuple[object, ...], index: str
) -> None:
    path = await analysed_history(tmp_path)
    conn = sqlite3.connect(path)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", values)]
        # and without the index the statement would not even compile: INDEXED BY never silently degrades
        for name in ("messages_run", "messages_pending", "messages_thread_role_time"):
            if f"INDEXED BY {name}" in sql:
                conn.execute(f"DROP INDEX {name}")
                with pytest.raises(sqlite3.OperationalError, match="no such index"):
                    conn.execute(sql, values)
    finally:
        conn.close()
    assert plan[0] == f"SEARCH m USING INDEX {index}" or plan[0].startswith(f"SEARCH m USING INDEX {index}")
