"""The MemoryStore contract (see the port's docstring), run against every backend in memory_backends.py."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import MemoryItem
from claw_core.ports import MemoryStore
from tests.contract.memory_backends import MEMORY_BACKENDS, MemoryBackend

UNKNOWN_ID = "6f1c1a52-8f3e-4d8a-9a0e-2b0c4f1e9d77"
MALFORMED_IDS = ["not-a-uuid", "", "../etc/passwd", "1234", "6f1c1a52-8f3e-4d8a-9a0e"]


@pytest.fixture(params=sorted(MEMORY_BACKENDS))
def backend(request: pytest.FixtureRequest) -> MemoryBackend:
    return MEMORY_BACKENDS[request.param]


@pytest.fixture
async def memory_store(
    backend: MemoryBackend, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryStore]:
    async with backend.open(request, tmp_path) as store:
        yield store


@pytest.fixture
async def unreachable_store(
    backend: MemoryBackend, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryStore]:
    async with backend.open_unreachable(request, tmp_path) as store:
        yield store


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def walk(store: MemoryStore, limit: int) -> list[list[MemoryItem]]:
    pages, cursor = [], None
    while True:
        page = await store.page(limit=limit, cursor=cursor)
        pages.append(page.memories)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 1000, "page() never ends"


# --- status and count ---


async def test_an_empty_store_is_reachable_and_counts_nothing(
    memory_store: MemoryStore, backend: MemoryBackend
) -> None:
    status = await memory_store.status()
    assert status.reachable is True
    assert status.backend == backend.backend
    assert status.points_count == 0
    assert status.error is None
    assert await memory_store.count() == 0
    page = await memory_store.page(limit=10)
    assert page.memories == []
    assert page.next_cursor is None


async def test_count_and_status_follow_adds_and_deletes(memory_store: MemoryStore) -> None:
    items = [await memory_store.add(f"memory number {n}") for n in range(5)]
    assert await memory_store.count() == 5
    await memory_store.delete(items[0].id)
    assert await memory_store.count() == 4
    status = await memory_store.status()
    assert (status.reachable, status.points_count) == (True, 4)


# --- add and get ---


async def test_add_then_get_keeps_the_text_and_the_payload(memory_store: MemoryStore) -> None:
    text = "Ünïcödé user likes 日本語 and 🦀 crabs"
    extra = {"user_id": "alice", "metadata": {"source": "chat", "tags": ["a", "b"]}, "score_hint": 3, "flag": None}
    added = await memory_store.add(text, payload={**extra, "data": "ignored: the text is the argument"})
    assert str(uuid.UUID(added.id)) == added.id  # a canonical UUID
    assert added.data == text
    assert added.payload["hash"] == md5(text)
    assert isinstance(added.created_at, str)
    assert added.created_at
    for key, value in extra.items():
        assert added.payload[key] == value

    fetched = await memory_store.get(added.id)
    assert fetched.id == added.id
    assert fetched.payload == added.payload
    assert fetched.score is None
    assert fetched.to_json()["data"] == text


async def test_add_keeps_a_hash_and_created_at_it_is_given(memory_store: MemoryStore) -> None:
    payload = {"hash": "given-hash", "created_at": "2024-01-02T03:04:05-08:00"}
    added = await memory_store.add("kept as given", payload=payload)
    fetched = await memory_store.get(added.id)
    assert fetched.payload["hash"] == "given-hash"
    assert fetched.created_at == "2024-01-02T03:04:05-08:00"


async def test_the_payload_handed_out_is_a_copy(memory_store: MemoryStore) -> None:
    tags = ["x"]
    added = await memory_store.add("a private copy", payload={"user_id": "alice", "tags": tags})
    tags.append("changed after add")
    added.payload["user_id"] = "changed after add"
    fetched = await memory_store.get(added.id)
    assert fetched.payload["user_id"] == "alice"
    assert fetched.payload["tags"] == ["x"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
async def test_add_refuses_an_empty_text(memory_store: MemoryStore, text: str) -> None:
    with pytest.raises(Invalid):
        await memory_store.add(text)
    assert await memory_store.count() == 0


async def test_add_under_a_given_id_and_conflict_when_taken(memory_store: MemoryStore) -> None:
    added = await memory_store.add("first", memory_id=UNKNOWN_ID)
    assert added.id == UNKNOWN_ID
    assert (await memory_store.get(UNKNOWN_ID)).data == "first"
    with pytest.raises(Conflict):
        await memory_store.add("second", memory_id=UNKNOWN_ID)
    assert (await memory_store.get(UNKNOWN_ID)).data == "first"
    assert await memory_store.count() == 1


async def test_add_refuses_an_id_that_is_not_a_uuid(memory_store: MemoryStore) -> None:
    with pytest.raises(Invalid):
        await memory_store.add("text", memory_id="not-a-uuid")
    assert await memory_store.count() == 0


async def test_add_mints_distinct_ids(memory_store: MemoryStore) -> None:
    ids = {(await memory_store.add("the same text")).id for _ in range(5)}
    assert len(ids) == 5


async def test_get_unknown_or_malformed_ids_is_not_found(memory_store: MemoryStore) -> None:
    await memory_store.add("something")
    for memory_id in [UNKNOWN_ID, *MALFORMED_IDS]:
        with pytest.raises(NotFound):
            await memory_store.get(memory_id)


# --- page ---


async def test_page_walks_every_memory_once_in_id_order(memory_store: MemoryStore) -> None:
    added = {(await memory_store.add(f"memory {n} of the walk")).id for n in range(250)}
    pages = await walk(memory_store, limit=7)
    ids = [item.id for page in pages for item in page]
    assert len(ids) == 250
    assert set(ids) == added
    assert ids == sorted(ids)
    assert all(0 < len(page) <= 7 for page in pages)
    assert len(pages) == 36  # ceil(250 / 7)
    assert all(item.data.startswith("memory ") for page in pages for item in page)


async def test_page_larger_than_the_store_is_the_last(memory_store: MemoryStore) -> None:
    for n in range(3):
        await memory_store.add(f"item {n}")
    page = await memory_store.page(limit=50)
    assert len(page.memories) == 3
    assert page.next_cursor is None


async def test_page_of_exactly_the_store_size(memory_store: MemoryStore) -> None:
    for n in range(4):
        await memory_store.add(f"item {n}")
    pages = await walk(memory_store, limit=2)
    assert sum(len(page) for page in pages) == 4
    assert [len(page) for page in pages][:2] == [2, 2]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "", "{}", "-1"])
async def test_a_cursor_the_store_did_not_hand_out_is_invalid(memory_store: MemoryStore, cursor: str) -> None:
    await memory_store.add("something")
    with pytest.raises(Invalid):
        await memory_store.page(limit=5, cursor=cursor)


async def test_page_sees_deletes_between_pages(memory_store: MemoryStore) -> None:
    for n in range(6):
        await memory_store.add(f"item {n}")
    first = await memory_store.page(limit=3)
    assert first.next_cursor is not None
    rest = await memory_store.page(limit=3, cursor=first.next_cursor)
    await memory_store.delete(rest.memories[0].id)
    again = await memory_store.page(limit=3, cursor=first.next_cursor)
    assert [m.id for m in again.memories] == [m.id for m in rest.memories[1:]]


# --- search ---

TEXTS = {
    "tea": "Alice likes green tea in the morning",
    "coffee": "Bob prefers black coffee",
    "both": "alice drinks COFFEE late at night",
    "other": "Unrelated note about bicycles",
}


@pytest.fixture
async def searchable(memory_store: MemoryStore) -> dict[str, str]:
    """The key of each text -> the id of its memory."""
    return {key: (await memory_store.add(text)).id for key, text in TEXTS.items()}


async def found(store: MemoryStore, query: str, limit: int = 10) -> set[str]:
    hits = await store.search(query, limit=limit)
    assert len(hits) == len({hit.id for hit in hits}), "a memory appears twice"
    return {hit.id for hit in hits}


async def test_search_finds_a_word_in_any_case(memory_store: MemoryStore, searchable: dict[str, str]) -> None:
    assert await found(memory_store, "coffee") == {searchable["coffee"], searchable["both"]}
    assert await found(memory_store, "Coffee") == {searchable["coffee"], searchable["both"]}
    assert await found(memory_store, "BICYCLES") == {searchable["other"]}


async def test_search_needs_every_word(memory_store: MemoryStore, searchable: dict[str, str]) -> None:
    assert await found(memory_store, "alice coffee") == {searchable["both"]}
    assert await found(memory_store, "ALICE tea") == {searchable["tea"]}
    assert await found(memory_store, "alice bicycles") == set()


async def test_search_returns_whole_memories_with_a_score(
    memory_store: MemoryStore, searchable: dict[str, str]
) -> None:
    (hit,) = await memory_store.search("bicycles", limit=5)
    assert hit.id == searchable["other"]
    assert hit.data == TEXTS["other"]
    assert hit.payload == (await memory_store.get(hit.id)).payload
    assert isinstance(hit.score, float)


async def test_search_without_a_match_is_empty(memory_store: MemoryStore, searchable: dict[str, str]) -> None:
    assert await found(memory_store, "zebra") == set()


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
async def test_a_blank_query_matches_nothing(memory_store: MemoryStore, searchable: dict[str, str], query: str) -> None:
    assert await memory_store.search(query, limit=10) == []


async def test_search_respects_the_limit(memory_store: MemoryStore, searchable: dict[str, str]) -> None:
    hits = await found(memory_store, "coffee", limit=1)
    assert len(hits) == 1
    assert hits <= {searchable["coffee"], searchable["both"]}


async def test_a_word_in_thousands_of_memories_still_fills_the_limit(memory_store: MemoryStore) -> None:
    # More matches than any backend ranks at once (see ADR 0008): the answer is still `limit` distinct matches.
    for first in range(0, 3000, 100):
        await asyncio.gather(*(memory_store.add(f"common note {n} tag{n % 7}") for n in range(first, first + 100)))
    await memory_store.add("a rare one")
    for query, limit in [("common", 20), ("NOTE common", 1), ("common", 1500), ("tag3 common", 400)]:
        hits = await memory_store.search(query, limit=limit)
        assert len(hits) == len({hit.id for hit in hits}) == limit
        assert all("common" in hit.data for hit in hits)
    assert len(await memory_store.search("tag3 common", limit=1000)) == len(range(3, 3000, 7))
    assert [hit.data for hit in await memory_store.search("rare", limit=20)] == ["a rare one"]


@pytest.mark.parametrize("query", ['"coffee', "coffee*", "NEAR(coffee", "coffee AND", "col:coffee", "' OR 1=1 --"])
async def test_search_syntax_of_any_backend_is_plain_text(
    memory_store: MemoryStore, searchable: dict[str, str], query: str
) -> None:
    assert await found(memory_store, query) <= set(searchable.values())


# --- update ---


async def test_update_replaces_the_text_and_keeps_the_rest(memory_store: MemoryStore) -> None:
    added = await memory_store.add("walrus original text", payload={"user_id": "alice", "metadata": {"k": 1}})
    updated = await memory_store.update(added.id, "penguin replacement text")
    assert updated.id == added.id
    assert updated.data == "penguin replacement text"
    assert updated.payload["hash"] == md5("penguin replacement text")
    assert isinstance(updated.updated_at, str)
    assert updated.updated_at
    assert updated.payload["user_id"] == "alice"
    assert updated.payload["metadata"] == {"k": 1}
    assert updated.created_at == added.created_at

    fetched = await memory_store.get(added.id)
    assert fetched.payload == updated.payload
    assert await found(memory_store, "penguin") == {added.id}
    assert await found(memory_store, "walrus") == set()
    assert await memory_store.count() == 1


async def test_update_of_a_missing_memory_is_not_found(memory_store: MemoryStore) -> None:
    for memory_id in [UNKNOWN_ID, *MALFORMED_IDS]:
        with pytest.raises(NotFound):
            await memory_store.update(memory_id, "text")
    assert await memory_store.count() == 0


async def test_update_refuses_an_empty_text(memory_store: MemoryStore) -> None:
    added = await memory_store.add("keep me")
    with pytest.raises(Invalid):
        await memory_store.update(added.id, "  ")
    assert (await memory_store.get(added.id)).data == "keep me"


# --- delete ---


async def test_delete_removes_it_everywhere(memory_store: MemoryStore) -> None:
    doomed = await memory_store.add("ostrich to be deleted")
    kept = await memory_store.add("ostrich to be kept")
    await memory_store.delete(doomed.id)
    with pytest.raises(NotFound):
        await memory_store.get(doomed.id)
    with pytest.raises(NotFound):
        await memory_store.delete(doomed.id)
    assert await found(memory_store, "ostrich") == {kept.id}
    assert [m.id for m in (await memory_store.page(limit=10)).memories] == [kept.id]


async def test_delete_of_unknown_or_malformed_ids_is_not_found(memory_store: MemoryStore) -> None:
    await memory_store.add("stays")
    for memory_id in [UNKNOWN_ID, *MALFORMED_IDS]:
        with pytest.raises(NotFound):
            await memory_store.delete(memory_id)
    assert await memory_store.count() == 1


# --- put ---


async def test_put_inserts_as_is_then_replaces(memory_store: MemoryStore) -> None:
    payload = {"data": "flamingo stored as is", "user_id": "bob", "created_at": "2023-05-06T07:08:09+00:00"}
    assert await memory_store.put(MemoryItem(UNKNOWN_ID, payload)) is True
    assert (await memory_store.get(UNKNOWN_ID)).payload == payload  # no field added: a copy keeps what it copies

    replacement = {"data": "heron replaced whole", "hash": "h2"}
    assert await memory_store.put(MemoryItem(UNKNOWN_ID, replacement)) is False
    assert (await memory_store.get(UNKNOWN_ID)).payload == replacement
    assert await memory_store.count() == 1
    assert await found(memory_store, "heron") == {UNKNOWN_ID}
    assert await found(memory_store, "flamingo") == set()


async def test_put_refuses_an_id_that_is_not_a_uuid(memory_store: MemoryStore) -> None:
    with pytest.raises(Invalid):
        await memory_store.put(MemoryItem("not-a-uuid", {"data": "x"}))
    assert await memory_store.count() == 0


async def test_put_of_what_page_gave_is_a_no_op(memory_store: MemoryStore) -> None:
    for n in range(3):
        await memory_store.add(f"round trip {n}", payload={"n": n})
    before = (await memory_store.page(limit=10)).memories
    for item in before:
        assert await memory_store.put(item) is False
    after = (await memory_store.page(limit=10)).memories
    assert [(m.id, m.payload) for m in after] == [(m.id, m.payload) for m in before]


# --- a backend that cannot be reached ---


async def test_an_unreachable_store_says_so_in_its_status(
    unreachable_store: MemoryStore, backend: MemoryBackend
) -> None:
    status = await unreachable_store.status()
    assert status.reachable is False
    assert status.backend == backend.backend
    assert isinstance(status.error, str)
    assert status.error
    assert status.to_json()["reachable"] is False


async def test_an_unreachable_store_raises_unavailable_from_every_other_call(unreachable_store: MemoryStore) -> None:
    store = unreachable_store
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "count": store.count,
        "page": lambda: store.page(limit=5),
        "search": lambda: store.search("coffee", limit=5),
        "get": lambda: store.get(UNKNOWN_ID),
        "add": lambda: store.add("text"),
        "put": lambda: store.put(MemoryItem(UNKNOWN_ID, {"data": "x"})),
        "update": lambda: store.update(UNKNOWN_ID, "text"),
        "delete": lambda: store.delete(UNKNOWN_ID),
    }
    for name, call in calls.items():
        try:
            await call()
        except Unavailable:
            continue
        except Exception as error:
            pytest.fail(f"{name}() raised {error!r} instead of Unavailable")
        pytest.fail(f"{name}() did not raise Unavailable")


async def test_an_unreachable_store_stays_unreachable(unreachable_store: MemoryStore) -> None:
    for _ in range(2):
        with pytest.raises(Unavailable):
            await unreachable_store.count()
        assert (await unreachable_store.status()).reachable is False
