"""Readers beside the writer: WAL lets several connections read while one writes.

Each reader is a connection with its own thread (a connection is never shared between threads). SQLite releases
the GIL while it steps a statement, so two readers render two pages at once on two cores. A read goes to the
reader with the fewest reads in flight. A reader sees every transaction committed before its read began, and a
write is acknowledged only after its commit, so a client always reads its own writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["ReaderPool"]

_T = TypeVar("_T")


class _Reader:
    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self.connection = connection
        self.executor = executor
        self.in_flight = 0


class ReaderPool:
    def __init__(self, readers: list[_Reader]) -> None:
        self._readers = readers

    @classmethod
    async def open(cls, path: Path, count: int) -> ReaderPool:
        if count < 1:
            raise ValueError("a reader pool needs at least one reader")
        readers: list[_Reader] = []
        try:
            for index in range(count):
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-read{index}-{path.stem}")
                try:
                    connection = await asyncio.get_running_loop().run_in_executor(executor, _connect_reader, path)
                except BaseException:
                    executor.shutdown(wait=False)
                    raise
                readers.append(_Reader(connection, executor))
        except BaseException:
            await cls(readers).close()
            raise
        return cls(readers)

    async def run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        reader = min(self._readers, key=lambda r: r.in_flight)
        reader.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(reader.executor, job, reader.connection)
        finally:
            reader.in_flight -= 1

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for reader in self._readers:
            try:
                await loop.run_in_executor(reader.executor, reader.connection.close)
            finally:
                reader.executor.shutdown(wait=False)
        self._readers = []


def _connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = ON")  # a bug that writes through a reader fails loudly
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn
