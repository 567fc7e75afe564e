"""An embedder that fails costs the semantic stores their ranking, not their search: they answer by words (and
their status stays reachable, saying `semantic: false` while the embedder cannot tell its vector size)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from claw_adapters.memory.hashing_embedder import HashingEmbedder
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_core.errors import NotFound, Unavailable, UpstreamError
from claw_core.ports import MemoryStore
from tests.support.postgres_server import fresh_collection


class SwitchableEmbedder(HashingEmbedder):
    """A working embedder until `fail` names how it breaks: 'down' (unreachable, size unknown) or 'garbage'."""

    def __init__(self) -> None:
        super().__init__(64)
        self.fail: str | None = None

    @property
    def dimensions(self) -> int:
        if self.fail == "down":
            raise Unavailable("The embedder is not reachable")
        return super().dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail == "down":
            raise Unavailable("The embedder is not reachable")
        if self.fail == "garbage":
            raise UpstreamError("The embedder answered something that is not embeddings", code="EMBEDDER_ERROR")
        return await super().embed(texts)


class NeverAnsweredEmbedder(HashingEmbedder):
    """An embedder down from the start (like OpenAICompatibleEmbedder before its first answer, with no configured
    size): it cannot tell its vector size until `answered` is set."""

    def __init__(self) -> None:
        super().__init__(64)
        self.answered = False

    @property
    def dimensions(self) -> int:
        if not self.answered:
            raise Unavailable("The embedder has not told its vector size yet")
        return super().dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.answered:
            raise Unavailable("The embedder is not reachable")
        return await super().embed(texts)


@pytest.fixture(params=["qdrant-local", "postgres-pgvector"])
async def semantic_store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[MemoryStore, SwitchableEmbedder]]:
    embedder = SwitchableEmbedder()
    if request.param == "qdrant-local":
        store: MemoryStore = QdrantMemoryStore(url=None, path=":memory:", collection=None, embedder=embedder)
        try:
            yield store, embedder
        finally:
            await store.close()
        return
    dsn = request.getfixturevalue("pgvector_dsn")
    async with fresh_collection(dsn) as collection:
        store = PostgresMemoryStore(dsn=dsn, collection=collection, embedder=embedder)
        try:
            yield store, embedder
        finally:
            await store.close()


@pytest.mark.parametrize("failure", ["down", "garbage"])
async def test_a_failing_embedder_leaves_search_by_words(
    semantic_store: tuple[MemoryStore, SwitchableEmbedder], failure: str
) -> None:
    store, embedder = semantic_store
    tea = await store.add("green tea in the morning")
    await store.add("black coffee at night")
    assert (await store.status()).semantic is True
    embedder.fail = failure

    assert [m.id for m in await store.search("TEA", limit=5)] == [tea.id]
    assert await store.search("nothing-like-this", limit=5) == []
    status = await store.status()
    assert status.reachable is True
    assert status.semantic is (failure != "down")


async def test_writes_need_the_embedder(semantic_store: tuple[MemoryStore, SwitchableEmbedder]) -> None:
    """A memory stored without its vector would never be found by meaning: the write waits for the embedder."""
    store, embedder = semantic_store
    await store.add("first")
    embedder.fail = "down"
    with pytest.raises(Unavailable):
        await store.add("second")
    assert await store.count() == 1


async def test_postgres_reads_an_existing_table_while_the_embedder_never_answered(pgvector_dsn: str) -> None:
    """The table's layout is read as it is; only making a missing table needs the embedder's size."""
    async with fresh_collection(pgvector_dsn) as collection:
        writer = PostgresMemoryStore(dsn=pgvector_dsn, collection=collection, embedder=HashingEmbedder(64))
        try:
            tea = await writer.add("green tea in the morning")
            coffee = await writer.add("black coffee at night")
        finally:
            await writer.close()
        store = PostgresMemoryStore(dsn=pgvector_dsn, collection=collection, embedder=NeverAnsweredEmbedder())
        try:
            status = await store.status()
            assert (status.reachable, status.semantic, status.points_count) == (True, False, 2)
            assert {m.id for m in (await store.page(limit=10)).memories} == {tea.id, coffee.id}
            assert (await store.get(tea.id)).data == "green tea in the morning"
            assert [m.id for m in await store.search("TEA morning", limit=5)] == [tea.id]
            await store.delete(coffee.id)
            with pytest.raises(NotFound):
                await store.get(coffee.id)
            with pytest.raises(Unavailable):  # the table has vectors: a write waits for the embedder
                await store.add("a memory that would have no vector")
            assert await store.count() == 1
        finally:
            await store.close()


async def test_postgres_makes_a_missing_table_only_once_the_embedder_tells_its_size(pgvector_dsn: str) -> None:
    """A missing table reads as empty and refuses writes until the size is known (asked again on every call); then
    it is made with its vector column, and search is semantic."""
    embedder = NeverAnsweredEmbedder()
    async with fresh_collection(pgvector_dsn) as collection:
        store = PostgresMemoryStore(dsn=pgvector_dsn, collection=collection, embedder=embedder)
        try:
            status = await store.status()
            assert (status.reachable, status.semantic, status.points_count) == (True, False, 0)
            assert (await store.page(limit=10)).memories == []
            assert await store.search("tea", limit=5) == []
            with pytest.raises(NotFound):
                await store.get("00000000-0000-0000-0000-000000000001")
            with pytest.raises(Unavailable, match="vector size"):
                await store.add("green tea in the morning")
            admin = await asyncpg.connect(pgvector_dsn)
            try:
                assert await admin.fetchval("SELECT to_regclass($1)", f'"{collection}"') is None

                embedder.answered = True
                tea = await store.add("green tea in the morning")
                assert (await store.status()).semantic is True
                assert [m.id for m in await store.search("tea", limit=5)] == [tea.id]
                assert (
                    await admin.fetchval(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = to_regclass($1) AND attname = 'vector'",
                        f'"{collection}"',
                    )
                    == "vector(64)"
                )
            finally:
                await admin.close()
        finally:
            await store.close()
