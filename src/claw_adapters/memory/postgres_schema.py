"""The table of the Postgres memory store: its name, what an existing one holds, and what we add to it.

mem0's pgvector store keeps a collection in a table `<collection>(id UUID PRIMARY KEY, vector vector(n), payload
JSONB)`. We read such a table as it is. When the table is missing we create `id UUID PRIMARY KEY, payload JSONB,
created_at TIMESTAMPTZ` (plus mem0's `vector vector(n)` column, n the embedder's size, when an embedder is
configured and `CREATE EXTENSION vector` succeeds: pgvector is not a trusted extension, so for a role that is not a
superuser someone must have created it in the database beforehand; otherwise search is by words, with a warning).

Word search needs a trigram index: `CREATE EXTENSION pg_trgm` (a trusted extension: a database owner may create it)
and a GIN index on `payload->>'data'`, without GIN's pending list (`fastupdate = off`): memories are written rarely
and searched interactively, and rows waiting in that list are scanned one by one by every search (the planner then
prefers a sequential scan) until a vacuum merges them. Either can be refused (no privilege, no contrib package,
someone else owns the table); search still works then, by a sequential scan inside PostgreSQL, and a warning says so.

Every step runs in one transaction under an advisory lock keyed on the table, so two connectors starting together
do not race on CREATE TABLE. SQL text is composed only from constants and the validated, quoted table name.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from claw_core.errors import Invalid, Unavailable

__all__ = [
    "DATA",
    "DEFAULT_COLLECTION",
    "TableLayout",
    "ensure_table",
    "quote_identifier",
    "table_name",
    "trigram_index_name",
]

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "memories"
DATA = "(payload->>'data')"
"""The text of a memory, as the expression the trigram index is built on (a query must repeat it exactly)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True, slots=True)
class TableLayout:
    """What the store found (or made) in the database."""

    has_created_at: bool
    vector_dimensions: int | None
    """The size of the table's pgvector column `vector`; None when it has none."""
    trigram_index: bool
    """Whether word search can use a trigram index (otherwise PostgreSQL scans the table)."""


def table_name(collection: str | None) -> str:
    """The table of `collection`: a plain SQL identifier, lower-cased as PostgreSQL folds an unquoted name (mem0
    writes the name unquoted, so `Memories` and `memories` are the same table there and here)."""
    name = DEFAULT_COLLECTION if collection is None else collection
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise Invalid("A Postgres memory collection must be a plain SQL name (letters, digits, _; at most 63)")
    return name.lower()


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def trigram_index_name(table: str) -> str:
    """`<table>_data_trgm_idx`, shortened with a digest of the full name when that would pass 63 bytes."""
    name = f"{table}_data_trgm_idx"
    if len(name) <= _MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.blake2s(table.encode(), digest_size=4).hexdigest()
    return f"{table[:40]}_{digest}_data_trgm_idx"


async def ensure_table(
    connection: Any, table: str, *, vector_dimensions: int | None, create: bool = True
) -> TableLayout | None:
    """Create the table when missing, and the trigram extension and index when allowed; report the layout.

    `connection` is an asyncpg connection. `vector_dimensions` is the embedder's size, or None without one.
    `create` False leaves a missing table alone and answers None: the store passes it while its embedder cannot
    tell its size yet, as a table made then would have no vector column, and so no semantic search, for good."""
    quoted = quote_identifier(table)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"claw-memory:{table}")
        if await _regclass(connection, quoted) is None:
            if not create:
                return None
            await _create_table(connection, quoted, vector_dimensions)
        trigram_index = await _try(connection, "CREATE EXTENSION IF NOT EXISTS pg_trgm", "the pg_trgm extension")
        if trigram_index:
            index = quote_identifier(trigram_index_name(table))
            trigram_index = await _try(
                connection,
                f"CREATE INDEX IF NOT EXISTS {index} ON {quoted}"
                f" USING gin ({DATA} gin_trgm_ops) WITH (fastupdate = off)",
                f"a trigram index on {table}",
            )
        columns = await _columns(connection, quoted)
    if "id" not in columns or "payload" not in columns:
        raise Unavailable(f"The table {table} has no id and payload columns: it is not a mem0 memory table")
    layout = TableLayout(
        has_created_at="created_at" in columns,
        vector_dimensions=_vector_size(columns.get("vector")),
        trigram_index=trigram_index,
    )
    if not trigram_index:
        log.warning("Memory search in %s scans the whole table: no trigram index could be made", table)
    if vector_dimensions is not None and layout.vector_dimensions != vector_dimensions:
        log.warning(
            "Memory search in %s is by words: its vector column (%s) does not fit the embedder's %d dimensions",
            table,
            "none" if layout.vector_dimensions is None else layout.vector_dimensions,
            vector_dimensions,
        )
    return layout


async def _regclass(connection: Any, quoted: str) -> object:
    return await connection.fetchval("SELECT to_regclass($1)", quoted)


async def _create_table(connection: Any, quoted: str, vector_dimensions: int | None) -> None:
    vector_column = ""
    if vector_dimensions is not None and await _try(
        connection, "CREATE EXTENSION IF NOT EXISTS vector", "the pgvector extension"
    ):
        vector_column = f", vector vector({int(vector_dimensions)})"
    await connection.execute(
        f"CREATE TABLE IF NOT EXISTS {quoted} (id UUID PRIMARY KEY, payload JSONB NOT NULL DEFAULT '{{}}'::jsonb,"
        f" created_at TIMESTAMPTZ NOT NULL DEFAULT now(){vector_column})"
    )


async def _try(connection: Any, statement: str, what: str) -> bool:
    """Run `statement` in a savepoint; False (and a warning) when PostgreSQL refuses it."""
    try:
        async with connection.transaction():
            await connection.execute(statement)
    except asyncpg.PostgresError as exc:
        log.warning("Could not create %s: %s", what, exc)
        return False
    return True


async def _columns(connection: Any, quoted: str) -> dict[str, tuple[str, int]]:
    """Column name -> (type name, type modifier) of the table."""
    rows = await connection.fetch(
        "SELECT a.attname, t.typname, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        quoted,
    )
    return {str(row[0]): (str(row[1]), int(row[2])) for row in rows}


def _vector_size(column: tuple[str, int] | None) -> int | None:
    """pgvector keeps a `vector(n)` column's size as its type modifier (-1 when the column has no fixed size)."""
    if column is None or column[0] != "vector" or column[1] <= 0:
        return None
    return column[1]
