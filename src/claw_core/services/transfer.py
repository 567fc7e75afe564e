"""Export and import of a workspace's history.

Import reads data that came from elsewhere (another workspace, another machine, an older connector), so every
thread and message is validated and a session key is re-minted unless it already names this workspace's agent,
this workspace and this thread: an imported thread must never talk to another workspace's gateway session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from claw_core.errors import Invalid
from claw_core.model import (
    DEFAULT_THREAD_TITLE,
    Message,
    Role,
    SessionKey,
    Thread,
    ThreadExport,
    Workspace,
    metadata_from_json,
    validate_thread_id,
)
from claw_core.ports import HistoryStores, ImportCounts
from claw_core.validation import MAX_ID_LENGTH, optional_bool, optional_int, optional_str, require_int, require_str

__all__ = ["TransferService", "message_from_json", "parse_export_threads"]


class TransferService:
    def __init__(self, stores: HistoryStores) -> None:
        self._stores = stores

    async def export_threads(self, workspace: Workspace) -> AsyncIterator[ThreadExport]:
        store = await self._stores.open(workspace.name)
        async for thread in store.export_threads():
            yield thread

    async def count_threads(self, workspace: Workspace) -> int:
        store = await self._stores.open(workspace.name)
        return await store.count_threads()

    async def import_threads(self, workspace: Workspace, threads: Sequence[ThreadExport]) -> ImportCounts:
        """Insert what is missing, in one transaction, with session keys re-minted for this workspace."""
        store = await self._stores.open(workspace.name)
        return await store.import_threads([_rehome(workspace, t) for t in threads])


def parse_export_threads(raw: object, *, now: int) -> list[ThreadExport]:
    """The `threads` array of an export, validated. A bad entry is refused with its position, so nothing of a
    broken file is half-imported."""
    if not isinstance(raw, list):
        raise Invalid("threads must be an array")
    return [_parse_thread(entry, index, now) for index, entry in enumerate(raw)]


def _parse_thread(raw: object, index: int, now: int) -> ThreadExport:
    if not isinstance(raw, Mapping):
        raise Invalid(f"threads[{index}] must be an object")
    try:
        thread_id = validate_thread_id(raw.get("id"))
        created_at = optional_int(raw, "created_at") or now
        thread = Thread(
            id=thread_id,
            session_key=optional_str(raw, "session_key") or "",
            title=optional_str(raw, "title", max_length=200) or DEFAULT_THREAD_TITLE,
            pinned=bool(optional_bool(raw, "pinned")),
            pin_order=optional_int(raw, "pin_order") or 0,
            sort_order=optional_int(raw, "sort_order") or 0,
            model=optional_str(raw, "model"),
            last_session_id=optional_str(raw, "last_session_id"),
            unread_count=0,
            metadata=metadata_from_json(raw.get("metadata")),
            created_at=created_at,
            updated_at=optional_int(raw, "updated_at") or created_at,
        )
        messages = raw.get("messages", [])
        if not isinstance(messages, list):
            raise Invalid("messages must be an array")
        parsed = tuple(_parse_message(m, thread_id, i) for i, m in enumerate(messages))
    except Invalid as error:
        raise Invalid(f"threads[{index}]: {error.message}") from None
    return ThreadExport(thread, parsed)


def _parse_message(raw: object, thread_id: str, index: int) -> Message:
    if not isinstance(raw, Mapping):
        raise Invalid(f"messages[{index}] must be an object")
    try:
        return message_from_json(raw, thread_id)
    except Invalid as error:
        raise Invalid(f"messages[{index}]: {error.message}") from None


def message_from_json(body: Mapping[str, Any], thread_id: str) -> Message:
    """A message from its wire form (POST body or export entry); the thread comes from the context, not the body."""
    timestamp = require_int(body, "timestamp")
    return Message(
        id=require_str(body, "id", max_length=MAX_ID_LENGTH, allow_empty=False),
        thread_id=thread_id,
        role=Role.parse(require_str(body, "role")),
        content=require_str(body, "content"),
        timestamp=timestamp,
        status=optional_str(body, "status", max_length=32) or "sent",
        metadata=metadata_from_json(body.get("metadata")),
        seq=optional_int(body, "seq"),
        created_at=optional_int(body, "created_at") or timestamp,
    )


def _rehome(workspace: Workspace, export: ThreadExport) -> ThreadExport:
    wanted = SessionKey(workspace.agent, workspace.name, export.thread.id)
    if SessionKey.parse(export.thread.session_key) == wanted:
        return export
    return ThreadExport(export.thread.with_changes(session_key=wanted.format()), export.messages)
