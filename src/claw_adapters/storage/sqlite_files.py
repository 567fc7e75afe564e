"""How the connector opens a SQLite database it writes to: private, WAL, its schema ready."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from claw_adapters.storage.sqlite_transactions import in_transaction

__all__ = ["open_private_database"]


def open_private_database(
    path: Path, *, synchronous: str, prepare: Callable[[sqlite3.Connection], None], pragmas: tuple[str, ...] = ()
) -> sqlite3.Connection:
    """A writing connection to the database at `path`: WAL, `synchronous`, a 5 s busy timeout, then `pragmas`, and
    `prepare` (creating or migrating the schema) run in one `BEGIN IMMEDIATE` transaction. Closed again when any of
    it fails. The connection is used by one worker thread at a time, not always the one that opened it."""
    # Create the file ourselves so it is private from the first byte; SQLite gives -wal and -shm the same mode.
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        for pragma in pragmas:
            conn.execute(pragma)
        in_transaction(conn, "BEGIN IMMEDIATE", prepare)
    except BaseException:
        conn.close()
        raise
    return conn
