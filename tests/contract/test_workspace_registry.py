"""The WorkspaceRegistry contract on every adapter, then what only the JSON file promises."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from claw_adapters.storage.workspace_file import JsonFileWorkspaceRegistry
from claw_core.errors import Invalid
from claw_core.model import Workspace, WorkspaceState
from claw_core.ports import WorkspaceRegistry

STATE = WorkspaceState(
    active="work",
    workspaces=(
        Workspace("default", "Default", created_at=1),
        Workspace("work", "Work ✓", color="#ff0000", icon="briefcase", agent="coder", order=1, last_thread="t1"),
    ),
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inode(path: Path) -> int:
    return path.stat().st_ino


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir()
    path.write_bytes(content)


async def test_nothing_saved_loads_as_none(workspace_registry: WorkspaceRegistry) -> None:
    assert await workspace_registry.load() is None


async def test_a_saved_state_loads_back(workspace_registry: WorkspaceRegistry) -> None:
    await workspace_registry.save(STATE)
    assert await workspace_registry.load() == STATE


async def test_the_last_save_wins(workspace_registry: WorkspaceRegistry) -> None:
    await workspace_registry.save(STATE)
    only_default = WorkspaceState(active="default", workspaces=STATE.workspaces[:1])
    await workspace_registry.save(only_default)
    assert await workspace_registry.load() == only_default


# --- the JSON file ---


async def test_the_file_holds_the_wire_json_and_is_private(workspace_file: Path) -> None:
    await JsonFileWorkspaceRegistry(workspace_file).save(STATE)
    assert mode(workspace_file) == 0o600
    assert mode(workspace_file.parent) == 0o700
    assert await JsonFileWorkspaceRegistry(workspace_file).load() == STATE  # a fresh instance reads it back


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"active": "x", "workspaces": []}',
        b'{"workspaces": [{"name": "Bad Name"}]}',
        b'{"workspaces": ["default"]}',
        b'{"workspaces": [{"name": "ok", "order": "first"}]}',
    ],
)
async def test_a_malformed_file_is_invalid_and_names_the_path(workspace_file: Path, content: bytes) -> None:
    write(workspace_file, content)
    with pytest.raises(Invalid, match=str(workspace_file)):
        await JsonFileWorkspaceRegistry(workspace_file).load()


async def test_save_replaces_the_file_and_leaves_no_temporary_behind(workspace_file: Path) -> None:
    registry = JsonFileWorkspaceRegistry(workspace_file)
    await registry.save(STATE)
    with workspace_file.open("rb") as reader_of_the_old_state:
        await registry.save(WorkspaceState(active="default", workspaces=STATE.workspaces[:1]))
        # a new file took the name; whoever had the old one open still reads a whole, old state
        assert os.fstat(reader_of_the_old_state.fileno()).st_ino != inode(workspace_file)
        assert b'"work"' in reader_of_the_old_state.read()
    assert names_in(workspace_file.parent) == [workspace_file.name]


async def test_a_failed_save_keeps_the_old_state(workspace_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = JsonFileWorkspaceRegistry(workspace_file)
    await registry.save(STATE)

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        await registry.save(WorkspaceState(active="default", workspaces=STATE.workspaces[:1]))
    monkeypatch.undo()
    assert await registry.load() == STATE
    assert names_in(workspace_file.parent) == [workspace_file.name]
