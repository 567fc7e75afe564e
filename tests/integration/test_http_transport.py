"""The aiohttp transport over real sockets: requests become ApiRequests, ApiResponses become HTTP, errors are JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from claw_adapters.http import HttpServer, HttpSettings, create_app, is_loopback_host, start_http
from claw_core.api.contract import Router

JSON = "application/json; charset=utf-8"

pytestmark = pytest.mark.integration

Raw = Callable[..., Awaitable[Any]]
Serve = Callable[..., Awaitable[HttpServer]]


def head(server: HttpServer, request_line: str, *headers: str, body: bytes = b"", auth: str | None = None) -> bytes:
    """A raw HTTP/1.1 request to `server` with a good Host, the token unless `auth` says otherwise, and
    `Connection: close` so the reader sees the end."""
    lines = [request_line, f"Host: 127.0.0.1:{server.port}"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    lines += [*headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def test_request_fields_reach_the_router(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = {**http_harness.auth, "X-Workspace": "research", "X-Custom": "Value", "Cookie": "other=app"}
    async with http_session.post(
        f"{http_server.url}/api/echo?limit=5&limit=9&q=a%20b&empty=", data=b'{"a":1}', headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == JSON
        echoed = await response.json()
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/api/echo"
    assert echoed["query"] == {"limit": "5", "q": "a b", "empty": ""}
    assert echoed["body"] == '{"a":1}'
    assert echoed["workspace"] == "research"
    assert echoed["headers"]["x-custom"] == "Value"
    assert all(name == name.lower() for name in echoed["headers"])
    assert "authorization" not in echoed["headers"]
    assert "cookie" not in echoed["headers"]


async def test_path_parameters_are_decoded_per_segment(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    url = URL(f"{http_server.url}/api/items/caf%C3%A9%20au%20lait", encoded=True)
    async with http_session.get(url, headers=http_harness.auth) as response:
        assert response.status == 200
        assert (await response.json())["params"] == {"id": "café au lait"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/a%2Fsecret",
        "/api/items/a%2fsecret",
        "/api/items/a%5Csecret",
        "/api/items/%2e%2e",
        "/api/items/..",
        "/api/items/.",
        "/api/items/a%00b",
        "/api/items/a%0Ab",
        "/api/items/%ff",
    ],
)
async def test_encoded_separators_and_dot_segments_are_refused(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, path: str
) -> None:
    async with http_session.get(URL(f"{http_server.url}{path}", encoded=True), headers=http_harness.auth) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == JSON
        assert (await response.json())["error"] in {"Invalid path", "Invalid request target"}
    assert "secret" not in http_harness.calls


async def test_raw_bytes_keep_their_content_type_and_headers(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(f"{http_server.url}/api/raw", headers=http_harness.auth) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["X-Extra"] == "1"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == b"plain bytes\n"


async def test_no_content_has_no_body(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.delete(f"{http_server.url}/api/nothing", headers=http_harness.auth) as response:
        assert response.status == 204
        assert await response.read() == b""


async def test_unknown_path_is_a_json_404(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(f"{http_server.url}/api/nope", headers=http_harness.auth) as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == JSON
        assert await response.json() == {"error": "Not found"}


async def test_wrong_method_is_a_json_405_with_allow(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.put(f"{http_server.url}/api/raw", headers=http_harness.auth) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
        assert await response.json() == {"error": "Method not allowed"}


async def test_invalid_is_a_json_400(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(f"{http_server.url}/api/invalid", headers=http_harness.auth) as response:
        assert response.status == 400
        assert await response.json() == {"error": "Thread title too long"}


@pytest.mark.parametrize("body", [b"{not json", b'{"a": 1', b"\xff\xfe", b"[1, 2]"])
async def test_malformed_json_is_a_json_400(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, body: bytes
) -> None:
    headers = {**http_harness.auth, "Content-Type": "application/json"}
    async with http_session.post(f"{http_server.url}/api/json", data=body, headers=headers) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == JSON
        assert set(await response.json()) == {"error"}


async def test_unexpected_exception_is_a_bare_500(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(
        f"{http_server.url}/api/boom", headers={**http_harness.auth, "Accept": "text/html"}
    ) as response:
        assert response.status == 500
        assert response.headers["Content-Type"] == JSON
        text = await response.text()
    assert json.loads(text) == {"error": "Internal error"}
    for leak in ("Traceback", "hunter2", "secret.db", "RuntimeError", "File "):
        assert leak not in text


async def test_a_route_may_take_more_than_aiohttps_default_megabyte(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    body = b"x" * (2 * 1024 * 1024)
    async with http_session.post(f"{http_server.url}/api/large", data=body, headers=http_harness.auth) as response:
        assert response.status == 200
        assert await response.json() == {"size": len(body)}


async def test_chunked_body_under_the_limit_is_read(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"abc", b"def"):
            yield part

    async with http_session.post(f"{http_server.url}/api/small", data=chunks(), headers=http_harness.auth) as response:
        assert response.status == 200
        assert await response.json() == {"size": 6}


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        b"G@T /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"FOO /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/echo HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n",
        b"GET /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
        b"GET /api/echo HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
    ],
)
async def test_unparsable_requests_get_a_json_4xx_and_the_server_keeps_serving(
    http_server: HttpServer, http_raw: Raw, http_session: aiohttp.ClientSession, http_harness: Any, garbage: bytes
) -> None:
    refused = await http_raw(http_server.port, garbage)
    assert 400 <= refused.status < 500
    assert refused.headers["content-type"] == JSON
    assert set(refused.json()) == {"error"}
    async with http_session.get(f"{http_server.url}/api/echo", headers=http_harness.auth) as response:
        assert response.status == 200


async def test_broken_chunked_body_is_a_json_400(http_server: HttpServer, http_raw: Raw, http_harness: Any) -> None:
    request = head(
        http_server, "POST /api/small HTTP/1.1", "Transfer-Encoding: chunked", auth=f"Bearer {http_harness.token}"
    )
    refused = await http_raw(http_server.port, request + b"zz\r\nabc\r\n0\r\n\r\n")
    assert refused.status == 400
    assert set(refused.json()) == {"error"}


async def test_expect_continue_is_answered_only_after_the_guards(http_server: HttpServer, http_harness: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_server.port)
    try:
        writer.write(
            head(
                http_server,
                "POST /api/small HTTP/1.1",
                "Expect: 100-continue",
                "Content-Length: 5",
                auth=f"Bearer {http_harness.token}",
            )
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        await writer.drain()
        final = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert final.startswith(b"HTTP/1.1 200")
    assert final.endswith(b'{"size":5}')


async def test_body_deadline_is_absolute(http_serve: Serve, http_raw: Raw, http_harness: Any) -> None:
    server = await http_serve(body_timeout_s=0.3)
    request = head(server, "POST /api/small HTTP/1.1", "Content-Length: 10", auth=f"Bearer {http_harness.token}")
    refused = await http_raw(server.port, request + b"ab")
    assert refused.status == 408
    assert refused.json() == {"error": "Request body timeout"}


async def test_port_zero_binds_a_free_port_and_stop_lets_in_flight_requests_finish(
    http_serve: Serve, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    server = await http_serve(shutdown_timeout_s=5.0)
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"

    async def slow() -> int:
        async with http_session.get(f"{server.url}/api/slow", headers=http_harness.auth) as response:
            await response.read()
            return response.status

    in_flight = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    await server.stop()
    assert await in_flight == 200
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http_session.get(f"{server.url}/api/public", headers={"Connection": "close"}):
            pass


async def test_start_http_needs_an_app_from_create_app() -> None:
    from aiohttp import web

    with pytest.raises(TypeError):
        await start_http(web.Application(), "127.0.0.1", 0)


async def test_access_log_has_method_path_status_duration_only(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="claw_adapters.http.access")
    async with http_session.get(f"{http_server.url}/api/echo?q=private", headers=http_harness.auth) as response:
        assert response.status == 200
    await asyncio.sleep(0.05)
    lines = [record.getMessage() for record in caplog.records if record.name == "claw_adapters.http.access"]
    assert any(line.startswith("GET /api/echo 200 ") and line.endswith("ms") for line in lines), lines
    assert not any("private" in line or "?" in line for line in lines)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("localhost", True),
        ("LocalHost", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "overrides",
    [
        {"token": ""},
        {"token": "has space"},
        {"cors_origins": ("*",)},
        {"cors_origins": ("null",)},
        {"cors_origins": ("https://app.example/",)},
        {"allowed_hosts": ("evil.example/path",)},
        {"auth_failures_per_minute": 0},
        {"header_timeout_s": 0},
    ],
)
def test_settings_refuse_unsafe_values(overrides: dict[str, Any]) -> None:
    options: dict[str, Any] = {"token": "t0ken"}
    options.update(overrides)
    with pytest.raises(ValueError):
        HttpSettings(**options)


def test_client_max_size_follows_the_largest_route(http_harness: Any) -> None:
    router: Router = http_harness.router()
    app = create_app(router, HttpSettings(token="t0ken"))
    assert app._client_max_size == max(route.max_body for route in router.routes)


async def test_head_is_guarded_and_answered_as_get(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    """HEAD goes where GET goes: a public route answers without the token, a protected one wants it."""
    async with http_session.head(f"{http_server.url}/api/public") as response:
        assert response.status == 200
    async with http_session.head(f"{http_server.url}/api/echo") as response:
        assert response.status == 401
    async with http_session.head(f"{http_server.url}/api/echo", headers=http_harness.auth) as response:
        assert response.status == 200 and await response.read() == b""
