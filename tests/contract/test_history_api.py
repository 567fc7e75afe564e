"""The history routes of section 2, end to end through the transport-neutral router, over every storage backend.

HTTP and the DataChannel both dispatch into this router, so these status codes and shapes are what either
transport answers (tests/integration checks the HTTP rendering of them).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_core.api.contract import ApiRequest
from claw_core.model import Message, Role
from claw_core.ports import HistoryStores
from tests.unit.api_harness import Harness, build_harness


@pytest.fixture(params=["memory", "sqlite"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    stores: HistoryStores = InMemoryHistoryStores() if request.param == "memory" else SqliteHistoryStores(tmp_path)
    harness = await build_harness(stores)
    yield harness
    await harness.history.close()
    await stores.close()


def message(
    message_id: str, content: str = "hi", *, role: str = "user", timestamp: int = 1000, **extra: object
) -> dict:
    return {"id": message_id, "role": role, "content": content, "timestamp": timestamp, **extra}


async def test_health_names_the_active_workspace(api: Harness) -> None:
    reply = await api.call("GET", "/api/health")
    assert reply.status == 200
    assert reply.body["ok"] is True and reply.body["workspace"] == "default"
    assert isinstance(reply.body["uptime"], float)


# workspaces


async def test_workspace_lifecycle(api: Harness) -> None:
    created = await api.call("POST", "/api/workspaces", {"name": "work", "label": "Work", "color": "#f00"})
    assert created.status == 201
    assert created.body["workspace"]["name"] == "work" and created.body["workspace"]["label"] == "Work"
    assert (await api.call("POST", "/api/workspaces", {"name": "work"})).status == 409
    assert (await api.call("POST", "/api/workspaces", {"name": "Bad Name"})).status == 400
    assert (await api.call("POST", "/api/workspaces", {})).status == 400

    listing = await api.call("GET", "/api/workspaces")
    assert listing.body["active"] == "default"
    assert [w["name"] for w in listing.body["workspaces"]] == ["default", "work"]
    assert all("unread_count" in w for w in listing.body["workspaces"])

    patched = await api.call("PATCH", "/api/workspaces/work", {"label": "Job", "lastThread": "t1"})
    assert patched.status == 200
    assert patched.body["workspace"]["label"] == "Job" and patched.body["workspace"]["lastThread"] == "t1"
    assert patched.body["migratedThreads"] == 0
    assert (await api.call("PATCH", "/api/workspaces/nope", {"label": "x"})).status == 404

    reordered = await api.call("POST", "/api/workspaces/reorder", {"order": ["work", "default"]})
    assert reordered.status == 200 and [w["name"] for w in reordered.body["workspaces"]] == ["work", "default"]
    assert (await api.call("POST", "/api/workspaces/reorder", {"order": "work"})).status == 400
    assert (await api.call("POST", "/api/workspaces/reorder", {"order": ["ghost"]})).status == 400

    activated = await api.call("POST", "/api/workspaces/work/activate")
    assert activated.status == 200 and activated.body["workspace"]["name"] == "work"
    assert (await api.call("GET", "/api/health")).body["workspace"] == "work"
    assert (await api.call("POST", "/api/workspaces/ghost/activate")).status == 404

    assert (await api.call("DELETE", "/api/workspaces/work")).body == {"ok": True}
    assert (await api.call("GET", "/api/health")).body["workspace"] == "default"
    assert (await api.call("DELETE", "/api/workspaces/work")).status == 404


async def test_the_only_workspace_cannot_be_deleted(api: Harness) -> None:
    reply = await api.call("DELETE", "/api/workspaces/default")
    assert reply.status == 400
    assert "only workspace" in reply.body["error"]


async def test_changing_the_agent_migrates_session_keys(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads", {"id": "t2"})
    reply = await api.call("PATCH", "/api/workspaces/default", {"agent": "helper"})
    assert reply.body["migratedThreads"] == 2
    thread = (await api.call("GET", "/api/threads/t1")).body["thread"]
    assert thread["session_key"] == "agent:helper:default:chat:t1"
    created = (await api.call("POST", "/api/threads", {"id": "t3"})).body["thread"]
    assert created["session_key"] == "agent:helper:default:chat:t3"


# threads


async def test_thread_crud(api: Harness) -> None:
    created = await api.call("POST", "/api/threads", {"id": "t1"})
    assert created.status == 201
    thread = created.body["thread"]
    assert thread["session_key"] == "agent:main:default:chat:t1"
    assert thread["title"] == "New chat" and thread["pinned"] is False and thread["unread_count"] == 0

    duplicate = await api.call("POST", "/api/threads", {"id": "t1"})
    assert duplicate.status == 409 and "error" in duplicate.body

    generated = await api.call("POST", "/api/threads")
    assert generated.status == 201 and generated.body["thread"]["id"]

    assert (await api.call("GET", "/api/threads/t1")).body["thread"]["id"] == "t1"
    missing = await api.call("GET", "/api/threads/nope")
    assert missing.status == 404 and missing.body == {"error": "Thread not found"}

    patched = await api.call(
        "PATCH", "/api/threads/t1", {"title": "Plans", "pinned": True, "metadata": {"k": 1}, "model": "m"}
    )
    assert patched.status == 200
    assert patched.body["thread"]["title"] == "Plans" and patched.body["thread"]["pinned"] is True
    assert patched.body["thread"]["metadata"] == {"k": 1}
    assert patched.body["thread"]["updated_at"] >= thread["updated_at"]
    assert (await api.call("PATCH", "/api/threads/t1", {"title": ""})).status == 400
    assert (await api.call("PATCH", "/api/threads/t1", {"pinned": "yes"})).status == 400
    assert (await api.call("PATCH", "/api/threads/nope", {"title": "x"})).status == 404

    assert (await api.call("DELETE", "/api/threads/t1")).body == {"ok": True}
    assert (await api.call("DELETE", "/api/threads/t1")).status == 404


@pytest.mark.parametrize("bad_id", ["a/b", "../x", "a:b", ""])
async def test_thread_ids_that_could_escape_are_refused(api: Harness, bad_id: str) -> None:
    assert (await api.call("POST", "/api/threads", {"id": bad_id})).status == 400


async def test_thread_list_orders_pinned_first_and_pages(api: Harness) -> None:
    for index in range(5):
        await api.call("POST", "/api/threads", {"id": f"t{index}"})
    await api.call("PATCH", "/api/threads/t1", {"pinned": True})
    listing = await api.call("GET", "/api/threads", query={"limit": "2", "page": "1"})
    assert listing.body["total"] == 5 and listing.body["page"] == 1
    assert [t["id"] for t in listing.body["threads"]] == ["t1", "t4"]
    second = await api.call("GET", "/api/threads", query={"limit": "2", "page": "2"})
    assert [t["id"] for t in second.body["threads"]] == ["t3", "t2"]
    assert all("has_pending" in t for t in listing.body["threads"])
    assert (await api.call("GET", "/api/threads", query={"limit": "x"})).status == 400


async def test_thread_limit_is_capped_at_200(api: Harness) -> None:
    await asyncio.gather(*(api.call("POST", "/api/threads", {"id": f"t{i}"}) for i in range(205)))
    listing = await api.call("GET", "/api/threads", query={"limit": "1000"})
    assert len(listing.body["threads"]) == 200 and listing.body["total"] == 205


async def test_has_pending_reflects_a_pending_assistant_placeholder(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("a1", "", role="assistant", metadata={"pending": True}))
    threads = (await api.call("GET", "/api/threads")).body["threads"]
    assert threads[0]["has_pending"] is True


# messages


async def test_message_upsert_answers_201_then_200(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    first = await api.call("POST", "/api/threads/t1/messages", message("m1", "draft", role="assistant"))
    assert first.status == 201
    assert first.body["message"]["status"] == "sent" and first.body["message"]["thread_id"] == "t1"
    second = await api.call(
        "POST", "/api/threads/t1/messages", message("m1", "final", role="assistant", status="done", metadata={"a": 1})
    )
    assert second.status == 200
    assert second.body["message"]["content"] == "final" and second.body["message"]["metadata"] == {"a": 1}
    page = await api.call("GET", "/api/threads/t1/messages")
    assert [m["content"] for m in page.body["messages"]] == ["final"]


@pytest.mark.parametrize("missing", ["id", "role", "content", "timestamp"])
async def test_a_message_without_a_required_field_is_refused(api: Harness, missing: str) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    body = message("m1")
    del body[missing]
    reply = await api.call("POST", "/api/threads/t1/messages", body)
    assert reply.status == 400 and missing in reply.body["error"]


async def test_bad_message_bodies_are_400(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    for body in (message("m1", role="root"), message("m1", timestamp="soon"), message("m1", metadata=[1])):
        assert (await api.call("POST", "/api/threads/t1/messages", body)).status == 400
    assert (await api.call("POST", "/api/threads/t1/messages", raw=b"{not json")).status == 400
    assert (await api.call("POST", "/api/threads/t1/messages", [1, 2])).status == 400
    assert (await api.call("POST", "/api/threads/nope/messages", message("m1"))).status == 404


async def test_message_id_of_another_thread_conflicts(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads", {"id": "t2"})
    await api.call("POST", "/api/threads/t1/messages", message("m1"))
    assert (await api.call("POST", "/api/threads/t2/messages", message("m1"))).status == 409


async def test_first_user_message_titles_the_thread(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("a0", "Hello!", role="assistant"))
    assert (await api.call("GET", "/api/threads/t1")).body["thread"]["title"] == "New chat"
    long_line = "Plan a trip to the mountains next weekend with friends"
    await api.call("POST", "/api/threads/t1/messages", message("m1", long_line + "\nmore", timestamp=1001))
    title = (await api.call("GET", "/api/threads/t1")).body["thread"]["title"]
    assert title == long_line[:40].rstrip() + "..."
    assert api.events.named("thread-title-updated")[-1] == {
        "type": "clawchats",
        "event": "thread-title-updated",
        "workspace": "default",
        "threadId": "t1",
        "title": title,
    }
    await api.call("POST", "/api/threads/t1/messages", message("m2", "Another", timestamp=1002))
    assert (await api.call("GET", "/api/threads/t1")).body["thread"]["title"] == title


async def test_message_paging_with_before_and_after(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    for index in range(10):
        await api.call("POST", "/api/threads/t1/messages", message(f"m{index}", timestamp=1000 + index))
    newest = await api.call("GET", "/api/threads/t1/messages", query={"limit": "4"})
    assert [m["id"] for m in newest.body["messages"]] == ["m6", "m7", "m8", "m9"] and newest.body["hasMore"] is True
    older = await api.call("GET", "/api/threads/t1/messages", query={"limit": "4", "before": "1006"})
    assert [m["id"] for m in older.body["messages"]] == ["m2", "m3", "m4", "m5"]
    oldest = await api.call("GET", "/api/threads/t1/messages", query={"limit": "4", "before": "1002"})
    assert [m["id"] for m in oldest.body["messages"]] == ["m0", "m1"] and oldest.body["hasMore"] is False
    after = await api.call("GET", "/api/threads/t1/messages", query={"limit": "3", "after": "1005"})
    assert [m["id"] for m in after.body["messages"]] == ["m6", "m7", "m8"] and after.body["hasMore"] is True
    both = await api.call("GET", "/api/threads/t1/messages", query={"before": "1", "after": "2"})
    assert both.status == 400
    assert (await api.call("GET", "/api/threads/t1/messages", query={"beforeId": "m1"})).status == 400
    assert (await api.call("GET", "/api/threads/nope/messages")).status == 404


async def test_message_limit_is_capped_at_500(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    store = await api.stores.open("default")
    for index in range(510):
        await store.upsert_message(Message(f"m{index}", "t1", Role.USER, "x", 1000 + index), now=1)
    page = await api.call("GET", "/api/threads/t1/messages", query={"limit": "100000"})
    assert len(page.body["messages"]) == 500 and page.body["hasMore"] is True
    default = await api.call("GET", "/api/threads/t1/messages")
    assert len(default.body["messages"]) == 100


async def test_delete_message(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("m1"))
    assert (await api.call("DELETE", "/api/threads/t1/messages/m1")).body == {"ok": True}
    assert (await api.call("DELETE", "/api/threads/t1/messages/m1")).status == 404


# unread


async def test_unread_tracking_and_mark_read(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    workspace = api.workspaces.resolve(None)
    for index in range(3):
        await api.call("POST", "/api/threads/t1/messages", message(f"a{index}", f"reply {index}", role="assistant"))
        await api.history.mark_unread(workspace, "t1", f"a{index}")
    unread = await api.call("GET", "/api/threads/unread")
    [entry] = unread.body["threads"]
    assert sorted(entry.pop("unreadMessageIds")) == ["a0", "a1", "a2"]
    assert entry == {"id": "t1", "title": "New chat", "unread_count": 3, "lastMessage": "reply 2"}
    marked = await api.call("POST", "/api/threads/t1/mark-read", {"messageIds": ["a0", "a1"]})
    assert marked.body == {"unread_count": 1}
    assert api.events.named("unread-update")[-1]["unread_count"] == 1
    assert (await api.call("POST", "/api/threads/t1/mark-read", {"messageIds": []})).status == 400
    assert (await api.call("POST", "/api/threads/t1/mark-read", {})).status == 400
    assert (await api.call("POST", "/api/threads/nope/mark-read", {"messageIds": ["x"]})).status == 404
    listing = (await api.call("GET", "/api/workspaces")).body["workspaces"]
    assert listing[0]["unread_count"] == 1
    await api.call("PATCH", "/api/threads/t1", {"unread_count": 0})
    assert (await api.call("GET", "/api/threads/unread")).body["threads"] == []


async def test_replies_in_the_viewed_thread_are_not_unread(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    assert (await api.call("POST", "/api/active-thread", {"workspace": "default", "threadId": "t1"})).body == {
        "ok": True
    }
    assert await api.history.mark_unread(api.workspaces.resolve(None), "t1", "a1") is None
    assert api.workspaces.resolve(None).last_thread == "t1"
    assert (await api.call("POST", "/api/active-thread", {"workspace": "ghost", "threadId": "t1"})).status == 404


# workspace isolation


async def test_x_workspace_isolates_threads(api: Harness) -> None:
    await api.call("POST", "/api/workspaces", {"name": "work"})
    created = await api.call("POST", "/api/threads", {"id": "t1"}, workspace="work")
    assert created.body["thread"]["session_key"] == "agent:main:work:chat:t1"
    assert (await api.call("GET", "/api/threads/t1", workspace="work")).status == 200
    assert (await api.call("GET", "/api/threads/t1")).status == 404
    assert (await api.call("GET", "/api/threads")).body["total"] == 0
    # the same id may exist separately in another workspace
    assert (await api.call("POST", "/api/threads", {"id": "t1"})).status == 201


@pytest.mark.parametrize("name", ["ghost", "../etc", "Default", "a/b"])
async def test_an_unknown_x_workspace_never_becomes_a_workspace(api: Harness, name: str) -> None:
    reply = await api.call("GET", "/api/threads", workspace=name)
    assert reply.status == 404 and reply.body == {"error": "Workspace not found"}
    assert [w.name for w in api.workspaces.state.workspaces] == ["default"]


# search


async def test_search_returns_marked_snippets(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("m1", "the quick brown fox"))
    await api.call("POST", "/api/threads/t1/messages", message("m2", "a lazy dog sleeps", role="assistant"))
    reply = await api.call("GET", "/api/search", query={"q": "fox"})
    assert reply.status == 200 and reply.body["total"] == 1
    hit = reply.body["results"][0]
    assert hit["messageId"] == "m1" and hit["threadId"] == "t1" and hit["threadTitle"] == "the quick brown fox"
    assert hit["role"] == "user" and "<mark>fox</mark>" in hit["content"] and hit["timestamp"] == 1000
    filtered = await api.call("GET", "/api/threads", query={"search": "dog"})
    assert [t["id"] for t in filtered.body["threads"]] == ["t1"]
    assert (await api.call("GET", "/api/threads", query={"search": "cat"})).body["total"] == 0
    assert (await api.call("GET", "/api/search", query={"q": ""})).body == {"results": [], "total": 0}


async def test_search_limit_is_capped_at_100(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    for index in range(105):
        await api.call("POST", "/api/threads/t1/messages", message(f"m{index}", f"needle {index}", timestamp=index))
    reply = await api.call("GET", "/api/search", query={"q": "needle", "limit": "500"})
    assert len(reply.body["results"]) == 100 and reply.body["total"] == 105


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR", "(((", "NEAR(", "*", "col:umn", '"'])
async def test_a_malformed_search_query_gives_a_result_not_an_error(api: Harness, query: str) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("m1", "plain words"))
    for path, key in (("/api/search", "q"), ("/api/threads", "search")):
        reply = await api.call("GET", path, query={key: query})
        assert reply.status == 200, reply.body
        assert reply.body["total"] == 0


# export and import


async def test_export_then_import_into_another_workspace_remints_session_keys(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("m1", "hello"))
    await api.call("POST", "/api/threads/t1/messages", message("m2", "world", role="assistant", timestamp=1001))
    exported = await api.call("GET", "/api/export")
    assert exported.body["workspace"] == "default" and isinstance(exported.body["exportedAt"], int)
    assert [m["id"] for m in exported.body["threads"][0]["messages"]] == ["m1", "m2"]

    await api.call("POST", "/api/workspaces", {"name": "copy", "agent": "other"})
    imported = await api.call("POST", "/api/import", {"threads": exported.body["threads"]}, workspace="copy")
    assert imported.body == {"ok": True, "threadsImported": 1, "messagesImported": 2}
    thread = (await api.call("GET", "/api/threads/t1", workspace="copy")).body["thread"]
    assert thread["session_key"] == "agent:other:copy:chat:t1"
    again = await api.call("POST", "/api/import", {"threads": exported.body["threads"]}, workspace="copy")
    assert again.body == {"ok": True, "threadsImported": 0, "messagesImported": 0}


async def test_import_keeps_a_session_key_that_already_belongs_here(api: Harness) -> None:
    body = {"threads": [{"id": "t9", "session_key": "agent:main:default:chat:t9", "messages": []}]}
    assert (await api.call("POST", "/api/import", body)).body["threadsImported"] == 1
    assert (await api.call("GET", "/api/threads/t9")).body["thread"]["session_key"] == "agent:main:default:chat:t9"
    foreign = {"threads": [{"id": "t8", "session_key": "agent:main:default:chat:t9", "messages": []}]}
    await api.call("POST", "/api/import", foreign)
    assert (await api.call("GET", "/api/threads/t8")).body["thread"]["session_key"] == "agent:main:default:chat:t8"


async def test_bad_imports_are_400_and_import_nothing(api: Harness) -> None:
    assert (await api.call("POST", "/api/import", {"threads": "nope"})).status == 400
    assert (await api.call("POST", "/api/import", {})).status == 400
    broken = {"threads": [{"id": "ok", "messages": []}, {"id": "../x", "messages": []}]}
    reply = await api.call("POST", "/api/import", broken)
    assert reply.status == 400 and "threads[1]" in reply.body["error"]
    assert (await api.call("GET", "/api/threads")).body["total"] == 0
    bad_message = {"threads": [{"id": "ok", "messages": [{"id": "m1", "role": "user"}]}]}
    assert (await api.call("POST", "/api/import", bad_message)).status == 400


# context, titles, description


async def test_context_fill_builds_a_preamble_from_recent_turns(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    assert (await api.call("POST", "/api/threads/t1/context-fill")).body == {"context": "", "messageCount": 0}
    await api.call("POST", "/api/threads/t1/messages", message("m1", "What is 2+2?"))
    await api.call("POST", "/api/threads/t1/messages", message("m2", "4", role="assistant", timestamp=1001))
    await api.call(
        "POST",
        "/api/threads/t1/messages",
        message("m3", "", role="assistant", timestamp=1002, metadata={"pending": True}),
    )
    reply = await api.call("POST", "/api/threads/t1/context-fill")
    assert reply.body["messageCount"] == 2
    assert reply.body["context"].endswith("User: What is 2+2?\n\nAssistant: 4")
    assert (await api.call("POST", "/api/threads/nope/context-fill")).status == 404


async def test_generate_title_retitles_in_the_background(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("POST", "/api/threads/t1/messages", message("m1", "Budget for March"))
    await api.call("PATCH", "/api/threads/t1", {"title": "Untitled"})
    assert (await api.call("POST", "/api/threads/t1/generate-title")).body == {"ok": True}
    for _ in range(100):
        if (await api.call("GET", "/api/threads/t1")).body["thread"]["title"] == "Budget for March":
            break
        await asyncio.sleep(0.01)
    assert (await api.call("GET", "/api/threads/t1")).body["thread"]["title"] == "Budget for March"
    assert (await api.call("POST", "/api/threads/nope/generate-title")).status == 404


async def test_numbers_too_large_for_the_store_are_never_a_server_error(api: Harness) -> None:
    """Found by fuzzing: these reached SQLite's 64-bit integers (directly, or as a page times its size, or as a
    timestamp plus the twin window) and answered 500."""
    huge = 10**30
    await api.call("POST", "/api/threads", {"id": "t1"})
    for path in ("/api/threads", "/api/search"):
        assert (await api.call("GET", path, query={"page": str(huge)})).status == 200
    for cursor in ("before", "after"):
        assert (await api.call("GET", "/api/threads/t1/messages", query={cursor: str(huge)})).status == 200
    for field in ("pin_order", "sort_order", "unread_count"):
        refused = await api.call("PATCH", "/api/threads/t1", {field: huge})
        assert (refused.status, refused.body) == (400, {"error": f"{field} is out of range"})
    for timestamp, seq in ((2**63 - 1, None), (1, huge)):
        message = {"id": "m1", "role": "user", "content": "hi", "timestamp": timestamp, "seq": seq}
        assert (await api.call("POST", "/api/threads/t1/messages", message)).status == 400
    assert (await api.call("GET", "/api/threads/t1/messages")).body["messages"] == []
    imported = await api.call("POST", "/api/import", {"threads": [{"id": "t2", "created_at": huge}]})
    assert imported.status == 400


async def test_unknown_routes_and_methods(api: Harness) -> None:
    assert (await api.call("GET", "/api/nothing")).status == 404
    wrong = await api.call("PUT", "/api/threads")
    assert wrong.status == 405 and "GET" in wrong.headers["Allow"]


async def test_openapi_describes_every_route(api: Harness) -> None:
    document = (await api.call("GET", "/api/openapi.json")).body
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(route.method, route.path) for route in api.router.routes}
    assert described == served
    assert document["paths"]["/api/health"]["get"]["security"] == []
    assert "requestBody" in document["paths"]["/api/threads/{id}/messages"]["post"]
    # Every error an operation lists is the `{error}` object, not only its 400 and default (found by fuzzing).
    missing = document["paths"]["/api/threads/{id}"]["get"]["responses"]["404"]
    assert missing["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    # X-Workspace is listed where it is read, and only there; empty means the active one as absent does (fuzzing
    # found it listed on every route, and an empty one accepted against a pattern that refused it).
    headers = {
        (method.upper(), path): [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    for read in (("GET", "/api/threads"), ("POST", "/api/threads/{id}/messages"), ("GET", "/api/export")):
        assert headers[read] == ["X-Workspace"], read
    for ignored in (("GET", "/api/health"), ("GET", "/api/workspaces"), ("POST", "/api/active-thread")):
        assert headers[ignored] == [], ignored
    listed = document["paths"]["/api/threads"]["get"]["parameters"]
    [workspace] = [parameter for parameter in listed if parameter["name"] == "X-Workspace"]
    assert re.fullmatch(workspace["schema"]["pattern"], "")
    assert ApiRequest("GET", "/api/threads", headers={"x-workspace": ""}).workspace is None


async def test_deleting_threads_and_workspaces_hands_their_sessions_to_cleanup(api: Harness) -> None:
    await api.call("POST", "/api/threads", {"id": "t1"})
    await api.call("DELETE", "/api/threads/t1")
    assert [r.key for r in api.cleanup.forgotten] == ["agent:main:default:chat:t1"]
    await api.call("POST", "/api/workspaces", {"name": "work"})
    for thread_id in ("a", "b"):
        await api.call("POST", "/api/threads", {"id": thread_id}, workspace="work")
    await api.call("PATCH", "/api/workspaces/work", {"agent": "other"})
    assert [r.key for r in api.cleanup.forgotten[1:]] == ["agent:main:work:chat:a", "agent:main:work:chat:b"]
    await api.call("DELETE", "/api/workspaces/work")
    assert sorted(r.key for r in api.cleanup.forgotten[3:]) == ["agent:other:work:chat:a", "agent:other:work:chat:b"]


async def test_deleting_a_thread_or_its_workspace_removes_its_uploads(api: Harness) -> None:
    await api.call("POST", "/api/workspaces", {"name": "work"})
    for workspace, thread_id in (("default", "t1"), ("work", "w1")):
        await api.call("POST", "/api/threads", {"id": thread_id}, workspace=workspace)
        await api.uploads.save(workspace, thread_id, b"data", mime_type="text/plain", file_name="a.txt")
    await api.call("DELETE", "/api/threads/t1")
    assert api.uploads.count("default", "t1") == 0
    await api.call("DELETE", "/api/workspaces/work")
    assert api.uploads.count("work", "w1") == 0
