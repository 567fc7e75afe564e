"""Threads and messages of a workspace: the use cases behind the history routes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from claw_core.errors import Invalid, NotFound
from claw_core.model import (
    JsonObject,
    Message,
    MessageCursor,
    Role,
    SearchHit,
    SessionKey,
    Thread,
    UnreadThread,
    Workspace,
    validate_thread_id,
)
from claw_core.ports import (
    Clock,
    EventSink,
    HistoryStore,
    HistoryStores,
    MessagePage,
    RenderedMessagePage,
    ThreadPage,
    TitleSuggester,
)
from claw_core.services.attachments import without_attachment_lines
from claw_core.services.sessions import SessionRef
from claw_core.services.titles import title_from_text

__all__ = ["TWIN_WINDOW_MS", "ActiveThreads", "HistoryService", "ThreadChanges", "is_relayed"]

log = logging.getLogger(__name__)

TWIN_WINDOW_MS = 120_000
"""A relayed user turn and a posted one with the same text this close in time are the same turn."""

_TITLE_MAX = 200
_PAGE = 200
_CONTEXT_MESSAGES = 40
_CONTEXT_CHARS = 12_000
_TITLE_SAMPLE = 10


@dataclass(frozen=True, slots=True)
class ThreadChanges:
    """What PATCH may change; None leaves a field as it is. `metadata` and `model` are cleared with `clear_*`."""

    title: str | None = None
    model: str | None = None
    clear_model: bool = False
    pinned: bool | None = None
    pin_order: int | None = None
    sort_order: int | None = None
    metadata: JsonObject | None = None
    clear_metadata: bool = False
    unread_count: int | None = None


def is_relayed(message: Message) -> bool:
    """Stored by the relay from a `chat.send`, rather than posted by a client."""
    return (message.metadata or {}).get("source") == "relay"


class ActiveThreads:
    """Which thread the user is looking at in each workspace: replies landing there are not counted unread."""

    def __init__(self) -> None:
        self._by_workspace: dict[str, str] = {}

    def set(self, workspace: str, thread_id: str | None) -> None:
        if thread_id:
            self._by_workspace[workspace] = thread_id
        else:
            self._by_workspace.pop(workspace, None)

    def is_viewing(self, workspace: str, thread_id: str) -> bool:
        return self._by_workspace.get(workspace) == thread_id


class HistoryService:
    def __init__(
        self,
        stores: HistoryStores,
        clock: Clock,
        events: EventSink,
        titles: TitleSuggester,
        active: ActiveThreads,
    ) -> None:
        self._stores = stores
        self._clock = clock
        self._events = events
        self._titles = titles
        self.active = active
        self._background: set[asyncio.Task[None]] = set()

    async def store(self, workspace: Workspace) -> HistoryStore:
        return await self._stores.open(workspace.name)

    # threads

    async def list_threads(self, workspace: Workspace, *, page: int, limit: int, search: str | None) -> ThreadPage:
        store = await self.store(workspace)
        return await store.list_threads(offset=(page - 1) * limit, limit=limit, search=search or None)

    async def create_thread(self, workspace: Workspace, thread_id: str | None = None) -> Thread:
        thread_id = validate_thread_id(thread_id) if thread_id is not None else str(uuid.uuid4())
        now = self._clock.now_ms()
        thread = Thread(
            id=thread_id,
            session_key=SessionKey(workspace.agent, workspace.name, thread_id).format(),
            created_at=now,
            updated_at=now,
        )
        store = await self.store(workspace)
        await store.create_thread(thread)
        return thread

    async def get_thread(self, workspace: Workspace, thread_id: str) -> Thread:
        store = await self.store(workspace)
        thread = await store.get_thread(thread_id)
        if thread is None:
            raise NotFound("Thread not found")
        return thread

    async def update_thread(self, workspace: Workspace, thread_id: str, changes: ThreadChanges) -> Thread:
        store = await self.store(workspace)
        thread = await self.get_thread(workspace, thread_id)
        if changes.title is not None and not changes.title.strip():
            raise Invalid("title must not be empty")
        if changes.title is not None and len(changes.title) > _TITLE_MAX:
            raise Invalid(f"title must be at most {_TITLE_MAX} characters")
        if changes.unread_count is not None and changes.unread_count < 0:
            raise Invalid("unread_count must not be negative")
        updated = thread.with_changes(
            title=changes.title.strip() if changes.title is not None else thread.title,
            model=None if changes.clear_model else (changes.model if changes.model is not None else thread.model),
            pinned=changes.pinned if changes.pinned is not None else thread.pinned,
            pin_order=changes.pin_order if changes.pin_order is not None else thread.pin_order,
            sort_order=changes.sort_order if changes.sort_order is not None else thread.sort_order,
            metadata=None
            if changes.clear_metadata
            else (changes.metadata if changes.metadata is not None else thread.metadata),
            unread_count=changes.unread_count if changes.unread_count is not None else thread.unread_count,
            updated_at=max(self._clock.now_ms(), thread.updated_at),
        )
        if changes.unread_count == 0:
            await store.clear_unread(thread_id)
        await store.save_thread(updated)
        if updated.title != thread.title:
            self._title_updated(workspace, updated)
        return updated

    async def delete_thread(self, workspace: Workspace, thread_id: str) -> Thread:
        """Delete the thread and its messages; returns what was deleted so callers can clean up after it."""
        store = await self.store(workspace)
        thread = await self.get_thread(workspace, thread_id)
        if not await store.delete_thread(thread_id):
            raise NotFound("Thread not found")
        return thread

    async def session_refs(self, workspace: Workspace) -> list[SessionRef]:
        """The gateway sessions behind every thread of the workspace (to clean them up with it)."""
        store = await self.store(workspace)
        refs: list[SessionRef] = []
        while True:
            page = await store.list_threads(offset=len(refs), limit=_PAGE)
            refs += [SessionRef(t.thread.session_key, t.thread.last_session_id) for t in page.threads]
            if not page.threads or len(refs) >= page.total:
                return refs

    # unread

    async def unread_threads(self, workspace: Workspace) -> list[UnreadThread]:
        store = await self.store(workspace)
        return await store.unread_threads()

    async def mark_read(self, workspace: Workspace, thread_id: str, message_ids: Sequence[str]) -> int:
        if not message_ids:
            raise Invalid("messageIds must be a non-empty array")
        await self.get_thread(workspace, thread_id)
        store = await self.store(workspace)
        remaining = await store.mark_read(thread_id, message_ids)
        self._unread_changed(workspace, thread_id, remaining)
        return remaining

    async def mark_unread(self, workspace: Workspace, thread_id: str, message_id: str) -> int | None:
        """Count a new message as unread unless the user is looking at its thread. Returns the new count, or
        None when nothing changed."""
        if self.active.is_viewing(workspace.name, thread_id):
            return None
        store = await self.store(workspace)
        count = await store.add_unread(thread_id, message_id)
        self._unread_changed(workspace, thread_id, count)
        return count

    # messages

    async def messages(
        self,
        workspace: Workspace,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> MessagePage:
        """A page of the thread (the store refuses both cursors at once, and a missing thread)."""
        store = await self.store(workspace)
        return await store.page_messages(thread_id, limit=limit, before=before, after=after)

    async def rendered_messages(
        self,
        workspace: Workspace,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> RenderedMessagePage:
        """The same page as `messages`, already rendered as JSON: what the thread-open route serves."""
        store = await self.store(workspace)
        return await store.render_messages(thread_id, limit=limit, before=before, after=after)

    async def post_message(self, workspace: Workspace, message: Message) -> tuple[Message, bool]:
        """Store a message (upsert by id). The first user message of an untitled thread names the thread."""
        store = await self.store(workspace)
        title = title_from_text(message.content) if message.role is Role.USER else ""
        result = await store.upsert_message(message, now=self._clock.now_ms(), title=title or None)
        if result.retitled is not None:
            self._title_updated(workspace, result.retitled)
        if result.created and message.role is Role.USER and not is_relayed(message):
            await self._drop_relayed_twins(store, result.message)
        return result.message, result.created

    async def _drop_relayed_twins(self, store: HistoryStore, posted: Message) -> None:
        """The web app posts the user's message itself around the time it sends `chat.send`; when the relay
        stored that turn first, the posted copy (with the app's own id) wins and the relayed one goes."""
        nearby = await store.messages_near(posted.thread_id, Role.USER, posted.timestamp, TWIN_WINDOW_MS)
        for twin in nearby:
            typed = without_attachment_lines(twin.content)
            if twin.id != posted.id and is_relayed(twin) and posted.content in (twin.content, typed):
                await store.delete_message(twin.thread_id, twin.id)

    async def delete_message(self, workspace: Workspace, thread_id: str, message_id: str) -> None:
        await self.get_thread(workspace, thread_id)
        store = await self.store(workspace)
        if not await store.delete_message(thread_id, message_id):
            raise NotFound("Message not found")

    # search and context

    async def search(self, workspace: Workspace, query: str, *, page: int, limit: int) -> tuple[list[SearchHit], int]:
        if not query.strip():
            return [], 0
        store = await self.store(workspace)
        return await store.search(query, offset=(page - 1) * limit, limit=limit)

    async def context_fill(self, workspace: Workspace, thread_id: str) -> tuple[str, int]:
        """A preamble that re-seeds a fresh gateway session with the thread's recent turns (newest kept when the
        budget runs out). Returns the text and how many messages it holds."""
        await self.get_thread(workspace, thread_id)
        store = await self.store(workspace)
        page = await store.page_messages(thread_id, limit=_CONTEXT_MESSAGES)
        lines: list[str] = []
        used = 0
        for message in reversed(page.messages):
            if message.role not in (Role.USER, Role.ASSISTANT) or message.is_pending or not message.content.strip():
                continue
            line = f"{'User' if message.role is Role.USER else 'Assistant'}: {message.content.strip()}"
            if used + len(line) > _CONTEXT_CHARS:
                break
            lines.append(line)
            used += len(line)
        if not lines:
            return "", 0
        lines.reverse()
        preamble = (
            "The conversation below happened earlier in this thread; its session was reset. "
            "Use it as context and continue from it.\n\n"
        )
        return preamble + "\n\n".join(lines), len(lines)

    async def generate_title(self, workspace: Workspace, thread_id: str) -> None:
        """Ask for a title in the background; the result is announced as thread-title-updated."""
        thread = await self.get_thread(workspace, thread_id)
        task = asyncio.create_task(self._generate_title(workspace, thread))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _generate_title(self, workspace: Workspace, thread: Thread) -> None:
        try:
            store = await self.store(workspace)
            page = await store.page_messages(thread.id, limit=_TITLE_SAMPLE, after=MessageCursor(-(2**62)))
            title = await self._titles.suggest_title(thread, page.messages)
            if title and title != thread.title:
                current = await store.get_thread(thread.id)
                if current is not None:
                    await self._retitle(workspace, store, current, title)
        except Exception:
            log.exception("title generation failed for thread %s", thread.id)

    async def close(self) -> None:
        """Cancel background work (title generation) and wait for it to end."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # events

    async def _retitle(self, workspace: Workspace, store: HistoryStore, thread: Thread, title: str) -> None:
        updated = thread.with_changes(title=title[:_TITLE_MAX])
        await store.save_thread(updated)
        self._title_updated(workspace, updated)

    def _title_updated(self, workspace: Workspace, thread: Thread) -> None:
        self._events.publish(
            _event("thread-title-updated", workspace=workspace.name, threadId=thread.id, title=thread.title)
        )

    def _unread_changed(self, workspace: Workspace, thread_id: str, count: int) -> None:
        self._events.publish(_event("unread-update", workspace=workspace.name, threadId=thread_id, unread_count=count))


def _event(name: str, **fields: Any) -> JsonObject:
    return {"type": "clawchats", "event": name, **fields}
