"""Fixtures for the HTTP transport tests: a small route table of their own, a real server on a free port of
127.0.0.1, a client session and a raw-socket client for what aiohttp's client refuses to send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from claw_adapters.http import HttpServer, HttpSettings, create_app, start_http
from claw_core.api.contract import ApiRequest, ApiResponse, Route, Router
from claw_core.errors import Invalid

HTTP_TOKEN = "s3cr3t-t0ken-for-http-tests"
HTTP_ORIGIN = "https://chat.example"
SMALL_LIMIT = 16
LARGE_LIMIT = 3 * 1024 * 1024


@dataclass
class HttpHarness:
    """What a test needs: the token and origin the server was configured with, and which handlers ran."""

    token: str = HTTP_TOKEN
    origin: str = HTTP_ORIGIN
    calls: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def router(self) -> Router:
        async def echo(request: ApiRequest) -> ApiResponse:
            self.calls.append(f"{request.method} {request.path}")
            return ApiResponse(
                200,
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": dict(request.headers),
                    "body": request.body.decode("utf-8", "replace"),
                    "workspace": request.workspace,
                    "params": dict(request.path_params),
                },
            )

        async def secret(request: ApiRequest) -> ApiResponse:
            self.calls.append("secret")
            return ApiResponse(200, {"secret": True})

        async def parse_json(request: ApiRequest) -> ApiResponse:
            return ApiResponse(200, {"parsed": request.json_object()})

        async def invalid(request: ApiRequest) -> ApiResponse:
            raise Invalid("Thread title too long")

        async def boom(request: ApiRequest) -> ApiResponse:
            raise RuntimeError("database password is hunter2 at /srv/secret.db")

        async def size(request: ApiRequest) -> ApiResponse:
            return ApiResponse(200, {"size": len(request.body)})

        async def raw(request: ApiRequest) -> ApiResponse:
            return ApiResponse(
                200, b"plain bytes\n", content_type="text/plain; charset=utf-8", headers={"X-Extra": "1"}
            )

        async def slow(request: ApiRequest) -> ApiResponse:
            await asyncio.sleep(0.5)
            return ApiResponse(200, {"slow": True})

        async def created(request: ApiRequest) -> ApiResponse:
            return ApiResponse(204)

        routes = [Route(method, "/api/echo", echo, "echo") for method in ("GET", "POST", "PUT", "PATCH", "DELETE")]
        routes += [
            Route("GET", "/api/items/{id}", echo, "one item"),
            Route("GET", "/api/items/{id}/secret", secret, "a route a decoded %2F must not reach"),
            Route("POST", "/api/json", parse_json, "parse a JSON object"),
            Route("GET", "/api/invalid", invalid, "raises Invalid"),
            Route("GET", "/api/boom", boom, "raises a plain exception"),
            Route("GET", "/api/public", echo, "no token needed", requires_auth=False),
            Route("POST", "/api/small", size, "tiny body limit", max_body=SMALL_LIMIT),
            Route("POST", "/api/large", size, "larger than aiohttp's default", max_body=LARGE_LIMIT),
            Route("GET", "/api/raw", raw, "raw bytes"),
            Route("GET", "/api/slow", slow, "takes a while"),
            Route("DELETE", "/api/nothing", created, "204"),
        ]
        return Router(routes)


async def _ws_echo(request: web.Request) -> web.StreamResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        if message.type == aiohttp.WSMsgType.TEXT:
            await socket.send_str(message.data)
    return socket


@pytest.fixture
def http_harness() -> HttpHarness:
    return HttpHarness()


@pytest.fixture
async def http_serve(http_harness: HttpHarness) -> AsyncIterator[Callable[..., Awaitable[HttpServer]]]:
    """Start servers with setting overrides (`await http_serve(header_timeout_s=0.5)`); all stop at teardown."""
    servers: list[HttpServer] = []

    async def start(**overrides: Any) -> HttpServer:
        options: dict[str, Any] = {"token": http_harness.token, "cors_origins": (http_harness.origin,)}
        options.update(overrides)
        app = create_app(http_harness.router(), HttpSettings(**options), extra_routes=[web.get("/ws", _ws_echo)])
        server = await start_http(app, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def http_server(http_serve: Callable[..., Awaitable[HttpServer]]) -> HttpServer:
    return await http_serve()


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    head: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, data: bytes, *, wait_s: float = 5.0) -> RawResponse:
    """Send bytes as they are and read one response: its head, then `Content-Length` bytes of body (or until the
    server closes, or `wait_s` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        try:
            async with asyncio.timeout(wait_s):
                while not _complete(received) and (chunk := await reader.read(65536)):
                    received += chunk
        except TimeoutError:
            pass
    finally:
        writer.close()
    return parse_response(received)


def _complete(received: bytes) -> bool:
    if b"\r\n\r\n" not in received:
        return False
    response = parse_response(received)
    length = response.headers.get("content-length")
    return length is not None and len(response.body) >= int(length)


def parse_response(received: bytes) -> RawResponse:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status, headers, body, head)


@pytest.fixture
def http_raw() -> Callable[..., Awaitable[RawResponse]]:
    return raw_request
