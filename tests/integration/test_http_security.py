"""The attacks of security.md against the real HTTP transport: DNS rebinding, cross-site requests and WebSocket
hijacking, CORS, CSRF, token guessing and leakage, oversized and slow requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from claw_adapters.http import HttpServer
from claw_adapters.http.ratelimit import FailureLimiter

pytestmark = pytest.mark.integration

JSON = "application/json; charset=utf-8"
EVIL = "https://evil.example"

Raw = Callable[..., Awaitable[Any]]
Serve = Callable[..., Awaitable[HttpServer]]

ROUTES = [
    ("GET", "/api/echo"),
    ("POST", "/api/echo"),
    ("DELETE", "/api/echo"),
    ("GET", "/api/public"),
    ("POST", "/api/small"),
    ("GET", "/api/boom"),
    ("GET", "/api/nope"),
    ("OPTIONS", "/api/echo"),
    ("GET", "/ws"),
]


def raw_request(server: HttpServer, request_line: str, *headers: str, host: str | None = None) -> bytes:
    lines = [request_line, f"Host: {host if host is not None else f'127.0.0.1:{server.port}'}", *headers]
    return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


# --- DNS rebinding: the Host allowlist ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_foreign_host_is_refused_on_every_route(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, method: str, path: str
) -> None:
    headers = {**http_harness.auth, "Host": "evil.example"}
    async with http_session.request(method, f"{http_server.url}{path}", headers=headers) as response:
        assert response.status == 403
        assert response.headers["Content-Type"] == JSON
        assert await response.json() == {"error": "Host not allowed"}
    assert http_harness.calls == []


async def test_foreign_host_is_refused_on_a_websocket_upgrade(
    http_server: HttpServer, http_raw: Raw, http_harness: Any
) -> None:
    upgrade = (
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        f"Authorization: Bearer {http_harness.token}",
    )
    for path in ("/ws", "/api/echo"):
        lines = [f"GET {path} HTTP/1.1", "Host: evil.example", *upgrade]
        refused = await http_raw(http_server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
        assert refused.status == 403
        assert refused.json() == {"error": "Host not allowed"}
        assert "upgrade" not in refused.headers


async def test_foreign_host_is_refused_by_the_websocket_client(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http_session.ws_connect(f"{http_server.url}/ws", headers={**http_harness.auth, "Host": "evil.example"})
    assert refused.value.status == 403


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:1", "localhost", "LOCALHOST:8080", "[::1]", "[::1]:9", "app.internal", "App.Internal:443"],
)
async def test_loopback_and_configured_hosts_are_allowed(
    http_serve: Serve, http_session: aiohttp.ClientSession, http_harness: Any, host: str
) -> None:
    server = await http_serve(allowed_hosts=("app.internal",))
    async with http_session.get(f"{server.url}/api/echo", headers={**http_harness.auth, "Host": host}) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.evil.example",
        "localhost.",
        "localhost.evil.example",
        "127.0.0.1@evil.example",
        "127.0.0.1:80@evil.example",
        "[::1].evil.example",
        "127.0.0.1:port",
        "0.0.0.0",
        "",
    ],
)
async def test_lookalike_hosts_are_refused(
    http_server: HttpServer, http_raw: Raw, http_harness: Any, host: str
) -> None:
    refused = await http_raw(
        http_server.port,
        raw_request(http_server, "GET /api/echo HTTP/1.1", f"Authorization: Bearer {http_harness.token}", host=host),
    )
    assert refused.status in {400, 403}
    assert refused.headers["content-type"] == JSON


async def test_missing_host_is_refused(http_server: HttpServer, http_raw: Raw, http_harness: Any) -> None:
    refused = await http_raw(
        http_server.port, f"GET /api/echo HTTP/1.0\r\nAuthorization: Bearer {http_harness.token}\r\n\r\n".encode()
    )
    assert refused.status == 403
    assert refused.json() == {"error": "Host not allowed"}


async def test_absolute_form_target_cannot_name_another_authority(
    http_server: HttpServer, http_raw: Raw, http_harness: Any
) -> None:
    refused = await http_raw(
        http_server.port,
        raw_request(
            http_server, "GET http://evil.example/api/echo HTTP/1.1", f"Authorization: Bearer {http_harness.token}"
        ),
    )
    assert refused.status == 400
    assert http_harness.calls == []


# --- Origin three-state and CORS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", [EVIL, "null", "https://chat.example.evil.example", "http://chat.example", "https://chat.example:444"]
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_foreign_origin_is_refused_before_any_handler(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, origin: str, method: str
) -> None:
    headers = {**http_harness.auth, "Origin": origin}
    async with http_session.request(method, f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 403
        assert await response.json() == {"error": "Origin not allowed"}
        assert "Access-Control-Allow-Origin" not in response.headers
    assert http_harness.calls == []


async def test_two_origin_headers_are_refused(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = CIMultiDict([("Origin", http_harness.origin), ("Origin", EVIL), *http_harness.auth.items()])
    async with http_session.get(f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin", [EVIL, "null"])
async def test_foreign_origin_websocket_is_refused(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, origin: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http_session.ws_connect(f"{http_server.url}/ws", origin=origin, headers=http_harness.auth)
    assert refused.value.status == 403


async def test_websocket_needs_the_token_and_works_with_it(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http_session.ws_connect(f"{http_server.url}/ws", origin=http_harness.origin)
    assert refused.value.status == 401
    async with http_session.ws_connect(
        f"{http_server.url}/ws", origin=http_harness.origin, headers=http_harness.auth
    ) as socket:
        await socket.send_str("ping")
        assert await socket.receive_str(timeout=5) == "ping"


async def test_allowlisted_origin_gets_its_exact_origin_back(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(
        f"{http_server.url}/api/echo", headers={**http_harness.auth, "Origin": http_harness.origin}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == http_harness.origin
        assert "Origin" in response.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in response.headers
    async with http_session.get(f"{http_server.url}/api/echo", headers={"Origin": http_harness.origin}) as response:
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == http_harness.origin
    async with http_session.get(f"{http_server.url}/api/echo", headers=http_harness.auth) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers
        assert response.headers["Vary"] == "Origin"


async def test_preflight_from_an_allowlisted_origin(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = {
        "Origin": http_harness.origin,
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization, content-type, x-workspace",
    }
    async with http_session.options(f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == http_harness.origin
        assert response.headers["Vary"] == "Origin"
        methods = {part.strip() for part in response.headers["Access-Control-Allow-Methods"].split(",")}
        assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
        allowed = {part.strip().lower() for part in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert allowed == {"authorization", "content-type", "x-workspace", "range"}
        assert int(response.headers["Access-Control-Max-Age"]) > 0
        assert "*" not in str(response.headers)
    assert http_harness.calls == []


async def test_preflight_grants_private_network_access_to_an_allowlisted_origin(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = {
        "Origin": http_harness.origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true",
    }
    async with http_session.options(f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    async with http_session.options(f"{http_server.url}/api/echo", headers={**headers, "Origin": EVIL}) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Private-Network" not in response.headers


@pytest.mark.parametrize("origin", [EVIL, "null"])
async def test_preflight_from_an_unknown_origin_gets_no_allow_origin(
    http_server: HttpServer, http_session: aiohttp.ClientSession, origin: str
) -> None:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with http_session.options(f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers


# --- CSRF and authentication -------------------------------------------------------------------------------------


async def test_form_style_post_without_the_header_is_unauthorized(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.post(f"{http_server.url}/api/echo", data={"title": "pwned"}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.json() == {"error": "Unauthorized"}
    assert http_harness.calls == []


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({"Authorization": "Bearer "}, ""),
        ({"Authorization": "Basic czNjcjN0LXQwa2VuLWZvci1odHRwLXRlc3Rz"}, ""),
        ({"Authorization": "s3cr3t-t0ken-for-http-tests"}, ""),
        ({"Authorization": "Bearer s3cr3t-t0ken-for-http-test"}, ""),
        ({"Authorization": "Bearer s3cr3t-t0ken-for-http-testsX"}, ""),
        ({}, "?token=s3cr3t-t0ken-for-http-tests&access_token=s3cr3t-t0ken-for-http-tests"),
        ({"Cookie": "token=s3cr3t-t0ken-for-http-tests"}, ""),
    ],
)
async def test_anything_but_the_bearer_header_is_unauthorized(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any, headers: dict[str, str], query: str
) -> None:
    async with http_session.get(f"{http_server.url}/api/echo{query}", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert http_harness.calls == []


async def test_two_authorization_headers_are_unauthorized(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = CIMultiDict([("Authorization", "Bearer wrong"), *http_harness.auth.items()])
    async with http_session.get(f"{http_server.url}/api/echo", headers=headers) as response:
        assert response.status == 401


async def test_bearer_scheme_is_case_insensitive(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.get(
        f"{http_server.url}/api/echo", headers={"Authorization": f"bearer {http_harness.token}"}
    ) as response:
        assert response.status == 200


async def test_public_route_needs_no_token(http_server: HttpServer, http_session: aiohttp.ClientSession) -> None:
    async with http_session.get(f"{http_server.url}/api/public") as response:
        assert response.status == 200


# --- Failed-authentication limiter -------------------------------------------------------------------------------


async def test_a_thousand_wrong_tokens_from_loopback_trip_the_limiter(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    statuses: list[int] = []
    retry_after: set[str] = set()
    for attempt in range(1000):
        async with http_session.get(
            f"{http_server.url}/api/echo", headers={"Authorization": f"Bearer guess-{attempt}"}
        ) as response:
            statuses.append(response.status)
            if response.status == 429:
                assert await response.json() == {"error": "Too many failed attempts"}
                retry_after.add(response.headers["Retry-After"])
    assert statuses[:30] == [401] * 30
    assert statuses[30:] == [429] * 970
    assert all(1 <= int(value) <= 60 for value in retry_after)

    for path in ("/api/echo", "/api/public"):
        async with http_session.get(f"{http_server.url}{path}", headers=http_harness.auth) as response:
            assert response.status == 429
            assert "Retry-After" in response.headers

    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as other,
        other.get(f"{http_server.url}/api/echo", headers=http_harness.auth) as response,
    ):
        assert response.status == 200


async def test_the_budget_is_configurable(
    http_serve: Serve, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    server = await http_serve(auth_failures_per_minute=3)
    statuses = []
    for _ in range(5):
        async with http_session.get(f"{server.url}/api/echo") as response:
            statuses.append(response.status)
    assert statuses == [401, 401, 401, 429, 429]


def test_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, window_s=60, clock=lambda: now[0])
    for offset in (0, 10, 20):
        now[0] = 1000 + offset
        assert limiter.retry_after("a") is None
        limiter.record_failure("a")
    assert limiter.retry_after("a") == pytest.approx(40)
    now[0] = 1059.9
    assert limiter.retry_after("a") == pytest.approx(0.1)
    now[0] = 1060.0
    assert limiter.retry_after("a") is None
    limiter.record_failure("a")
    assert limiter.retry_after("a") == pytest.approx(10)
    assert limiter.retry_after("b") is None


def test_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = FailureLimiter(5, window_s=60, max_clients=100, clock=lambda: now[0])
    for client in range(10_000):
        now[0] = client * 0.001
        limiter.record_failure(f"10.0.{client // 256}.{client % 256}")
    assert len(limiter) == 100
    for _ in range(1000):
        limiter.record_failure("busy")
    assert len(limiter) == 100
    now[0] = 1000.0
    limiter.record_failure("late")
    assert len(limiter) == 1


# --- Body limits -------------------------------------------------------------------------------------------------


async def test_declared_oversized_body_is_refused_before_it_is_sent(http_server: HttpServer, http_harness: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_server.port)
    try:
        writer.write(
            raw_request(
                http_server,
                "POST /api/small HTTP/1.1",
                f"Authorization: Bearer {http_harness.token}",
                "Content-Length: 2147483648",
            )
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert answer.endswith(b'{"error":"Body larger than 16 bytes"}')


async def test_oversized_body_with_content_length(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.post(f"{http_server.url}/api/small", data=b"x" * 17, headers=http_harness.auth) as response:
        assert response.status == 413
        assert response.headers["Content-Type"] == JSON
    async with http_session.post(f"{http_server.url}/api/small", data=b"x" * 16, headers=http_harness.auth) as response:
        assert response.status == 200


async def test_oversized_chunked_body(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"0123456789"

    async with http_session.post(f"{http_server.url}/api/small", data=chunks(), headers=http_harness.auth) as response:
        assert response.status == 413
        assert await response.json() == {"error": "Body larger than 16 bytes"}


async def test_oversized_body_on_a_route_with_the_default_limit(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    async with http_session.post(
        f"{http_server.url}/api/echo", data=b"x" * (1024 * 1024 + 1), headers=http_harness.auth
    ) as response:
        assert response.status == 413


async def test_compressed_bodies_are_refused(
    http_server: HttpServer, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    headers = {**http_harness.auth, "Content-Encoding": "gzip"}
    async with http_session.post(f"{http_server.url}/api/small", data=b"\x1f\x8b", headers=headers) as response:
        assert response.status == 415


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (("Content-Length: 2147483648",), 413),
        (("Content-Length: 4",), 403),
    ],
)
async def test_no_continue_for_a_refused_request(
    http_server: HttpServer, http_raw: Raw, http_harness: Any, headers: tuple[str, ...], status: int
) -> None:
    host = None if status == 413 else "evil.example"
    request = raw_request(
        http_server,
        "POST /api/small HTTP/1.1",
        f"Authorization: Bearer {http_harness.token}",
        "Expect: 100-continue",
        *headers,
        host=host,
    )
    refused = await http_raw(http_server.port, request, wait_s=2)
    assert refused.status == status
    assert b"100 Continue" not in refused.head


# --- Slow clients ------------------------------------------------------------------------------------------------


async def test_trickling_headers_hit_an_absolute_deadline(
    http_serve: Serve, http_session: aiohttp.ClientSession, http_harness: Any
) -> None:
    """200 sockets each sending a header byte every 0.1 s are closed at the header deadline, and a normal client
    is served meanwhile."""
    server = await http_serve(header_timeout_s=1.0, max_connections_per_client=1000)

    async def trickle() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        writer.write(f"GET /api/public HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Slow: ".encode())
        try:
            while time.monotonic() - started < 10:
                writer.write(b"a")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                        break
                except TimeoutError:
                    continue
        except ConnectionError:
            pass
        finally:
            writer.close()
        return time.monotonic() - started

    slow = [asyncio.create_task(trickle()) for _ in range(200)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    async with http_session.get(f"{server.url}/api/echo", headers=http_harness.auth) as response:
        assert response.status == 200
    assert time.monotonic() - started < 0.5
    durations = await asyncio.gather(*slow)
    assert max(durations) < 3.0


async def test_idle_connection_is_closed_at_the_header_deadline(http_serve: Serve) -> None:
    server = await http_serve(header_timeout_s=0.3)
    reader, _ = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 3) == b""


async def test_connections_per_client_are_capped(http_serve: Serve, http_raw: Raw) -> None:
    server = await http_serve(max_connections_per_client=3)
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.1)
    answer = await http_raw(server.port, raw_request(server, "GET /api/public HTTP/1.1"))
    assert answer.status == 200


# --- Token leakage -----------------------------------------------------------------------------------------------


async def test_the_token_never_reaches_the_logs(
    http_server: HttpServer,
    http_session: aiohttp.ClientSession,
    http_raw: Raw,
    http_harness: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = http_harness.token
    url = http_server.url
    async with http_session.get(f"{url}/api/echo?token={token}", headers=http_harness.auth) as response:
        assert response.status == 200
    async with http_session.get(f"{url}/api/boom?access_token={token}", headers=http_harness.auth) as response:
        assert response.status == 500
    async with http_session.get(
        f"{url}/api/echo", headers={"Authorization": f"Bearer {token}x", "Host": "evil.example"}
    ) as response:
        assert response.status == 403
    async with http_session.get(f"{url}/api/echo", headers={"Authorization": f"Bearer {token}x"}) as response:
        assert response.status == 401
    async with http_session.ws_connect(f"{url}/ws?token={token}", headers=http_harness.auth) as socket:
        await socket.send_str("hi")
        await socket.receive_str(timeout=5)
    broken = (
        f"GET /api/echo?t={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nBroken header {token}\r\n\r\n"
    )
    assert (await http_raw(http_server.port, broken.encode())).status == 400
    await asyncio.sleep(0.05)
    assert any(record.name == "claw_adapters.http.access" for record in caplog.records)
    assert token not in caplog.text
    assert token[:12] not in caplog.text
