"""One job, one SQLite transaction: committed whole, or rolled back whole."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

__all__ = ["in_transaction"]

_T = TypeVar("_T")


def in_transaction(conn: sqlite3.Connection, begin: str, job: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run `job` between `begin` (`BEGIN`, or `BEGIN IMMEDIATE` to take the write lock up front so a write never
    fails half way on a lock upgrade) and `COMMIT`; any exception rolls back and propagates."""
    conn.execute(begin)
    try:
        result = job(conn)
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
