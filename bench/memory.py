"""Memory search benchmark: every MemoryStore backend filled with the same memories, searched the adapter's way
(filtered by the backend) and the original's way (page through every memory, match substrings in the client).

Prints p50/p99 per backend and the ratio to that baseline; asserts nothing.
    .venv/bin/python bench/memory.py                                  # 100,000 memories, sqlite, qdrant, postgres
    .venv/bin/python bench/memory.py --memories 20000 --backends sqlite,qdrant
Qdrant runs in qdrant-client's local mode (":memory:"), which evaluates every filter in Python over every point
(~15 us each): its figures say how the adapter behaves there, not how a Qdrant server with its inverted index does.
`--qdrant-url http://127.0.0.1:6333` benches a server instead (a throwaway collection, deleted afterwards).
PostgreSQL is a throwaway server from tests/support (Debian's postgresql-15).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support

from qdrant_client import AsyncQdrantClient

from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_core.ports import MemoryStore

WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=random.Random(-i).randint(3, 9)))
    for i in range(5000)
]
FILL_CONCURRENCY = 64
BASELINE_PAGE = 1000
"""The page size of the original's way: scroll through everything, 1000 at a time."""


def sentence(rng: random.Random) -> str:
    # Zipf-like: a few words are everywhere, most are rare, as in real notes.
    return " ".join(WORDS[min(int(rng.paretovariate(1.1)) - 1, len(WORDS) - 1)] for _ in range(rng.randint(6, 24)))


def queries(count: int, rng: random.Random) -> list[str]:
    # One or two words, common and rare alike.
    return [
        " ".join(WORDS[min(int(rng.paretovariate(0.7)) - 1, len(WORDS) - 1)] for _ in range(rng.randint(1, 2)))
        for _ in range(count)
    ]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(samples: list[float], action: Callable[[], Awaitable[object]]) -> None:
    started = time.perf_counter()
    await action()
    samples.append((time.perf_counter() - started) * 1000)


async def original_search(store: MemoryStore, query: str, limit: int) -> list[str]:
    """What the Node connector does: read every memory page by page and keep those whose text holds the query."""
    needle, cursor = query.lower(), None
    hits: list[str] = []
    while True:
        page = await store.page(limit=BASELINE_PAGE, cursor=cursor)
        hits.extend(m.id for m in page.memories if needle in m.data.lower())
        if page.next_cursor is None:
            return hits[:limit]
        cursor = page.next_cursor


@asynccontextmanager
async def open_sqlite() -> AsyncIterator[MemoryStore]:
    with tempfile.TemporaryDirectory(prefix="claw-bench-") as directory:
        store = SqliteMemoryStore(Path(directory) / "memory.sqlite3")
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def open_qdrant(url: str | None) -> AsyncIterator[MemoryStore]:
    if url is None:
        store = QdrantMemoryStore(url=None, path=":memory:", collection=None)
    else:
        collection = f"claw_bench_{uuid.uuid4().hex[:12]}"
        store = QdrantMemoryStore(url=url, path=None, collection=collection, timeout_s=60.0)
    try:
        yield store
    finally:
        await store.close()
        if url is not None:
            client = AsyncQdrantClient(url=url, check_compatibility=False)
            await client.delete_collection(collection)
            await client.close()


@asynccontextmanager
async def open_postgres() -> AsyncIterator[MemoryStore]:
    from tests.support.postgres_server import PostgresServer, fresh_database

    from claw_adapters.memory.postgres import PostgresMemoryStore

    with PostgresServer.start() as server:
        async with fresh_database(server.dsn) as dsn:
            store = PostgresMemoryStore(dsn=dsn, collection=None)
            try:
                yield store
            finally:
                await store.close()


async def fill(store: MemoryStore, texts: list[str]) -> float:
    started = time.perf_counter()
    for first in range(0, len(texts), FILL_CONCURRENCY):
        await asyncio.gather(*(store.add(text) for text in texts[first : first + FILL_CONCURRENCY]))
    return len(texts) / (time.perf_counter() - started)


async def bench_backend(name: str, store: MemoryStore, texts: list[str], args: argparse.Namespace) -> None:
    rate = await fill(store, texts)
    print(f"{name}: {await store.count():,} memories filled at {rate:,.0f}/s")
    searches = queries(args.queries, random.Random(7))
    await store.search(searches[0], limit=args.limit)  # warm up: indexes, caches
    adapter: list[float] = []
    found = 0
    for query in searches:
        started = time.perf_counter()
        found += len(await store.search(query, limit=args.limit))
        adapter.append((time.perf_counter() - started) * 1000)
    baseline: list[float] = []
    for query in searches[: args.baseline_queries]:
        await timed(baseline, partial(original_search, store, query, args.limit))
    p50, p99, base50 = percentile(adapter, 0.5), percentile(adapter, 0.99), percentile(baseline, 0.5)
    print(
        f"{name}: search p50 {p50:.2f} ms, p99 {p99:.2f} ms (n={len(adapter)}, mean hits {found / len(adapter):.1f}); "
        f"original way p50 {base50:.1f} ms (n={len(baseline)}, mean {statistics.fmean(baseline):.1f} ms); "
        f"ratio {base50 / p50:,.1f}x"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30, help="searches timed the adapter's way")
    parser.add_argument("--baseline-queries", type=int, default=5, help="of those, timed the original's way")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,qdrant,postgres")
    parser.add_argument("--qdrant-url", help="a Qdrant server to bench instead of qdrant-client's local mode")
    args = parser.parse_args()
    openers: dict[str, Callable[[], AbstractAsyncContextManager[MemoryStore]]] = {
        "sqlite": open_sqlite,
        "qdrant": partial(open_qdrant, args.qdrant_url),
        "postgres": open_postgres,
    }
    rng = random.Random(1)
    texts = [sentence(rng) for _ in range(args.memories)]
    for name in args.backends.split(","):
        async with openers[name]() as store:
            await bench_backend(name, store, texts, args)
        gc.collect()  # what the previous backend left (qdrant local mode: 100,000 points) is not the next one's cost


if __name__ == "__main__":
    asyncio.run(main())
