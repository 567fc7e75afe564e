"""A small OpenAI-compatible embeddings server for tests, on a free loopback port.

It answers deterministic vectors (a table of known texts, else three numbers derived from the text), always in the
reverse order of the input (each with its `index`, as the API allows), and can be told to fail in each way a real
endpoint does (`mode`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["FakeEmbeddings", "derived_vector", "serve_fake_embeddings"]


def derived_vector(text: str) -> list[float]:
    """Three numbers that differ between texts, the same on every call."""
    return [float(len(text)), float(sum(map(ord, text)) % 97), 1.0]


@dataclass
class FakeEmbeddings:
    """What the fake server saw and how it answers: `mode` picks a failure, `vectors` fixes some texts' vectors."""

    mode: str = "ok"
    vectors: dict[str, list[float]] = field(default_factory=dict)
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """What a request in mode "hang" waits for (set when the server stops)."""
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    base_url: str = ""

    async def wait_for_requests(self, count: int) -> None:
        """Until `count` requests have arrived (a background task of the client made them)."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        async with self.arrived:
            self.requests.append((dict(request.headers), body))
            self.arrived.notify_all()
        texts: list[str] = body["input"]
        data = [{"object": "embedding", "index": i, "embedding": self.vector(t)} for i, t in enumerate(texts)]
        data.reverse()
        match self.mode:
            case "ok":
                return web.json_response({"object": "list", "data": data, "model": body["model"]})
            case "unauthorized":  # as OpenAI does: the message quotes the key it was given
                message = f"Incorrect API key provided: {request.headers.get('Authorization', '')}"
                return web.json_response({"error": {"message": message}}, status=401)
            case "server error":
                return web.Response(status=500, text=f"boom {request.headers.get('Authorization', '')}")
            case "redirect":
                raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
            case "not json":
                return web.Response(text="<html>proxy error</html>", content_type="application/json")
            case "no data":
                return web.json_response({"error": "nothing"})
            case "one short":
                return web.json_response({"data": data[1:]})
            case "ragged":
                data[0]["embedding"] = [1.0]
                return web.json_response({"data": data})
            case "not numbers":
                data[0]["embedding"] = ["a", "b", "c"]
                return web.json_response({"data": data})
            case "duplicate index":
                for item in data:
                    item["index"] = 0
                return web.json_response({"data": data})
            case "hang":
                await self.release.wait()
                return web.json_response({"data": data})
        raise AssertionError(self.mode)

    def vector(self, text: str) -> list[float]:
        return self.vectors.get(text) or derived_vector(text)


@asynccontextmanager
async def serve_fake_embeddings() -> AsyncIterator[FakeEmbeddings]:
    """The fake, serving `POST <base_url>/embeddings` until the block ends."""
    state = FakeEmbeddings()
    app = web.Application()
    app.router.add_post("/v1/embeddings", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.base_url = str(server.make_url("/v1"))
    try:
        yield state
    finally:
        state.release.set()
        await server.close()
