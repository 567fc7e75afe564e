"""The Postgres memory store: the table mem0's pgvector store writes, read and edited in place with asyncpg.

Connecting is lazy: constructing the store never touches the network, so the connector starts with PostgreSQL down,
and the first call that needs the database creates a small pool (and the table, extension and index, see
postgres_schema). Every failure to reach the server becomes `Unavailable`, whose message names the host and port
only, never the DSN (which may hold a password); `status()` reports it instead of raising.

Only making a missing table needs the embedder's vector size: while an embedder cannot tell it (down since the
start), an existing table is read as it is and searched by words, and a missing one reads as empty and refuses writes
until the size is known (docs/adr/0011: a failing embedder costs ranking, not search). Embeddings are computed
before a pooled connection is taken, so a slow embedder never holds one.

Search by words runs inside PostgreSQL: one case-insensitive regular expression per word, with word boundaries
(`(?<![[:alnum:]])word(?![[:alnum:]])`), ANDed, which the pg_trgm GIN index on `payload->>'data'` serves; the
first `RANKING_WINDOW` matches found are ranked by how often the words occur (a bounded cost). With an embedder
and a pgvector column of its size, the same matches (every word still required) are ranked by cosine distance to
the query's embedding (`<=>`) instead. See docs/adr/0010-postgres-memory-search.md.

SQL text below is composed only from constants and the validated, quoted table name; every value is a bound
parameter.
"""

# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]

from claw_adapters.memory.postgres_schema import DATA, TableLayout, ensure_table, quote_identifier, table_name
from claw_core.errors import ClawError, Conflict, Invalid, NotFound, Unavailable, UpstreamError
from claw_core.model import JsonObject, MemoryItem, MemoryStatus
from claw_core.ports import Embedder, MemoryPage
from claw_core.services.memory_payloads import (
    canonical_memory_id,
    content_hash,
    new_memory_id,
    new_payload,
    now_iso,
    require_memory_id,
    require_text,
    search_words,
)

__all__ = [
    "RANKING_WINDOW",
    "PostgresMemoryStore",
    "describe_server",
    "vector_search_sql",
    "word_pattern",
    "word_search_sql",
]

log = logging.getLogger(__name__)

BACKEND = "postgres"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4
MAX_LIMIT = 10_000
"""The most memories one call returns (a page asking more ends early and hands out a cursor)."""
RANKING_WINDOW = 1000
"""Search scores only this many matching rows (at least `limit`), the first the scan finds: a word found in every
memory costs the same at a thousand memories as at a million. With more matches, the best of those rows are
returned, not the best of all (docs/adr/0010)."""
MAX_SEARCH_WORDS = 32
"""Each word is one regular expression over the matching rows: a bound on the work one search can ask for."""

_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


def word_pattern(word: str) -> str:
    """The regular expression of one search word: the word, not inside a longer one.

    `word` comes from `search_words`, so it holds only letters and digits, none of which a PostgreSQL regular
    expression treats specially: it needs no escaping."""
    return f"(?<![[:alnum:]]){word}(?![[:alnum:]])"


def word_search_sql(table: str, word_count: int, *, window: int = RANKING_WINDOW) -> str:
    """The query of a search by words over `table` (quoted): $1..$n are the words' patterns, $n+1 the limit.

    Each pattern is one `~*` condition, which the trigram index on DATA serves. The candidates are the first
    `window` matching rows the scan hands out: a LIMIT inside a subquery, which PostgreSQL neither flattens nor
    sorts, so a sequential or bitmap heap scan stops once it has them. Only those are scored (occurrences of the
    words) and ordered."""
    words = range(1, word_count + 1)
    score = " + ".join(f"(SELECT count(*) FROM regexp_matches({DATA}, ${n}, 'gi'))" for n in words)
    return (
        f"SELECT id, payload::text, {score} AS score"
        f" FROM (SELECT id, payload FROM {table} WHERE {_all_words(word_count)} LIMIT {int(window)}) AS candidates"
        f" ORDER BY score DESC, id LIMIT ${word_count + 1}"
    )


def vector_search_sql(table: str, word_count: int, *, window: int = RANKING_WINDOW) -> str:
    """The query of a semantic search over `table` (quoted): $1..$n are the words' patterns, $n+1 the query's
    embedding (pgvector's text form), $n+2 the limit.

    The same candidates as `word_search_sql` (every word required, the first `window` matches), ranked by cosine
    distance instead: a memory without a vector (written without an embedder) or with a zero one (NaN distance)
    comes after the others."""
    query = f"${word_count + 1}::text::vector"
    return (
        f"SELECT id, payload::text, 1 - (vector <=> {query}) AS score"
        f" FROM (SELECT id, payload, vector FROM {table} WHERE {_all_words(word_count)} LIMIT {int(window)})"
        f" AS candidates ORDER BY vector <=> {query}, id LIMIT ${word_count + 2}"
    )


def _all_words(word_count: int) -> str:
    """$1..$n each matched by `~*` on DATA, ANDed (the form the trigram index serves)."""
    return " AND ".join(f"{DATA} ~* ${n}" for n in range(1, word_count + 1))


def describe_server(dsn: str) -> str:
    """`host:port` of a postgresql:// DSN, for messages: never the user, password or options."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the configured server"
    return f"{host}:{port}" if parts.scheme in {"postgres", "postgresql"} else "the configured server"


class PostgresMemoryStore:
    """A MemoryStore over one table of a PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        *,
        dsn: str,
        collection: str | None,
        embedder: Embedder | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.collection = table_name(collection)
        self._table_sql = quote_identifier(self.collection)
        self._dsn = dsn
        self._server = describe_server(dsn)
        self._embedder = embedder
        self._connect_timeout_s = connect_timeout_s
        self._pool: Any = None
        self._layout: TableLayout | None = None
        self._setup = asyncio.Lock()
        self._closed = False

    async def status(self) -> MemoryStatus:
        try:
            count = await self.count()
        except Unavailable as exc:
            return MemoryStatus(reachable=False, backend=BACKEND, collection=self.collection, error=exc.message)
        layout = self._layout
        return MemoryStatus(
            reachable=True,
            backend=BACKEND,
            collection=self.collection,
            points_count=count,
            semantic=layout is not None and self._can_embed_for(layout),
        )

    async def count(self) -> int:
        if await self._table() is None:
            return 0
        async with self._connection() as connection:
            return int(await connection.fetchval(f"SELECT count(*) FROM {self._table_sql}"))

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        size = _checked_limit(limit)
        after = None if cursor is None else canonical_memory_id(cursor)
        if cursor is not None and after is None:
            raise Invalid("Invalid cursor")
        if await self._table() is None:
            return MemoryPage(memories=[], next_cursor=None)
        async with self._connection() as connection:
            if after is None:
                rows = await connection.fetch(
                    f"SELECT id, payload::text FROM {self._table_sql} ORDER BY id LIMIT $1", size + 1
                )
            else:
                rows = await connection.fetch(
                    f"SELECT id, payload::text FROM {self._table_sql} WHERE id > $1::uuid ORDER BY id LIMIT $2",
                    after,
                    size + 1,
                )
        memories = [_item(row) for row in rows[:size]]
        return MemoryPage(memories=memories, next_cursor=memories[-1].id if len(rows) > size else None)

    async def search(self, query: str, *, limit: int) -> list[MemoryItem]:
        size = _checked_limit(limit)
        words = search_words(query)
        if not words:
            return []
        if len(words) > MAX_SEARCH_WORDS:
            raise Invalid(f"A search takes at most {MAX_SEARCH_WORDS} words")
        patterns = [word_pattern(word) for word in words]
        window = max(RANKING_WINDOW, size)
        layout = await self._table()
        if layout is None:
            return []
        vector = await self._query_vector(layout, query)  # before taking a connection: the embedder may be slow
        async with self._connection() as connection:
            if vector is not None:
                rows = await connection.fetch(
                    vector_search_sql(self._table_sql, len(words), window=window), *patterns, vector, size
                )
            else:
                rows = await connection.fetch(
                    word_search_sql(self._table_sql, len(words), window=window), *patterns, size
                )
        return [_item(row, score=_score(row[2])) for row in rows]

    async def get(self, memory_id: str) -> MemoryItem:
        key = canonical_memory_id(memory_id)
        if key is None or await self._table() is None:
            raise NotFound("Memory not found")
        async with self._connection() as connection:
            row = await connection.fetchrow(f"SELECT id, payload::text FROM {self._table_sql} WHERE id = $1::uuid", key)
        if row is None:
            raise NotFound("Memory not found")
        return _item(row)

    async def add(self, data: str, *, payload: JsonObject | None = None, memory_id: str | None = None) -> MemoryItem:
        stored = new_payload(data, payload)
        key = new_memory_id() if memory_id is None else require_memory_id(memory_id)
        layout = await self._writable_table()
        semantic = self._semantic(layout)
        values = await self._insert_values(layout, semantic, key, stored)
        async with self._connection() as connection:
            row = await connection.fetchrow(
                self._insert_sql(layout, semantic, on_conflict="DO NOTHING", returning="id, payload::text"), *values
            )
        if row is None:
            raise Conflict("A memory with this id already exists")
        return _item(row)

    async def put(self, item: MemoryItem) -> bool:
        key = require_memory_id(item.id)
        layout = await self._writable_table()
        semantic = self._semantic(layout)
        values = await self._insert_values(layout, semantic, key, item.payload)
        assignments = "payload = EXCLUDED.payload" + (", vector = EXCLUDED.vector" if semantic else "")
        async with self._connection() as connection:
            inserted = await connection.fetchval(
                # xmax is 0 on a row version this statement inserted, and set on one it updated
                self._insert_sql(layout, semantic, on_conflict=f"DO UPDATE SET {assignments}", returning="xmax = 0"),
                *values,
            )
        return bool(inserted)

    async def update(self, memory_id: str, data: str) -> MemoryItem:
        key = canonical_memory_id(memory_id)
        if key is None:
            raise NotFound("Memory not found")
        text = require_text(data)
        layout = await self._table()
        if layout is None:
            raise NotFound("Memory not found")
        values: list[object] = [key, text, content_hash(text), now_iso()]
        vector_assignment = ""
        if self._semantic(layout):
            values.append(await self._vector_literal(text))
            vector_assignment = ", vector = $5::text::vector"
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"UPDATE {self._table_sql} SET payload = COALESCE(payload, '{{}}'::jsonb)"
                " || jsonb_build_object('data', $2::text, 'hash', $3::text, 'updated_at', $4::text)"
                f"{vector_assignment} WHERE id = $1::uuid RETURNING id, payload::text",
                *values,
            )
        if row is None:
            raise NotFound("Memory not found")
        return _item(row)

    async def delete(self, memory_id: str) -> None:
        key = canonical_memory_id(memory_id)
        if key is None or await self._table() is None:
            raise NotFound("Memory not found")
        async with self._connection() as connection:
            deleted = await connection.fetchval(f"DELETE FROM {self._table_sql} WHERE id = $1::uuid RETURNING id", key)
        if deleted is None:
            raise NotFound("Memory not found")

    async def close(self) -> None:
        self._closed = True
        async with self._setup:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except _CONNECTION_ERRORS:
            pool.terminate()

    # -- the connection, the table and the errors
    #
    # A call first learns the table's layout (`_table`, which holds a connection only the first time, to read or
    # make the table), then embeds what it needs, and only then takes a pooled connection for its statement: an
    # embedder that is slow never holds one of the few connections (a pool of POOL_MAX_SIZE) while it answers.

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; any failure to reach the server raises Unavailable."""
        with self._translated_errors():
            async with self._setup:
                pool = await self._open_pool()
            async with pool.acquire(timeout=self._connect_timeout_s) as connection:
                yield connection

    async def _table(self) -> TableLayout | None:
        """The table's layout; None when the table is missing and cannot be made yet (see `_ready`), which a read
        takes as an empty table."""
        with self._translated_errors():
            return await self._ready()

    async def _writable_table(self) -> TableLayout:
        layout = await self._table()
        if layout is None:
            raise Unavailable(
                f"The memory table {self.collection} is missing and cannot be made before the embedder tells its"
                " vector size; try again"
            )
        return layout

    @contextlib.contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except ClawError:
            raise
        except asyncpg.DataError as exc:  # SQLSTATE class 22: a value PostgreSQL cannot store (e.g. \u0000 in JSON)
            raise Invalid(f"PostgreSQL refused the value: {exc}") from None
        except asyncpg.UndefinedTableError:
            self._layout = None  # the table went away under us: the next call makes it again
            raise Unavailable(f"The memory table {self.collection} is missing on {self._server}") from None
        except asyncpg.PostgresError as exc:
            raise Unavailable(f"PostgreSQL at {self._server} failed: {_first_line(exc)}") from None
        except (*_CONNECTION_ERRORS, ValueError) as exc:
            # `from None`: the driver's own message of a malformed DSN may quote the DSN, password included
            raise Unavailable(f"PostgreSQL at {self._server} cannot be reached ({_reason(exc)})") from None

    async def _open_pool(self) -> Any:
        """The pool, created on first use. Called holding `_setup`."""
        if self._closed:
            raise Unavailable("The memory store is closed")
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=POOL_MIN_SIZE,
                max_size=POOL_MAX_SIZE,
                timeout=self._connect_timeout_s,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        return self._pool

    async def _ready(self) -> TableLayout | None:
        """The table's layout, read (and the table made when missing) on the first call.

        Only making the table needs the embedder's size (for its vector column): an existing table is read as it
        is, even while the embedder cannot tell its size. A missing table is left alone then (made without the
        column, it would never have semantic search) and None is answered; the next call looks again."""
        async with self._setup:
            pool = await self._open_pool()
            if self._layout is None:
                dimensions, known = self._embedder_dimensions()
                async with pool.acquire(timeout=self._connect_timeout_s) as connection:
                    self._layout = await ensure_table(
                        connection, self.collection, vector_dimensions=dimensions, create=known
                    )
            return self._layout

    def _embedder_dimensions(self) -> tuple[int | None, bool]:
        """(the embedder's size or None without an embedder, whether that is known)."""
        if self._embedder is None:
            return None, True
        try:
            return self._embedder.dimensions, True
        except Unavailable:
            return None, False

    def _semantic(self, layout: TableLayout) -> bool:
        """Whether the table holds vectors of the embedder's size. Unavailable while the embedder cannot tell its
        size and the table has a vector column: a write must not store a memory without its vector then."""
        if self._embedder is None or layout.vector_dimensions is None:
            return False
        return layout.vector_dimensions == self._embedder.dimensions

    def _can_embed_for(self, layout: TableLayout) -> bool:
        """`_semantic`, but False while the embedder cannot say its vector size (it is down); asked on every call."""
        try:
            return self._semantic(layout)
        except Unavailable:
            return False

    async def _query_vector(self, layout: TableLayout, query: str) -> str | None:
        """The query's vector (pgvector text form) for a semantic search, or None for a search by words: when the
        table has no vectors of the embedder's size, and also when the embedder fails, so that an embedder being
        down costs ranking, not search."""
        try:
            return await self._vector_literal(query) if self._can_embed_for(layout) else None
        except (Unavailable, UpstreamError) as error:
            log.warning("memory search by words only: the embedder failed (%s)", error.message)
            return None

    async def _vector_literal(self, text: str) -> str:
        """pgvector's text form of the embedding of `text` (sent as text and cast, so no codec is needed)."""
        assert self._embedder is not None
        [vector] = await self._embedder.embed([text])
        if len(vector) != self._embedder.dimensions:
            # pgvector would refuse it as a bad value (SQLSTATE 22): the embedder's fault, not the client's input
            raise Unavailable(f"The embedder returned {len(vector)} numbers, not {self._embedder.dimensions}")
        return _vector_text(vector)

    def _insert_sql(self, layout: TableLayout, semantic: bool, *, on_conflict: str, returning: str) -> str:
        columns = ["id", "payload"]
        if layout.has_created_at:
            columns.append("created_at")
        if semantic:
            columns.append("vector")
        casts = {"id": "uuid", "payload": "jsonb", "created_at": "timestamptz", "vector": "text::vector"}
        values = ", ".join(f"${n}::{casts[column]}" for n, column in enumerate(columns, start=1))
        return (
            f"INSERT INTO {self._table_sql} ({', '.join(columns)}) VALUES ({values})"
            f" ON CONFLICT (id) {on_conflict} RETURNING {returning}"
        )

    async def _insert_values(self, layout: TableLayout, semantic: bool, key: str, payload: JsonObject) -> list[object]:
        """The values of `_insert_sql`, the vector (when `semantic`) embedded here, before a connection is taken."""
        values: list[object] = [key, _dump(payload)]
        if layout.has_created_at:
            values.append(_timestamp(payload.get("created_at")))
        if semantic:
            text = payload.get("data")
            values.append(await self._vector_literal(text) if isinstance(text, str) and text.strip() else None)
        return values


def _checked_limit(limit: int) -> int:
    if limit < 1:
        raise Invalid("limit must be at least 1")
    return min(limit, MAX_LIMIT)


def _item(row: Sequence[Any], score: float | None = None) -> MemoryItem:
    payload = json.loads(row[1]) if row[1] is not None else {}
    return MemoryItem(str(row[0]), payload if isinstance(payload, dict) else {}, score)


def _score(value: object) -> float:
    """A row's score as a finite float: a memory without a vector (NULL) or with a zero one (NaN) scores 0."""
    score = float(value) if isinstance(value, int | float) else 0.0
    return score if math.isfinite(score) else 0.0


def _dump(payload: JsonObject) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"The payload is not JSON: {exc}") from None


def _timestamp(value: object) -> datetime:
    """The `created_at` column of a row: the payload's own created_at when it is an ISO 8601 time, else now."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _vector_text(vector: Sequence[float]) -> str:
    numbers = [float(x) for x in vector]
    if not all(math.isfinite(x) for x in numbers):
        raise Unavailable("The embedder returned a vector that is not finite")
    return "[" + ",".join(repr(x) for x in numbers) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, ValueError) and not isinstance(exc, asyncpg.InterfaceError):
        return "the DSN is malformed"
    return type(exc).__name__
