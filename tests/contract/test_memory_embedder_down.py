"""An embedder that fails costs the semantic stores their ranking, not their search: they answer by words (and
their status stays reachable, saying `semantic: false` while the embedder cannot tell its vector size)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from claw_adapters.memory.hashing_embedder import HashingEmbedder
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_core.errors import Unavailable, UpstreamError
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
