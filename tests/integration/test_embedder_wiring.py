"""The embedder the configuration names, built by the real container, given to the stores that hold vectors, warmed
up by the service at start and closed at stop. The embeddings endpoint is the fake of the contract tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.memory.openai_embedder import DIMENSIONS_PROBE, OpenAICompatibleEmbedder
from claw_adapters.memory.postgres import PostgresMemoryStore
from claw_adapters.memory.qdrant import QdrantMemoryStore
from claw_adapters.memory.sqlite import SqliteMemoryStore
from claw_app.container import build_container
from claw_app.service import ConnectorService
from claw_app.settings import Settings, load_settings
from claw_core.errors import Unavailable
from tests.contract.fake_embeddings import FakeEmbeddings, serve_fake_embeddings
from tests.contract.memory_backends import closed_loopback_port

API_KEY = "sk-wiring-0123456789-secret"


def settings_for(tmp_path: Path, **env: str) -> Settings:
    base = {"HOME": str(tmp_path), "CLAW_DATA_DIR": str(tmp_path / "data")}
    return dataclasses.replace(load_settings(base | env), auth_token="t0ken-for-the-embedder-wiring-tests")


def embedder_env(url: str, **more: str) -> dict[str, str]:
    return {"MEMORY_EMBEDDER_URL": url, "MEMORY_EMBEDDER_MODEL": "nomic-embed-text"} | more


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    async with serve_fake_embeddings() as state:
        yield state


def test_qdrant_gets_the_configured_embedder_and_nothing_connects(tmp_path: Path, fake: FakeEmbeddings) -> None:
    qdrant = f"http://127.0.0.1:{closed_loopback_port()}"
    env = embedder_env(fake.base_url, MEMORY_EMBEDDER_API_KEY=API_KEY, MEMORY_EMBEDDER_DIMENSIONS="768")
    container = build_container(settings_for(tmp_path, QDRANT_URL=qdrant, **env))
    embedder = container.embedder()
    assert isinstance(embedder, OpenAICompatibleEmbedder)
    assert (embedder.model, embedder.dimensions) == ("nomic-embed-text", 768)
    assert embedder.endpoint == fake.base_url.removesuffix("/v1")
    assert container.embedder() is embedder
    assert isinstance(container.memory_store(), QdrantMemoryStore)
    assert fake.requests == []


def test_postgres_gets_the_same_kind_of_embedder(tmp_path: Path, fake: FakeEmbeddings) -> None:
    dsn = f"postgresql://nobody@127.0.0.1:{closed_loopback_port()}/mem0"
    container = build_container(settings_for(tmp_path, MEMORY_PG_URL=dsn, **embedder_env(fake.base_url)))
    assert isinstance(container.embedder(), OpenAICompatibleEmbedder)
    assert isinstance(container.memory_store(), PostgresMemoryStore)


def test_sqlite_has_no_vectors_so_no_embedder(tmp_path: Path, fake: FakeEmbeddings) -> None:
    container = build_container(settings_for(tmp_path, **embedder_env(fake.base_url)))
    assert container.embedder() is None
    assert isinstance(container.memory_store(), SqliteMemoryStore)


def test_without_embedder_settings_there_is_none(tmp_path: Path) -> None:
    container = build_container(settings_for(tmp_path, QDRANT_URL=f"http://127.0.0.1:{closed_loopback_port()}"))
    assert container.embedder() is None


async def test_the_service_learns_the_size_at_start_and_closes_the_embedder_at_stop(
    tmp_path: Path, fake: FakeEmbeddings
) -> None:
    closed = f"127.0.0.1:{closed_loopback_port()}"  # no Qdrant, no gateway: the connector starts all the same
    env = embedder_env(fake.base_url, QDRANT_URL=f"http://{closed}", GATEWAY_WS_URL=f"ws://{closed}", PORT="0")
    settings = settings_for(tmp_path, **env)
    service = ConnectorService(settings)
    try:
        await service.start()
        embedder = service.container.embedder()
        assert isinstance(embedder, OpenAICompatibleEmbedder)
        await fake.wait_for_requests(1)
        assert await embedder.ensure_dimensions() == 3
        assert [body["input"] for _, body in fake.requests] == [[DIMENSIONS_PROBE]]
    finally:
        await service.stop()
    with pytest.raises(Unavailable, match="closed"):
        await embedder.embed(["after stop"])
