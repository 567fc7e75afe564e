"""The memory routes over the in-memory store (itself held to the memory contract), called as a transport does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from claw_adapters.memory.in_memory import InMemoryMemoryStore
from claw_core.api.contract import ApiRequest, Router
from claw_core.api.memory_routes import MemoryApi, memory_routes
from claw_core.api.router import build_router

UNKNOWN_ID = "6f1c1a52-8f3e-4d8a-9a0e-2b0c4f1e9d77"


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class Client:
    router: Router
    store: InMemoryMemoryStore

    async def call(
        self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None, raw: bytes | None = None
    ) -> Reply:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = await self.router.dispatch(ApiRequest(method=method, path=path, query=query or {}, body=payload))
        return Reply(response.status, json.loads(response.encoded()))


@pytest.fixture
def client() -> Client:
    store = InMemoryMemoryStore()
    return Client(build_router(memory_routes(MemoryApi(store))), store)


async def add(client: Client, data: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await client.call("POST", "/api/memory", {"data": data, "metadata": metadata})
    assert reply.status == 201
    memory: dict[str, Any] = reply.body["memory"]
    return memory


async def test_status_of_a_reachable_store(client: Client) -> None:
    await add(client, "one")
    reply = await client.call("GET", "/api/memory/status")
    assert reply.status == 200
    assert reply.body == {
        "reachable": True,
        "backend": "memory",
        "collection": "memories",
        "pointsCount": 1,
        "semantic": False,
    }


async def test_status_of_an_unreachable_store_is_200_with_the_error(client: Client) -> None:
    client.store.available = False
    reply = await client.call("GET", "/api/memory/status")
    assert reply.status == 200
    assert reply.body["reachable"] is False
    assert reply.body["error"]


async def test_status_survives_a_store_that_breaks_its_promise(client: Client) -> None:
    class Broken(InMemoryMemoryStore):
        async def status(self) -> Any:
            raise RuntimeError("internal detail /secret/path")

    router = build_router(memory_routes(MemoryApi(Broken())))
    reply = await Client(router, client.store).call("GET", "/api/memory/status")
    assert reply.status == 200
    assert reply.body["reachable"] is False
    assert "secret" not in json.dumps(reply.body)


async def test_add_then_get(client: Client) -> None:
    memory = await add(client, "likes tea", {"user_id": "alice"})
    assert memory["data"] == "likes tea"
    assert memory["payload"]["user_id"] == "alice"
    assert memory["created_at"]
    assert memory["updated_at"] is None
    reply = await client.call("GET", f"/api/memory/{memory['id']}")
    assert reply.status == 200
    assert reply.body == {"memory": memory}


@pytest.mark.parametrize(
    "body",
    [{}, {"data": ""}, {"data": "  "}, {"data": 5}, {"data": None}, {"data": "x", "metadata": "not an object"}],
)
async def test_add_refuses_a_bad_body(client: Client, body: dict[str, Any]) -> None:
    reply = await client.call("POST", "/api/memory", body)
    assert reply.status == 400
    assert isinstance(reply.body["error"], str)
    assert await client.store.count() == 0


async def test_add_refuses_a_body_that_is_not_json(client: Client) -> None:
    reply = await client.call("POST", "/api/memory", raw=b"{not json")
    assert reply.status == 400


async def test_list_pages_with_next_offset(client: Client) -> None:
    ids = sorted([(await add(client, f"memory {n}"))["id"] for n in range(5)])
    first = await client.call("GET", "/api/memory/list", query={"limit": "2"})
    assert first.status == 200
    assert [m["id"] for m in first.body["memories"]] == ids[:2]
    assert first.body["next_offset"] is not None
    seen = [m["id"] for m in first.body["memories"]]
    offset = first.body["next_offset"]
    while offset is not None:
        reply = await client.call("GET", "/api/memory/list", query={"limit": "2", "offset": offset})
        seen += [m["id"] for m in reply.body["memories"]]
        offset = reply.body["next_offset"]
    assert seen == ids


async def test_list_defaults_and_caps_the_limit(client: Client) -> None:
    for n in range(60):
        await add(client, f"memory {n}")
    default = await client.call("GET", "/api/memory/list")
    assert len(default.body["memories"]) == 50
    capped = await client.call("GET", "/api/memory/list", query={"limit": "100000", "offset": ""})
    assert len(capped.body["memories"]) == 60
    assert capped.body["next_offset"] is None


@pytest.mark.parametrize("offset", ["", "0", "null", "undefined"])
async def test_list_takes_what_a_web_app_sends_for_the_first_page(client: Client, offset: str) -> None:
    ids = sorted([(await add(client, f"memory {n}"))["id"] for n in range(3)])
    reply = await client.call("GET", "/api/memory/list", query={"offset": offset})
    assert reply.status == 200
    assert [m["id"] for m in reply.body["memories"]] == ids


@pytest.mark.parametrize(("query", "status"), [({"limit": "ten"}, 400), ({"offset": "garbage"}, 400)])
async def test_list_refuses_bad_parameters(client: Client, query: dict[str, str], status: int) -> None:
    reply = await client.call("GET", "/api/memory/list", query=query)
    assert reply.status == status
    assert "error" in reply.body


async def test_search(client: Client) -> None:
    tea = await add(client, "Alice likes green tea")
    await add(client, "Bob likes coffee")
    reply = await client.call("GET", "/api/memory/search", query={"q": "TEA alice"})
    assert reply.status == 200
    assert [m["id"] for m in reply.body["memories"]] == [tea["id"]]
    assert isinstance(reply.body["memories"][0]["score"], float)
    limited = await client.call("GET", "/api/memory/search", query={"q": "likes", "limit": "1"})
    assert len(limited.body["memories"]) == 1
    assert (await client.call("GET", "/api/memory/search")).body == {"memories": []}


async def test_update(client: Client) -> None:
    memory = await add(client, "old text", {"user_id": "alice"})
    reply = await client.call("PUT", f"/api/memory/{memory['id']}", {"data": "new text"})
    assert reply.status == 200
    assert reply.body["memory"]["data"] == "new text"
    assert reply.body["memory"]["payload"]["user_id"] == "alice"
    assert reply.body["memory"]["updated_at"]
    assert (await client.store.get(memory["id"])).data == "new text"


@pytest.mark.parametrize("body", [{}, {"data": ""}, {"data": ["x"]}, {"data": "   "}])
async def test_update_refuses_a_bad_body(client: Client, body: dict[str, Any]) -> None:
    memory = await add(client, "stays")
    reply = await client.call("PUT", f"/api/memory/{memory['id']}", body)
    assert reply.status == 400
    assert (await client.store.get(memory["id"])).data == "stays"


async def test_delete(client: Client) -> None:
    memory = await add(client, "doomed")
    reply = await client.call("DELETE", f"/api/memory/{memory['id']}")
    assert (reply.status, reply.body) == (200, {"ok": True})
    assert (await client.call("GET", f"/api/memory/{memory['id']}")).status == 404


@pytest.mark.parametrize("memory_id", [UNKNOWN_ID, "not-a-uuid", "..%2F..%2Fetc"])
@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PUT", {"data": "x"}), ("DELETE", None)])
async def test_unknown_ids_are_404(client: Client, memory_id: str, method: str, body: Any) -> None:
    reply = await client.call(method, f"/api/memory/{memory_id}", body)
    assert reply.status == 404
    assert reply.body == {"error": "Memory not found"}


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("GET", "/api/memory/list", None, None),
        ("GET", "/api/memory/search", None, {"q": "tea"}),
        ("GET", f"/api/memory/{UNKNOWN_ID}", None, None),
        ("POST", "/api/memory", {"data": "x"}, None),
        ("PUT", f"/api/memory/{UNKNOWN_ID}", {"data": "x"}, None),
        ("DELETE", f"/api/memory/{UNKNOWN_ID}", None, None),
    ],
)
async def test_a_backend_that_is_down_is_503_with_an_error(
    client: Client, method: str, path: str, body: Any, query: dict[str, str] | None
) -> None:
    client.store.available = False
    reply = await client.call(method, path, body, query=query)
    assert reply.status == 503
    assert set(reply.body) == {"error"}
    assert reply.body["error"]


@pytest.mark.parametrize("path", ["/api/memory/status", "/api/memory/list", "/api/memory/search"])
def test_the_literal_routes_are_not_taken_by_the_id_routes(client: Client, path: str) -> None:
    route, params = client.router.match("GET", path)
    assert route.path == path
    assert params == {}


async def test_openapi_describes_the_memory_routes(client: Client) -> None:
    document = (await client.call("GET", "/api/openapi.json")).body
    paths = document["paths"]
    for path in ("/api/memory/status", "/api/memory/list", "/api/memory/search", "/api/memory", "/api/memory/{id}"):
        assert path in paths
    assert set(paths["/api/memory/{id}"]) == {"get", "put", "delete"}
