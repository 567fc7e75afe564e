"""What only the Postgres memory store does: the mem0 table layout, the trigram index, its errors and its connections.

The common behaviour is in test_memory_contract.py. The tests here use the session's real server
(tests/support/postgres_server.py), each in a database of its own, or a server of their own to stop, or a port
where nothing answers. Debian's PostgreSQL here has no pgvector: the semantic path is tested in
test_memory_pgvector.py, on a server that has it (docs/adr/0010-postgres-memory-search.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from claw_adapters.memory import postgres as postgres_memory
from claw_adapters.memory.postgres import RANKING_WINDOW, PostgresMemoryStore, word_pattern, word_search_sql
from claw_adapters.memory.postgres_schema import trigram_index_name
from claw_core.errors import Invalid, Unavailable
from claw_core.model import MemoryItem
from tests.contract.memory_backends import closed_loopback_port
from tests.support.postgres_server import PostgresServer, database_dsn

SECRET = "s3cret-Pa55word"


@pytest.fixture
async def admin(postgres_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test's own database, to look at what the store did."""
    connection = await asyncpg.connect(postgres_database)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def store(postgres_database: str) -> AsyncIterator[PostgresMemoryStore]:
    memories = PostgresMemoryStore(dsn=postgres_database, collection=None)
    try:
        yield memories
    finally:
        await memories.close()


def with_credentials(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def assert_no_secret(error: BaseException | str | None) -> None:
    text = error if isinstance(error, str) else repr(error)
    assert text
    assert SECRET not in text
    if isinstance(error, BaseException):
        assert error.__cause__ is None
        assert error.__suppress_context__ is True


# --- the table ---


async def test_a_missing_table_is_created_with_the_mem0_layout_and_a_trigram_index(
    store: PostgresMemoryStore, admin: asyncpg.Connection
) -> None:
    assert await admin.fetchval("SELECT to_regclass('memories')") is None
    assert (await store.status()).points_count == 0  # the first call makes the table

    columns = await admin.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'memories'"
    )
    assert {row[0]: row[1] for row in columns} == {
        "id": "uuid",
        "payload": "jsonb",
        "created_at": "timestamp with time zone",
    }
    primary_key = await admin.fetchval(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE i.indrelid = 'memories'::regclass AND i.indisprimary"
    )
    assert primary_key == "id"
    assert await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 1
    index = await admin.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", trigram_index_name("memories"))
    assert "gin" in index
    assert "gin_trgm_ops" in index
    assert "payload ->> 'data'" in index
    assert "fastupdate=off" in index


async def test_the_created_at_column_takes_the_payloads_time(
    store: PostgresMemoryStore, admin: asyncpg.Connection
) -> None:
    added = await store.add("dated", payload={"created_at": "2024-01-02T03:04:05-08:00"})
    created_at = await admin.fetchval("SELECT created_at FROM memories WHERE id = $1", uuid.UUID(added.id))
    assert created_at.isoformat() == "2024-01-02T11:04:05+00:00"


async def test_a_collection_is_a_table_named_as_mem0_names_it(postgres_database: str) -> None:
    store = PostgresMemoryStore(dsn=postgres_database, collection="Mem0_Memories")
    try:
        await store.add("in a folded table name")
        assert (await store.status()).collection == "mem0_memories"
    finally:
        await store.close()
    connection = await asyncpg.connect(postgres_database)
    try:
        assert await connection.fetchval("SELECT count(*) FROM mem0_memories") == 1  # unquoted, as mem0 writes it
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "collection", ['memories"; DROP TABLE memories; --', "public.memories", "1memories", "", "a" * 64, "mé"]
)
def test_a_collection_that_is_not_a_plain_name_is_refused(collection: str) -> None:
    with pytest.raises(Invalid):
        PostgresMemoryStore(dsn="postgresql://127.0.0.1:1/x", collection=collection)


async def test_an_existing_mem0_table_is_used_as_it_is(postgres_database: str, admin: asyncpg.Connection) -> None:
    # mem0's pgvector layout, without its `vector` column type (no pgvector here) but with columns of its own
    await admin.execute(
        "CREATE TABLE mem0 (id UUID PRIMARY KEY, embedding_note TEXT NOT NULL DEFAULT 'kept', payload JSONB)"
    )
    written = {
        "data": "User lives in Lisbon and likes sardines",
        "hash": "abc",
        "user_id": "alice",
        "created_at": "2025-03-01T10:00:00-08:00",
    }
    first, empty = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    await admin.execute(
        "INSERT INTO mem0 (id, embedding_note, payload) VALUES ($1, 'first', $2::jsonb), ($3, 'empty', NULL)",
        uuid.UUID(first),
        json.dumps(written),
        uuid.UUID(empty),
    )
    store = PostgresMemoryStore(dsn=postgres_database, collection="mem0")
    try:
        assert await store.count() == 2
        page = await store.page(limit=10)
        assert [(item.id, item.payload) for item in page.memories] == [(first, written), (empty, {})]
        (hit,) = await store.search("LISBON sardines", limit=5)
        assert (hit.id, hit.payload) == (first, written)

        updated = await store.update(first, "User moved to Porto")
        assert updated.payload["user_id"] == "alice"
        assert updated.created_at == written["created_at"]
        repaired = await store.update(empty, "a text at last")
        assert repaired.data == "a text at last"
        added = await store.add("a new one beside mem0's")
        assert await store.put(MemoryItem(str(uuid.UUID(int=3)), {"data": "copied in"})) is True
        await store.delete(added.id)
    finally:
        await store.close()

    rows = await admin.fetch("SELECT id, embedding_note FROM mem0 ORDER BY id")
    assert [(str(row[0]), row[1]) for row in rows] == [
        (first, "first"),
        (empty, "empty"),
        (str(uuid.UUID(int=3)), "kept"),
    ]
    assert await admin.fetchval("SELECT to_regclass('memories')") is None  # no table of its own beside mem0's
    columns = await admin.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'mem0'")
    assert {row[0] for row in columns} == {"id", "embedding_note", "payload"}  # no column added


async def test_a_table_that_is_not_a_memory_table_is_unavailable_not_altered(
    postgres_database: str, admin: asyncpg.Connection
) -> None:
    await admin.execute("CREATE TABLE orders (order_no INT PRIMARY KEY, total NUMERIC)")
    store = PostgresMemoryStore(dsn=postgres_database, collection="orders")
    try:
        status = await store.status()
        assert status.reachable is False
        assert "orders" in (status.error or "")
        with pytest.raises(Unavailable):
            await store.add("never written")
    finally:
        await store.close()
    assert await admin.fetchval("SELECT count(*) FROM orders") == 0


async def test_stores_starting_together_share_one_table(postgres_database: str) -> None:
    stores = [PostgresMemoryStore(dsn=postgres_database, collection=None) for _ in range(3)]
    try:
        await asyncio.gather(
            *(store.add(f"memory {n} of store {i}") for i, store in enumerate(stores) for n in range(8))
        )
        assert [await store.count() for store in stores] == [24, 24, 24]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# --- search ---


async def test_search_matches_whole_words_like_the_other_backends(store: PostgresMemoryStore) -> None:
    await assert_whole_word_search(store)


async def assert_whole_word_search(store: PostgresMemoryStore) -> None:
    """The word rules of the search SQL, shared with the pgvector path (test_memory_pgvector.py)."""
    texts = {
        "email": "Write to bob@example.com about the trip",
        "snake": "the variable is called trip_budget",
        "plural": "two coffees a day",
        "unicode": "Le CAFÉ de Zoë",
        "digits": "room 101, floor 3",
    }
    ids = {key: (await store.add(text)).id for key, text in texts.items()}

    async def found(query: str) -> set[str]:
        return {hit.id for hit in await store.search(query, limit=10)}

    assert await found("example") == {ids["email"]}
    assert await found("bob@example.com") == {ids["email"]}  # its words: bob, example, com
    assert await found("budget") == {ids["snake"]}  # _ separates words, as in SQLite's tokenizer
    assert await found("trip") == {ids["email"], ids["snake"]}
    assert await found("coffee") == set()  # a word, not a prefix or a substring
    assert await found("café zoë") == {ids["unicode"]}
    assert await found("10") == set()
    assert await found("101 floor") == {ids["digits"]}
    assert await found("a.b*c+(d|e)[f]\\1 ^$") == set()  # regular-expression characters are not syntax


async def test_search_ranks_by_how_often_the_words_occur(store: PostgresMemoryStore) -> None:
    once = await store.add("tea is fine")
    thrice = await store.add("tea, more tea, always tea")
    twice = await store.add("Tea for two, TEA for three")
    hits = await store.search("tea", limit=10)
    assert [hit.id for hit in hits] == [thrice.id, twice.id, once.id]
    assert [hit.score for hit in hits] == [3.0, 2.0, 1.0]


async def test_search_uses_the_trigram_index(store: PostgresMemoryStore, admin: asyncpg.Connection) -> None:
    await store.add("the needle: a zeppelin over Lisbon")
    await admin.execute(
        "INSERT INTO memories (id, payload) SELECT gen_random_uuid(), jsonb_build_object('data',"
        " 'filler memory ' || n || ' about ' || md5(n::text)) FROM generate_series(1, 5000) n"
    )
    await admin.execute("ANALYZE memories")  # no VACUUM: new rows must not wait in a GIN pending list

    patterns = [word_pattern("zeppelin"), word_pattern("lisbon")]
    plan = "\n".join(row[0] for row in await admin.fetch("EXPLAIN " + word_search_sql('"memories"', 2), *patterns, 10))
    assert f"Bitmap Index Scan on {trigram_index_name('memories')}" in plan
    assert "Seq Scan" not in plan
    (hit,) = await store.search("Zeppelin LISBON", limit=10)
    assert hit.data == "the needle: a zeppelin over Lisbon"


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def test_a_word_in_every_memory_scores_only_the_ranking_window(
    store: PostgresMemoryStore, admin: asyncpg.Connection
) -> None:
    await store.count()  # the table and its index
    await admin.execute(
        "INSERT INTO memories (id, payload) SELECT gen_random_uuid(), jsonb_build_object('data',"
        " 'filler memory ' || n || ' about ' || md5(n::text)) FROM generate_series(1, 5000) n"
    )
    await admin.execute("ANALYZE memories")
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + word_search_sql('"memories"', 1)
    for word in ("filler", "zeppelin"):  # in every row; in none
        [plan] = json.loads(await admin.fetchval(sql, word_pattern(word), 10))
        nodes = list(plan_nodes(plan["Plan"]))
        scans = [n for n in nodes if n["Node Type"] in {"Seq Scan", "Bitmap Heap Scan"}]
        assert scans
        assert all(n["Actual Rows"] <= RANKING_WINDOW for n in scans)
        scored = [n["Actual Loops"] for n in nodes if n.get("Parent Relationship") == "SubPlan"]
        assert scored
        assert max(scored) <= RANKING_WINDOW  # occurrences counted on the window only, not on all 5,000 rows
    hits = await store.search("FILLER", limit=7)
    assert len(hits) == 7
    assert all(hit.score == 1.0 for hit in hits)


async def test_with_more_matches_than_the_window_the_first_found_are_ranked(
    store: PostgresMemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_memory, "RANKING_WINDOW", 3)
    first = [await store.add(f"tea number {i}") for i in range(3)]
    best = await store.add("tea tea tea tea")  # stored after the window is full
    hits = await store.search("tea", limit=2)
    assert len(hits) == 2
    assert {hit.id for hit in hits} <= {memory.id for memory in first}
    # a limit above the window widens it: every match is scored, the best first
    assert (await store.search("tea", limit=10))[0].id == best.id


async def test_search_without_pg_trgm_scans_and_warns(
    postgres_database: str, admin: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # a role that may create tables but not extensions (no CREATE on the database): no trigram index for it
    await admin.execute(f"CREATE ROLE claw_plain LOGIN PASSWORD '{SECRET}'")
    try:
        await admin.execute("GRANT CREATE, USAGE ON SCHEMA public TO claw_plain")
        dsn = with_credentials(postgres_database, "claw_plain", SECRET)
        store = PostgresMemoryStore(dsn=dsn, collection=None)
        try:
            with caplog.at_level(logging.WARNING, logger="claw_adapters.memory.postgres_schema"):
                added = await store.add("searchable without an index")
            assert any("scans the whole table" in record.getMessage() for record in caplog.records)
            assert [hit.id for hit in await store.search("INDEX searchable", limit=5)] == [added.id]
        finally:
            await store.close()
        assert await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 0
    finally:
        await admin.execute("DROP OWNED BY claw_plain CASCADE")
        await admin.execute("DROP ROLE claw_plain")


class FixedSizeEmbedder:
    """An embedder of a fixed size; the store must fall back to words when the table has no vector column."""

    dimensions = 8

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(len(text) % 7 + 1)] * self.dimensions for text in texts]


async def test_an_embedder_without_pgvector_searches_by_words(postgres_database: str) -> None:
    store = PostgresMemoryStore(dsn=postgres_database, collection=None, embedder=FixedSizeEmbedder())
    try:
        added = await store.add("semantic search needs pgvector")
        status = await store.status()
        assert (status.reachable, status.semantic) == (True, False)
        assert [hit.id for hit in await store.search("pgvector", limit=5)] == [added.id]
    finally:
        await store.close()


# --- bad input and errors ---


async def test_text_postgresql_cannot_store_is_invalid_not_unavailable(store: PostgresMemoryStore) -> None:
    with pytest.raises(Invalid):
        await store.add("a NUL \x00 inside")
    with pytest.raises(Invalid):
        await store.put(MemoryItem(str(uuid.uuid4()), {"data": "x", "score": float("nan")}))
    assert await store.count() == 0


async def test_the_password_never_shows_in_errors(postgres_dsn: str) -> None:
    parts = urlsplit(postgres_dsn)
    refused = f"postgresql://claw:{SECRET}@127.0.0.1:{closed_loopback_port()}/claw"
    no_such_database = with_credentials(database_dsn(postgres_dsn, "no_such_db"), "claw_ghost", SECRET)
    malformed = f"postgresql://claw:{SECRET}@{parts.hostname}:not-a-port/claw"
    for dsn in (refused, no_such_database, malformed):
        store = PostgresMemoryStore(dsn=dsn, collection=None, connect_timeout_s=2.0)
        try:
            status = await store.status()
            assert status.reachable is False
            assert_no_secret(status.error)
            with pytest.raises(Unavailable) as raised:
                await store.add("never stored")
            assert_no_secret(raised.value)
            assert_no_secret(str(raised.value))
        finally:
            await store.close()


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A loopback listener that takes connections and never answers: a hung server, or a firewall that drops."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        yield listener


def silent_dsn(listener: socket.socket) -> str:
    return f"postgresql://claw@127.0.0.1:{listener.getsockname()[1]}/claw"


async def test_a_server_that_never_answers_times_out_as_unavailable(silent_server: socket.socket) -> None:
    store = PostgresMemoryStore(dsn=silent_dsn(silent_server), collection=None, connect_timeout_s=0.5)
    try:
        status = await store.status()
        assert status.reachable is False
        assert "timed out" in (status.error or "")
        with pytest.raises(Unavailable, match="timed out"):
            await store.count()
    finally:
        await store.close()


async def test_a_server_that_goes_away_makes_calls_unavailable() -> None:
    server = PostgresServer.start()
    try:
        store = PostgresMemoryStore(dsn=server.dsn, collection=None, connect_timeout_s=2.0)
        try:
            added = await store.add("written before the server stopped")
            assert (await store.status()).reachable is True
            await asyncio.to_thread(server.stop)
            with pytest.raises(Unavailable):
                await store.get(added.id)
            with pytest.raises(Unavailable):
                await store.search("server", limit=5)
            status = await store.status()
            assert status.reachable is False
            assert status.error
        finally:
            await store.close()
    finally:
        server.stop()


async def test_constructing_and_closing_never_connect(silent_server: socket.socket) -> None:
    store = PostgresMemoryStore(dsn=silent_dsn(silent_server), collection=None)
    await store.close()
    with pytest.raises(BlockingIOError):
        silent_server.accept()  # nobody knocked
    with pytest.raises(Unavailable, match="closed"):
        await store.count()
    assert (await store.status()).reachable is False
