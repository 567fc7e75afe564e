"""The embedded memory store: one SQLite file (`<data_dir>/memory.sqlite3`), searched with FTS5.

The table keeps mem0's layout (a UUID `id`, the `payload` as JSON text with the memory's text in `payload.data`,
`created_at`) plus an integer `pk`: an external-content FTS5 index needs a stable integer rowid, and a table without
an INTEGER PRIMARY KEY may see its rowids renumbered by VACUUM. The index reads `payload->>'data'` through a view
and is kept in sync by triggers, so no write can forget it.

Opening is lazy: constructing the store touches nothing, and a file that cannot be opened makes every call raise
`Unavailable` (and `status` report it) until it can. Every statement runs on one worker thread, one transaction per
call. SQL text is composed only from the validated table name; every value is a bound parameter.

Search ranks by bm25 within a bounded window: the newest `RANKING_WINDOW` matches (docs/adr/0008).
"""

# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from claw_adapters.storage.sqlite_files import open_private_database
from claw_adapters.storage.sqlite_jobs import Job
from claw_adapters.storage.sqlite_transactions import in_transaction
from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import JsonObject, MemoryItem, MemoryStatus
from claw_core.ports import MemoryPage
from claw_core.services.memory_payloads import (
    canonical_memory_id,
    new_memory_id,
    new_payload,
    now_iso,
    require_memory_id,
    search_words,
    updated_payload,
)

__all__ = ["DEFAULT_COLLECTION", "DEFAULT_FILE_NAME", "RANKING_WINDOW", "SqliteMemoryStore"]

DEFAULT_FILE_NAME = "memory.sqlite3"
DEFAULT_COLLECTION = "memories"
RANKING_WINDOW = 1000
"""Search ranks only the newest this many matches (at least `limit`): a word found in every memory costs the same
at a thousand memories as at a million. With more matches, the best of the newest are returned (ADR 0008)."""

_T = TypeVar("_T")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")


class _Sql:
    """Every statement of one table (its name is validated, then quoted)."""

    def __init__(self, table: str) -> None:
        t, view, fts = f'"{table}"', f"{table}_text", f'"{table}_fts"'
        text = "CASE WHEN json_type({row}.payload, '$.data') = 'text' THEN {row}.payload ->> 'data' END"
        self.fts_name = f"{table}_fts"
        self.schema = f"""
            CREATE TABLE IF NOT EXISTS {t} (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                payload TEXT NOT NULL CHECK (json_valid(payload)),
                created_at TEXT
            );
            CREATE VIEW IF NOT EXISTS "{view}" (pk, data) AS SELECT pk, {text.format(row=t)} FROM {t};
            CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(data, content='{view}', content_rowid='pk');
            CREATE TRIGGER IF NOT EXISTS "{table}_ai" AFTER INSERT ON {t} BEGIN
                INSERT INTO {fts} (rowid, data) VALUES (new.pk, {text.format(row="new")});
            END;
            CREATE TRIGGER IF NOT EXISTS "{table}_ad" AFTER DELETE ON {t} BEGIN
                INSERT INTO {fts} ({fts}, rowid, data) VALUES ('delete', old.pk, {text.format(row="old")});
            END;
            CREATE TRIGGER IF NOT EXISTS "{table}_au" AFTER UPDATE ON {t} BEGIN
                INSERT INTO {fts} ({fts}, rowid, data) VALUES ('delete', old.pk, {text.format(row="old")});
                INSERT INTO {fts} (rowid, data) VALUES (new.pk, {text.format(row="new")});
            END;
        """
        self.rebuild = f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')"
        self.count = f"SELECT count(*) FROM {t}"
        self.get = f"SELECT payload FROM {t} WHERE id = ?"
        self.page = f"SELECT id, payload FROM {t} WHERE id > ? ORDER BY id LIMIT ?"
        self.insert = f"INSERT INTO {t} (id, payload, created_at) VALUES (?, ?, ?)"
        self.upsert = (
            f"INSERT INTO {t} (id, payload, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, created_at = excluded.created_at"
        )
        self.update = f"UPDATE {t} SET payload = ? WHERE id = ?"
        self.delete = f"DELETE FROM {t} WHERE id = ?"
        # The window: the newest matches, read from the index in descending rowid order (FTS5 walks the doclist
        # that way and stops at the LIMIT), bm25 (`rank`, lower is better) computed on those rows only; then the
        # best of the window, and only those rows' payloads read. The score is bm25's negation.
        self.search = (
            f"SELECT m.id, m.payload, -w.rank FROM ("
            f"SELECT rowid, rank FROM (SELECT rowid, rank FROM {fts} WHERE {fts} MATCH ? ORDER BY rowid DESC LIMIT ?)"
            f" ORDER BY rank, rowid DESC LIMIT ?"
            f") w JOIN {t} m ON m.pk = w.rowid ORDER BY w.rank, w.rowid DESC"
        )


class SqliteMemoryStore:
    """Memories in one SQLite file. Constructing it never touches the file; the first call opens (and creates) it."""

    def __init__(self, path: Path | str, *, collection: str | None = None) -> None:
        """`collection` names the table (default "memories"): letters, digits, `_` and `-`."""
        table = collection or DEFAULT_COLLECTION
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"invalid memory collection name {table!r} (letters, digits, '_' and '-', at most 63)")
        self._path = Path(path)
        self._table = table
        self._sql = _Sql(table)
        # A thread is only started by the first job, so constructing the store starts nothing.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-memory")
        self._conn: sqlite3.Connection | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    async def status(self) -> MemoryStatus:
        try:
            count = await self.count()
        except Unavailable as error:
            return MemoryStatus(reachable=False, backend="sqlite", collection=self._table, error=error.message)
        return MemoryStatus(reachable=True, backend="sqlite", collection=self._table, points_count=count)

    async def count(self) -> int:
        sql = self._sql.count
        return await self._run(lambda conn: int(conn.execute(sql).fetchone()[0]))

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        _check_limit(limit)
        after = "" if cursor is None else canonical_memory_id(cursor)
        if after is None:
            raise Invalid("Invalid cursor")
        sql = self._sql.page

        def job(conn: sqlite3.Connection) -> MemoryPage:
            rows = conn.execute(sql, (after, limit + 1)).fetchall()
            memories = [_item(row) for row in rows[:limit]]
            return MemoryPage(memories=memories, next_cursor=memories[-1].id if len(rows) > limit else None)

        return await self._run(job)

    async def search(self, query: str, *, limit: int) -> list[MemoryItem]:
        _check_limit(limit)
        words = search_words(query)
        if not words:
            return []
        # Each word quoted: the query is never parsed as FTS5 syntax, and the words are ANDed.
        expression = " ".join('"' + word.replace('"', '""') + '"' for word in words)
        sql, window = self._sql.search, max(RANKING_WINDOW, limit)
        return await self._run(
            lambda conn: [_item(row[:2], score=row[2]) for row in conn.execute(sql, (expression, window, limit))]
        )

    async def get(self, memory_id: str) -> MemoryItem:
        key = canonical_memory_id(memory_id)
        if key is None:
            raise NotFound("Memory not found")
        sql = self._sql.get
        return await self._run(lambda conn: _require(conn, sql, key))

    async def add(self, data: str, *, payload: JsonObject | None = None, memory_id: str | None = None) -> MemoryItem:
        stored = new_payload(data, payload)
        key = new_memory_id() if memory_id is None else require_memory_id(memory_id)
        sql = self._sql.insert

        def job(conn: sqlite3.Connection) -> MemoryItem:
            try:
                conn.execute(sql, (key, _dump(stored), stored["created_at"]))
            except sqlite3.IntegrityError:
                raise Conflict("A memory with this id already exists") from None
            return MemoryItem(key, stored)

        return await self._run(job)

    async def put(self, item: MemoryItem) -> bool:
        key = require_memory_id(item.id)
        payload = dict(item.payload)
        created_at = payload.get("created_at")
        values = (key, _dump(payload), created_at if isinstance(created_at, str) else now_iso())
        get, upsert = self._sql.get, self._sql.upsert

        def job(conn: sqlite3.Connection) -> bool:
            existed = conn.execute(get, (key,)).fetchone() is not None
            conn.execute(upsert, values)
            return not existed

        return await self._run(job)

    async def update(self, memory_id: str, data: str) -> MemoryItem:
        key = canonical_memory_id(memory_id)
        if key is None:
            raise NotFound("Memory not found")
        sql = self._sql

        def job(conn: sqlite3.Connection) -> MemoryItem:
            current = _require(conn, sql.get, key)
            payload = updated_payload(current.payload, data)
            conn.execute(sql.update, (_dump(payload), key))
            return MemoryItem(key, payload)

        return await self._run(job)

    async def delete(self, memory_id: str) -> None:
        key = canonical_memory_id(memory_id)
        if key is None:
            raise NotFound("Memory not found")
        sql = self._sql.delete

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, (key,)).rowcount == 0:
                raise NotFound("Memory not found")

        await self._run(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with self._opening:  # an open in progress finishes first, so its connection is closed too
                if self._conn is not None:
                    await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
                    self._conn = None
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, job: Job[_T]) -> _T:
        conn = await self._connection()
        try:  # IMMEDIATE for every call: most are writes or short reads, one connection serves them all
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, in_transaction, conn, "BEGIN IMMEDIATE", job
            )
        except sqlite3.DatabaseError as error:
            if not _is_unavailable(error):
                raise
            raise Unavailable(f"The memory database cannot be used: {error}") from error
        except RuntimeError as error:  # the executor was shut down by close() while this call waited
            if not self._closed:
                raise
            raise Unavailable("The memory store is closed") from error

    async def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise Unavailable("The memory store is closed")
        if self._conn is not None:
            return self._conn
        async with self._opening:
            if self._closed:
                raise Unavailable("The memory store is closed")
            if self._conn is None:
                loop = asyncio.get_running_loop()
                try:
                    self._conn = await loop.run_in_executor(self._executor, _connect, self._path, self._sql)
                except (OSError, sqlite3.Error) as error:
                    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                    raise Unavailable(f"The memory database cannot be opened: {reason}") from error
            return self._conn


# --- on the worker thread ---


def _connect(path: Path, sql: _Sql) -> sqlite3.Connection:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open_private_database(path, synchronous="NORMAL", prepare=lambda c: _prepare_schema(c, sql))


def _prepare_schema(conn: sqlite3.Connection, sql: _Sql) -> None:
    had_index = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (sql.fts_name,)).fetchone() is not None
    for statement in _statements(sql.schema):
        conn.execute(statement)
    if not had_index:  # a table written before the index existed (or whose index was dropped): index it all
        conn.execute(sql.rebuild)


def _statements(script: str) -> list[str]:
    """The statements of a schema script, each trigger body kept whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements


def _require(conn: sqlite3.Connection, sql: str, key: str) -> MemoryItem:
    row = conn.execute(sql, (key,)).fetchone()
    if row is None:
        raise NotFound("Memory not found")
    return MemoryItem(key, _load(row[0]))


def _item(row: tuple[Any, ...], *, score: float | None = None) -> MemoryItem:
    return MemoryItem(row[0], _load(row[1]), score)


def _is_unavailable(error: sqlite3.DatabaseError) -> bool:
    """Busy, locked, disk or file trouble (the database is there but cannot serve), not a mistake in a statement."""
    return isinstance(error, sqlite3.OperationalError) or type(error) is sqlite3.DatabaseError


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise Invalid("limit must be at least 1")


def _dump(payload: JsonObject) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _load(text: str) -> JsonObject:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
