"""An in-memory memory store: a fake for fast tests that passes the same contract suite as the real backends.

Where it is simpler than SQLite: search is a case-insensitive whole-word AND of the query's words (letters and
digits), ranked by how often the words occur; no removal of diacritics. `available = False` switches it off, so
tests can see how callers face a backend that cannot be reached. Payloads are copied in and out through JSON, so
callers cannot alias the stored state, just as with a real database.
"""

from __future__ import annotations

import json
from collections import Counter

from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import JsonObject, MemoryItem, MemoryStatus
from claw_core.ports import MemoryPage
from claw_core.services.memory_payloads import (
    canonical_memory_id,
    new_memory_id,
    new_payload,
    require_memory_id,
    search_words,
    text_words,
    updated_payload,
)

__all__ = ["InMemoryMemoryStore"]


class InMemoryMemoryStore:
    def __init__(self, *, collection: str | None = "memories", available: bool = True) -> None:
        self.collection = collection
        self.available = available
        """False: every call but `status` raises Unavailable, and `status` reports the store unreachable."""
        self._payloads: dict[str, str] = {}  # id -> payload as JSON text
        self._closed = False

    async def status(self) -> MemoryStatus:
        if not self.available or self._closed:
            error = "the in-memory store is closed" if self._closed else "the in-memory store is switched off"
            return MemoryStatus(reachable=False, backend="memory", collection=self.collection, error=error)
        count = len(self._payloads)
        return MemoryStatus(reachable=True, backend="memory", collection=self.collection, points_count=count)

    async def count(self) -> int:
        self._check()
        return len(self._payloads)

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        self._check()
        _check_limit(limit)
        after = None if cursor is None else canonical_memory_id(cursor)
        if cursor is not None and after is None:
            raise Invalid("Invalid cursor")
        ids = sorted(i for i in self._payloads if after is None or i > after)
        memories = [self._item(i) for i in ids[:limit]]
        return MemoryPage(memories=memories, next_cursor=memories[-1].id if len(ids) > limit else None)

    async def search(self, query: str, *, limit: int) -> list[MemoryItem]:
        self._check()
        _check_limit(limit)
        words = search_words(query)
        if not words:
            return []
        scored: list[tuple[float, str]] = []
        for memory_id, text in self._payloads.items():
            data = _load(text).get("data")
            counts = Counter(text_words(data) if isinstance(data, str) else [])
            if all(counts[word] for word in words):
                scored.append((float(sum(counts[word] for word in words)), memory_id))
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        return [MemoryItem(memory_id, _load(self._payloads[memory_id]), score) for score, memory_id in scored[:limit]]

    async def get(self, memory_id: str) -> MemoryItem:
        self._check()
        key = canonical_memory_id(memory_id)
        if key is None or key not in self._payloads:
            raise NotFound("Memory not found")
        return self._item(key)

    async def add(self, data: str, *, payload: JsonObject | None = None, memory_id: str | None = None) -> MemoryItem:
        self._check()
        stored = new_payload(data, payload)
        key = new_memory_id() if memory_id is None else require_memory_id(memory_id)
        if key in self._payloads:
            raise Conflict("A memory with this id already exists")
        self._payloads[key] = _dump(stored)
        return self._item(key)

    async def put(self, item: MemoryItem) -> bool:
        self._check()
        key = require_memory_id(item.id)
        created = key not in self._payloads
        self._payloads[key] = _dump(item.payload)
        return created

    async def update(self, memory_id: str, data: str) -> MemoryItem:
        current = await self.get(memory_id)
        self._payloads[current.id] = _dump(updated_payload(current.payload, data))
        return self._item(current.id)

    async def delete(self, memory_id: str) -> None:
        current = await self.get(memory_id)
        del self._payloads[current.id]

    async def close(self) -> None:
        self._closed = True

    def _check(self) -> None:
        if self._closed:
            raise Unavailable("The memory store is closed")
        if not self.available:
            raise Unavailable("The memory store cannot be reached")

    def _item(self, memory_id: str) -> MemoryItem:
        return MemoryItem(memory_id, _load(self._payloads[memory_id]))


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise Invalid("limit must be at least 1")


def _dump(payload: JsonObject) -> str:
    return json.dumps(payload, ensure_ascii=False)


def _load(text: str) -> JsonObject:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
