"""What the Qdrant memory store promises beyond the MemoryStore contract: mem0's layout and vector shapes kept,
the collection found as the original finds it, nothing connected before the first call, the server URL path kept,
and search sent to Qdrant as one filtered query (never a scroll of every point).

Qdrant runs in qdrant-client's local mode (no server can be installed here); a plain `AsyncQdrantClient` on the same
directory plays mem0, and a small aiohttp server plays a Qdrant that is slow, failing or behind a path prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from claw_adapters.memory import qdrant as qdrant_memory
from claw_adapters.memory.hashing_embedder import HashingEmbedder
from claw_adapters.memory.qdrant import RANKING_WINDOW, QdrantMemoryStore
from claw_core.errors import Invalid, Unavailable
from claw_core.model import MemoryItem

MEM0_VECTOR = [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def cosine_params(size: int) -> models.VectorParams:
    return models.VectorParams(size=size, distance=models.Distance.COSINE)


@pytest.fixture
def qdrant_dir(tmp_path: Path) -> str:
    return str(tmp_path / "qdrant")


async def with_plain_client(directory: str, work: Callable[[AsyncQdrantClient], Awaitable[Any]]) -> Any:
    """Run `work` with a plain client on `directory` (mem0's view), then release the directory's lock."""
    client = AsyncQdrantClient(path=directory)
    try:
        return await work(client)
    finally:
        await client.close()


async def mem0_collection(client: AsyncQdrantClient, text: str = "Alice likes green tea") -> str:
    """What mem0 leaves behind: its migrations collection, then `mem0` holding one memory with a real vector."""
    await client.create_collection("mem0migrations", vectors_config=cosine_params(1))
    await client.create_collection("mem0", vectors_config=cosine_params(8))
    point_id = str(uuid.uuid4())
    payload = {"data": text, "hash": md5(text), "user_id": "alice", "created_at": "2025-01-02T03:04:05-08:00"}
    await client.upsert("mem0", [models.PointStruct(id=point_id, vector=MEM0_VECTOR, payload=payload)])
    return point_id


@pytest.fixture
async def store(qdrant_dir: str) -> AsyncIterator[QdrantMemoryStore]:
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    yield memories
    await memories.close()


# --- connecting ---


async def test_constructing_opens_nothing_until_the_first_call(qdrant_dir: str) -> None:
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    assert not await asyncio.to_thread(Path(qdrant_dir).exists)
    assert await memories.count() == 0
    assert await asyncio.to_thread(Path(qdrant_dir).is_dir)
    await memories.close()


def test_exactly_one_of_url_and_path() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        QdrantMemoryStore(url=None, path=None, collection=None)
    with pytest.raises(ValueError, match="exactly one"):
        QdrantMemoryStore(url="http://127.0.0.1:6333", path="/tmp/x", collection=None)


async def test_a_directory_another_client_holds_is_unavailable(qdrant_dir: str) -> None:
    holder = AsyncQdrantClient(path=qdrant_dir)
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    try:
        status = await memories.status()
        assert not status.reachable
        assert status.error is not None
        assert "cannot be opened" in status.error
        with pytest.raises(Unavailable):
            await memories.search("tea", limit=5)
    finally:
        await memories.close()
        await holder.close()


class FakeQdrantServer:
    """A loopback HTTP server answering the REST paths a Qdrant server has, below a path prefix (a reverse proxy's)."""

    def __init__(self, prefix: str, mode: str) -> None:
        self.prefix = prefix
        self.mode = mode
        self.paths: list[str] = []
        self.api_keys: list[str | None] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        self.api_keys.append(request.headers.get("api-key"))
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "failing":
            return web.json_response({"status": {"error": "Service internal error"}, "time": 0.0}, status=500)
        if request.path == f"{self.prefix}/collections":
            collections = [{"name": "mem0migrations"}, {"name": "mem0"}]
            return web.json_response({"result": {"collections": collections}, "status": "ok", "time": 0.0})
        error = {"status": {"error": "Not found: Collection `mem0` doesn't exist!"}, "time": 0.0}
        return web.json_response(error, status=404)

    async def __aenter__(self) -> FakeQdrantServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.prefix}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_a_server_url_keeps_its_path_and_connects_lazily() -> None:
    async with FakeQdrantServer("/proxy/qdrant", "answering") as server:
        memories = QdrantMemoryStore(url=server.url, path=None, collection=None)
        assert server.paths == []
        status = await memories.status()
        await memories.close()
    assert status.reachable
    assert status.collection == "mem0"
    assert status.points_count == 0
    assert server.paths[:2] == ["/proxy/qdrant/collections", "/proxy/qdrant/collections/mem0"]


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")  # a loopback test server
async def test_an_api_key_goes_to_the_server_in_its_header() -> None:
    async with FakeQdrantServer("", "answering") as server:
        memories = QdrantMemoryStore(url=server.url, path=None, collection=None, api_key="k-123")
        assert (await memories.status()).reachable
        await memories.close()
    assert server.api_keys and set(server.api_keys) == {"k-123"}


@pytest.mark.parametrize("mode", ["slow", "failing"])
async def test_a_slow_or_failing_server_is_unavailable(mode: str) -> None:
    async with FakeQdrantServer("", mode) as server:
        memories = QdrantMemoryStore(url=server.url, path=None, collection=None, timeout_s=0.3)
        status = await memories.status()
        with pytest.raises(Unavailable) as raised:
            await memories.get(str(uuid.uuid4()))
        await memories.close()
    assert not status.reachable
    assert status.error == raised.value.message
    expected = "did not answer" if mode == "slow" else "HTTP 500"
    assert expected in raised.value.message


async def test_a_closed_store_is_unavailable(store: QdrantMemoryStore) -> None:
    await store.add("something")
    await store.close()
    with pytest.raises(Unavailable):
        await store.count()
    assert not (await store.status()).reachable


# --- the collection ---


async def test_finds_the_first_collection_that_is_not_migrations(store: QdrantMemoryStore, qdrant_dir: str) -> None:
    point_id = await with_plain_client(qdrant_dir, mem0_collection)
    status = await store.status()
    assert (status.collection, status.points_count, status.semantic) == ("mem0", 1, False)
    memory = await store.get(point_id)
    assert memory.data == "Alice likes green tea"
    assert memory.payload["user_id"] == "alice"


async def test_only_migrations_means_memories_created_on_first_write(qdrant_dir: str) -> None:
    async def migrations_only(client: AsyncQdrantClient) -> None:
        await client.create_collection("mem0migrations", vectors_config=cosine_params(1))

    await with_plain_client(qdrant_dir, migrations_only)
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    assert (await memories.status()).collection == "memories"
    assert await memories.search("anything", limit=5) == []
    await memories.add("the first memory")
    await memories.close()

    async def inspect(client: AsyncQdrantClient) -> tuple[list[str], models.CollectionInfo]:
        names = [c.name for c in (await client.get_collections()).collections]
        return names, await client.get_collection("memories")

    names, info = await with_plain_client(qdrant_dir, inspect)
    assert sorted(names) == ["mem0migrations", "memories"]
    assert info.config.params.vectors == cosine_params(1)
    assert info.points_count == 1


async def test_a_configured_collection_is_used_as_named(qdrant_dir: str) -> None:
    await with_plain_client(qdrant_dir, mem0_collection)
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection="notes")
    assert (await memories.status()).collection == "notes"
    assert await memories.count() == 0
    await memories.close()


async def test_a_collection_deleted_meanwhile_reads_empty_then_comes_back() -> None:
    memories = RecordingStore()
    await memories.add("tea at five")
    await memories.client.delete_collection("memories")
    assert await memories.count() == 0
    assert await memories.search("tea", limit=5) == []
    assert (await memories.page(limit=5)).memories == []
    await memories.add("tea at six")
    assert [m.data for m in await memories.search("tea", limit=5)] == ["tea at six"]
    await memories.close()


# --- mem0's layout ---


async def test_points_written_keep_mem0_layout_and_vectors(store: QdrantMemoryStore, qdrant_dir: str) -> None:
    old_id = await with_plain_client(qdrant_dir, mem0_collection)
    added = await store.add("Alice drinks coffee", payload={"user_id": "alice", "agent_id": "main"})
    await store.update(old_id, "Alice likes black tea")
    await store.close()

    async def read(client: AsyncQdrantClient) -> tuple[dict[str, models.Record], list[models.ScoredPoint]]:
        records, _ = await client.scroll("mem0", limit=10, with_payload=True, with_vectors=True)
        hits = await client.query_points("mem0", query=[1.0] + [0.0] * 7, limit=10)
        return {str(r.id): r for r in records}, hits.points

    records, hits = await with_plain_client(qdrant_dir, read)
    new = records[added.id]
    assert str(uuid.UUID(added.id)) == added.id
    assert new.payload is not None
    assert new.payload["data"] == "Alice drinks coffee"
    assert new.payload["hash"] == md5("Alice drinks coffee")
    assert (new.payload["user_id"], new.payload["agent_id"]) == ("alice", "main")
    assert datetime.fromisoformat(new.payload["created_at"]).tzinfo is not None
    assert new.vector == [0.0] * 8  # the collection's size, zeros: no embedder
    old = records[old_id]
    assert old.payload is not None
    assert old.payload["data"] == "Alice likes black tea"
    assert old.payload["hash"] == md5("Alice likes black tea")
    assert old.payload["created_at"] == "2025-01-02T03:04:05-08:00"
    assert old.payload["user_id"] == "alice"
    assert datetime.fromisoformat(old.payload["updated_at"]).tzinfo is not None
    assert old.vector == pytest.approx(MEM0_VECTOR)  # mem0's vector is left alone without an embedder
    # mem0's own similarity search still runs over a collection with zero vectors: they simply score 0
    assert {str(h.id): h.score for h in hits}[added.id] == 0.0


async def test_put_without_an_embedder_keeps_the_point_vector(store: QdrantMemoryStore, qdrant_dir: str) -> None:
    point_id = await with_plain_client(qdrant_dir, mem0_collection)
    assert not await store.put(MemoryItem(point_id, {"data": "replaced", "source": "copy"}))
    await store.close()

    async def read(client: AsyncQdrantClient) -> models.Record:
        (record,) = await client.retrieve("mem0", [point_id], with_payload=True, with_vectors=True)
        return record

    record = await with_plain_client(qdrant_dir, read)
    assert record.payload == {"data": "replaced", "source": "copy"}
    assert record.vector == pytest.approx(MEM0_VECTOR)


async def test_an_embedder_fills_its_named_vector_and_zeros_the_others(qdrant_dir: str) -> None:
    async def named(client: AsyncQdrantClient) -> None:
        vectors = {"image": cosine_params(4), "text": cosine_params(8)}
        await client.create_collection("mem0", vectors_config=vectors)

    await with_plain_client(qdrant_dir, named)
    embedder = HashingEmbedder(8)
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None, embedder=embedder)
    assert (await memories.status()).semantic
    added = await memories.add("green tea with milk")
    edited = await memories.add("black coffee")
    await memories.update(edited.id, "black coffee with sugar")
    hits = await memories.search("SUGAR coffee", limit=5)
    assert [h.id for h in hits] == [edited.id]
    query, text = embedder.embed_one("SUGAR coffee"), embedder.embed_one("black coffee with sugar")
    assert hits[0].score == pytest.approx(math.fsum(a * b for a, b in zip(query, text, strict=True)), abs=1e-5)
    await memories.close()

    async def read(client: AsyncQdrantClient) -> dict[str, Any]:
        records = await client.retrieve("mem0", [added.id, edited.id], with_vectors=True)
        return {str(r.id): r.vector for r in records}

    vectors = await with_plain_client(qdrant_dir, read)
    assert vectors[added.id]["text"] == pytest.approx(embedder.embed_one("green tea with milk"), abs=1e-6)
    assert vectors[added.id]["image"] == [0.0] * 4
    assert vectors[edited.id]["text"] == pytest.approx(embedder.embed_one("black coffee with sugar"), abs=1e-6)


async def test_an_embedder_of_another_size_leaves_search_to_words(qdrant_dir: str) -> None:
    await with_plain_client(qdrant_dir, mem0_collection)
    memories = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None, embedder=HashingEmbedder(16))
    assert not (await memories.status()).semantic
    await memories.add("Bob likes green apples")
    hits = await memories.search("GREEN", limit=5)
    assert {m.data for m in hits} == {"Alice likes green tea", "Bob likes green apples"}
    await memories.close()


async def test_a_collection_it_creates_has_the_embedder_size() -> None:
    memories = RecordingStore(embedder=HashingEmbedder(32))
    await memories.add("tea")
    info = await memories.client.get_collection("memories")
    assert info.config.params.vectors == cosine_params(32)
    await memories.close()


async def test_local_directory_persists_across_stores(qdrant_dir: str) -> None:
    first = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    added = await first.add("Remember the blue door")
    await first.close()
    second = QdrantMemoryStore(url=None, path=qdrant_dir, collection=None)
    assert (await second.get(added.id)).data == "Remember the blue door"
    assert [m.id for m in await second.search("BLUE door", limit=5)] == [added.id]
    await second.close()


# --- paging ---


async def test_page_cursor_is_a_uuid_and_anything_else_is_invalid(store: QdrantMemoryStore) -> None:
    for n in range(5):
        await store.add(f"memory {n}")
    page = await store.page(limit=2)
    assert page.next_cursor is not None
    assert str(uuid.UUID(page.next_cursor)) == page.next_cursor
    with pytest.raises(Invalid):
        await store.page(limit=2, cursor="zzzz")  # local mode alone would compare it as a string and answer
    with pytest.raises(Invalid):
        await store.page(limit=0)


# --- search: one query, filtered and ranked by Qdrant ---


class RecordingClient:
    """A real local-mode client that notes every call the store makes (and can refuse BM25 like an old server)."""

    def __init__(self, *, refuse_bm25: bool = False) -> None:
        self.inner = AsyncQdrantClient(location=":memory:")
        self.refuse_bm25 = refuse_bm25
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            schema = kwargs.get("field_schema")
            if name == "create_payload_index" and self.refuse_bm25 and getattr(schema, "scoring", None) is not None:
                raise UnexpectedResponse(
                    400, "Bad Request", b'{"status":{"error":"unknown field `scoring`"}}', httpx.Headers()
                )
            return await method(*args, **kwargs)

        return recorded


class RecordingStore(QdrantMemoryStore):
    """A local-mode store; with `server`, it sends what it sends a server (local mode answers the same API)."""

    def __init__(self, *, refuse_bm25: bool = False, server: bool = False, **kwargs: Any) -> None:
        super().__init__(url=None, path=":memory:", collection=None, **kwargs)
        self.recorder = RecordingClient(refuse_bm25=refuse_bm25)
        self.client = self.recorder.inner
        if server:
            self._local_mode = False

    def _new_client(self) -> AsyncQdrantClient:
        return self.recorder  # type: ignore[return-value]


def words_of(query_filter: models.Filter) -> list[str]:
    assert isinstance(query_filter.must, list)
    words = []
    for condition in query_filter.must:
        assert isinstance(condition, models.FieldCondition)
        assert condition.key == "data"
        assert isinstance(condition.match, models.MatchText)
        words.append(condition.match.text)
    return words


async def fill(memories: QdrantMemoryStore, n: int = 60) -> None:
    for i in range(n):
        await memories.add(f"note {i}: {'Coffee with tea' if i % 20 == 0 else 'nothing to see'} here")


async def test_on_a_server_search_is_one_filtered_bm25_query_on_a_text_index() -> None:
    memories = RecordingStore(server=True)
    await fill(memories)
    memories.recorder.calls.clear()
    hits = await memories.search("tea  COFFEE tea", limit=10)
    assert sorted(h.data for h in hits) == [f"note {i}: Coffee with tea here" for i in (0, 20, 40)]
    assert all(h.score is not None and h.score > 0 for h in hits)
    (index, query) = memories.recorder.calls
    assert index[0] == "create_payload_index"
    assert index[1]["field_schema"].tokenizer == models.TokenizerType.WORD
    assert index[1]["field_schema"].lowercase is True
    assert query[0] == "query_points"
    assert words_of(query[1]["query_filter"]) == ["tea", "coffee"]
    assert query[1]["limit"] == 10
    memories.recorder.calls.clear()
    await memories.search("nothing", limit=5)
    assert [name for name, _ in memories.recorder.calls] == ["query_points"]  # the index is made once
    await memories.close()


async def test_bm25_ranks_the_best_match_first() -> None:
    memories = RecordingStore(server=True)
    await memories.add("coffee, and a long story about trains, rivers, mountains and the sea")
    await memories.add("coffee coffee coffee")
    await memories.add("coffee in the morning")
    hits = await memories.search("coffee", limit=5)
    assert hits[0].data == "coffee coffee coffee"
    assert hits[-1].data.startswith("coffee, and a long story")
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    await memories.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
async def test_a_server_without_bm25_still_filters_every_word() -> None:
    memories = RecordingStore(refuse_bm25=True, server=True)
    await fill(memories)
    memories.recorder.calls.clear()
    hits = await memories.search("COFFEE tea", limit=10)
    assert sorted(h.data for h in hits) == [f"note {i}: Coffee with tea here" for i in (0, 20, 40)]
    assert [h.score for h in hits] == [2.0, 2.0, 2.0]
    names = [name for name, _ in memories.recorder.calls]
    assert names == ["create_payload_index", "create_payload_index", "scroll"]
    assert memories.recorder.calls[1][1]["field_schema"].scoring is None
    scroll = memories.recorder.calls[2][1]
    assert words_of(scroll["scroll_filter"]) == ["coffee", "tea"]
    assert scroll["limit"] == RANKING_WINDOW  # a bounded window, ranked by the store
    await memories.close()


async def test_local_mode_ranks_a_bounded_window_itself() -> None:
    memories = RecordingStore()
    await fill(memories)
    await memories.add("tea, coffee, more tea and coffee, always TEA")
    memories.recorder.calls.clear()
    hits = await memories.search("tea  COFFEE tea", limit=3)
    # no index (local mode has none) and no BM25 query (a Python loop over every match there): one filtered scroll
    assert [name for name, _ in memories.recorder.calls] == ["scroll"]
    scroll = memories.recorder.calls[0][1]
    assert words_of(scroll["scroll_filter"]) == ["tea coffee"]  # one condition: every word, each text split once
    assert scroll["limit"] == RANKING_WINDOW
    assert hits[0].data == "tea, coffee, more tea and coffee, always TEA"
    assert [h.score for h in hits] == [5.0, 2.0, 2.0]
    assert len(await memories.search("here", limit=1000 + RANKING_WINDOW)) == 60  # a limit above the window widens it
    assert memories.recorder.calls[-1][1]["limit"] == 1000 + RANKING_WINDOW
    await memories.close()


async def test_with_more_matches_than_the_window_the_first_in_id_order_are_ranked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(qdrant_memory, "RANKING_WINDOW", 3)
    memories = RecordingStore()
    added = [await memories.add(f"tea number {i}") for i in range(4)] + [await memories.add("tea tea tea tea")]
    window = sorted(memory.id for memory in added)[:3]
    hits = await memories.search("tea", limit=2)
    assert len(hits) == 2
    assert {h.id for h in hits} <= set(window)
    assert (await memories.search("tea", limit=10))[0].data == "tea tea tea tea"
    await memories.close()


async def test_with_an_embedder_the_matches_are_ranked_by_similarity() -> None:
    memories = RecordingStore(embedder=HashingEmbedder(64))
    assert (await memories.status()).semantic
    await memories.add("tea and coffee and cake and bread and jam")
    await memories.add("Coffee, tea")
    await memories.add("coffee alone")
    memories.recorder.calls.clear()
    hits = await memories.search("coffee tea", limit=5)
    assert [h.data for h in hits] == ["Coffee, tea", "tea and coffee and cake and bread and jam"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    query = next(kwargs for name, kwargs in memories.recorder.calls if name == "query_points")
    assert isinstance(query["query"], list)
    assert words_of(query["query_filter"]) == ["coffee", "tea"]
    await memories.close()


# --- the hashing embedder ---


async def test_hashing_embedder_is_deterministic_unit_length_and_word_based() -> None:
    embedder = HashingEmbedder(128)
    first, again, spaced, empty = await embedder.embed(["Green tea", "green TEA", "green, tea!", " ... "])
    assert first == again == spaced
    assert math.isclose(math.fsum(v * v for v in first), 1.0)
    assert empty == [0.0] * 128
    assert embedder.dimensions == len(first) == 128


def test_hashing_embedder_cosine_grows_with_shared_words() -> None:
    embedder = HashingEmbedder(512)
    query = embedder.embed_one("green tea with lemon")

    def cosine(text: str) -> float:
        return math.fsum(a * b for a, b in zip(query, embedder.embed_one(text), strict=True))

    assert cosine("green tea with lemon") == pytest.approx(1.0)
    assert cosine("green tea with lemon") > cosine("green tea with milk") > cosine("green bicycle") > 0.0


def test_hashing_embedder_needs_a_dimension() -> None:
    with pytest.raises(ValueError):
        HashingEmbedder(0)
