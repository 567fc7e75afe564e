"""Group commit: many concurrent writes share one SQLite transaction, each still atomic on its own.

A commit, and FTS5's flush of the terms a transaction added, cost more than a small insert itself. Writes that
arrive while a transaction is running wait together and then run as one: every job inside its own SAVEPOINT (so a
job that fails is undone alone and only its caller sees the error), one COMMIT for all of them. No caller hears
of success before that COMMIT, so durability is exactly that of one transaction per write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from claw_adapters.storage.sqlite_jobs import Job, Outcome, settle

__all__ = ["WriteBatcher"]

_T = TypeVar("_T")

MAX_BATCH = 256
"""Jobs per transaction at most, so one burst cannot hold the write lock for long."""


class WriteBatcher:
    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        """`executor` is the store's single thread: the only one that ever uses `connection`."""
        self._conn = connection
        self._executor = executor
        self._pending: list[tuple[Job[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until every write handed in so far has committed or failed."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                jobs = [job for job, _ in batch]
                try:
                    outcomes = await loop.run_in_executor(self._executor, _run_batch, self._conn, jobs)
                except BaseException as error:
                    for _, future in batch:
                        settle(future, (False, error))
                    if not isinstance(error, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    settle(future, outcome)
        finally:
            self._flusher = None


def _run_batch(conn: sqlite3.Connection, jobs: list[Job[Any]]) -> list[Outcome]:
    """Runs on the store's thread. Raises (failing every job) when the transaction as a whole cannot commit."""
    outcomes: list[Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                outcomes.append((True, job(conn)))
            except Exception as error:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back (disk full, I/O error): nothing of it stands
                conn.execute("ROLLBACK TO job")
                outcomes.append((False, error))
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes
