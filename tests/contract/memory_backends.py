"""Every MemoryStore adapter the contract suite (test_memory_contract.py) runs against.

HOW TO ADD A BACKEND: write two async context managers taking `(request, tmp_path)`:
- `open` yields a fresh, EMPTY store (a new collection / table / file per test) and closes it afterwards;
- `open_unreachable` yields a store pointing at nothing (a closed port, a path that cannot be opened), built the
  way the application builds it, so the suite can check it answers `status()` with reachable=False and raises
  `Unavailable` from every other call.
`request` lets a factory use session fixtures (e.g. `request.getfixturevalue("postgres_dsn")` for a server started
once per session); `tmp_path` is the test's own directory. Then add one `MemoryBackend` entry to `MEMORY_BACKENDS`
below, in the marked place. Never skip: a backend whose server cannot be started here must fail, not vanish.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from claw_adapters.memory.hashing_embedder import HashingEmbedder
from claw_adapters.memory.in_memory import InMemoryMemoryStore
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_core.ports import MemoryStore
from tests.support.postgres_server import fresh_collection

__all__ = ["MEMORY_BACKENDS", "MemoryBackend", "MemoryFactory", "closed_loopback_port"]

MemoryFactory = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[MemoryStore]]


@dataclass(frozen=True)
class MemoryBackend:
    open: MemoryFactory
    open_unreachable: MemoryFactory
    backend: str
    """What `MemoryStatus.backend` must say."""


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released: a connection to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def _closed_after(store: MemoryStore) -> AsyncIterator[MemoryStore]:
    """The store for one test, closed when it ends."""
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _in_memory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with _closed_after(InMemoryMemoryStore()) as store:
        yield store


@asynccontextmanager
async def _in_memory_switched_off(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with _closed_after(InMemoryMemoryStore(available=False)) as store:
        yield store


@asynccontextmanager
async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with _closed_after(SqliteMemoryStore(tmp_path / "data" / "memory.sqlite3")) as store:
        yield store


@asynccontextmanager
async def _sqlite_on_a_directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    directory = tmp_path / "memory.sqlite3"
    directory.mkdir()  # a directory where the database file should be: it can never be opened
    async with _closed_after(SqliteMemoryStore(directory)) as store:
        yield store


@asynccontextmanager
async def _qdrant_local(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    async with _closed_after(QdrantMemoryStore(url=None, path=":memory:", collection=None)) as store:
        yield store


@asynccontextmanager
async def _qdrant_closed_port(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    url = f"http://127.0.0.1:{closed_loopback_port()}"
    async with _closed_after(QdrantMemoryStore(url=url, path=None, collection=None, timeout_s=2.0)) as store:
        yield store


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    dsn = request.getfixturevalue("postgres_dsn")
    async with fresh_collection(dsn) as collection:
        store = PostgresMemoryStore(dsn=dsn, collection=collection)
        async with _closed_after(store):
            yield store


@asynccontextmanager
async def _postgres_closed_port(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    dsn = f"postgresql://claw:not-the-password@127.0.0.1:{closed_loopback_port()}/claw"
    async with _closed_after(PostgresMemoryStore(dsn=dsn, collection=None, connect_timeout_s=2.0)) as store:
        yield store


@asynccontextmanager
async def _postgres_pgvector(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    """The semantic path: a server with pgvector, a table of its own, and an embedder. The store creates the
    extension (once, in the session's database) and the table's `vector` column itself; a fresh database per test
    would cost 0.3 s more each (test_memory_pgvector.py makes its own, to watch the extension being created)."""
    dsn = request.getfixturevalue("pgvector_dsn")
    async with fresh_collection(dsn) as collection:
        store = PostgresMemoryStore(dsn=dsn, collection=collection, embedder=HashingEmbedder())
        async with _closed_after(store):
            yield store


@asynccontextmanager
async def _postgres_pgvector_closed_port(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    dsn = f"postgresql://claw:not-the-password@127.0.0.1:{closed_loopback_port()}/claw"
    store = PostgresMemoryStore(dsn=dsn, collection=None, embedder=HashingEmbedder(), connect_timeout_s=2.0)
    async with _closed_after(store):
        yield store


MEMORY_BACKENDS: dict[str, MemoryBackend] = {
    "memory": MemoryBackend(_in_memory, _in_memory_switched_off, backend="memory"),
    "sqlite": MemoryBackend(_sqlite, _sqlite_on_a_directory, backend="sqlite"),
    # --- other backends register here (H4: "qdrant", H5: "postgres"), one entry each -------------------------------
    "qdrant": MemoryBackend(_qdrant_local, _qdrant_closed_port, backend="qdrant"),
    "postgres": MemoryBackend(_postgres, _postgres_closed_port, backend="postgres"),
    "postgres-pgvector": MemoryBackend(_postgres_pgvector, _postgres_pgvector_closed_port, backend="postgres"),
}
