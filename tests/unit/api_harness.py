"""Builds the real route table over in-memory adapters, and calls it the way a transport does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.uploads import InMemoryUploadStore
from claw_adapters.storage.workspace_file import InMemoryWorkspaceRegistry
from claw_core.api.contract import ApiRequest, Router
from claw_core.api.history_routes import HistoryApi, history_routes
from claw_core.api.router import build_router
from claw_core.api.upload_routes import UploadsApi, upload_routes
from claw_core.model import JsonObject
from claw_core.ports import HistoryStores
from claw_core.services.history import ActiveThreads, HistoryService
from claw_core.services.sessions import SessionRef
from claw_core.services.titles import FirstMessageTitles
from claw_core.services.transfer import TransferService
from claw_core.services.workspaces import WorkspaceService


class FakeClock:
    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def now_ms(self) -> int:
        self.now += 1
        return self.now


@dataclass
class RecordingSink:
    events: list[JsonObject] = field(default_factory=list)

    def publish(self, event: JsonObject) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[JsonObject]:
        return [e for e in self.events if e.get("event") == name]


@dataclass
class RecordingCleanup:
    """Records the sessions the routes hand over for cleanup (the janitor itself is tested on its own)."""

    forgotten: list[SessionRef] = field(default_factory=list)

    def forget(self, sessions: Iterable[SessionRef]) -> None:
        self.forgotten += list(sessions)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Harness:
    router: Router
    workspaces: WorkspaceService
    history: HistoryService
    events: RecordingSink
    stores: HistoryStores
    cleanup: RecordingCleanup
    uploads: InMemoryUploadStore

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        workspace: str | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        headers = {"x-workspace": workspace} if workspace else {}
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = await self.router.dispatch(
            ApiRequest(method=method, path=path, query=query or {}, headers=headers, body=payload)
        )
        decoded = json.loads(response.encoded()) if response.content_type == "application/json" else response.body
        return Reply(response.status, decoded, dict(response.headers))


async def build_harness(stores: HistoryStores | None = None) -> Harness:
    stores = stores or InMemoryHistoryStores()
    clock = FakeClock()
    events = RecordingSink()
    workspaces = WorkspaceService(InMemoryWorkspaceRegistry(), stores, clock)
    await workspaces.start()
    history = HistoryService(stores, clock, events, FirstMessageTitles(), ActiveThreads())
    cleanup = RecordingCleanup()
    uploads = InMemoryUploadStore()
    api = HistoryApi(workspaces, history, TransferService(stores), cleanup, uploads, clock, time.monotonic())
    routes = [*history_routes(api), *upload_routes(UploadsApi(workspaces, history, uploads))]
    return Harness(build_router(routes), workspaces, history, events, stores, cleanup, uploads)
