"""Readers beside the writer: WAL lets several connections read while one writes.

Each reader is a connection with its own thread (a connection is never shared between threads). SQLite releases
the GIL while it steps a statement, so two readers render two pages at once on two cores. A read goes to the
reader with the fewest reads in flight. A reader sees every transaction committed before its read began, and a
write is acknowledged only after its commit, so a client always reads its own writes.

Results go back to the event loop in batches: a reader that finishes a read while the loop has not yet collected
the previous ones adds it to them instead of waking the loop again. Under load the loop wakes once for many reads,
and the reader does not wait for the GIL to signal each one (that hand-off cost more than the read on two cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from claw_adapters.storage.sqlite_jobs import Job, Outcome, settle

__all__ = ["ReaderPool"]

_T = TypeVar("_T")


class _Reader:
    """One connection, used only by this reader's thread, which runs the jobs queued to it in order."""

    def __init__(self, path: Path, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.in_flight = 0
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Job[Any], asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._finished: list[tuple[asyncio.Future[Any], Outcome]] = []
        self._finished_lock = threading.Lock()
        self._opened: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(path,), name=name, daemon=True)
        self._thread.start()

    async def opened(self) -> None:
        """Wait until the connection is open, or raise why it could not be."""
        await asyncio.wrap_future(self._opened)

    def submit(self, job: Job[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((job, future))
        return future

    async def close(self) -> None:
        """Finish the jobs already queued, close the connection, and end the thread."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self, path: Path) -> None:
        try:
            connection = _connect_reader(path)
        except BaseException as error:
            self._opened.set_exception(error)
            return
        self._opened.set_result(None)
        try:
            while (item := self._jobs.get()) is not None:
                job, future = item
                try:
                    outcome: Outcome = (True, job(connection))
                except BaseException as error:
                    outcome = (False, error)
                self._finish(future, outcome)
        finally:
            connection.close()

    def _finish(self, future: asyncio.Future[Any], outcome: Outcome) -> None:
        with self._finished_lock:
            wake = not self._finished
            self._finished.append((future, outcome))
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """On the loop: settle every read finished since the last delivery."""
        with self._finished_lock:
            finished, self._finished = self._finished, []
        for future, outcome in finished:
            settle(future, outcome)


class ReaderPool:
    def __init__(self, readers: list[_Reader]) -> None:
        self._readers = readers

    @classmethod
    async def open(cls, path: Path, count: int) -> ReaderPool:
        if count < 1:
            raise ValueError("a reader pool needs at least one reader")
        loop = asyncio.get_running_loop()
        readers = [_Reader(path, f"sqlite-read{index}-{path.stem}", loop) for index in range(count)]
        try:
            for reader in readers:
                await reader.opened()
        except BaseException:
            await cls(readers).close()
            raise
        return cls(readers)

    async def run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        reader = min(self._readers, key=lambda r: r.in_flight)
        reader.in_flight += 1
        try:
            result: _T = await reader.submit(job)
            return result
        finally:
            reader.in_flight -= 1

    async def close(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            await reader.close()


def _connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = ON")  # a bug that writes through a reader fails loudly
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn
