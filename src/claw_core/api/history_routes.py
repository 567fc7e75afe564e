"""The history routes of the ClawChats API: workspaces, threads, messages, unread, search, export and import.

Each handler reads the request (query, body, `X-Workspace`), calls one use case and shapes the answer with the
field names the ClawChats web app expects. Nothing here knows which transport carried the request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from claw_core.api.contract import JSON, ApiRequest, ApiResponse, Param, Route
from claw_core.api.schemas import (
    ACTIVE_THREAD_BODY,
    CREATE_THREAD_BODY,
    CREATE_WORKSPACE_BODY,
    IMPORT_BODY,
    MARK_READ_BODY,
    MESSAGE_BODY,
    PATCH_THREAD_BODY,
    PATCH_WORKSPACE_BODY,
    REORDER_BODY,
)
from claw_core.errors import Invalid
from claw_core.model import MessageCursor, SessionKey, Workspace, metadata_from_json
from claw_core.ports import Clock, UploadStore
from claw_core.services.history import HistoryService, ThreadChanges
from claw_core.services.sessions import SessionCleanup, SessionRef
from claw_core.services.transfer import TransferService, message_from_json, parse_export_threads
from claw_core.services.workspaces import WorkspaceChanges, WorkspaceService
from claw_core.validation import optional_bool, optional_int, optional_str, query_int, require_str

__all__ = ["IMPORT_MAX_BODY", "HistoryApi", "history_routes"]

IMPORT_MAX_BODY = 64 * 1024 * 1024
"""An import larger than this goes through `claw import`, which streams it into the store in batches."""

THREADS_LIMIT = (50, 200)
MESSAGES_LIMIT = (100, 500)
SEARCH_LIMIT = (20, 100)


@dataclass(frozen=True, slots=True)
class HistoryApi:
    """What the history routes need: the use cases, and the clock for timestamps and uptime."""

    workspaces: WorkspaceService
    history: HistoryService
    transfer: TransferService
    sessions: SessionCleanup
    uploads: UploadStore
    clock: Clock
    started_monotonic: float


def ok(body: Any, status: int = 200) -> ApiResponse:
    return ApiResponse(status, body)


def history_routes(api: HistoryApi) -> list[Route]:  # noqa: PLR0915 - one table, read top to bottom
    workspaces, history, transfer = api.workspaces, api.history, api.transfer

    def target(request: ApiRequest) -> Workspace:
        return workspaces.resolve(request.workspace)

    async def health(request: ApiRequest) -> ApiResponse:
        uptime = round(time.monotonic() - api.started_monotonic, 3)
        return ok({"ok": True, "workspace": workspaces.state.active, "uptime": uptime})

    # workspaces

    async def list_workspaces(request: ApiRequest) -> ApiResponse:
        unread = await workspaces.unread_counts()
        items = [w.to_json(unread.get(w.name, 0)) for w in workspaces.ordered()]
        return ok({"active": workspaces.state.active, "workspaces": items})

    async def create_workspace(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        workspace = await workspaces.create(
            require_str(body, "name"),
            label=optional_str(body, "label"),
            color=optional_str(body, "color", max_length=64),
            icon=optional_str(body, "icon", max_length=64),
            agent=optional_str(body, "agent"),
        )
        return ok({"workspace": workspace.to_json(0)}, 201)

    async def patch_workspace(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        changes = WorkspaceChanges(
            label=optional_str(body, "label"),
            color=optional_str(body, "color", max_length=64),
            icon=optional_str(body, "icon", max_length=64),
            last_thread=(
                "" if "lastThread" in body and body["lastThread"] is None else optional_str(body, "lastThread")
            ),
            agent=optional_str(body, "agent"),
        )
        workspace, retired = await workspaces.update(request.path_params["name"], changes)
        api.sessions.forget(SessionRef(key) for key in retired)
        return ok({"workspace": workspace.to_json(), "migratedThreads": len(retired)})

    async def delete_workspace(request: ApiRequest) -> ApiResponse:
        doomed = workspaces.resolve(request.path_params["name"])
        sessions = await history.session_refs(doomed) if len(workspaces.state.workspaces) > 1 else []
        await workspaces.delete(doomed.name)
        api.sessions.forget(sessions)
        for ref in sessions:
            key = SessionKey.parse(ref.key)
            if key is not None:
                await api.uploads.remove_thread(doomed.name, key.thread_id)
        return ok({"ok": True})

    async def reorder_workspaces(request: ApiRequest) -> ApiResponse:
        order = request.json_object().get("order")
        if not isinstance(order, list):
            raise Invalid("order must be an array")
        ordered = await workspaces.reorder(order)
        return ok({"ok": True, "workspaces": [w.to_json() for w in ordered]})

    async def activate_workspace(request: ApiRequest) -> ApiResponse:
        workspace = await workspaces.activate(request.path_params["name"])
        return ok({"ok": True, "workspace": workspace.to_json()})

    # threads

    async def list_threads(request: ApiRequest) -> ApiResponse:
        page = query_int(request.query, "page", default=1, minimum=1)
        limit = query_int(request.query, "limit", default=THREADS_LIMIT[0], minimum=1, maximum=THREADS_LIMIT[1])
        result = await history.list_threads(target(request), page=page, limit=limit, search=request.query.get("search"))
        return ok({"threads": [t.to_json() for t in result.threads], "total": result.total, "page": page})

    async def create_thread(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        thread = await history.create_thread(target(request), optional_str(body, "id"))
        return ok({"thread": thread.to_json()}, 201)

    async def get_thread(request: ApiRequest) -> ApiResponse:
        thread = await history.get_thread(target(request), request.path_params["id"])
        return ok({"thread": thread.to_json()})

    async def patch_thread(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        changes = ThreadChanges(
            title=optional_str(body, "title"),
            model=optional_str(body, "model", max_length=200),
            clear_model="model" in body and body["model"] is None,
            pinned=optional_bool(body, "pinned"),
            pin_order=optional_int(body, "pin_order"),
            sort_order=optional_int(body, "sort_order"),
            metadata=metadata_from_json(body.get("metadata")),
            clear_metadata="metadata" in body and body["metadata"] is None,
            unread_count=optional_int(body, "unread_count"),
        )
        thread = await history.update_thread(target(request), request.path_params["id"], changes)
        return ok({"thread": thread.to_json()})

    async def delete_thread(request: ApiRequest) -> ApiResponse:
        workspace = target(request)
        thread = await history.delete_thread(workspace, request.path_params["id"])
        api.sessions.forget([SessionRef(thread.session_key, thread.last_session_id)])
        await api.uploads.remove_thread(workspace.name, thread.id)
        return ok({"ok": True})

    async def unread_threads(request: ApiRequest) -> ApiResponse:
        threads = await history.unread_threads(target(request))
        return ok({"threads": [t.to_json() for t in threads]})

    async def mark_read(request: ApiRequest) -> ApiResponse:
        ids = request.json_object().get("messageIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise Invalid("messageIds must be a non-empty array of message ids")
        remaining = await history.mark_read(target(request), request.path_params["id"], ids)
        return ok({"unread_count": remaining})

    # messages

    async def list_messages(request: ApiRequest) -> ApiResponse:
        query = request.query
        limit = query_int(query, "limit", default=MESSAGES_LIMIT[0], minimum=1, maximum=MESSAGES_LIMIT[1])
        page = await history.rendered_messages(
            target(request),
            request.path_params["id"],
            limit=limit,
            before=_cursor(query, "before", "beforeId"),
            after=_cursor(query, "after", "afterId"),
        )
        has_more = b',"hasMore":true}' if page.has_more else b',"hasMore":false}'
        return ApiResponse(200, b"".join((b'{"messages":', page.json, has_more)), content_type=JSON)

    async def post_message(request: ApiRequest) -> ApiResponse:
        message = message_from_json(request.json_object(), request.path_params["id"])
        stored, created = await history.post_message(target(request), message)
        return ok({"message": stored.to_json()}, 201 if created else 200)

    async def delete_message(request: ApiRequest) -> ApiResponse:
        params = request.path_params
        await history.delete_message(target(request), params["id"], params["messageId"])
        return ok({"ok": True})

    async def context_fill(request: ApiRequest) -> ApiResponse:
        context, count = await history.context_fill(target(request), request.path_params["id"])
        return ok({"context": context, "messageCount": count})

    async def generate_title(request: ApiRequest) -> ApiResponse:
        await history.generate_title(target(request), request.path_params["id"])
        return ok({"ok": True})

    async def active_thread(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        workspace = workspaces.resolve(require_str(body, "workspace"))
        thread_id = optional_str(body, "threadId")
        history.active.set(workspace.name, thread_id)
        if thread_id:
            await workspaces.remember_thread(workspace.name, thread_id)
        return ok({"ok": True})

    # search, export, import

    async def search(request: ApiRequest) -> ApiResponse:
        page = query_int(request.query, "page", default=1, minimum=1)
        limit = query_int(request.query, "limit", default=SEARCH_LIMIT[0], minimum=1, maximum=SEARCH_LIMIT[1])
        hits, total = await history.search(target(request), request.query.get("q", ""), page=page, limit=limit)
        return ok({"results": [h.to_json() for h in hits], "total": total})

    async def export(request: ApiRequest) -> ApiResponse:
        workspace = target(request)
        threads = [t.to_json() async for t in transfer.export_threads(workspace)]
        return ok({"workspace": workspace.name, "exportedAt": api.clock.now_ms(), "threads": threads})

    async def import_(request: ApiRequest) -> ApiResponse:
        threads = parse_export_threads(request.json_object().get("threads"), now=api.clock.now_ms())
        counts = await transfer.import_threads(target(request), threads)
        return ok({"ok": True, "threadsImported": counts.threads, "messagesImported": counts.messages})

    page_param = Param("page", "integer", "1-based page number", minimum=1)

    def limit_param(limits: tuple[int, int]) -> Param:
        default, maximum = limits
        return Param("limit", "integer", f"page size (default {default}, capped at {maximum})", minimum=1)

    return [
        Route("GET", "/api/health", health, "Liveness, active workspace and uptime", requires_auth=False),
        Route("GET", "/api/workspaces", list_workspaces, "Workspaces with unread counts, sorted by order"),
        Route(
            "POST",
            "/api/workspaces",
            create_workspace,
            "Create a workspace",
            body_schema=CREATE_WORKSPACE_BODY,
            responses={201: "created", 400: "bad name", 409: "exists"},
        ),
        Route(
            "POST", "/api/workspaces/reorder", reorder_workspaces, "Set the workspace order", body_schema=REORDER_BODY
        ),
        Route(
            "PATCH",
            "/api/workspaces/{name}",
            patch_workspace,
            "Change a workspace",
            body_schema=PATCH_WORKSPACE_BODY,
            responses={404: "unknown workspace"},
        ),
        Route(
            "DELETE",
            "/api/workspaces/{name}",
            delete_workspace,
            "Delete a workspace and its history",
            responses={400: "the only workspace", 404: "unknown workspace"},
        ),
        Route(
            "POST",
            "/api/workspaces/{name}/activate",
            activate_workspace,
            "Make a workspace the active one",
            responses={404: "unknown workspace"},
        ),
        Route(
            "GET",
            "/api/threads",
            list_threads,
            "Threads, pinned first",
            workspace_header=True,
            query=(page_param, limit_param(THREADS_LIMIT), Param("search", description="full-text filter")),
        ),
        Route(
            "POST",
            "/api/threads",
            create_thread,
            "Create a thread",
            workspace_header=True,
            body_schema=CREATE_THREAD_BODY,
            responses={201: "created", 409: "id exists"},
        ),
        Route("GET", "/api/threads/unread", unread_threads, "Threads with unread messages", workspace_header=True),
        Route(
            "GET",
            "/api/threads/{id}",
            get_thread,
            "One thread",
            responses={404: "Thread not found"},
            workspace_header=True,
        ),
        Route(
            "PATCH",
            "/api/threads/{id}",
            patch_thread,
            "Change a thread",
            workspace_header=True,
            body_schema=PATCH_THREAD_BODY,
            responses={404: "Thread not found"},
        ),
        Route(
            "DELETE",
            "/api/threads/{id}",
            delete_thread,
            "Delete a thread and its messages",
            workspace_header=True,
            responses={404: "Thread not found"},
        ),
        Route(
            "POST",
            "/api/threads/{id}/mark-read",
            mark_read,
            "Mark messages read",
            workspace_header=True,
            body_schema=MARK_READ_BODY,
            responses={404: "Thread not found"},
        ),
        Route(
            "GET",
            "/api/threads/{id}/messages",
            list_messages,
            "A page of messages, oldest first",
            workspace_header=True,
            query=(
                limit_param(MESSAGES_LIMIT),
                Param("before", "integer", "timestamp (ms): messages before it"),
                Param("beforeId", description="with before: the message id at that timestamp"),
                Param("after", "integer", "timestamp (ms): messages after it"),
                Param("afterId", description="with after: the message id at that timestamp"),
            ),
            responses={404: "Thread not found"},
        ),
        Route(
            "POST",
            "/api/threads/{id}/messages",
            post_message,
            "Store a message (upsert by id)",
            workspace_header=True,
            body_schema=MESSAGE_BODY,
            responses={200: "updated", 201: "created", 404: "Thread not found"},
        ),
        Route(
            "DELETE",
            "/api/threads/{id}/messages/{messageId}",
            delete_message,
            "Delete a message",
            workspace_header=True,
            responses={404: "not found"},
        ),
        Route(
            "POST",
            "/api/threads/{id}/context-fill",
            context_fill,
            "A context preamble from recent history",
            workspace_header=True,
            responses={404: "Thread not found"},
        ),
        Route(
            "POST",
            "/api/threads/{id}/generate-title",
            generate_title,
            "Retitle the thread in the background",
            workspace_header=True,
            responses={404: "Thread not found"},
        ),
        Route(
            "POST",
            "/api/active-thread",
            active_thread,
            "The thread the user is looking at",
            body_schema=ACTIVE_THREAD_BODY,
        ),
        Route(
            "GET",
            "/api/search",
            search,
            "Full-text search over messages",
            workspace_header=True,
            query=(Param("q", description="search terms"), page_param, limit_param(SEARCH_LIMIT)),
        ),
        Route("GET", "/api/export", export, "Every thread with its messages", workspace_header=True),
        Route(
            "POST",
            "/api/import",
            import_,
            "Insert missing threads and messages",
            workspace_header=True,
            body_schema=IMPORT_BODY,
            max_body=IMPORT_MAX_BODY,
        ),
    ]


def _cursor(query: Mapping[str, str], time_key: str, id_key: str) -> MessageCursor | None:
    timestamp = query_int(query, time_key, default=-1, minimum=-(2**62)) if query.get(time_key) else None
    if timestamp is None:
        if query.get(id_key):
            raise Invalid(f"{id_key} needs {time_key}")
        return None
    return MessageCursor(timestamp, query.get(id_key) or None)
