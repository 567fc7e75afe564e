"""History benchmark: bulk insert, thread open, search, database size, and HTTP throughput.

Prints figures and ratios against naive baselines run in the same process; asserts nothing.
    .venv/bin/python bench/history.py                       # 1,000,000 messages across 10,000 threads
    .venv/bin/python bench/history.py --messages 100000     # a quicker run
Targets on a 2-core machine: >= 20,000 inserted messages/s in bulk, thread open p99 < 5 ms and search
p99 < 50 ms at 1M messages, >= 3,000 HTTP requests/s with 32 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _http_load import bench_http
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_core.model import Message, Role, SessionKey, Thread, ThreadExport
from claw_core.ports import HistoryStore

WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=random.Random(-i).randint(3, 9)))
    for i in range(5000)
]
BATCH_MESSAGES = 20_000


def sentence(rng: random.Random) -> str:
    # Zipf-like: a few words are everywhere, most are rare, as in real conversations.
    count = rng.randint(8, 40)
    return " ".join(WORDS[min(int(rng.paretovariate(1.1)) - 1, len(WORDS) - 1)] for _ in range(count))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(name: str, samples_ms: list[float]) -> str:
    return (
        f"{name}: p50 {percentile(samples_ms, 0.5):.3f} ms, p99 {percentile(samples_ms, 0.99):.3f} ms "
        f"(n={len(samples_ms)}, mean {statistics.fmean(samples_ms):.3f} ms)"
    )


async def timed(samples: list[float], action: Callable[[], Awaitable[object]]) -> None:
    started = time.perf_counter()
    await action()
    samples.append((time.perf_counter() - started) * 1000)


def build_threads(first: int, count: int, per_thread: int, rng: random.Random) -> list[ThreadExport]:
    threads = []
    for index in range(first, first + count):
        thread_id = f"t{index:06d}"
        base = 1_700_000_000_000 + index * 1_000_000
        # Titled, as every thread with messages is by its first user message.
        key = SessionKey("main", "bench", thread_id).format()
        thread = Thread(thread_id, key, title=f"Thread {index}", created_at=base, updated_at=base)
        messages = tuple(
            Message(
                f"{thread_id}-{n:04d}", thread_id, Role.USER if n % 2 == 0 else Role.ASSISTANT, sentence(rng), base + n
            )
            for n in range(per_thread)
        )
        threads.append(ThreadExport(thread, messages))
    return threads


async def bench_insert(store: HistoryStore, total_threads: int, per_thread: int) -> None:
    rng = random.Random(7)
    threads_per_batch = max(1, BATCH_MESSAGES // per_thread)
    inserted = 0
    spent = 0.0
    for first in range(0, total_threads, threads_per_batch):
        batch = build_threads(first, min(threads_per_batch, total_threads - first), per_thread, rng)
        started = time.perf_counter()
        counts = await store.import_threads(batch)
        spent += time.perf_counter() - started
        inserted += counts.messages
    print(
        f"bulk insert: {inserted:,} messages in {total_threads:,} threads, {spent:.1f} s, {inserted / spent:,.0f} msg/s"
    )


async def bench_single_inserts(store: HistoryStore, count: int) -> float:
    """The baseline: one message per transaction, as the HTTP route stores them."""
    thread = Thread("single", SessionKey("main", "bench", "single").format())
    await store.create_thread(thread)
    started = time.perf_counter()
    for n in range(count):
        await store.upsert_message(Message(f"single-{n}", "single", Role.USER, "one at a time", n), now=n)
    rate = count / (time.perf_counter() - started)
    print(f"  baseline, one message per transaction (POST path): {rate:,.0f} msg/s")
    return rate


async def bench_open(store: HistoryStore, db_path: Path, total_threads: int) -> None:
    rng = random.Random(11)
    samples: list[float] = []
    for _ in range(2000):
        thread_id = f"t{rng.randrange(total_threads):06d}"
        await timed(samples, lambda thread_id=thread_id: store.page_messages(thread_id, limit=100))
    print(describe("thread open (last 100 messages)", samples))
    rendered: list[float] = []
    for _ in range(2000):
        thread_id = f"t{rng.randrange(total_threads):06d}"
        await timed(rendered, lambda thread_id=thread_id: store.render_messages(thread_id, limit=100))
    print(describe("  the same page as the HTTP route serves it (JSON rendered by SQLite)", rendered))
    # Baseline: the same query on a bare sqlite3 connection in this thread, no executor hop, no model objects.
    raw = sqlite3.connect(db_path)
    direct: list[float] = []
    for _ in range(2000):
        thread_id = f"t{rng.randrange(total_threads):06d}"
        started = time.perf_counter()
        raw.execute(
            "SELECT id, thread_id, role, content, status, metadata, seq, timestamp, created_at FROM messages "
            "WHERE thread_id = ? ORDER BY timestamp DESC, id DESC LIMIT 101",
            (thread_id,),
        ).fetchall()
        direct.append((time.perf_counter() - started) * 1000)
    raw.close()
    ratio = percentile(samples, 0.5) / percentile(direct, 0.5)
    print(
        f"  baseline, bare sqlite3 in the calling thread: {describe('', direct)[2:]}; store/bare p50 ratio {ratio:.2f}"
    )


async def bench_search(store: HistoryStore, db_path: Path) -> None:
    rng = random.Random(13)
    # Queries across the frequency range: common, middling and rare words, and two-word queries.
    queries = [WORDS[rng.choice([0, 2, 5, 20, 60, 200, 800, 3000])] for _ in range(300)]
    queries += [f"{WORDS[rng.randrange(50)]} {WORDS[rng.randrange(50, 500)]}" for _ in range(100)]
    samples: list[float] = []
    for query in queries:
        await timed(samples, lambda query=query: store.search(query, offset=0, limit=20))
    print(describe("search (20 hits with snippets and the total)", samples))
    raw = sqlite3.connect(db_path)
    naive: list[float] = []
    for query in queries[:20]:
        started = time.perf_counter()
        raw.execute(
            "SELECT id FROM messages WHERE content LIKE ? ORDER BY pk DESC LIMIT 20", (f"%{query.split()[0]}%",)
        ).fetchall()
        raw.execute("SELECT count(*) FROM messages WHERE content LIKE ?", (f"%{query.split()[0]}%",)).fetchone()
        naive.append((time.perf_counter() - started) * 1000)
    raw.close()
    ratio = percentile(naive, 0.5) / percentile(samples, 0.5)
    print(f"  baseline, LIKE scan: {describe('', naive)[2:]}; FTS is {ratio:.0f}x faster at p50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--http-seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    per_thread = max(1, args.messages // args.threads)
    with tempfile.TemporaryDirectory(prefix="claw-bench-") as directory:
        data_dir = Path(directory)
        asyncio.run(bench_storage(data_dir, args.threads, per_thread))
        bench_http(data_dir, args.threads, args.clients, args.http_seconds)


async def bench_storage(data_dir: Path, total_threads: int, per_thread: int) -> None:
    stores = SqliteHistoryStores(data_dir)
    store = await stores.open("bench")
    db_path = data_dir / "history" / "bench.sqlite3"
    await bench_insert(store, total_threads, per_thread)
    await bench_single_inserts(store, 2000)
    await bench_open(store, db_path, total_threads)
    await bench_search(store, db_path)
    await stores.close()
    size = sum(p.stat().st_size for p in db_path.parent.glob("bench.sqlite3*"))
    total = total_threads * per_thread
    print(f"database size: {size / 2**20:,.1f} MiB ({size / total:,.0f} bytes per message)")


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
