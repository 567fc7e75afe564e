"""The Qdrant memory store: the collection mem0 fills, read, searched and edited in place with qdrant-client.

One adapter for a Qdrant server (`url`) and for qdrant-client's local mode (`path`, a directory or ":memory:"),
which speaks the same client API and is what the tests run. Nothing connects before the first call, so the
connector starts while Qdrant is down; every failure to reach it becomes `Unavailable`.

Points keep mem0's layout: a UUID id, the text in `payload["data"]` beside `hash`, `created_at`, `updated_at`,
`user_id` and whatever else the writer put there, and a vector of the collection's own shape (see qdrant_layout).
Search is a filter Qdrant evaluates on a full-text index of `data` (every query word, any case), ranked by BM25
or, with an embedder, by vector similarity: never a scroll of every point (docs/adr/0009-qdrant-memory-search.md).
In local mode, where BM25 is a Python loop over every match, the adapter ranks a bounded window of matches itself.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, overload

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from claw_adapters.memory.qdrant_layout import (
    DEFAULT_COLLECTION,
    PLACEHOLDER_VECTOR_SIZE,
    TEXT_FIELD,
    VectorLayout,
    is_migration_collection,
    local_words_filter,
    query_words,
    text_index_params,
    text_tokens,
    words_filter,
)
from claw_core.errors import Conflict, Invalid, NotFound, Unavailable, UpstreamError
from claw_core.model import JsonObject, MemoryItem, MemoryStatus
from claw_core.ports import Embedder, MemoryPage
from claw_core.services.memory_payloads import (
    canonical_memory_id,
    new_memory_id,
    new_payload,
    require_memory_id,
    updated_payload,
)

__all__ = ["RANKING_WINDOW", "QdrantMemoryStore"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

RANKING_WINDOW = 1000
"""Where this adapter ranks matches itself (local mode, or a server without BM25), it fetches only this many (at
least `limit`), the first in id order: the ranking costs the same at a thousand matches as at a million. With more
matches, the best of those are returned, not the best of all (docs/adr/0009)."""

_BACKEND = "qdrant"


class _Missing(Exception):
    """Qdrant does not hold what the call named: the collection (or, for a payload write, the point)."""


class _Refused(Unavailable):
    """Qdrant answered, but with an error status."""

    def __init__(self, status_code: int | None) -> None:
        super().__init__(f"Qdrant refused the request (HTTP {status_code})")
        self.status_code = status_code


@dataclass(slots=True)
class _Collection:
    """What this store knows of a collection that exists."""

    name: str
    layout: VectorLayout
    bm25: bool | None
    """Whether the text index on `data` ranks by BM25; None until this store has made sure the index is there."""


class QdrantMemoryStore:
    def __init__(
        self,
        *,
        url: str | None,
        path: str | None,
        collection: str | None,
        embedder: Embedder | None = None,
        timeout_s: float = 5.0,
        api_key: str | None = None,
    ) -> None:
        """`url` of a server (its path kept as given, e.g. behind a reverse proxy) or `path` of qdrant-client's local
        mode, exactly one; `api_key` for a server that asks for one (sent as its `api-key` header). `collection`
        None: the first collection that is not mem0's migration bookkeeping, else "memories". Nothing connects
        here."""
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url and path")
        self._url = url
        self._path = path
        self._local_mode = path is not None
        """qdrant-client's local mode: filters and BM25 are Python loops over every point, there is no index."""
        self._configured = collection or None
        self._name = self._configured
        self._embedder = embedder
        self._timeout_s = timeout_s
        self._api_key = api_key
        self._client: AsyncQdrantClient | None = None
        self._state: _Collection | None = None
        self._state_lock = asyncio.Lock()
        self._closed = False

    async def status(self) -> MemoryStatus:
        try:
            state = await self._collection(create=False)
            count = await self._count(state)
        except Unavailable as error:
            return MemoryStatus(reachable=False, backend=_BACKEND, collection=self._name, error=error.message)
        return MemoryStatus(
            reachable=True,
            backend=_BACKEND,
            collection=self._name,
            points_count=count,
            semantic=self._embedder is not None and (state is None or self._can_embed_for(state)),
        )

    async def count(self) -> int:
        return await self._count(await self._collection(create=False))

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        _check_limit(limit)
        offset = None if cursor is None else canonical_memory_id(cursor)
        if cursor is not None and offset is None:
            raise Invalid("Invalid cursor")
        state = await self._collection(create=False)
        if state is None:
            return MemoryPage(memories=[], next_cursor=None)
        try:
            records, next_id = await self._call(
                self._connect().scroll(state.name, limit=limit, offset=offset, with_payload=True, with_vectors=False)
            )
        except _Missing:
            self._forget(state)
            return MemoryPage(memories=[], next_cursor=None)
        return MemoryPage(
            memories=[_item(r.id, r.payload) for r in records],
            next_cursor=None if next_id is None else str(next_id),
        )

    async def search(self, query: str, *, limit: int) -> list[MemoryItem]:
        _check_limit(limit)
        words = query_words(query)
        state = await self._collection(create=False)
        if not words or state is None:
            return []
        try:
            return await self._search(state, query, words, limit)
        except _Missing:
            self._forget(state)
            return []

    async def get(self, memory_id: str) -> MemoryItem:
        key = canonical_memory_id(memory_id)
        state = await self._collection(create=False)
        if key is None or state is None:
            raise NotFound("Memory not found")
        found = await self._retrieve(state, key)
        if found is None:
            raise NotFound("Memory not found")
        return found

    async def add(self, data: str, *, payload: JsonObject | None = None, memory_id: str | None = None) -> MemoryItem:
        stored = new_payload(data, payload)
        key = new_memory_id() if memory_id is None else require_memory_id(memory_id)
        state = await self._collection(create=True)
        if memory_id is not None and await self._retrieve(state, key) is not None:
            raise Conflict("A memory with this id already exists")
        await self._upsert(state, key, stored)
        return _item(key, stored)

    async def put(self, item: MemoryItem) -> bool:
        key = require_memory_id(item.id)
        state = await self._collection(create=True)
        created = await self._retrieve(state, key) is None
        if created or self._embedding_target(state):
            await self._upsert(state, key, item.payload)
        else:
            # Without an embedder, keep the vector the point has (mem0's, maybe) rather than zero it.
            await self._write(state, self._connect().overwrite_payload(state.name, dict(item.payload), [key]))
        return created

    async def update(self, memory_id: str, data: str) -> MemoryItem:
        current = await self.get(memory_id)
        state = await self._collection(create=False)
        if state is None:
            raise NotFound("Memory not found")
        stored = updated_payload(current.payload, data)
        changes = {field: stored[field] for field in (TEXT_FIELD, "hash", "updated_at")}
        client = self._connect()
        try:
            await self._call(client.set_payload(state.name, changes, [current.id], wait=True))
            vector = await self._embedding_update(state, data)
            if vector is not None:
                point = models.PointVectors(id=current.id, vector=vector)
                await self._call(client.update_vectors(state.name, [point], wait=True))
        except _Missing:
            raise NotFound("Memory not found") from None
        return _item(current.id, stored)

    async def delete(self, memory_id: str) -> None:
        current = await self.get(memory_id)
        state = await self._collection(create=False)
        if state is None:
            raise NotFound("Memory not found")
        selector = models.PointIdsList(points=[current.id])
        await self._write(state, self._connect().delete(state.name, selector, wait=True))

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # --- the collection -------------------------------------------------------------------------------------------

    @overload
    async def _collection(self, *, create: Literal[True]) -> _Collection: ...

    @overload
    async def _collection(self, *, create: bool) -> _Collection | None: ...

    async def _collection(self, *, create: bool) -> _Collection | None:
        """The collection, as it is now; None when it does not exist and `create` is false."""
        state = self._state
        if state is not None:
            return state
        async with self._state_lock:
            if self._state is not None:
                return self._state
            client = self._connect()
            name = self._configured or await self._detect_name(client)
            self._name = name
            try:
                info = await self._call(client.get_collection(name))
            except _Missing:
                if not create:
                    return None
                await self._create(client, name)
                info = await self._call(client.get_collection(name))
            self._state = _Collection(name, VectorLayout.of(info.config.params.vectors), _text_index_bm25(info))
            return self._state

    async def _detect_name(self, client: AsyncQdrantClient) -> str:
        """What the original does: the first collection that is not mem0's migrations, else "memories". Asked
        again until the collection exists, so a collection mem0 creates later is still found."""
        response = await self._call(client.get_collections())
        names = [c.name for c in response.collections if not is_migration_collection(c.name)]
        return names[0] if names else DEFAULT_COLLECTION

    async def _create(self, client: AsyncQdrantClient, name: str) -> None:
        size = self._embedder.dimensions if self._embedder is not None else PLACEHOLDER_VECTOR_SIZE
        vectors = models.VectorParams(size=size, distance=models.Distance.COSINE)
        try:
            await self._call(client.create_collection(name, vectors_config=vectors))
        except _Refused:
            # Another writer may have created it in the meantime; anything else is a real refusal.
            if not await self._call(client.collection_exists(name)):
                raise

    def _forget(self, state: _Collection) -> None:
        """The collection went away under us (deleted by someone else): look for it again on the next call."""
        if self._state is state:
            self._state = None

    async def _ensure_text_index(self, state: _Collection) -> bool:
        """Make sure `data` has the full-text index every search filters on (without one, older servers match
        MatchText as a case-sensitive substring). True when it ranks by BM25."""
        if state.bm25 is not None:
            return state.bm25
        client = self._connect()
        try:
            await self._call(
                client.create_payload_index(
                    state.name, field_name=TEXT_FIELD, field_schema=text_index_params(scoring=True)
                )
            )
            state.bm25 = True
        except _Refused as refused:
            if refused.status_code is None or refused.status_code >= 500:
                raise
            # A server older than BM25 text scoring: the same index, without ranking.
            await self._call(
                client.create_payload_index(
                    state.name, field_name=TEXT_FIELD, field_schema=text_index_params(scoring=False)
                )
            )
            state.bm25 = False
        return state.bm25

    # --- points ---------------------------------------------------------------------------------------------------

    async def _count(self, state: _Collection | None) -> int:
        if state is None:
            return 0
        try:
            return (await self._call(self._connect().count(state.name, exact=True))).count
        except _Missing:
            self._forget(state)
            return 0

    async def _retrieve(self, state: _Collection, key: str) -> MemoryItem | None:
        try:
            records = await self._call(self._connect().retrieve(state.name, [key], with_payload=True))
        except _Missing:
            self._forget(state)
            return None
        return _item(records[0].id, records[0].payload) if records else None

    async def _search(self, state: _Collection, query: str, words: list[str], limit: int) -> list[MemoryItem]:
        """One request, filtered by Qdrant: the points holding every word, best first."""
        vector = await self._query_embedding(state, query)
        if self._local_mode and vector is None:
            # Local mode evaluates BM25 in Python over every match: rank a bounded window here instead.
            return await self._search_window(state, local_words_filter(words), words, limit)
        bm25 = await self._ensure_text_index(state)
        client = self._connect()
        matching = words_filter(words)
        if vector is not None:
            using = state.layout.target(len(vector))
            response = await self._call(
                client.query_points(
                    state.name,
                    query=vector,
                    using=None if using is None else using.name,
                    query_filter=matching,
                    limit=limit,
                    with_payload=True,
                )
            )
        elif bm25:
            response = await self._call(
                client.query_points(
                    state.name,
                    query=models.TextQuery(text=" ".join(words)),
                    using=TEXT_FIELD,
                    query_filter=matching,
                    limit=limit,
                    with_payload=True,
                )
            )
        else:  # a server older than BM25 scoring
            return await self._search_window(state, matching, words, limit)
        return [_item(p.id, p.payload, p.score) for p in response.points]

    async def _search_window(
        self, state: _Collection, matching: models.Filter, words: list[str], limit: int
    ) -> list[MemoryItem]:
        """The first `RANKING_WINDOW` matches (at least `limit`) in id order, one filtered scroll that stops once it
        has them, ranked here by how often the words occur (ties in id order): the best `limit` of them."""
        window = max(RANKING_WINDOW, limit)
        records, _ = await self._call(
            self._connect().scroll(state.name, scroll_filter=matching, limit=window, with_payload=True)
        )
        scored = sorted(((_occurrences(r.payload, words), r) for r in records), key=lambda pair: -pair[0])
        return [_item(r.id, r.payload, score) for score, r in scored[:limit]]

    async def _upsert(self, state: _Collection, key: str, payload: JsonObject) -> None:
        text = payload.get(TEXT_FIELD)
        embedding = await self._embedding(state, text if isinstance(text, str) else "")
        point = models.PointStruct(id=key, vector=state.layout.point_vector(embedding), payload=dict(payload))
        await self._write(state, self._connect().upsert(state.name, [point], wait=True))

    async def _write(self, state: _Collection, call: Awaitable[_T]) -> _T:
        try:
            return await self._call(call)
        except _Missing:
            self._forget(state)
            raise Unavailable("The memory collection was deleted meanwhile; try again") from None

    def _embedding_target(self, state: _Collection) -> bool:
        return self._embedder is not None and state.layout.target(self._embedder.dimensions) is not None

    def _can_embed_for(self, state: _Collection) -> bool:
        """`_embedding_target`, but False while the embedder cannot say its vector size (it is down)."""
        try:
            return self._embedding_target(state)
        except Unavailable:
            return False

    async def _query_embedding(self, state: _Collection, query: str) -> list[float] | None:
        """The query's vector for a semantic search, or None for a search by words: when no embedder serves this
        collection, and also when the embedder fails, so that an embedder being down costs ranking, not search."""
        try:
            return await self._embedding(state, query)
        except (Unavailable, UpstreamError) as error:
            log.warning("memory search by words only: the embedder failed (%s)", error.message)
            return None

    async def _embedding(self, state: _Collection, text: str) -> list[float] | None:
        if self._embedder is None or not self._embedding_target(state):
            return None
        return (await self._embedder.embed([text]))[0]

    async def _embedding_update(self, state: _Collection, text: str) -> models.VectorStruct | None:
        embedding = await self._embedding(state, text)
        return None if embedding is None else state.layout.target_update(embedding)

    # --- the client -----------------------------------------------------------------------------------------------

    def _connect(self) -> AsyncQdrantClient:
        if self._closed:
            raise Unavailable("The memory store is closed")
        if self._client is None:
            try:
                self._client = self._new_client()
            except (OSError, RuntimeError) as error:  # local mode: the directory is unusable or locked
                raise Unavailable(f"Qdrant local storage cannot be opened: {error}") from None
        return self._client

    def _new_client(self) -> AsyncQdrantClient:
        """The client, made on first use (the one seam tests use to watch what the store sends). A server client
        does not connect before its first request; local mode opens (and locks) its directory here."""
        if self._path == ":memory:":
            return AsyncQdrantClient(location=":memory:")
        if self._path is not None:
            return AsyncQdrantClient(path=self._path)
        timeout = max(1, math.ceil(self._timeout_s))
        return AsyncQdrantClient(url=self._url, api_key=self._api_key, timeout=timeout, check_compatibility=False)

    async def _call(self, call: Awaitable[_T]) -> _T:
        """Await one client call within the timeout, turning every way of failing into Unavailable (or _Missing)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except TimeoutError:
            raise Unavailable(f"Qdrant did not answer within {self._timeout_s:g} s") from None
        except UnexpectedResponse as error:
            if error.status_code == 404:
                raise _Missing from None
            raise _Refused(error.status_code) from None
        except (ResponseHandlingException, httpx.HTTPError, OSError):
            raise Unavailable("Qdrant cannot be reached") from None
        except KeyError:  # local mode: a payload write named a point it does not hold
            raise _Missing from None
        except ValueError as error:
            if _local_collection_missing(error):
                raise _Missing from None
            raise


def _local_collection_missing(error: ValueError) -> bool:
    text = str(error)
    return text.startswith("Collection ") and text.endswith(" not found")


def _text_index_bm25(info: models.CollectionInfo) -> bool | None:
    """Whether the server's text index on `data` ranks by BM25; None when there is no text index on it (local mode
    never reports its indexes, so it is None there until this store creates one)."""
    index = (info.payload_schema or {}).get(TEXT_FIELD)
    if index is None or index.data_type != models.PayloadSchemaType.TEXT:
        return None
    params = index.params
    return isinstance(params, models.TextIndexParams) and params.scoring is not None


def _item(
    point_id: models.ExtendedPointId, payload: Mapping[str, object] | None, score: float | None = None
) -> MemoryItem:
    return MemoryItem(str(point_id), copy.deepcopy(dict(payload or {})), score)


def _occurrences(payload: Mapping[str, object] | None, words: list[str]) -> float:
    text = (payload or {}).get(TEXT_FIELD)
    counts = Counter(text_tokens(text) if isinstance(text, str) else [])
    return float(sum(counts[word] for word in words))


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise Invalid("limit must be at least 1")
