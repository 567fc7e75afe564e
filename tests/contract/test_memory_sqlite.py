"""What the SQLite memory store promises beyond the contract: its file, its layout, and an index kept in sync."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.memory import sqlite as sqlite_memory
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_core.errors import Unavailable
from claw_core.model import MemoryItem

ID = "0b6d7d3e-3a6f-4b7e-9d7c-1f2e3d4c5b6a"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "private" / "memory.sqlite3"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteMemoryStore]:
    store = SqliteMemoryStore(path)
    yield store
    await store.close()


def integrity_check(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")


async def test_constructing_touches_nothing_and_the_file_is_private(store: SqliteMemoryStore, path: Path) -> None:
    assert not path.parent.exists()
    await store.add("first")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700


async def test_memories_outlive_the_store(path: Path) -> None:
    first = SqliteMemoryStore(path)
    added = await first.add("kept on disk", payload={"user_id": "alice"})
    await first.close()
    second = SqliteMemoryStore(path)
    try:
        assert (await second.get(added.id)).payload == added.payload
        assert [hit.id for hit in await second.search("disk", limit=5)] == [added.id]
    finally:
        await second.close()


async def test_the_table_has_mem0s_columns(store: SqliteMemoryStore, path: Path) -> None:
    added = await store.add("layout", payload={"user_id": "bob"})
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT id, payload ->> 'data', payload ->> 'user_id', created_at FROM memories").fetchone()
    assert row == (added.id, "layout", "bob", added.created_at)


async def test_the_index_follows_every_write(store: SqliteMemoryStore, path: Path) -> None:
    items = [await store.add(f"word{n} common") for n in range(10)]
    await store.update(items[0].id, "changed common")
    await store.delete(items[1].id)
    await store.put(MemoryItem(items[2].id, {"data": "replaced common"}))
    await store.put(MemoryItem(ID, {"data": "inserted common"}))
    integrity_check(path)
    assert len(await store.search("common", limit=50)) == 10
    assert await store.search("word0", limit=5) == []
    assert await store.search("word1", limit=5) == []
    assert [hit.id for hit in await store.search("replaced", limit=5)] == [items[2].id]


async def test_a_text_that_is_not_a_string_is_not_indexed(store: SqliteMemoryStore, path: Path) -> None:
    await store.put(MemoryItem(ID, {"data": 12345}))
    assert await store.search("12345", limit=5) == []
    assert (await store.get(ID)).data == ""
    await store.delete(ID)
    integrity_check(path)


async def test_a_dropped_index_is_rebuilt_on_open(path: Path) -> None:
    store = SqliteMemoryStore(path)
    added = await store.add("rebuild me")
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE memories_fts")
    reopened = SqliteMemoryStore(path)
    try:
        assert [hit.id for hit in await reopened.search("rebuild", limit=5)] == [added.id]
    finally:
        await reopened.close()


async def test_search_ranks_by_bm25(store: SqliteMemoryStore) -> None:
    once = await store.add("the cat sat on a long mat with many other words around it")
    often = await store.add("cat cat cat")
    hits = await store.search("cat", limit=5)
    assert [hit.id for hit in hits] == [often.id, once.id]
    assert hits[0].score is not None
    assert hits[1].score is not None
    assert hits[0].score > hits[1].score


async def test_search_ranks_only_the_newest_matches(store: SqliteMemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_memory, "RANKING_WINDOW", 3)
    best = await store.add("cat cat cat cat")  # the best match, but the oldest: outside the window of 3
    newer = [await store.add(f"cat number {i} among a few more words") for i in range(3)]
    await store.add("no feline here")
    hits = await store.search("cat", limit=2)
    assert len(hits) == 2
    assert {hit.id for hit in hits} <= {memory.id for memory in newer}
    assert best.id not in {hit.id for hit in await store.search("cat", limit=3)}
    # a limit above the window widens it: every match is ranked, the best first
    assert (await store.search("cat", limit=10))[0].id == best.id


async def test_a_collection_is_a_table_of_its_own(path: Path) -> None:
    first, second = SqliteMemoryStore(path), SqliteMemoryStore(path, collection="mem0-other")
    try:
        await first.add("in the default table")
        assert await second.count() == 0
        assert (await second.status()).collection == "mem0-other"
    finally:
        await first.close()
        await second.close()


def test_a_collection_name_that_could_break_the_sql_is_refused(path: Path) -> None:
    for name in ['x"; DROP TABLE memories; --', "a b", "x" * 64, "ä"]:
        with pytest.raises(ValueError, match="invalid memory collection name"):
            SqliteMemoryStore(path, collection=name)


async def test_a_file_that_is_not_a_database_is_unavailable(path: Path) -> None:
    path.parent.mkdir(parents=True)
    await asyncio.to_thread(path.write_bytes, b"this is not a database" * 100)
    store = SqliteMemoryStore(path)
    try:
        status = await store.status()
        assert status.reachable is False
        assert status.error
        with pytest.raises(Unavailable):
            await store.get(ID)
    finally:
        await store.close()


async def test_a_store_that_cannot_open_recovers_once_it_can(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    path.mkdir()
    store = SqliteMemoryStore(path)
    try:
        assert (await store.status()).reachable is False
        path.rmdir()
        assert (await store.status()).reachable is True
    finally:
        await store.close()


async def test_after_close_every_call_is_unavailable(store: SqliteMemoryStore) -> None:
    await store.add("before close")
    await store.close()
    with pytest.raises(Unavailable):
        await store.count()
    assert (await store.status()).reachable is False
    await store.close()  # twice is fine
