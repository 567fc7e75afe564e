"""Where the workspace list lives: one JSON file written atomically, or memory for tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from claw_adapters.storage.atomic_file import write_private_file
from claw_core.errors import Invalid
from claw_core.model import WorkspaceState

__all__ = ["InMemoryWorkspaceRegistry", "JsonFileWorkspaceRegistry"]


class JsonFileWorkspaceRegistry:
    """`WorkspaceState.to_json()` in a private (0600) file. A save writes a temporary file next to it, syncs it
    and renames it over the old one, then syncs the directory: after a crash either state is read back whole."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._save_lock = asyncio.Lock()  # saves land in call order, never interleaved

    async def load(self) -> WorkspaceState | None:
        return await asyncio.to_thread(self._load)

    async def save(self, state: WorkspaceState) -> None:
        text = json.dumps(state.to_json(), ensure_ascii=False, indent=2) + "\n"
        async with self._save_lock:
            await asyncio.to_thread(self._write, text)

    def _load(self) -> WorkspaceState | None:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise Invalid("expected a JSON object")
            return WorkspaceState.from_json(data)
        except (Invalid, ValueError, TypeError, AttributeError) as error:  # ValueError: bad JSON, UTF-8, numbers
            raise Invalid(f"Malformed workspace file {self._path}: {error}") from None

    def _write(self, text: str) -> None:
        write_private_file(self._path, text.encode())


class InMemoryWorkspaceRegistry:
    """Keeps the state in memory: for tests and for a connector that must leave no trace on disk."""

    def __init__(self, state: WorkspaceState | None = None) -> None:
        self._state = state

    async def load(self) -> WorkspaceState | None:
        return self._state

    async def save(self, state: WorkspaceState) -> None:
        self._state = state
