"""The embedded history store: one SQLite database per workspace, in WAL mode, searched with FTS5.

Each `SqliteHistoryStore` owns one connection and one worker thread: every port method is a single job on that
thread, which keeps the event loop free. A read runs in its own transaction; writes that arrive together share
one (BEGIN IMMEDIATE, so a write never fails half way on a lock upgrade), each inside its own savepoint (see
sqlite_batch). Either way each method is atomic without any lock in Python.

SQL text below is composed only from module constants; every value is a bound parameter.
"""

# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from claw_adapters.storage.sqlite_batch import WriteBatcher
from claw_adapters.storage.sqlite_files import open_private_database
from claw_adapters.storage.sqlite_jobs import Job
from claw_adapters.storage.sqlite_readers import ReaderPool
from claw_adapters.storage.sqlite_schema import (
    ensure_search_index,
    indexing_in_bulk,
    migrate,
    rebuild_search_index,
)
from claw_adapters.storage.sqlite_transactions import in_transaction
from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import (
    DEFAULT_THREAD_TITLE,
    JsonObject,
    Message,
    MessageCursor,
    Role,
    SearchHit,
    SessionKey,
    Thread,
    ThreadExport,
    ThreadSummary,
    UnreadThread,
    validate_agent_id,
    validate_workspace_name,
)
from claw_core.ports import ImportCounts, MessagePage, RenderedMessagePage, RunRecord, ThreadPage, UpsertResult

__all__ = ["SqliteHistoryStore", "SqliteHistoryStores"]

_T = TypeVar("_T")
_Row = tuple[Any, ...]

DEFAULT_READERS = 2
"""Reading connections per workspace: one per core of a small machine."""

_SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
_DB_SUFFIXES = ("", "-wal", "-shm", "-journal")

_THREAD_FIELDS = (
    "id",
    "session_key",
    "title",
    "pinned",
    "pin_order",
    "sort_order",
    "model",
    "last_session_id",
    "unread_count",
    "metadata",
    "created_at",
    "updated_at",
)
_MESSAGE_FIELDS = ("id", "thread_id", "role", "content", "status", "metadata", "seq", "timestamp", "created_at")


def _columns(fields: tuple[str, ...], alias: str = "") -> str:
    return ", ".join(f"{alias}{field}" for field in fields)


_THREAD_COLUMNS = _columns(_THREAD_FIELDS, "t.")
_THREAD_VALUES = ", ".join("?" * len(_THREAD_FIELDS))
_THREAD_ORDER = (
    "t.pinned DESC, CASE WHEN t.pinned THEN t.pin_order ELSE 0 END, t.sort_order DESC, t.updated_at DESC, t.id"
)
_MESSAGE_COLUMNS = _columns(_MESSAGE_FIELDS, "m.")
_MESSAGE_VALUES = ", ".join("?" * len(_MESSAGE_FIELDS))
# Exactly the condition of the partial index messages_pending, named with INDEXED BY: once ANALYZE has run, the
# planner would otherwise walk every assistant message of each thread (20x slower on 100k messages).
_PENDING = "m.role = 'assistant' AND json_extract(m.metadata, '$.pending') NOT IN (0, '', '[]', '{}')"
_HAS_PENDING = f"EXISTS (SELECT 1 FROM messages m INDEXED BY messages_pending WHERE m.thread_id = t.id AND {_PENDING})"
_MATCHING_THREAD_IDS = (
    "SELECT DISTINCT m.thread_id FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid "
    "WHERE messages_fts MATCH ?"
)

_SELECT_THREAD = f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE t.id = ?"
_INSERT_THREAD = f"INSERT INTO threads ({_columns(_THREAD_FIELDS)}) VALUES ({_THREAD_VALUES})"
_IMPORT_THREAD = _INSERT_THREAD.replace("INSERT", "INSERT OR IGNORE", 1)
_UPDATE_THREAD = (
    "UPDATE threads SET session_key = ?, title = ?, pinned = ?, pin_order = ?, sort_order = ?, model = ?, "
    "last_session_id = ?, unread_count = ?, metadata = ?, created_at = ?, updated_at = ? WHERE id = ?"
)
_LIST_THREADS = f"SELECT {_THREAD_COLUMNS}, {_HAS_PENDING} FROM threads t ORDER BY {_THREAD_ORDER} LIMIT ? OFFSET ?"
# The matching thread ids are computed once and serve both the page and its total.
_LIST_MATCHING_THREADS = (
    f"WITH matching (id) AS MATERIALIZED ({_MATCHING_THREAD_IDS}) "
    f"SELECT {_THREAD_COLUMNS}, {_HAS_PENDING}, (SELECT count(*) FROM matching) FROM threads t "
    f"WHERE t.id IN matching ORDER BY {_THREAD_ORDER} LIMIT ? OFFSET ?"
)
_COUNT_MATCHING_THREADS = f"SELECT count(*) FROM threads WHERE id IN ({_MATCHING_THREAD_IDS})"
_NEXT_EXPORTED_THREAD = (
    f"SELECT {_THREAD_COLUMNS} FROM threads t WHERE (t.created_at, t.id) > (?, ?) ORDER BY t.created_at, t.id LIMIT 1"
)
_FIRST_EXPORTED_THREAD = f"SELECT {_THREAD_COLUMNS} FROM threads t ORDER BY t.created_at, t.id LIMIT 1"

_SELECT_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?"
_THREAD_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.thread_id = ? ORDER BY m.timestamp, m.id"
_INSERT_MESSAGE = f"INSERT INTO messages ({_columns(_MESSAGE_FIELDS)}) VALUES ({_MESSAGE_VALUES})"
# ?2 is the message's thread id: a message whose thread exists neither before nor after the import is skipped.
_IMPORT_MESSAGE = (
    f"INSERT OR IGNORE INTO messages ({_columns(_MESSAGE_FIELDS)}) "
    f"SELECT {_MESSAGE_VALUES} WHERE EXISTS (SELECT 1 FROM threads WHERE id = ?2)"
)
_UPDATE_MESSAGE = "UPDATE messages SET content = ?, status = ?, metadata = ?, seq = coalesce(?, seq) WHERE id = ?"
_INSERT_MESSAGE_RETURNING = f"{_INSERT_MESSAGE} RETURNING {_columns(_MESSAGE_FIELDS)}"
_UPDATE_MESSAGE_RETURNING = f"{_UPDATE_MESSAGE} RETURNING {_columns(_MESSAGE_FIELDS)}"
# Touching the thread also says whether it exists, and which title it has.
_TOUCH_THREAD = "UPDATE threads SET updated_at = ? WHERE id = ? RETURNING title"

# The three lookups of runs and replies each name their index, so statistics gathered by ANALYZE can never steer the
# planner onto a walk through a whole thread (and a dropped index fails loudly instead of slowing down).
_MESSAGES_NEAR = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages m INDEXED BY messages_thread_role_time "
    "WHERE m.thread_id = ? AND m.role = ? AND m.timestamp BETWEEN ? AND ? ORDER BY m.timestamp, m.id"
)
# The few pending rows of the thread come from the partial index; sorting them is cheaper than walking the thread's
# assistant messages newest first until one is pending.
_LATEST_PENDING = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages m INDEXED BY messages_pending WHERE m.thread_id = ? AND {_PENDING} "
    "ORDER BY m.timestamp DESC, m.id DESC LIMIT 1"
)
_LATEST_PENDING_PK = _LATEST_PENDING.replace(_MESSAGE_COLUMNS, "m.pk, m.id", 1)
# The expression and the role condition are those of the index messages_run, which it needs to be usable.
_HAS_REPLY = (
    "SELECT 1 FROM messages m INDEXED BY messages_run WHERE m.thread_id = ? AND m.role = 'assistant' "
    "AND json_extract(m.metadata, '$.runId') = ? LIMIT 1"
)
_FILL_PLACEHOLDER = "UPDATE messages SET content = ?, status = ?, metadata = ?, seq = coalesce(?, seq) WHERE pk = ?"

_RUN_FIELDS = ("run_id", "session_key", "thread_id", "started_at", "idempotency_key")
_RECORD_RUN = f"INSERT OR REPLACE INTO runs ({_columns(_RUN_FIELDS)}) VALUES ({', '.join('?' * len(_RUN_FIELDS))})"
_OPEN_RUNS = f"SELECT {_columns(_RUN_FIELDS)} FROM runs ORDER BY started_at, run_id"

_UNREAD_THREADS = (
    "SELECT t.id, t.title, t.unread_count, (SELECT substr(m.content, 1, 100) FROM messages m "
    "WHERE m.thread_id = t.id ORDER BY m.timestamp DESC, m.id DESC LIMIT 1) "
    f"FROM threads t WHERE t.unread_count > 0 ORDER BY {_THREAD_ORDER}"
)
_UNREAD_IDS = (
    "SELECT u.thread_id, u.message_id FROM unread_messages u JOIN threads t ON t.id = u.thread_id "
    "WHERE t.unread_count > 0 ORDER BY u.rowid"
)

_PROBE_MATCH = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? LIMIT 1"
_COUNT_MATCHES = "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?"
# ORDER BY the FTS rowid (= messages.pk, insertion order) is served by FTS5 itself, without sorting every match.
_SEARCH = (
    "SELECT m.id, m.thread_id, t.title, m.role, snippet(messages_fts, 0, '<mark>', '</mark>', '...', 16), "
    "m.timestamp FROM messages_fts JOIN messages m ON m.pk = messages_fts.rowid JOIN threads t ON t.id = m.thread_id "
    "WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ? OFFSET ?"
)


class SqliteHistoryStore:
    """One workspace's history in one SQLite file. Build it with `await SqliteHistoryStore.open(path)`."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor, readers: ReaderPool) -> None:
        """Take ownership of a writing connection only ever used from `executor`'s single thread, and of the
        readers beside it."""
        self._conn = connection
        self._executor = executor
        self._writes = WriteBatcher(connection, executor)
        self._readers = readers
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, synchronous: str = "NORMAL", readers: int = DEFAULT_READERS
    ) -> SqliteHistoryStore:
        """Open (creating, migrating and checking the search index of) the database at `path`, with `readers`
        reading connections beside the writing one."""
        mode = _checked_synchronous(synchronous)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path, mode)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        try:
            pool = await ReaderPool.open(path, readers)
        except BaseException:
            await loop.run_in_executor(executor, connection.close)
            executor.shutdown(wait=False)
            raise
        return cls(connection, executor, pool)

    async def create_thread(self, thread: Thread) -> None:
        await self._write(lambda conn: _create_thread(conn, thread))

    async def get_thread(self, thread_id: str) -> Thread | None:
        return await self._read(lambda conn: _get_thread(conn, thread_id))

    async def save_thread(self, thread: Thread) -> None:
        await self._write(lambda conn: _save_thread(conn, thread))

    async def delete_thread(self, thread_id: str) -> bool:
        return await self._write(lambda conn: _delete_thread(conn, thread_id))

    async def list_threads(self, *, offset: int, limit: int, search: str | None = None) -> ThreadPage:
        _check_window(offset, limit)
        return await self._read(lambda conn: _list_threads(conn, offset, limit, search))

    async def page_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> MessagePage:
        _check_window(0, limit)
        if before is not None and after is not None:
            raise Invalid("Use either before or after, not both")
        return await self._read(lambda conn: _page_messages(conn, thread_id, limit, before, after))

    async def render_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> RenderedMessagePage:
        _check_window(0, limit)
        if before is not None and after is not None:
            raise Invalid("Use either before or after, not both")
        return await self._read_statement(lambda conn: _render_messages(conn, thread_id, limit, before, after))

    async def get_message(self, message_id: str) -> Message | None:
        return await self._read(lambda conn: _get_message(conn, message_id))

    async def upsert_message(self, message: Message, *, now: int, title: str | None = None) -> UpsertResult:
        return await self._write(lambda conn: _upsert_message(conn, message, now, title))

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        return await self._write(lambda conn: _delete_message(conn, thread_id, message_id))

    async def messages_near(self, thread_id: str, role: Role, timestamp: int, window_ms: int) -> list[Message]:
        return await self._read(lambda conn: _messages_near(conn, thread_id, role, timestamp, window_ms))

    async def latest_pending(self, thread_id: str) -> Message | None:
        return await self._read(lambda conn: _latest_pending(conn, thread_id))

    async def store_reply(self, reply: Message, *, run_id: str, now: int) -> Message | None:
        _check_reply(reply, run_id)
        stored = await self._write(lambda conn: _store_reply(conn, reply, run_id, now))
        if isinstance(stored, _ThreadGone):
            # Raised only here, after the commit: raising inside the job would roll back the run record's removal.
            raise NotFound("Thread not found")
        return stored

    async def record_run(self, run: RunRecord) -> None:
        await self._write(lambda conn: _record_run(conn, run))

    async def finish_run(self, run_id: str) -> None:
        await self._write(lambda conn: conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)))

    async def open_runs(self) -> list[RunRecord]:
        return await self._read(lambda conn: [RunRecord(*row) for row in conn.execute(_OPEN_RUNS)])

    async def add_unread(self, thread_id: str, message_id: str) -> int:
        return await self._write(lambda conn: _add_unread(conn, thread_id, message_id))

    async def mark_read(self, thread_id: str, message_ids: Sequence[str]) -> int:
        return await self._write(lambda conn: _mark_read(conn, thread_id, list(message_ids)))

    async def clear_unread(self, thread_id: str) -> None:
        await self._write(lambda conn: _mark_read(conn, thread_id, None))

    async def unread_threads(self) -> list[UnreadThread]:
        return await self._read(_unread_threads)

    async def total_unread(self) -> int:
        return await self._read(_scalar("SELECT coalesce(sum(unread_count), 0) FROM threads WHERE unread_count > 0"))

    async def search(self, query: str, *, offset: int, limit: int) -> tuple[list[SearchHit], int]:
        _check_window(offset, limit)
        return await self._read(lambda conn: _search(conn, query, offset, limit))

    async def export_threads(self) -> AsyncIterator[ThreadExport]:
        # One thread per job, keyed on (created_at, id): memory stays bounded and no cursor is held open between jobs.
        after: tuple[int, str] | None = None
        while (export := await self._read(partial(_next_export, after=after))) is not None:
            yield export
            after = (export.thread.created_at, export.thread.id)

    async def count_threads(self) -> int:
        return await self._read(_scalar("SELECT count(*) FROM threads"))

    async def import_threads(self, threads: Sequence[ThreadExport]) -> ImportCounts:
        return await self._write(lambda conn: _import_threads(conn, threads))

    async def rewrite_session_keys(self, agent: str, workspace: str) -> list[str]:
        validate_agent_id(agent)
        validate_workspace_name(workspace)
        return await self._write(lambda conn: _rewrite_session_keys(conn, agent, workspace))

    async def rebuild_search_index(self) -> None:
        """Rebuild the full-text index from the messages (after a suspected corruption; slow on a large history)."""
        await self._write(rebuild_search_index)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._writes.drain()
            await self._readers.close()
            await asyncio.get_running_loop().run_in_executor(self._executor, _close_connection, self._conn)
        finally:
            self._executor.shutdown(wait=False)

    async def _read(self, job: Job[_T]) -> _T:
        return await self._submit(partial(self._readers.run, partial(_read_transaction, job)))

    async def _read_statement(self, job: Job[_T]) -> _T:
        """A read outside any transaction, for jobs whose answer is one statement (its own snapshot)."""
        return await self._submit(partial(self._readers.run, job))

    async def _write(self, job: Job[_T]) -> _T:
        """Writes are batched into shared transactions (see sqlite_batch), each job still atomic."""
        return await self._submit(partial(self._writes.run, job))

    async def _submit(self, job: Callable[[], Awaitable[_T]]) -> _T:
        if self._closed:
            raise Unavailable("History store is closed")
        try:
            return await job()
        except sqlite3.OperationalError as error:
            if _is_busy(error):
                raise Unavailable("History database is busy, try again") from error
            raise


class SqliteHistoryStores:
    """Every workspace's history: `<data_dir>/history/<workspace>.sqlite3`, each opened on first use and kept open."""

    def __init__(self, data_dir: Path, synchronous: str = "NORMAL") -> None:
        """`synchronous`: NORMAL survives a crash of the process (kill -9); FULL also survives a power loss."""
        self._data_dir = data_dir
        self._synchronous = _checked_synchronous(synchronous)
        self._stores: dict[str, SqliteHistoryStore] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def open(self, workspace: str) -> SqliteHistoryStore:
        name = validate_workspace_name(workspace)
        store = self._stores.get(name)
        if store is not None:
            return store
        async with self._lock(name):
            store = self._stores.get(name)
            if store is None:
                store = await self._open_new(name)
        return store

    async def drop(self, workspace: str) -> None:
        name = validate_workspace_name(workspace)
        async with self._lock(name):
            store = self._stores.pop(name, None)
            if store is not None:
                await store.close()
            await asyncio.to_thread(_delete_database, self._path(name))

    async def close(self) -> None:
        self._closed = True
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()

    async def _open_new(self, name: str) -> SqliteHistoryStore:
        self._check_open()
        await asyncio.to_thread(_make_private_dirs, self._data_dir, self._data_dir / "history")
        store = await SqliteHistoryStore.open(self._path(name), synchronous=self._synchronous)
        if self._closed:  # close() ran while this store was opening: do not leak it
            await store.close()
            self._check_open()
        self._stores[name] = store
        return store

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("History stores are closed")

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _path(self, name: str) -> Path:
        return self._data_dir / "history" / f"{name}.sqlite3"


# --- connection lifecycle (all of these run on the store's worker thread) ---


MINIMUM_SQLITE = (3, 35, 0)
"""Stored generated columns (3.31) and RETURNING (3.35)."""


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        needed = ".".join(map(str, MINIMUM_SQLITE))
        raise Unavailable(f"The history needs SQLite {needed} or later; this Python has {sqlite3.sqlite_version}")
    return open_private_database(
        path,
        synchronous=synchronous,
        prepare=lambda c: _prepare_schema(c, path),
        # ANALYZE limited so that the one `PRAGMA optimize` may run at close stays quick
        pragmas=("PRAGMA foreign_keys = ON", "PRAGMA analysis_limit = 1000"),
    )


def _prepare_schema(conn: sqlite3.Connection, path: Path) -> None:
    migrate(conn, path)
    ensure_search_index(conn)


def _close_connection(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")
    finally:
        conn.close()


def _read_transaction(job: Job[_T], conn: sqlite3.Connection) -> _T:
    """One snapshot for the whole job, even when it runs several statements."""
    return in_transaction(conn, "BEGIN", job)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return (error.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _scalar(sql: str) -> Job[int]:
    return lambda conn: int(conn.execute(sql).fetchone()[0])


# --- threads ---


def _create_thread(conn: sqlite3.Connection, thread: Thread) -> None:
    try:
        conn.execute(_INSERT_THREAD, _thread_params(thread))
    except sqlite3.IntegrityError:
        raise Conflict("Thread already exists") from None


def _get_thread(conn: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = conn.execute(_SELECT_THREAD, (thread_id,)).fetchone()
    return None if row is None else _thread_from_row(row)


def _save_thread(conn: sqlite3.Connection, thread: Thread) -> None:
    try:
        updated = conn.execute(_UPDATE_THREAD, (*_thread_params(thread)[1:], thread.id)).rowcount
    except sqlite3.IntegrityError:
        raise Conflict("Session key already belongs to another thread") from None
    if not updated:
        raise NotFound("Thread not found")


def _delete_thread(conn: sqlite3.Connection, thread_id: str) -> bool:
    """Messages and unread marks go with the thread (ON DELETE CASCADE), and the FTS triggers follow."""
    return conn.execute("DELETE FROM threads WHERE id = ?", (thread_id,)).rowcount > 0


def _require_thread(conn: sqlite3.Connection, thread_id: str) -> None:
    if conn.execute("SELECT 1 FROM threads WHERE id = ?", (thread_id,)).fetchone() is None:
        raise NotFound("Thread not found")


def _list_threads(conn: sqlite3.Connection, offset: int, limit: int, search: str | None) -> ThreadPage:
    if search is None:
        total = conn.execute("SELECT count(*) FROM threads").fetchone()[0]
        rows = conn.execute(_LIST_THREADS, (limit, offset)).fetchall()
    else:
        expression = _accepted_query(conn, search)
        if expression is None:
            return ThreadPage(threads=[], total=0)
        rows = conn.execute(_LIST_MATCHING_THREADS, (expression, limit, offset)).fetchall()
        # Each row carries the total; past the last page no row does.
        total = rows[0][-1] if rows else conn.execute(_COUNT_MATCHING_THREADS, (expression,)).fetchone()[0]
    pending = len(_THREAD_FIELDS)  # the column after the thread's own
    summaries = [ThreadSummary(thread=_thread_from_row(row), has_pending=bool(row[pending])) for row in rows]
    return ThreadPage(threads=summaries, total=total)


def _rewrite_session_keys(conn: sqlite3.Connection, agent: str, workspace: str) -> list[str]:
    rows = conn.execute("SELECT id, session_key FROM threads ORDER BY created_at, id").fetchall()
    changes = [(thread_id, old, SessionKey(agent, workspace, thread_id).format()) for thread_id, old in rows]
    changes = [change for change in changes if change[1] != change[2]]
    # Two passes: a new key may still be some other thread's old key until that thread is rewritten as well.
    conn.executemany("UPDATE threads SET session_key = ? WHERE id = ?", ((f"\0{tid}", tid) for tid, _, _ in changes))
    conn.executemany("UPDATE threads SET session_key = ? WHERE id = ?", ((new, tid) for tid, _, new in changes))
    return [old for _, old, _ in changes]


# --- messages ---


def _get_message(conn: sqlite3.Connection, message_id: str) -> Message | None:
    row = conn.execute(_SELECT_MESSAGE, (message_id,)).fetchone()
    return None if row is None else _message_from_row(row)


def _page_query(
    columns: str, thread_id: str, before: MessageCursor | None, after: MessageCursor | None
) -> tuple[str, tuple[object, ...]]:
    """The messages of a page (plus any beyond it: the caller sets the LIMIT), nearest the cursor first."""
    cursor, operator, direction = (after, ">", "ASC") if after is not None else (before, "<", "DESC")
    condition, values = _cursor_condition(cursor, operator)
    sql = (
        f"SELECT {columns} FROM messages m WHERE m.thread_id = ?{condition} "
        f"ORDER BY m.timestamp {direction}, m.id {direction} LIMIT ?"
    )
    return sql, (thread_id, *values)


def _page_messages(
    conn: sqlite3.Connection,
    thread_id: str,
    limit: int,
    before: MessageCursor | None,
    after: MessageCursor | None,
) -> MessagePage:
    sql, values = _page_query(_MESSAGE_COLUMNS, thread_id, before, after)
    # One row more than asked tells whether the page has a neighbour.
    rows = conn.execute(sql, (*values, limit + 1)).fetchall()
    if not rows:
        _require_thread(conn, thread_id)
    messages = [_message_from_row(row) for row in rows[:limit]]
    if after is None:
        messages.reverse()
    return MessagePage(messages=messages, has_more=len(rows) > limit)


# The page as one JSON array of the messages' stored wire forms (see the `wire` column in sqlite_schema), as UTF-8
# bytes: read as text, Python would decode it only for the transport to encode it back. A contract test holds it
# equal to the objects' rendering.
_JSON_ARRAY = "CAST('[' || coalesce(group_concat(wire, ','), '') || ']' AS BLOB)"


def _render_messages(
    conn: sqlite3.Connection,
    thread_id: str,
    limit: int,
    before: MessageCursor | None,
    after: MessageCursor | None,
) -> RenderedMessagePage:
    """The page rendered as a JSON array by SQLite, read in the index's own order (oldest first) so that no row is
    ever sorted: opening a thread costs half what reading the newest rows and sorting them back did.

    Each page is ONE statement, its own snapshot, run without BEGIN and COMMIT: every statement is a hand-off of
    the GIL between this reader and the event loop, and those hand-offs, not SQLite, bounded the pages served per
    second. Only an empty page takes a second look, to tell an empty thread from a missing one."""
    if limit == 0:
        cursor, operator = (after, ">") if after is not None else (before, "<")
        condition, values = _cursor_condition(cursor, operator)
        (beyond,) = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM messages m WHERE m.thread_id = ?{condition})", (thread_id, *values)
        ).fetchone()
        if not beyond:
            _require_thread(conn, thread_id)
        return RenderedMessagePage(json=b"[]", has_more=bool(beyond))
    if after is not None:
        condition, values = _cursor_condition(after, ">")
        matching = f"FROM messages m WHERE m.thread_id = ?{condition} ORDER BY m.timestamp, m.id"
        # The count reads one row more than the page: whether the page has a neighbour.
        sql = (
            f"SELECT (SELECT count(*) FROM (SELECT 1 {matching} LIMIT ?)), {_JSON_ARRAY} "
            f"FROM (SELECT m.wire {matching} LIMIT ?)"
        )
        counted, rendered = conn.execute(sql, (thread_id, *values, limit + 1, thread_id, *values, limit)).fetchone()
        has_more = counted > limit
    else:
        # The page ends at the cursor (or the newest message): its oldest message, and whether one more lies beyond
        # it, are found on the covering index (`bounds`, at most two rows); the rows are then read forward from it.
        condition, values = _cursor_condition(before, "<")
        sql = (
            "WITH bounds (timestamp, id) AS MATERIALIZED (SELECT m.timestamp, m.id FROM messages m "
            f"WHERE m.thread_id = ?{condition} ORDER BY m.timestamp DESC, m.id DESC LIMIT 2 OFFSET ?) "
            f"SELECT (SELECT count(*) FROM bounds), {_JSON_ARRAY} FROM (SELECT m.wire "
            f"FROM messages m WHERE m.thread_id = ?{condition} AND (m.timestamp, m.id) >= ({_PAGE_START}) "
            "ORDER BY m.timestamp, m.id)"
        )
        bounded, rendered = conn.execute(sql, (thread_id, *values, limit - 1, thread_id, *values)).fetchone()
        has_more = bounded == 2
    if rendered == b"[]":
        _require_thread(conn, thread_id)
    return RenderedMessagePage(json=bytes(rendered), has_more=has_more)


# The newer of the (at most two) `bounds` rows is the page's oldest message; with none, the page starts at the
# thread's first message (every timestamp is a 64-bit integer, every id a string at least as large as '').
_PAGE_START = (
    "coalesce((SELECT timestamp FROM bounds ORDER BY timestamp DESC, id DESC LIMIT 1), -9223372036854775808), "
    "coalesce((SELECT id FROM bounds ORDER BY timestamp DESC, id DESC LIMIT 1), '')"
)


def _cursor_condition(cursor: MessageCursor | None, operator: str) -> tuple[str, tuple[object, ...]]:
    """SQL keeping the rows strictly on one side of the cursor: by timestamp alone when it names no message."""
    if cursor is None:
        return "", ()
    if cursor.message_id is None:
        return f" AND m.timestamp {operator} ?", (cursor.timestamp,)
    return f" AND (m.timestamp, m.id) {operator} (?, ?)", (cursor.timestamp, cursor.message_id)


def _upsert_message(conn: sqlite3.Connection, message: Message, now: int, title: str | None) -> UpsertResult:
    """Three statements in the common case: touch the thread (which tells whether it exists, and its title), look
    for the id, write the row and read it back in the same statement. A failure after a write is undone by the
    job's savepoint (see sqlite_batch)."""
    touched = conn.execute(_TOUCH_THREAD, (now, message.thread_id)).fetchone()
    if touched is None:
        raise NotFound("Thread not found")
    owner = conn.execute("SELECT thread_id FROM messages WHERE id = ?", (message.id,)).fetchone()
    if owner is None:
        row = conn.execute(_INSERT_MESSAGE_RETURNING, _message_params(message, created_at=message.created_at or now))
    elif owner[0] != message.thread_id:
        raise Conflict("Message id already belongs to another thread")
    else:
        update = (message.content, message.status, _dump(message.metadata), message.seq, message.id)
        row = conn.execute(_UPDATE_MESSAGE_RETURNING, update)
    stored = _message_from_row(row.fetchone())
    retitled = None
    if (
        owner is None
        and title
        and touched[0] == DEFAULT_THREAD_TITLE
        and _title_untitled(conn, message.thread_id, title)
    ):
        retitled = _get_thread(conn, message.thread_id)
    return UpsertResult(message=stored, created=owner is None, retitled=retitled)


def _title_untitled(conn: sqlite3.Connection, thread_id: str, title: str) -> bool:
    sql = "UPDATE threads SET title = ? WHERE id = ? AND title = ?"
    return conn.execute(sql, (title, thread_id, DEFAULT_THREAD_TITLE)).rowcount > 0


def _delete_message(conn: sqlite3.Connection, thread_id: str, message_id: str) -> bool:
    deleted = conn.execute("DELETE FROM messages WHERE id = ? AND thread_id = ?", (message_id, thread_id)).rowcount
    if (
        deleted
        and conn.execute(
            "DELETE FROM unread_messages WHERE thread_id = ? AND message_id = ?", (thread_id, message_id)
        ).rowcount
    ):
        _sync_unread_count(conn, thread_id)
    return deleted > 0


# --- runs and replies ---


class _ThreadGone:
    """What the store_reply job answers when the thread is gone: the job must commit (the run record is removed)
    before NotFound is raised."""


_THREAD_GONE = _ThreadGone()


def _messages_near(
    conn: sqlite3.Connection, thread_id: str, role: Role, timestamp: int, window_ms: int
) -> list[Message]:
    values = (thread_id, role.value, timestamp - window_ms, timestamp + window_ms)
    return [_message_from_row(row) for row in conn.execute(_MESSAGES_NEAR, values)]


def _latest_pending(conn: sqlite3.Connection, thread_id: str) -> Message | None:
    row = conn.execute(_LATEST_PENDING, (thread_id,)).fetchone()
    return None if row is None else _message_from_row(row)


def _store_reply(conn: sqlite3.Connection, reply: Message, run_id: str, now: int) -> Message | _ThreadGone | None:
    """One job, so one transaction: whatever the outcome, no second reply of the run can slip in between the check
    and the write, and the run record goes in the same commit."""
    conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
    thread_id = reply.thread_id
    if conn.execute("SELECT 1 FROM threads WHERE id = ?", (thread_id,)).fetchone() is None:
        return _THREAD_GONE
    if conn.execute(_HAS_REPLY, (thread_id, run_id)).fetchone() is not None:
        return None
    placeholder = conn.execute(_LATEST_PENDING_PK, (thread_id,)).fetchone()
    if placeholder is None:
        if conn.execute("SELECT 1 FROM messages WHERE id = ?", (reply.id,)).fetchone() is not None:
            raise Conflict("Message id already exists")  # rolls the whole job back, the run record included
        conn.execute(_INSERT_MESSAGE, _message_params(reply, created_at=reply.created_at or now))
        message_id = reply.id
    else:
        pk, message_id = placeholder
        conn.execute(_FILL_PLACEHOLDER, (reply.content, reply.status, _dump(reply.metadata), reply.seq, pk))
    conn.execute("UPDATE threads SET updated_at = ? WHERE id = ?", (now, thread_id))
    return _get_message(conn, message_id)


def _record_run(conn: sqlite3.Connection, run: RunRecord) -> None:
    _require_thread(conn, run.thread_id)
    conn.execute(_RECORD_RUN, (run.run_id, run.session_key, run.thread_id, run.started_at, run.idempotency_key))


def _import_threads(conn: sqlite3.Connection, exports: Sequence[ThreadExport]) -> ImportCounts:
    threads = conn.executemany(_IMPORT_THREAD, (_thread_params(export.thread) for export in exports)).rowcount
    with indexing_in_bulk(conn):
        messages = conn.executemany(
            _IMPORT_MESSAGE,
            (_message_params(message) for export in exports for message in export.messages),
        ).rowcount
    return ImportCounts(threads=threads, messages=messages)


def _next_export(conn: sqlite3.Connection, after: tuple[int, str] | None) -> ThreadExport | None:
    if after is None:
        row = conn.execute(_FIRST_EXPORTED_THREAD).fetchone()
    else:
        row = conn.execute(_NEXT_EXPORTED_THREAD, after).fetchone()
    if row is None:
        return None
    thread = _thread_from_row(row)
    messages = tuple(_message_from_row(r) for r in conn.execute(_THREAD_MESSAGES, (thread.id,)))
    return ThreadExport(thread=thread, messages=messages)


# --- unread ---


def _add_unread(conn: sqlite3.Connection, thread_id: str, message_id: str) -> int:
    _require_thread(conn, thread_id)
    conn.execute("INSERT OR IGNORE INTO unread_messages (thread_id, message_id) VALUES (?, ?)", (thread_id, message_id))
    return _sync_unread_count(conn, thread_id)


def _mark_read(conn: sqlite3.Connection, thread_id: str, message_ids: list[str] | None) -> int:
    """Forget the given unread marks (all of them when `message_ids` is None); returns the remaining count."""
    _require_thread(conn, thread_id)
    if message_ids is None:
        conn.execute("DELETE FROM unread_messages WHERE thread_id = ?", (thread_id,))
    else:
        conn.executemany(
            "DELETE FROM unread_messages WHERE thread_id = ? AND message_id = ?",
            ((thread_id, message_id) for message_id in message_ids),
        )
    return _sync_unread_count(conn, thread_id)


def _sync_unread_count(conn: sqlite3.Connection, thread_id: str) -> int:
    count: int = conn.execute("SELECT count(*) FROM unread_messages WHERE thread_id = ?", (thread_id,)).fetchone()[0]
    conn.execute("UPDATE threads SET unread_count = ? WHERE id = ?", (count, thread_id))
    return count


def _unread_threads(conn: sqlite3.Connection) -> list[UnreadThread]:
    unread_ids: dict[str, list[str]] = {}
    for thread_id, message_id in conn.execute(_UNREAD_IDS):
        unread_ids.setdefault(thread_id, []).append(message_id)
    return [
        UnreadThread(
            id=thread_id,
            title=title,
            unread_count=count,
            last_message=last_message,
            unread_message_ids=tuple(unread_ids.get(thread_id, ())),
        )
        for thread_id, title, count, last_message in conn.execute(_UNREAD_THREADS)
    ]


# --- search ---


def _search(conn: sqlite3.Connection, query: str, offset: int, limit: int) -> tuple[list[SearchHit], int]:
    expression = _accepted_query(conn, query)
    if expression is None:
        return [], 0
    total: int = conn.execute(_COUNT_MATCHES, (expression,)).fetchone()[0]
    hits = [SearchHit(*row) for row in conn.execute(_SEARCH, (expression, limit, offset))]
    return hits, total


def _accepted_query(conn: sqlite3.Connection, query: str) -> str | None:
    """The query as typed when FTS5 accepts it, else every term quoted, else None (the query matches nothing)."""
    for expression in (query, _quote_terms(query)):
        try:
            conn.execute(_PROBE_MATCH, (expression,)).fetchall()
        except sqlite3.OperationalError as error:  # fts5 syntax errors, "no such column" for `word:`, ...
            if _is_busy(error):
                raise
        else:
            return expression
    return None


def _quote_terms(query: str) -> str:
    return " ".join('"' + term.replace('"', '""') + '"' for term in query.split())


# --- rows and values ---


def _thread_params(thread: Thread) -> tuple[object, ...]:
    return (
        thread.id,
        thread.session_key,
        thread.title,
        int(thread.pinned),
        thread.pin_order,
        thread.sort_order,
        thread.model,
        thread.last_session_id,
        thread.unread_count,
        _dump(thread.metadata),
        thread.created_at,
        thread.updated_at,
    )


def _thread_from_row(row: _Row) -> Thread:
    return Thread(
        id=row[0],
        session_key=row[1],
        title=row[2],
        pinned=bool(row[3]),
        pin_order=row[4],
        sort_order=row[5],
        model=row[6],
        last_session_id=row[7],
        unread_count=row[8],
        metadata=_load(row[9]),
        created_at=row[10],
        updated_at=row[11],
    )


def _message_params(message: Message, *, created_at: int | None = None) -> tuple[object, ...]:
    return (
        message.id,
        message.thread_id,
        message.role.value,
        message.content,
        message.status,
        _dump(message.metadata),
        message.seq,
        message.timestamp,
        message.created_at if created_at is None else created_at,
    )


_ROLES = {role.value: role for role in Role}
"""A dict lookup: `Role(value)` costs a microsecond per row, which shows when a page holds hundreds."""


def _message_from_row(row: _Row) -> Message:
    return Message(
        id=row[0],
        thread_id=row[1],
        role=_ROLES[row[2]],
        content=row[3],
        status=row[4],
        metadata=_load(row[5]),
        seq=row[6],
        timestamp=row[7],
        created_at=row[8],
    )


def _dump(metadata: JsonObject | None) -> str | None:
    return None if metadata is None else json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


def _load(text: str | None) -> JsonObject | None:
    value = None if text is None else json.loads(text)
    return value if isinstance(value, dict) else None


def _check_window(offset: int, limit: int) -> None:
    if offset < 0 or limit < 0:
        raise Invalid("offset and limit must not be negative")


def _check_reply(reply: Message, run_id: str) -> None:
    """Exactly-once rests on the stored reply carrying its run id: a reply without it could be stored again."""
    if reply.role is not Role.ASSISTANT:
        raise Invalid("A reply must be an assistant message")
    if (reply.metadata or {}).get("runId") != run_id:
        raise Invalid("A reply's metadata.runId must be its run id")


def _checked_synchronous(mode: str) -> str:
    """The mode, upper-cased; it is interpolated into a PRAGMA, so only the four known words pass."""
    upper = mode.upper()
    if upper not in _SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS_MODES)}, not {mode!r}")
    return upper


# --- files ---


def _make_private_dirs(*directories: Path) -> None:
    for directory in directories:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _delete_database(path: Path) -> None:
    for suffix in _DB_SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
