"""The memory routes of the ClawChats API: a viewer and editor over the user's memory store (the one mem0 fills).

A backend that cannot be reached answers 503 `{error}` from every route but the status, which reports it
(`reachable: false`): the web app shows that instead of failing. The routes with a literal last segment (status,
list, search) come before the `{id}` ones; a route table that adds others under /api/memory/ (the file listing)
must put them before these too, or `{id}` takes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from claw_core.api.contract import ApiRequest, ApiResponse, Param, Route
from claw_core.errors import Invalid
from claw_core.model import MemoryStatus
from claw_core.ports import MemoryStore
from claw_core.services.memory_payloads import require_text
from claw_core.validation import query_int

__all__ = ["LIST_LIMIT", "SEARCH_LIMIT", "MemoryApi", "memory_routes"]

log = logging.getLogger(__name__)

LIST_LIMIT = (50, 200)
SEARCH_LIMIT = (20, 100)

_FIRST_PAGE = frozenset({"", "0", "null", "undefined"})
"""`offset` values that mean the first page: what a web app sends before it has a `next_offset` (none, a numeric
start, or a JavaScript null or undefined turned into text)."""

_STRING: dict[str, Any] = {"type": "string", "minLength": 1}
_ADD_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {"data": _STRING, "metadata": {"type": ["object", "null"]}},
    "required": ["data"],
}
_UPDATE_BODY: dict[str, Any] = {"type": "object", "properties": {"data": _STRING}, "required": ["data"]}


@dataclass(frozen=True, slots=True)
class MemoryApi:
    """What the memory routes need: the store the configuration chose."""

    store: MemoryStore


def memory_routes(api: MemoryApi) -> list[Route]:
    store = api.store

    async def status(request: ApiRequest) -> ApiResponse:
        try:
            answer = await store.status()
        except Exception:  # the port promises status never raises; if an adapter breaks that, still answer
            log.exception("memory store status failed")
            answer = MemoryStatus(reachable=False, backend="unknown", collection=None, error="Status check failed")
        return ApiResponse(200, answer.to_json())

    async def list_memories(request: ApiRequest) -> ApiResponse:
        limit = query_int(request.query, "limit", default=LIST_LIMIT[0], minimum=1, maximum=LIST_LIMIT[1])
        offset = request.query.get("offset", "")
        page = await store.page(limit=limit, cursor=None if offset in _FIRST_PAGE else offset)
        return ApiResponse(200, {"memories": [m.to_json() for m in page.memories], "next_offset": page.next_cursor})

    async def search(request: ApiRequest) -> ApiResponse:
        limit = query_int(request.query, "limit", default=SEARCH_LIMIT[0], minimum=1, maximum=SEARCH_LIMIT[1])
        hits = await store.search(request.query.get("q", ""), limit=limit)
        return ApiResponse(200, {"memories": [m.to_json() for m in hits]})

    async def get(request: ApiRequest) -> ApiResponse:
        memory = await store.get(request.path_params["id"])
        return ApiResponse(200, {"memory": memory.to_json()})

    async def add(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise Invalid("metadata must be an object")
        memory = await store.add(require_text(body.get("data")), payload=metadata)
        return ApiResponse(201, {"memory": memory.to_json()})

    async def update(request: ApiRequest) -> ApiResponse:
        data = require_text(request.json_object().get("data"))
        memory = await store.update(request.path_params["id"], data)
        return ApiResponse(200, {"memory": memory.to_json()})

    async def delete(request: ApiRequest) -> ApiResponse:
        await store.delete(request.path_params["id"])
        return ApiResponse(200, {"ok": True})

    down = {503: "the memory backend cannot be reached"}
    missing = {404: "Memory not found", **down}
    return [
        Route("GET", "/api/memory/status", status, "Memory backend status (never fails: reachable says)"),
        Route(
            "GET",
            "/api/memory/list",
            list_memories,
            "A page of memories in id order",
            query=(
                Param("limit", "integer", f"page size (default {LIST_LIMIT[0]}, capped at {LIST_LIMIT[1]})", 1),
                Param("offset", description="the next_offset of the previous page (absent: the first page)"),
            ),
            responses={400: "invalid offset", **down},
        ),
        Route(
            "GET",
            "/api/memory/search",
            search,
            "Memories holding every word of q, best first",
            query=(
                Param("q", description="search words"),
                Param("limit", "integer", f"at most (default {SEARCH_LIMIT[0]}, capped at {SEARCH_LIMIT[1]})", 1),
            ),
            responses=down,
        ),
        Route(
            "POST",
            "/api/memory",
            add,
            "Add a memory",
            body_schema=_ADD_BODY,
            responses={201: "created", 400: "data missing or empty", **down},
        ),
        Route("GET", "/api/memory/{id}", get, "One memory", responses=missing),
        Route(
            "PUT",
            "/api/memory/{id}",
            update,
            "Replace a memory's text",
            body_schema=_UPDATE_BODY,
            responses={400: "data missing or empty", **missing},
        ),
        Route("DELETE", "/api/memory/{id}", delete, "Delete a memory", responses=missing),
    ]
