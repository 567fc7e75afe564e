"""The SQLite reader pool: each read reaches its own caller, whatever else is in flight, fails or is cancelled."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.storage.sqlite_readers import ReaderPool


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "readers.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE numbers (n INTEGER)")
    conn.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in range(100)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
async def pool(database: Path) -> AsyncIterator[ReaderPool]:
    readers = await ReaderPool.open(database, 2)
    yield readers
    await readers.close()


def reader_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("sqlite-read")}


async def test_many_reads_in_flight_each_get_their_own_answer(pool: ReaderPool) -> None:
    """Reads finish in batches while the loop is busy; no answer may go to another caller or be lost."""

    def square(n: int) -> object:
        return lambda conn: (n, conn.execute("SELECT ? * ?", (n, n)).fetchone()[0])

    answers = await asyncio.gather(*(pool.run(square(n)) for n in range(2_000)))
    assert answers == [(n, n * n) for n in range(2_000)]


async def test_reads_are_spread_over_the_readers_and_run_off_the_loop(pool: ReaderPool) -> None:
    loop_thread = threading.current_thread().name
    started = threading.Barrier(2, timeout=5)

    def meet(conn: sqlite3.Connection) -> str:
        started.wait()  # both readers are busy at once, or this times out
        return threading.current_thread().name

    names = await asyncio.gather(pool.run(meet), pool.run(meet))
    assert len(set(names)) == 2 and loop_thread not in names


async def test_a_failing_read_fails_alone(pool: ReaderPool) -> None:
    def broken(conn: sqlite3.Connection) -> object:
        return conn.execute("SELECT * FROM missing").fetchall()

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM numbers").fetchone()[0])

    results = await asyncio.gather(pool.run(broken), pool.run(count), pool.run(broken), return_exceptions=True)
    assert isinstance(results[0], sqlite3.OperationalError) and isinstance(results[2], sqlite3.OperationalError)
    assert results[1] == 100


async def test_a_cancelled_read_does_not_disturb_the_next(pool: ReaderPool) -> None:
    release = threading.Event()

    def slow(conn: sqlite3.Connection) -> str:
        release.wait(5)
        return "late"

    waiting = [asyncio.create_task(pool.run(slow)) for _ in range(2)]
    await asyncio.sleep(0.05)
    for task in waiting:
        task.cancel()
    release.set()
    assert await pool.run(lambda conn: conn.execute("SELECT 42").fetchone()[0]) == 42
    assert all(task.cancelled() for task in waiting)


async def test_readers_cannot_write(pool: ReaderPool) -> None:
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only"):
        await pool.run(lambda conn: conn.execute("INSERT INTO numbers VALUES (1)"))


async def test_close_finishes_queued_reads_then_ends_the_threads(database: Path) -> None:
    before = reader_threads()
    readers = await ReaderPool.open(database, 2)
    assert len(reader_threads() - before) == 2
    queued = [asyncio.create_task(readers.run(lambda conn, n=n: n)) for n in range(50)]
    await asyncio.sleep(0)
    await readers.close()
    assert [await task for task in queued] == list(range(50))
    assert reader_threads() == before


async def test_a_database_that_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    before = reader_threads()
    with pytest.raises(sqlite3.OperationalError):
        await ReaderPool.open(tmp_path / "no" / "such" / "folder" / "db.sqlite3", 2)
    assert reader_threads() == before
