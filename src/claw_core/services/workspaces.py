"""Workspaces: named, separate histories, one of them active. There is always at least one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from claw_core.errors import Conflict, Invalid, NotFound
from claw_core.model import (
    DEFAULT_AGENT,
    Workspace,
    WorkspaceState,
    validate_agent_id,
    validate_workspace_name,
)
from claw_core.ports import Clock, HistoryStores, WorkspaceRegistry

__all__ = ["DEFAULT_WORKSPACE", "WorkspaceChanges", "WorkspaceService"]

DEFAULT_WORKSPACE = "default"
_LABEL_MAX = 100


@dataclass(frozen=True, slots=True)
class WorkspaceChanges:
    """What PATCH may change; None leaves a field as it is. `last_thread` uses "" to clear."""

    label: str | None = None
    color: str | None = None
    icon: str | None = None
    last_thread: str | None = None
    agent: str | None = None


class WorkspaceService:
    def __init__(self, registry: WorkspaceRegistry, stores: HistoryStores, clock: Clock) -> None:
        self._registry = registry
        self._stores = stores
        self._clock = clock
        self._state: WorkspaceState | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the saved workspaces, creating the default one on first run."""
        state = await self._registry.load()
        if state is None:
            first = Workspace(name=DEFAULT_WORKSPACE, label="Default", created_at=self._clock.now_ms())
            state = WorkspaceState(active=first.name, workspaces=(first,))
            await self._registry.save(state)
        self._state = state

    @property
    def state(self) -> WorkspaceState:
        if self._state is None:
            raise RuntimeError("WorkspaceService.start() was not awaited")
        return self._state

    def resolve(self, name: str | None) -> Workspace:
        """The workspace a request targets: the named one, else the active one. An unknown name is refused
        (404), never turned into a new workspace or a file name."""
        state = self.state
        found = state.find(name if name is not None else state.active)
        if found is None:
            raise NotFound("Workspace not found")
        return found

    def ordered(self) -> list[Workspace]:
        return sorted(self.state.workspaces, key=lambda w: (w.order, w.created_at, w.name))

    async def unread_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for workspace in self.state.workspaces:
            store = await self._stores.open(workspace.name)
            counts[workspace.name] = await store.total_unread()
        return counts

    async def create(
        self,
        name: str,
        *,
        label: str | None = None,
        color: str | None = None,
        icon: str | None = None,
        agent: str | None = None,
    ) -> Workspace:
        validate_workspace_name(name)
        async with self._lock:
            state = self.state
            if state.find(name) is not None:
                raise Conflict("Workspace already exists")
            workspace = Workspace(
                name=name,
                label=_label(label, name),
                color=color,
                icon=icon,
                agent=validate_agent_id(agent) if agent is not None else DEFAULT_AGENT,
                order=max((w.order for w in state.workspaces), default=-1) + 1,
                created_at=self._clock.now_ms(),
            )
            await self._save(replace(state, workspaces=(*state.workspaces, workspace)))
            await self._stores.open(name)
            return workspace

    async def update(self, name: str, changes: WorkspaceChanges) -> tuple[Workspace, list[str]]:
        """Apply the changes. Returns the workspace and the session keys retired by an agent change (its threads
        now point at the new agent; the old gateway sessions are left for cleanup)."""
        async with self._lock:
            current = self.resolve(name)
            updated = replace(
                current,
                label=_label(changes.label, current.label) if changes.label is not None else current.label,
                color=changes.color if changes.color is not None else current.color,
                icon=changes.icon if changes.icon is not None else current.icon,
                last_thread=(changes.last_thread or None) if changes.last_thread is not None else current.last_thread,
                agent=validate_agent_id(changes.agent) if changes.agent is not None else current.agent,
            )
            retired: list[str] = []
            if updated.agent != current.agent:
                store = await self._stores.open(name)
                retired = await store.rewrite_session_keys(updated.agent, name)
            await self._save(self._replace(updated))
            return updated, retired

    async def delete(self, name: str) -> None:
        async with self._lock:
            state = self.state
            self.resolve(name)
            if len(state.workspaces) == 1:
                raise Invalid("Cannot delete the only workspace")
            remaining = tuple(w for w in state.workspaces if w.name != name)
            active = state.active
            if active == name:
                active = min(remaining, key=lambda w: (w.order, w.created_at, w.name)).name
            await self._save(WorkspaceState(active=active, workspaces=remaining))
            await self._stores.drop(name)

    async def reorder(self, order: Sequence[object]) -> list[Workspace]:
        """Listed workspaces take the listed positions; unlisted ones keep their relative order after them."""
        async with self._lock:
            state = self.state
            names: list[str] = []
            for entry in order:
                if not isinstance(entry, str) or state.find(entry) is None:
                    raise Invalid("order must list names of existing workspaces")
                if entry not in names:
                    names.append(entry)
            rest = [w.name for w in self.ordered() if w.name not in names]
            position = {name: index for index, name in enumerate([*names, *rest])}
            workspaces = tuple(replace(w, order=position[w.name]) for w in state.workspaces)
            await self._save(replace(state, workspaces=workspaces))
            return self.ordered()

    async def activate(self, name: str) -> Workspace:
        async with self._lock:
            workspace = self.resolve(name)
            await self._save(replace(self.state, active=workspace.name))
            return workspace

    async def remember_thread(self, name: str, thread_id: str) -> None:
        """Record the thread the user last looked at in a workspace (its `lastThread`)."""
        async with self._lock:
            workspace = self.resolve(name)
            if workspace.last_thread != thread_id:
                await self._save(self._replace(replace(workspace, last_thread=thread_id)))

    def _replace(self, workspace: Workspace) -> WorkspaceState:
        state = self.state
        return replace(state, workspaces=tuple(workspace if w.name == workspace.name else w for w in state.workspaces))

    async def _save(self, state: WorkspaceState) -> None:
        await self._registry.save(state)
        self._state = state


def _label(label: str | None, fallback: str) -> str:
    text = (label or "").strip() or fallback
    if len(text) > _LABEL_MAX:
        raise Invalid(f"label must be at most {_LABEL_MAX} characters")
    return text
