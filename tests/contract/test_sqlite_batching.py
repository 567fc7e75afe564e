"""Group commit in the SQLite store: concurrent writes share a transaction, yet each succeeds or fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_adapters.storage.sqlite_batch import WriteBatcher
from claw_core.errors import Conflict
from claw_core.model import Message, Role, SessionKey, Thread


def thread(thread_id: str) -> Thread:
    return Thread(thread_id, SessionKey("main", "default", thread_id).format())


async def test_a_failing_write_in_a_batch_fails_alone(tmp_path: Path) -> None:
    stores = SqliteHistoryStores(tmp_path)
    store = await stores.open("default")
    await store.create_thread(thread("t1"))
    await store.create_thread(thread("t2"))
    await store.upsert_message(Message("taken", "t1", Role.USER, "x", 1), now=1)

    writes = [store.upsert_message(Message(f"m{i}", "t1", Role.USER, f"n{i}", i), now=2) for i in range(50)]
    writes.insert(25, store.upsert_message(Message("taken", "t2", Role.USER, "clash", 1), now=2))
    results = await asyncio.gather(*writes, return_exceptions=True)

    assert isinstance(results[25], Conflict)
    assert sum(not isinstance(r, BaseException) for r in results) == 50
    page = await store.page_messages("t1", limit=100)
    assert len(page.messages) == 51
    taken = await store.get_message("taken")
    assert taken is not None and taken.content == "x"
    await stores.close()
    # Everything acknowledged is on disk.
    again = await SqliteHistoryStores(tmp_path).open("default")
    assert len((await again.page_messages("t1", limit=100)).messages) == 51
    await again.close()


async def test_a_job_that_loses_the_whole_transaction_fails_the_whole_batch(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None, check_same_thread=False)
    connection.execute("CREATE TABLE t (v INTEGER)")
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = WriteBatcher(connection, executor)

    def insert(value: int) -> int:
        return connection.execute("INSERT INTO t VALUES (?)", (value,)).rowcount

    def lose_transaction(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # what SQLite does by itself on a full disk or an I/O error
        raise sqlite3.OperationalError("database or disk is full")

    results = await asyncio.gather(
        batcher.run(lambda c: insert(1)),
        batcher.run(lose_transaction),
        batcher.run(lambda c: insert(2)),
        return_exceptions=True,
    )
    # The first insert had succeeded inside the batch, but its transaction is gone: nobody may hear success.
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert await batcher.run(lambda c: insert(3)) == 1
    assert connection.execute("SELECT v FROM t").fetchall() == [(3,)]
    executor.shutdown()
    connection.close()


async def test_close_waits_for_pending_writes(tmp_path: Path) -> None:
    stores = SqliteHistoryStores(tmp_path)
    store = await stores.open("default")
    await store.create_thread(thread("t1"))
    pending = [
        asyncio.create_task(store.upsert_message(Message(f"m{i}", "t1", Role.USER, "x", i), now=1)) for i in range(200)
    ]
    await asyncio.sleep(0)
    await stores.close()
    assert all(task.done() and not task.exception() for task in pending)
    again = await SqliteHistoryStores(tmp_path).open("default")
    assert len((await again.page_messages("t1", limit=500)).messages) == 200
    await again.close()


@pytest.mark.parametrize("count", [1, 300])
async def test_batches_are_bounded_and_ordered(tmp_path: Path, count: int) -> None:
    connection = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None, check_same_thread=False)
    connection.execute("CREATE TABLE t (v INTEGER)")
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = WriteBatcher(connection, executor)
    await asyncio.gather(
        *(batcher.run(lambda c, v=v: c.execute("INSERT INTO t VALUES (?)", (v,)).rowcount) for v in range(count))
    )
    assert [v for (v,) in connection.execute("SELECT v FROM t ORDER BY rowid")] == list(range(count))
    executor.shutdown()
    connection.close()


async def test_readers_see_every_acknowledged_write(tmp_path: Path) -> None:
    """Reads go to separate connections; a write acknowledged before a read starts is always visible to it."""
    stores = SqliteHistoryStores(tmp_path)
    store = await stores.open("default")
    await store.create_thread(thread("t1"))

    async def write_then_read(index: int) -> None:
        await store.upsert_message(Message(f"m{index:03d}", "t1", Role.USER, "x", index), now=index)
        assert await store.get_message(f"m{index:03d}") is not None

    await asyncio.gather(*(write_then_read(i) for i in range(200)))
    assert len((await store.page_messages("t1", limit=500)).messages) == 200
    await stores.close()
