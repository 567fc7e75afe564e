"""The memory store the configuration selects, built by the real container and served by the service's router.

Qdrant and PostgreSQL are pointed at a closed loopback port: the connector must still build, start its routes, and
answer /api/memory/status with reachable:false (never crash at start-up on an unreachable backend).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from claw_adapters.memory.in_memory import InMemoryMemoryStore
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_app.container import build_container
from claw_app.service import ConnectorService
from claw_app.settings import Settings, load_settings
from claw_core.api.contract import ApiRequest
from claw_core.errors import Unavailable
from tests.contract.memory_backends import closed_loopback_port


def settings_for(tmp_path: Path, **env: str) -> Settings:
    base = {"HOME": str(tmp_path), "CLAW_DATA_DIR": str(tmp_path / "data")}
    return dataclasses.replace(load_settings(base | env), auth_token="t0ken-for-the-memory-wiring-tests")


@pytest.fixture
def closed_port() -> int:
    return closed_loopback_port()


async def test_sqlite_is_the_default_and_lives_in_the_data_dir(tmp_path: Path) -> None:
    store = build_container(settings_for(tmp_path)).memory_store()
    assert isinstance(store, SqliteMemoryStore)
    assert store.path == tmp_path / "data" / "memory.sqlite3"
    assert not store.path.exists()  # built, not opened
    try:
        assert (await store.status()).reachable is True
        assert store.path.stat().st_mode & 0o777 == 0o600
    finally:
        await store.close()


async def test_the_in_memory_store_for_tests(tmp_path: Path) -> None:
    container = build_container(settings_for(tmp_path, MEMORY_PROVIDER="memory", MEMORY_COLLECTION="scratch"))
    store = container.memory_store()
    assert isinstance(store, InMemoryMemoryStore)
    assert container.memory_store() is store  # one store for the whole service


async def test_qdrant_on_a_closed_port_starts_and_reports_unreachable(tmp_path: Path, closed_port: int) -> None:
    settings = settings_for(tmp_path, QDRANT_URL=f"http://127.0.0.1:{closed_port}", MEMORY_COLLECTION="mem0")
    store = build_container(settings).memory_store()
    assert isinstance(store, QdrantMemoryStore)
    try:
        status = await store.status()
        assert (status.reachable, status.backend) == (False, "qdrant")
        assert status.error
        with pytest.raises(Unavailable):
            await store.count()
    finally:
        await store.close()


async def test_postgres_on_a_closed_port_starts_and_reports_unreachable(tmp_path: Path, closed_port: int) -> None:
    dsn = f"postgresql://nobody:s3cret@127.0.0.1:{closed_port}/mem0"
    store = build_container(settings_for(tmp_path, MEMORY_PROVIDER="pgvector", MEMORY_PG_URL=dsn)).memory_store()
    assert isinstance(store, PostgresMemoryStore)
    try:
        status = await store.status()
        assert (status.reachable, status.backend) == (False, "postgres")
        assert status.error
        assert "s3cret" not in status.error
        with pytest.raises(Unavailable):
            await store.count()
    finally:
        await store.close()


async def test_the_service_serves_memory_status_with_the_backend_down(tmp_path: Path, closed_port: int) -> None:
    service = ConnectorService(settings_for(tmp_path, QDRANT_URL=f"http://127.0.0.1:{closed_port}"))
    router = service.router()
    try:
        status = await router.dispatch(ApiRequest("GET", "/api/memory/status"))
        assert status.status == 200
        assert json.loads(status.encoded())["reachable"] is False
        listing = await router.dispatch(ApiRequest("GET", "/api/memory/list"))
        assert listing.status == 503
        assert set(json.loads(listing.encoded())) == {"error"}
    finally:
        await service.stop()


async def test_the_service_closes_the_memory_store_when_it_stops(tmp_path: Path) -> None:
    service = ConnectorService(settings_for(tmp_path))
    router = service.router()
    added = await router.dispatch(ApiRequest("POST", "/api/memory", body=b'{"data": "remember me"}'))
    assert added.status == 201
    await service.stop()
    with pytest.raises(Unavailable):
        await service.container.memory_store().count()


def test_no_route_of_the_service_is_shadowed_by_an_earlier_one(tmp_path: Path) -> None:
    """`/api/memory/{id}` must not take `/api/memory/files`, `/status`, ...: every route with no placeholder is
    reached by its own path."""
    router = ConnectorService(settings_for(tmp_path)).router()
    literal = [route for route in router.routes if "{" not in route.path]
    assert {"/api/memory/status", "/api/memory/list", "/api/memory/search"} <= {route.path for route in literal}
    for route in literal:
        assert router.match(route.method, route.path)[0] is route, f"{route.method} {route.path} is shadowed"
