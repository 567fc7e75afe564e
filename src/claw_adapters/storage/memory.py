"""An in-memory history store: a fake for fast tests that passes the same contract suite as SQLite.

Where it is simpler than SQLite:
- Search is a case-insensitive whole-word AND of the query's words (letters, digits and apostrophes; everything
  else separates words, as in SQLite's `unicode61` tokenizer). No porter stemming ("running" does not find
  "run"), no removal of diacritics, no FTS5 syntax: quotes, `*`, `:`, `-`, parentheses and operators such as OR
  are word separators or plain words, which is close to what SQLite does after its quoting fallback.
- A snippet is the whole message with the matching words wrapped in <mark>..</mark>; SQLite cuts long messages
  to a window of 16 words with "..." around it.
- Nothing is persisted, and every call is trivially atomic because nothing awaits inside a method.
Values are copied in and out (metadata through a JSON round trip), so callers cannot alias the stored state,
just as with a real database.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import (
    DEFAULT_THREAD_TITLE,
    JsonObject,
    Message,
    MessageCursor,
    Role,
    SearchHit,
    SessionKey,
    Thread,
    ThreadExport,
    ThreadSummary,
    UnreadThread,
    validate_agent_id,
    validate_workspace_name,
)
from claw_core.ports import ImportCounts, MessagePage, RenderedMessagePage, RunRecord, ThreadPage, UpsertResult

__all__ = ["InMemoryHistoryStore", "InMemoryHistoryStores"]

_WORD = re.compile(r"(?:[^\W_]|')+")
_LAST_MESSAGE_CHARS = 100


@dataclass(frozen=True, slots=True)
class _Stored:
    message: Message
    order: int  # insertion order, what SQLite's rowid gives: search ranks the most recently stored first


class InMemoryHistoryStore:
    """One workspace's history in dictionaries."""

    def __init__(self) -> None:
        self._threads: dict[str, Thread] = {}
        self._messages: dict[str, _Stored] = {}
        self._unread: dict[str, dict[str, None]] = {}  # thread id -> message ids, as an insertion-ordered set
        self._runs: dict[str, RunRecord] = {}
        self._order = itertools.count()
        self._closed = False

    async def create_thread(self, thread: Thread) -> None:
        self._check_open()
        if thread.id in self._threads or self._key_owner(thread.session_key) is not None:
            raise Conflict("Thread already exists")
        self._threads[thread.id] = _copy_thread(thread)

    async def get_thread(self, thread_id: str) -> Thread | None:
        self._check_open()
        thread = self._threads.get(thread_id)
        return None if thread is None else _copy_thread(thread)

    async def save_thread(self, thread: Thread) -> None:
        self._check_open()
        if thread.id not in self._threads:
            raise NotFound("Thread not found")
        if self._key_owner(thread.session_key) not in (None, thread.id):
            raise Conflict("Session key already belongs to another thread")
        self._threads[thread.id] = _copy_thread(thread)

    async def delete_thread(self, thread_id: str) -> bool:
        self._check_open()
        if self._threads.pop(thread_id, None) is None:
            return False
        self._unread.pop(thread_id, None)
        for message in self._thread_messages(thread_id):
            del self._messages[message.id]
        self._runs = {run_id: run for run_id, run in self._runs.items() if run.thread_id != thread_id}
        return True

    async def list_threads(self, *, offset: int, limit: int, search: str | None = None) -> ThreadPage:
        self._check_open()
        _check_window(offset, limit)
        threads = sorted(self._threads.values(), key=_thread_order)
        if search is not None:
            matching = {stored.message.thread_id for stored in self._matches(search)}
            threads = [thread for thread in threads if thread.id in matching]
        page = [
            ThreadSummary(thread=_copy_thread(thread), has_pending=self._has_pending(thread.id))
            for thread in threads[offset : offset + limit]
        ]
        return ThreadPage(threads=page, total=len(threads))

    async def page_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> MessagePage:
        self._check_open()
        _check_window(0, limit)
        if before is not None and after is not None:
            raise Invalid("Use either before or after, not both")
        if thread_id not in self._threads:
            raise NotFound("Thread not found")
        messages = self._thread_messages(thread_id)
        if after is not None:
            newer = [m for m in messages if _position(m, after) > after]
            return MessagePage(messages=[_copy_message(m) for m in newer[:limit]], has_more=len(newer) > limit)
        older = messages if before is None else [m for m in messages if _position(m, before) < before]
        page = older[max(len(older) - limit, 0) :]
        return MessagePage(messages=[_copy_message(m) for m in page], has_more=len(older) > limit)

    async def render_messages(
        self,
        thread_id: str,
        *,
        limit: int,
        before: MessageCursor | None = None,
        after: MessageCursor | None = None,
    ) -> RenderedMessagePage:
        page = await self.page_messages(thread_id, limit=limit, before=before, after=after)
        return RenderedMessagePage(
            json=json.dumps([m.to_json() for m in page.messages]).encode(), has_more=page.has_more
        )

    async def get_message(self, message_id: str) -> Message | None:
        self._check_open()
        stored = self._messages.get(message_id)
        return None if stored is None else _copy_message(stored.message)

    async def upsert_message(self, message: Message, *, now: int, title: str | None = None) -> UpsertResult:
        self._check_open()
        self._require_thread(message.thread_id)
        existing = self._messages.get(message.id)
        if existing is not None and existing.message.thread_id != message.thread_id:
            raise Conflict("Message id already belongs to another thread")
        if existing is None:
            stored = _Stored(_copy_message(message, created_at=message.created_at or now), next(self._order))
        else:
            updated = replace(
                existing.message,
                content=message.content,
                status=message.status,
                metadata=_copy_metadata(message.metadata),
                seq=existing.message.seq if message.seq is None else message.seq,
            )
            stored = replace(existing, message=updated)
        self._messages[message.id] = stored
        thread = replace(self._threads[message.thread_id], updated_at=now)
        retitled = None
        if existing is None and title and thread.title == DEFAULT_THREAD_TITLE:
            thread = retitled = replace(thread, title=title)
        self._threads[message.thread_id] = thread
        return UpsertResult(
            message=_copy_message(stored.message),
            created=existing is None,
            retitled=None if retitled is None else _copy_thread(retitled),
        )

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        self._check_open()
        stored = self._messages.get(message_id)
        if stored is None or stored.message.thread_id != thread_id:
            return False
        del self._messages[message_id]
        if message_id in self._unread.get(thread_id, {}):
            del self._unread[thread_id][message_id]
            self._sync_unread_count(thread_id)
        return True

    async def messages_near(self, thread_id: str, role: Role, timestamp: int, window_ms: int) -> list[Message]:
        self._check_open()
        low, high = timestamp - window_ms, timestamp + window_ms
        return [
            _copy_message(m) for m in self._thread_messages(thread_id) if m.role is role and low <= m.timestamp <= high
        ]

    async def latest_pending(self, thread_id: str) -> Message | None:
        self._check_open()
        pending = self._latest_pending(thread_id)
        return None if pending is None else _copy_message(pending)

    async def store_reply(self, reply: Message, *, run_id: str, now: int) -> Message | None:
        self._check_open()
        _check_reply(reply, run_id)
        thread_id = reply.thread_id
        if thread_id not in self._threads:
            self._runs.pop(run_id, None)
            raise NotFound("Thread not found")
        if any(_is_reply_of(m, run_id) for m in self._thread_messages(thread_id)):
            self._runs.pop(run_id, None)
            return None
        placeholder = self._latest_pending(thread_id)
        # Everything that can fail comes before the first change, as a rolled back transaction would leave it.
        if placeholder is not None:
            stored = replace(
                placeholder,
                content=reply.content,
                status=reply.status,
                metadata=_copy_metadata(reply.metadata),
                seq=placeholder.seq if reply.seq is None else reply.seq,
            )
            order = self._messages[placeholder.id].order
        elif reply.id in self._messages:
            raise Conflict("Message id already exists")
        else:
            stored = _copy_message(reply, created_at=reply.created_at or now)
            order = next(self._order)
        self._messages[stored.id] = _Stored(stored, order)
        self._runs.pop(run_id, None)
        self._threads[thread_id] = replace(self._threads[thread_id], updated_at=now)
        return _copy_message(stored)

    async def record_run(self, run: RunRecord) -> None:
        self._check_open()
        self._require_thread(run.thread_id)
        self._runs[run.run_id] = run  # frozen, and holds nothing mutable

    async def finish_run(self, run_id: str) -> None:
        self._check_open()
        self._runs.pop(run_id, None)

    async def open_runs(self) -> list[RunRecord]:
        self._check_open()
        return sorted(self._runs.values(), key=lambda run: (run.started_at, run.run_id))

    async def add_unread(self, thread_id: str, message_id: str) -> int:
        self._check_open()
        self._require_thread(thread_id)
        self._unread.setdefault(thread_id, {})[message_id] = None
        return self._sync_unread_count(thread_id)

    async def mark_read(self, thread_id: str, message_ids: Sequence[str]) -> int:
        self._check_open()
        self._require_thread(thread_id)
        unread = self._unread.get(thread_id, {})
        for message_id in message_ids:
            unread.pop(message_id, None)
        return self._sync_unread_count(thread_id)

    async def clear_unread(self, thread_id: str) -> None:
        self._check_open()
        self._require_thread(thread_id)
        self._unread.pop(thread_id, None)
        self._sync_unread_count(thread_id)

    async def unread_threads(self) -> list[UnreadThread]:
        self._check_open()
        return [
            UnreadThread(
                id=thread.id,
                title=thread.title,
                unread_count=thread.unread_count,
                last_message=self._last_message_text(thread.id),
                unread_message_ids=tuple(self._unread.get(thread.id, ())),
            )
            for thread in sorted(self._threads.values(), key=_thread_order)
            if thread.unread_count > 0
        ]

    async def total_unread(self) -> int:
        self._check_open()
        return sum(thread.unread_count for thread in self._threads.values() if thread.unread_count > 0)

    async def search(self, query: str, *, offset: int, limit: int) -> tuple[list[SearchHit], int]:
        self._check_open()
        _check_window(offset, limit)
        terms = _words(query)
        matches = self._matches(query)
        hits = [self._hit(stored.message, terms) for stored in matches[offset : offset + limit]]
        return hits, len(matches)

    async def export_threads(self) -> AsyncIterator[ThreadExport]:
        self._check_open()
        for thread in sorted(self._threads.values(), key=lambda t: (t.created_at, t.id)):
            messages = tuple(_copy_message(m) for m in self._thread_messages(thread.id))
            yield ThreadExport(thread=_copy_thread(thread), messages=messages)

    async def count_threads(self) -> int:
        self._check_open()
        return len(self._threads)

    async def import_threads(self, threads: Sequence[ThreadExport]) -> ImportCounts:
        self._check_open()
        # Copy everything before storing anything: a value JSON cannot hold fails the whole import, as a rolled back
        # transaction would.
        incoming_threads = [_copy_thread(export.thread) for export in threads]
        incoming_messages = [_copy_message(message) for export in threads for message in export.messages]
        imported_threads = sum(self._import_thread(thread) for thread in incoming_threads)
        imported_messages = sum(self._import_message(message) for message in incoming_messages)
        return ImportCounts(threads=imported_threads, messages=imported_messages)

    async def rewrite_session_keys(self, agent: str, workspace: str) -> list[str]:
        self._check_open()
        validate_agent_id(agent)
        validate_workspace_name(workspace)
        changed: list[str] = []
        for thread in sorted(self._threads.values(), key=lambda t: (t.created_at, t.id)):
            key = SessionKey(agent, workspace, thread.id).format()
            if key != thread.session_key:
                changed.append(thread.session_key)
                self._threads[thread.id] = replace(thread, session_key=key)
        return changed

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("History store is closed")

    def _require_thread(self, thread_id: str) -> None:
        if thread_id not in self._threads:
            raise NotFound("Thread not found")

    def _key_owner(self, session_key: str) -> str | None:
        return next((t.id for t in self._threads.values() if t.session_key == session_key), None)

    def _thread_messages(self, thread_id: str) -> list[Message]:
        """The thread's messages ordered by (timestamp, id)."""
        messages = [s.message for s in self._messages.values() if s.message.thread_id == thread_id]
        return sorted(messages, key=lambda m: (m.timestamp, m.id))

    def _has_pending(self, thread_id: str) -> bool:
        return any(m.is_pending for m in self._thread_messages(thread_id))

    def _latest_pending(self, thread_id: str) -> Message | None:
        return next((m for m in reversed(self._thread_messages(thread_id)) if m.is_pending), None)

    def _last_message_text(self, thread_id: str) -> str | None:
        messages = self._thread_messages(thread_id)
        return messages[-1].content[:_LAST_MESSAGE_CHARS] if messages else None

    def _sync_unread_count(self, thread_id: str) -> int:
        count = len(self._unread.get(thread_id, ()))
        self._threads[thread_id] = replace(self._threads[thread_id], unread_count=count)
        return count

    def _matches(self, query: str) -> list[_Stored]:
        """Messages holding every word of the query, most recently stored first; none for a query without words."""
        terms = _words(query)
        if not terms:
            return []
        found = [s for s in self._messages.values() if terms <= _words(s.message.content)]
        return sorted(found, key=lambda s: s.order, reverse=True)

    def _hit(self, message: Message, terms: set[str]) -> SearchHit:
        return SearchHit(
            message_id=message.id,
            thread_id=message.thread_id,
            thread_title=self._threads[message.thread_id].title,
            role=message.role.value,
            snippet=_WORD.sub(lambda w: f"<mark>{w[0]}</mark>" if w[0].lower() in terms else w[0], message.content),
            timestamp=message.timestamp,
        )

    def _import_thread(self, thread: Thread) -> bool:
        if thread.id in self._threads or self._key_owner(thread.session_key) is not None:
            return False
        self._threads[thread.id] = thread
        return True

    def _import_message(self, message: Message) -> bool:
        if message.id in self._messages or message.thread_id not in self._threads:
            return False
        self._messages[message.id] = _Stored(message, next(self._order))
        return True


class InMemoryHistoryStores:
    """One in-memory store per workspace, created on first use."""

    def __init__(self) -> None:
        self._stores: dict[str, InMemoryHistoryStore] = {}
        self._closed = False

    async def open(self, workspace: str) -> InMemoryHistoryStore:
        name = validate_workspace_name(workspace)
        if self._closed:
            raise Unavailable("History stores are closed")
        return self._stores.setdefault(name, InMemoryHistoryStore())

    async def drop(self, workspace: str) -> None:
        store = self._stores.pop(validate_workspace_name(workspace), None)
        if store is not None:
            await store.close()

    async def close(self) -> None:
        self._closed = True
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()


def _thread_order(thread: Thread) -> tuple[bool, int, int, int, str]:
    """Pinned first by pin_order, then sort_order desc, updated_at desc, id."""
    pin_order = thread.pin_order if thread.pinned else 0
    return (not thread.pinned, pin_order, -thread.sort_order, -thread.updated_at, thread.id)


def _position(message: Message, cursor: MessageCursor) -> MessageCursor:
    """Where the message stands relative to `cursor`: by timestamp alone when the cursor has no message id."""
    return MessageCursor(message.timestamp, None if cursor.message_id is None else message.id)


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)}


def _check_window(offset: int, limit: int) -> None:
    if offset < 0 or limit < 0:
        raise Invalid("offset and limit must not be negative")


def _check_reply(reply: Message, run_id: str) -> None:
    """Exactly-once rests on the stored reply carrying its run id: a reply without it could be stored again."""
    if reply.role is not Role.ASSISTANT:
        raise Invalid("A reply must be an assistant message")
    if (reply.metadata or {}).get("runId") != run_id:
        raise Invalid("A reply's metadata.runId must be its run id")


def _is_reply_of(message: Message, run_id: str) -> bool:
    """What SQLite's messages_run index finds: an assistant message whose metadata.runId is the run id."""
    return message.role is Role.ASSISTANT and (message.metadata or {}).get("runId") == run_id


def _copy_metadata(metadata: JsonObject | None) -> JsonObject | None:
    """What a database gives back: a fresh dict, and only what JSON can hold (TypeError otherwise, as in SQLite)."""
    return None if metadata is None else dict(json.loads(json.dumps(metadata)))


def _copy_thread(thread: Thread) -> Thread:
    return replace(thread, pinned=bool(thread.pinned), metadata=_copy_metadata(thread.metadata))


def _copy_message(message: Message, *, created_at: int | None = None) -> Message:
    return replace(
        message,
        metadata=_copy_metadata(message.metadata),
        created_at=message.created_at if created_at is None else created_at,
    )
