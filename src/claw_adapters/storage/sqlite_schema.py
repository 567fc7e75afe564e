"""The SQLite history schema: forward migrations for the tables, and the full-text index kept apart from them.

Tables and indexes evolve through `MIGRATIONS`: entry N (0-based) takes a database from `PRAGMA user_version` N to
N + 1, inside one transaction, so a later release appends steps and never edits old ones.

The FTS5 index is derived data (it can always be rebuilt from `messages`), so it is not a migration: every open
compares its stored definition with `FTS_TABLE`, recreates it when it is missing, different or unreadable, and
re-creates the triggers that keep it in sync. Changing the tokenizer is therefore a one-line edit here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from claw_core.errors import Unavailable

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "ensure_search_index",
    "indexing_in_bulk",
    "migrate",
    "rebuild_search_index",
]


log = logging.getLogger(__name__)


class SchemaTooNew(Unavailable):
    """The database was written by a newer release; opening it here could corrupt what that release relies on."""


_THREAD_TIME_INDEX = "CREATE INDEX messages_thread_time ON messages (thread_id, timestamp, id)"
_THREAD_ROLE_TIME_INDEX = "CREATE INDEX messages_thread_role_time ON messages (thread_id, role, timestamp)"
# Tiny: only assistant rows still waiting for their reply. Keeps `has_pending` O(1) per listed thread. The
# condition is Python truthiness of metadata.pending for every JSON value a client plausibly sends.
_PENDING_INDEX = """
    CREATE INDEX messages_pending ON messages (thread_id)
    WHERE role = 'assistant' AND json_extract(metadata, '$.pending') NOT IN (0, '', '[]', '{}')
    """
# Only assistant rows, keyed on their metadata.runId (NULL for those without one). A query uses it only when it
# names this exact expression and says role = 'assistant'.
_RUN_INDEX = """
    CREATE INDEX messages_run ON messages (thread_id, json_extract(metadata, '$.runId'))
    WHERE role = 'assistant'
    """

_V1 = (
    """
    CREATE TABLE threads (
        id TEXT PRIMARY KEY NOT NULL,
        session_key TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        pin_order INTEGER NOT NULL DEFAULT 0,
        sort_order INTEGER NOT NULL DEFAULT 0,
        model TEXT,
        last_session_id TEXT,
        unread_count INTEGER NOT NULL DEFAULT 0,
        metadata TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX threads_created ON threads (created_at, id)",
    # `pk` is an explicit INTEGER PRIMARY KEY: VACUUM may renumber an implicit rowid, which would silently point
    # the external-content FTS index at the wrong rows.
    """
    CREATE TABLE messages (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'sent',
        metadata TEXT,
        seq INTEGER,
        timestamp INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
    _THREAD_TIME_INDEX,
    _THREAD_ROLE_TIME_INDEX,
    _PENDING_INDEX,
    """
    CREATE TABLE unread_messages (
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        message_id TEXT NOT NULL,
        PRIMARY KEY (thread_id, message_id)
    )
    """,
)

# Runs the connector relayed whose reply is not stored yet, and what makes storing a reply exactly-once: finding
# "the assistant message of run X in this thread" through an index instead of parsing every message's metadata.
_V2 = (
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY NOT NULL,
        session_key TEXT NOT NULL,
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        started_at INTEGER NOT NULL,
        idempotency_key TEXT
    )
    """,
    # The child side of the cascade: deleting a thread finds its runs without scanning them all.
    "CREATE INDEX runs_thread ON runs (thread_id)",
    _RUN_INDEX,
)

# Each message also keeps its wire form (`Message.to_json()` as JSON text), computed and stored by SQLite whenever
# the row is written: opening a thread then joins stored strings instead of rendering every message on every read
# (half the reader's time per page). SQLite cannot add a stored column to a table, so the table is rebuilt once;
# `pk` values are kept, so the full-text index (keyed on them) stays valid. Dropping the old table drops its
# indexes and triggers: the indexes are made again here, the search triggers on every open.
_V3 = (
    """
    CREATE TABLE messages_v3 (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'sent',
        metadata TEXT,
        seq INTEGER,
        timestamp INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        wire TEXT GENERATED ALWAYS AS (json_object(
            'id', id, 'thread_id', thread_id, 'role', role, 'content', content, 'status', status,
            'metadata', CASE WHEN json_valid(metadata) THEN json(metadata) END, 'seq', seq,
            'timestamp', timestamp, 'created_at', created_at
        )) STORED
    )
    """,
    "INSERT INTO messages_v3 (pk, id, thread_id, role, content, status, metadata, seq, timestamp, created_at) "
    "SELECT pk, id, thread_id, role, content, status, metadata, seq, timestamp, created_at FROM messages",
    "DROP TABLE messages",
    "ALTER TABLE messages_v3 RENAME TO messages",
    _THREAD_TIME_INDEX,
    _THREAD_ROLE_TIME_INDEX,
    _PENDING_INDEX,
    _RUN_INDEX,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)

# Apostrophes are token characters so "don't" is one word; porter folds "running" onto "run".
FTS_TABLE = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='pk', "
    "tokenize=\"porter unicode61 tokenchars ''''\")"
)
_FTS_SHADOW_TABLES = ("messages_fts_data", "messages_fts_idx", "messages_fts_docsize", "messages_fts_config")
_FTS_INSERT_TRIGGER = """
    CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
    END
    """
_FTS_TRIGGERS = (
    _FTS_INSERT_TRIGGER,
    """
    CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages
    WHEN old.content IS NOT new.content BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.pk, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.pk, new.content);
    END
    """,
)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION, refusing a database from a newer release. Call in a write transaction."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"History database {path} has schema version {version}, but this claw-connector only knows versions up "
            f"to {SCHEMA_VERSION}: upgrade claw-connector to open it"
        )
    if 0 < version < SCHEMA_VERSION:
        log.info("Upgrading history database %s from schema version %d to %d", path, version, SCHEMA_VERSION)
    for step in MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        # PRAGMA takes no bound parameters; SCHEMA_VERSION is an int computed above.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def ensure_search_index(conn: sqlite3.Connection) -> None:
    """Recreate and rebuild the FTS index when it is missing, defined differently, or unreadable. Call inside a
    write transaction. A cheap probe query stands in for a full integrity check, which is too slow at a million rows."""
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'messages_fts'").fetchone()
    if row is not None and (row[0] != FTS_TABLE or not _search_index_readable(conn)):
        _drop_search_index(conn)
        row = None
    if row is None:
        conn.execute(FTS_TABLE)
        rebuild_search_index(conn)
    for trigger in _FTS_TRIGGERS:
        conn.execute(trigger)


@contextmanager
def indexing_in_bulk(conn: sqlite3.Connection) -> Iterator[None]:
    """Inside, rows inserted into messages skip the per-row insert trigger; on exit every row stored since is indexed
    by one statement, which is about 2.5 times faster for a large import. Call inside a write transaction: if the
    body raises, the rollback also brings the trigger back."""
    # Without AUTOINCREMENT SQLite gives a new row max(pk) + 1, so the new rows are exactly those above this.
    last_pk = conn.execute("SELECT coalesce(max(pk), 0) FROM messages").fetchone()[0]
    conn.execute("DROP TRIGGER messages_fts_insert")
    yield
    conn.execute("INSERT INTO messages_fts (rowid, content) SELECT pk, content FROM messages WHERE pk > ?", (last_pk,))
    conn.execute(_FTS_INSERT_TRIGGER)


def rebuild_search_index(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


def _drop_search_index(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("DROP TABLE messages_fts")
    except sqlite3.DatabaseError:
        # So damaged that FTS5 cannot even attach to it (its structure record is gone): unlink the virtual table from
        # the schema by hand, then drop its shadow tables, which are ordinary tables.
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("DELETE FROM sqlite_schema WHERE type = 'table' AND name = 'messages_fts'")
        finally:
            conn.execute("PRAGMA writable_schema = RESET")
        for shadow in _FTS_SHADOW_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {shadow}")


def _search_index_readable(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'probe' LIMIT 1").fetchall()
    except sqlite3.DatabaseError:
        return False
    return True
