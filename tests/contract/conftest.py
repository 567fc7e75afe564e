"""Fixtures of the history storage and workspace registry contract suites: one parameter per adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_adapters.storage.workspace_file import InMemoryWorkspaceRegistry, JsonFileWorkspaceRegistry
from claw_core.ports import HistoryStore, HistoryStores, WorkspaceRegistry


@pytest.fixture(params=["memory", "sqlite"])
async def history_stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HistoryStores]:
    stores: HistoryStores = InMemoryHistoryStores() if request.param == "memory" else SqliteHistoryStores(tmp_path)
    yield stores
    await stores.close()


@pytest.fixture
async def history_store(history_stores: HistoryStores) -> HistoryStore:
    return await history_stores.open("default")


@pytest.fixture
def workspace_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "workspaces.json"


@pytest.fixture(params=["memory", "file"])
def workspace_registry(request: pytest.FixtureRequest, workspace_file: Path) -> WorkspaceRegistry:
    if request.param == "memory":
        return InMemoryWorkspaceRegistry()
    return JsonFileWorkspaceRegistry(workspace_file)
