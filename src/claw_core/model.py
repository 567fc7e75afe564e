"""The domain model: workspaces, threads, messages and the session keys that tie a thread to the gateway.

Everything here is a frozen value; the services build new values instead of mutating. Field names follow the
wire contract of the ClawChats web app (snake_case for threads and messages, camelCase for workspaces), and
`to_json()` renders exactly that contract so every transport answers the same shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from claw_core.errors import Invalid

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_THREAD_TITLE",
    "JsonObject",
    "Message",
    "MessageCursor",
    "Role",
    "SearchHit",
    "SessionKey",
    "Thread",
    "ThreadExport",
    "ThreadSummary",
    "UnreadThread",
    "Workspace",
    "WorkspaceState",
    "validate_agent_id",
    "validate_thread_id",
    "validate_workspace_name",
]

JsonObject = dict[str, Any]

DEFAULT_AGENT = "main"
DEFAULT_THREAD_TITLE = "New chat"

_WORKSPACE_NAME = re.compile(r"^[a-z0-9-]{1,32}$")
# Thread and agent ids end up inside session keys (colon separated) and upload folder names: keep them to a
# conservative alphabet so neither can be used to smuggle a separator or a path component.
_THREAD_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_workspace_name(name: object) -> str:
    if not isinstance(name, str) or not _WORKSPACE_NAME.fullmatch(name):
        raise Invalid("Workspace name must be 1-32 characters of a-z, 0-9 and '-'")
    return name


def validate_thread_id(thread_id: object) -> str:
    if not isinstance(thread_id, str) or not _THREAD_ID.fullmatch(thread_id) or thread_id in {".", ".."}:
        raise Invalid("Thread id must be 1-128 characters of A-Z, a-z, 0-9, '_', '-' and '.'")
    return thread_id


def validate_agent_id(agent: object) -> str:
    if not isinstance(agent, str) or not _AGENT_ID.fullmatch(agent):
        raise Invalid("Agent id must be 1-64 characters of a-z, 0-9, '_' and '-'")
    return agent


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"

    @classmethod
    def parse(cls, value: object) -> Role:
        for role in cls:
            if role.value == value:
                return role
        raise Invalid("role must be one of user, assistant, system, tool")


@dataclass(frozen=True, slots=True)
class SessionKey:
    """`agent:<agent>:<workspace>:chat:<threadId>`: how the gateway names the session behind one thread."""

    agent: str
    workspace: str
    thread_id: str

    def format(self) -> str:
        return f"agent:{self.agent}:{self.workspace}:chat:{self.thread_id}"

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> SessionKey | None:
        """The key's parts, or None for keys of other shapes (other channels, utility sessions)."""
        parts = text.split(":")
        if len(parts) != 5 or parts[0] != "agent" or parts[3] != "chat":
            return None
        agent, workspace, thread_id = parts[1], parts[2], parts[4]
        if not (
            _AGENT_ID.fullmatch(agent) and _WORKSPACE_NAME.fullmatch(workspace) and _THREAD_ID.fullmatch(thread_id)
        ):
            return None
        return cls(agent, workspace, thread_id)


@dataclass(frozen=True, slots=True)
class Workspace:
    name: str
    label: str
    color: str | None = None
    icon: str | None = None
    agent: str = DEFAULT_AGENT
    order: int = 0
    created_at: int = 0
    last_thread: str | None = None

    def to_json(self, unread_count: int | None = None) -> JsonObject:
        body: JsonObject = {
            "name": self.name,
            "label": self.label,
            "color": self.color,
            "icon": self.icon,
            "agent": self.agent,
            "order": self.order,
            "createdAt": self.created_at,
            "lastThread": self.last_thread,
        }
        if unread_count is not None:
            body["unread_count"] = unread_count
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workspace:
        return cls(
            name=validate_workspace_name(data.get("name")),
            label=str(data.get("label") or data.get("name")),
            color=_optional_str(data.get("color")),
            icon=_optional_str(data.get("icon")),
            agent=validate_agent_id(data.get("agent") or DEFAULT_AGENT),
            order=int(data.get("order") or 0),
            created_at=int(data.get("createdAt") or 0),
            last_thread=_optional_str(data.get("lastThread")),
        )


@dataclass(frozen=True, slots=True)
class WorkspaceState:
    """All workspaces and which one is active; there is always at least one."""

    active: str
    workspaces: tuple[Workspace, ...]

    def find(self, name: str) -> Workspace | None:
        return next((w for w in self.workspaces if w.name == name), None)

    def to_json(self) -> JsonObject:
        return {"active": self.active, "workspaces": [w.to_json() for w in self.workspaces]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkspaceState:
        raw = data.get("workspaces")
        if not isinstance(raw, list) or not raw:
            raise Invalid("workspace state must list at least one workspace")
        workspaces = tuple(Workspace.from_json(w) for w in raw)
        active = data.get("active")
        if not any(w.name == active for w in workspaces):
            active = workspaces[0].name
        return cls(active=str(active), workspaces=workspaces)


@dataclass(frozen=True, slots=True)
class Thread:
    id: str
    session_key: str
    title: str = DEFAULT_THREAD_TITLE
    pinned: bool = False
    pin_order: int = 0
    sort_order: int = 0
    model: str | None = None
    last_session_id: str | None = None
    unread_count: int = 0
    metadata: JsonObject | None = None
    created_at: int = 0
    updated_at: int = 0

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "session_key": self.session_key,
            "title": self.title,
            "pinned": self.pinned,
            "pin_order": self.pin_order,
            "sort_order": self.sort_order,
            "model": self.model,
            "last_session_id": self.last_session_id,
            "unread_count": self.unread_count,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def with_changes(self, **changes: Any) -> Thread:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A thread as the thread list shows it: with whether a reply is still pending."""

    thread: Thread
    has_pending: bool

    def to_json(self) -> JsonObject:
        body = self.thread.to_json()
        body["has_pending"] = self.has_pending
        return body


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    thread_id: str
    role: Role
    content: str
    timestamp: int
    status: str = "sent"
    metadata: JsonObject | None = None
    seq: int | None = None
    created_at: int = 0

    @property
    def cursor(self) -> MessageCursor:
        return MessageCursor(self.timestamp, self.id)

    @property
    def is_pending(self) -> bool:
        return self.role is Role.ASSISTANT and bool((self.metadata or {}).get("pending"))

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "role": self.role.value,
            "content": self.content,
            "status": self.status,
            "metadata": self.metadata,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True, order=True)
class MessageCursor:
    """A position in a thread. Messages are ordered by (timestamp, id): two messages with the same timestamp
    still have a strict order, so a page boundary that falls between them neither skips nor repeats one."""

    timestamp: int
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnreadThread:
    id: str
    title: str
    unread_count: int
    last_message: str | None
    unread_message_ids: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "title": self.title,
            "unread_count": self.unread_count,
            "lastMessage": self.last_message,
            "unreadMessageIds": list(self.unread_message_ids),
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: str
    thread_id: str
    thread_title: str
    role: str
    snippet: str
    timestamp: int

    def to_json(self) -> JsonObject:
        return {
            "messageId": self.message_id,
            "threadId": self.thread_id,
            "threadTitle": self.thread_title,
            "role": self.role,
            "content": self.snippet,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class ThreadExport:
    """A thread with all its messages, as export writes it and import reads it."""

    thread: Thread
    messages: tuple[Message, ...]

    def to_json(self) -> JsonObject:
        body = self.thread.to_json()
        body["messages"] = [m.to_json() for m in self.messages]
        return body


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def metadata_from_json(value: object) -> JsonObject | None:
    """Metadata as stored: a JSON object, or None. Text that holds JSON (as older exports have it) is parsed."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Invalid("metadata must be a JSON object") from None
    if not isinstance(value, dict):
        raise Invalid("metadata must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One memory of the user's memory store, in the layout mem0 writes: the text is `payload["data"]`, and the
    payload carries whatever else the writer put there (hash, user_id, created_at, updated_at, ...), kept as is."""

    id: str
    """A UUID in its canonical lower-case text form (Qdrant point ids and mem0 rows both are UUIDs)."""
    payload: JsonObject
    score: float | None = None
    """How well it matched a search (higher is better); None outside a search."""

    @property
    def data(self) -> str:
        text = self.payload.get("data")
        return text if isinstance(text, str) else ""

    @property
    def created_at(self) -> str | None:
        return _optional_str(self.payload.get("created_at"))

    @property
    def updated_at(self) -> str | None:
        return _optional_str(self.payload.get("updated_at"))

    def to_json(self) -> JsonObject:
        """The shape of the memory routes: the fields the web app reads at the top, and the payload whole."""
        item: JsonObject = {
            "id": self.id,
            "data": self.data,
            "payload": dict(self.payload),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.score is not None:
            item["score"] = self.score
        return item


@dataclass(frozen=True, slots=True)
class MemoryStatus:
    """What `GET /api/memory/status` reports. Asking never raises: an unreachable store says so here."""

    reachable: bool
    backend: str
    """'sqlite', 'qdrant' or 'postgres'."""
    collection: str | None
    points_count: int | None = None
    error: str | None = None
    semantic: bool = False
    """Whether searches rank by meaning (an embedder and a vector index are there), not only by words."""

    def to_json(self) -> JsonObject:
        status: JsonObject = {
            "reachable": self.reachable,
            "backend": self.backend,
            "collection": self.collection,
            "pointsCount": self.points_count,
            "semantic": self.semantic,
        }
        if self.error is not None:
            status["error"] = self.error
        return status
