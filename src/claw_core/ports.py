"""The ports: what the core needs from the outside world, named for the need, not for the technology.

Adapters in `claw_adapters` implement these; the composition root in `claw_app` picks which. Every port that has
more than one implementation has one contract suite under tests/contract that all of them pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

from claw_core.model import (
    JsonObject,
    MemoryItem,
    MemoryStatus,
    Message,
    MessageCursor,
    Role,
    SearchHit,
    Thread,
    ThreadExport,
    ThreadSummary,
    UnreadThread,
    WorkspaceState,
)

__all__ = [
    "Clock",
    "Embedder",
    "EventSink",
    "FileEntry",
    "FileInfo",
    "FileListing",
    "HistoryStore",
    "HistoryStores",
    "ImportCounts",
    "LocalFiles",
    "MemoryPage",
    "MemoryStore",
    "MessagePage",
    "RenderedMessagePage",
    "RunRecord",
    "SavedFile",
    "StoredUpload",
    "ThreadPage",
    "TitleSuggester",
    "UploadStore",
    "UpsertResult",
    "WorkspaceRegistry",
]


@dataclass(frozen=True, slots=True)
class ThreadPage:
    threads: list[ThreadSummary]
    total: int


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Oldest first. `has_more` says whether older messages exist before the first one (or, when paging
    forward with `after`, newer ones after the last)."""

    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class RenderedMessagePage:
    """A page of messages already rendered as the JSON array of their wire form (`Message.to_json()`, oldest
    first): the thread-open path serves it without building one Python object per message."""

    json: bytes
    """UTF-8."""
    has_more: bool


@dataclass(frozen=True, slots=True)
class UpsertResult:
    message: Message
    created: bool
    retitled: Thread | None = None
    """The thread, when storing this message gave it its first title."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A chat run the connector relayed whose reply is not stored yet: what reconciliation finishes after the
    connector or the gateway restarted mid-run."""

    run_id: str
    session_key: str
    thread_id: str
    started_at: int
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ImportCounts:
    threads: int
    messages: int


class HistoryStore(Protocol):
    """One workspace's conversation history. All methods are atomic; none blocks the event loop."""

    async def create_thread(self, thread: Thread) -> None:
        """Raise Conflict when a thread with this id or session key exists."""

    async def get_thread(self, thread_id: str) -> Thread | None: ...

    async def save_thread(self, thread: Thread) -> None:
        """Replace every field of an existing thread (by id); raise NotFound if it is gone."""

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread, its messages and unread marks; False when there was no such thread."""

    async def list_threads(self, *, offset: int, limit: int, search: str | None = None) -> ThreadPage:
        """Pinned first (by pin_order), then sort_order desc, updated_at desc. `search` keeps the threads with a
        message matching the full-text query; a query the index cannot parse matches nothing."""

    async def page_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> MessagePage:
        """Up to `limit` messages ordered by (timestamp, id), oldest first. With `before`: the newest ones strictly
        before it; with `after`: the oldest ones strictly after it; with neither: the newest ones. A cursor without
        a message id compares on the timestamp alone. Raise NotFound("Thread not found") when the thread is gone,
        Invalid when both cursors are given."""

    async def render_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> RenderedMessagePage:
        """Exactly the page `page_messages` answers, as JSON text (same errors)."""

    async def get_message(self, message_id: str) -> Message | None: ...

    async def upsert_message(self, message: Message, *, now: int, title: str | None = None) -> UpsertResult:
        """Insert the message, or when its id exists in the same thread update content, status and metadata
        (and seq when given). Moves the thread's updated_at to `now`. When the message is created and `title` is
        given, a thread still titled "New chat" takes that title in the same transaction (so two first messages
        racing cannot both name it). Raise NotFound when the thread is gone, Conflict when the id belongs to
        another thread."""

    async def delete_message(self, thread_id: str, message_id: str) -> bool: ...

    async def messages_near(self, thread_id: str, role: Role, timestamp: int, window_ms: int) -> list[Message]:
        """The thread's messages of `role` whose timestamp is within `window_ms` of `timestamp` (both ends
        included), ordered by (timestamp, id). Served by the (thread_id, role, timestamp) index."""

    async def latest_pending(self, thread_id: str) -> Message | None:
        """The newest (by timestamp, id) assistant message of the thread whose metadata has a truthy `pending`."""

    async def store_reply(self, reply: Message, *, run_id: str, now: int) -> Message | None:
        """Store an assistant reply exactly once per run, in one transaction. None when the thread already holds
        a message whose metadata.runId is `run_id`. Otherwise the thread's newest pending assistant placeholder
        takes the reply's content, status and metadata (keeping its own id, timestamp and created_at), or, when
        there is none, `reply` is inserted as it is. Either way the run's record is removed and the thread's
        updated_at moves to `now`. Raise NotFound when the thread is gone (the run record is removed then too)."""

    async def record_run(self, run: RunRecord) -> None:
        """Remember a run in flight (a second record of the same run_id replaces the first)."""

    async def finish_run(self, run_id: str) -> None:
        """Forget a run (no error when unknown)."""

    async def open_runs(self) -> list[RunRecord]:
        """Every run still recorded, oldest first."""

    async def add_unread(self, thread_id: str, message_id: str) -> int:
        """Mark one message unread; returns the thread's new unread count."""

    async def mark_read(self, thread_id: str, message_ids: Sequence[str]) -> int:
        """Returns the thread's remaining unread count."""

    async def clear_unread(self, thread_id: str) -> None: ...

    async def unread_threads(self) -> list[UnreadThread]: ...

    async def total_unread(self) -> int: ...

    async def search(self, query: str, *, offset: int, limit: int) -> tuple[list[SearchHit], int]:
        """Full-text search, most recently stored first, snippets marked with <mark>..</mark>. A query the index
        cannot parse is retried as plain words; one that still fails, or is empty, matches nothing."""

    def export_threads(self) -> AsyncIterator[ThreadExport]:
        """Every thread with all its messages, one at a time so a large history never sits in memory whole."""

    async def count_threads(self) -> int: ...

    async def import_threads(self, threads: Sequence[ThreadExport]) -> ImportCounts:
        """Insert the threads and messages that are missing, in one transaction; existing ones are left as they are."""

    async def rewrite_session_keys(self, agent: str, workspace: str) -> list[str]:
        """Point every thread's session key at `agent`; returns the keys that changed (old values)."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredUpload:
    """A file a user attached to a thread, as it was saved."""

    id: str
    """Unguessable; the stored file is named `<id><ext>`, never after the user's file name."""
    file_name: str | None
    """The name the user gave the file (cleaned of directories and control characters): metadata only."""
    mime_type: str
    size: int
    path: str
    """Absolute path of the stored file: the agent runs on the same machine and opens it from there."""
    url: str
    """Where the connector serves it: `/api/uploads/<threadId>/<id><ext>`."""
    device: int | None = field(default=None, compare=False)
    inode: int | None = field(default=None, compare=False)
    """The stored file's identity when `locate` checked it (not part of the upload's value): a transport serving
    it refuses any other file that shows up under `path` afterwards (see `FileBody`)."""

    def to_json(self) -> JsonObject:
        """The entry of a user turn's `metadata.attachments` (the path stays on the machine)."""
        return {
            "id": self.id,
            "fileName": self.file_name,
            "mimeType": self.mime_type,
            "size": self.size,
            "url": self.url,
        }


class UploadStore(Protocol):
    """The files users attach to a thread, kept per workspace and thread. None of it blocks the event loop."""

    async def save(
        self, workspace: str, thread_id: str, data: bytes, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        """Store `data` under a new unguessable id, whole or not at all. The extension comes from the MIME type
        (else from the user's file name, else `.bin`). Raise Invalid for a workspace name or thread id that is
        not valid, Forbidden when the thread's folder would resolve outside the store."""

    async def adopt(
        self, workspace: str, thread_id: str, staged_path: str, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        """Like `save`, for a file already on disk (a transport's staging file): move it in under a new id (a
        rename on the same filesystem, else a synced copy), 0600, and it is gone from `staged_path` afterwards.
        Raise Invalid when `staged_path` is missing, a link or not a regular file (it is then left where it is);
        same errors as `save` otherwise."""

    async def locate(self, workspace: str, thread_id: str, stored_name: str) -> StoredUpload:
        """The upload stored as `stored_name` (`<id><ext>`, exactly: an id prefix names nothing), its `mime_type`
        read back from the extension, `file_name` as the user gave it (None when unknown). Raise NotFound when
        there is none, Forbidden when the file or a folder on its way is a link or resolves outside the store;
        Invalid for a workspace name or thread id that is not valid."""

    async def remove_thread(self, workspace: str, thread_id: str) -> None:
        """Delete every upload of the thread (nothing to do when it has none); same errors as `save`."""


class HistoryStores(Protocol):
    """The history of every workspace: one store per workspace, opened on first use."""

    async def open(self, workspace: str) -> HistoryStore: ...

    async def drop(self, workspace: str) -> None:
        """Close the workspace's store and delete everything it kept."""

    async def close(self) -> None: ...


class WorkspaceRegistry(Protocol):
    """Where the list of workspaces and the active one are kept."""

    async def load(self) -> WorkspaceState | None:
        """None when nothing was ever saved."""

    async def save(self, state: WorkspaceState) -> None:
        """Atomically: after a crash, either the old or the new state is read back, never a torn one."""


class Clock(Protocol):
    def now_ms(self) -> int: ...


class EventSink(Protocol):
    """Where the core announces what changed (thread-title-updated, unread-update, ...) to connected clients.
    Must not block: slow listeners are the sink's problem, never the caller's."""

    def publish(self, event: JsonObject) -> None: ...


class TitleSuggester(Protocol):
    """Proposes a short title for a thread from its messages (the gateway's agent, or a local rule)."""

    async def suggest_title(self, thread: Thread, messages: Sequence[Message]) -> str | None: ...


@dataclass(frozen=True, slots=True)
class MemoryPage:
    memories: list[MemoryItem]
    next_cursor: str | None
    """Where the next page starts, opaque to callers; None on the last page."""


class MemoryStore(Protocol):
    """The user's memory store (the one mem0 fills): read, searched and edited in place.

    Every adapter passes one contract suite (tests/contract/test_memory_contract.py). The rules it holds them to:
    - ids are UUIDs; `add` mints one unless given one, and an id that is not a UUID is simply not found;
    - `page` walks every memory exactly once in ascending id order, `limit` at a time, following `next_cursor`;
    - `search` matches words case-insensitively in the text, filtered by the backend itself (never by fetching every
      memory), best matches first among a bounded window of matches (ADR 0008: a word held by every memory
      does not make the backend rank every memory); with an embedder configured it may rank by meaning instead;
    - `update` replaces `payload.data` (and refreshes `hash` and `updated_at`), leaving the rest of the payload;
    - a backend that cannot be reached raises `Unavailable` (503) from every call but `status`, which reports it.
    """

    async def status(self) -> MemoryStatus: ...

    async def count(self) -> int: ...

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        """Raise Invalid for a cursor this store did not hand out."""

    async def search(self, query: str, *, limit: int) -> list[MemoryItem]:
        """An empty or blank query matches nothing."""

    async def get(self, memory_id: str) -> MemoryItem:
        """Raise NotFound."""

    async def add(self, data: str, *, payload: JsonObject | None = None, memory_id: str | None = None) -> MemoryItem:
        """A new memory with text `data`; `payload` adds other fields (its own `data` is ignored). `created_at` and
        `hash` are filled in when missing. Raise Conflict when `memory_id` is taken."""

    async def put(self, item: MemoryItem) -> bool:
        """Store `item` as it is, id and payload, replacing any memory with that id (what a copy between backends
        needs, so that an interrupted copy can simply run again). True when it was not there before."""

    async def update(self, memory_id: str, data: str) -> MemoryItem:
        """Raise NotFound."""

    async def delete(self, memory_id: str) -> None:
        """Raise NotFound."""

    async def close(self) -> None: ...


class Embedder(Protocol):
    """Turns texts into vectors for semantic memory search. Optional: without one, search is by words."""

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


# --- local files (the workspace browser and /api/file) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A regular file that may be served, as found after resolving every link on its way."""

    real_path: str
    size: int
    modified_ms: int
    device: int | None = None
    inode: int | None = None
    """The file that was checked (`st_dev`, `st_ino`), for whoever opens `real_path` again to make sure it is
    still that one."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of a directory listing."""

    path: str
    """Relative to the listed directory, `/`-separated."""
    name: str
    is_dir: bool
    size: int
    modified_ms: int


@dataclass(frozen=True, slots=True)
class FileListing:
    entries: list[FileEntry]
    """Depth first: each directory's children sorted folders first, then by name; a folder's own entries follow it."""
    truncated: bool
    """True when the walk stopped at `max_entries`."""


@dataclass(frozen=True, slots=True)
class SavedFile:
    name: str
    size: int


class LocalFiles(Protocol):
    """Files on this machine, reached only inside `roots`.

    Every path given is absolute and lexically normalised by `claw_core.services.file_policy`, and already checked
    to lie inside a root; the adapter checks again on the real file system, where a symlink may point anywhere:
    the path with every link resolved must lie inside a root resolved the same way, and the file is then reached
    from that root one component at a time without following links, so a link swapped in after the check is
    refused rather than followed. Raise Forbidden for what resolves outside, NotFound for what is missing, Invalid
    for a folder where a file is expected (and the reverse)."""

    async def file_info(self, path: PurePosixPath, roots: Sequence[PurePosixPath]) -> FileInfo:
        """The regular file at `path` (Forbidden for a device, FIFO or socket)."""

    async def list_tree(
        self, path: PurePosixPath, roots: Sequence[PurePosixPath], *, depth: int, hidden: bool, max_entries: int
    ) -> FileListing:
        """The folder's entries down to `depth` levels (1: its children only). Dot-files are left out unless
        `hidden` (`.openclaw` always shows), `node_modules` always. A link is listed as what it points to when that
        lies inside a root, never descended into, and left out otherwise."""

    async def write(self, path: PurePosixPath, data: bytes, roots: Sequence[PurePosixPath]) -> None:
        """Replace or create the file atomically (a synced temporary file renamed over it), creating missing
        folders (0700); a new file is 0600, an existing one keeps its mode."""

    async def delete(
        self, path: PurePosixPath, roots: Sequence[PurePosixPath], protected: Sequence[PurePosixPath]
    ) -> str:
        """Delete the file, link or folder (recursively, never following a link inside it) named by `path`, and
        say which: "file" or "dir". Forbidden when the entry resolves to, or holds, a `protected` folder."""

    async def save_uploads(
        self, directory: PurePosixPath, files: Sequence[tuple[str, str]], roots: Sequence[PurePosixPath]
    ) -> list[SavedFile]:
        """Copy each `(name, source_path)` into `directory` (created when missing) under `name`, or `name (n)` when
        that is taken; never replaces a file. `name` is a clean base name."""
