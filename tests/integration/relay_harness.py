"""A connector running in this process against a gateway (the fake or the real one), and browser-like clients."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from claw_app.service import ConnectorService
from claw_app.settings import load_settings

TOKEN = "relay-test-token"


class GatewayLike(Protocol):
    """What a connector needs to know of a gateway a test started: where it is and its token."""

    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str | None: ...


@asynccontextmanager
async def connector(data_dir: Path, gateway_url: str, gateway_token: str | None) -> AsyncIterator[ConnectorService]:
    env = {"HOME": str(data_dir), "OPENCLAW_STATE_DIR": str(data_dir / "state"), "GATEWAY_WS_URL": gateway_url}
    if gateway_token:
        env["OPENCLAW_GATEWAY_TOKEN"] = gateway_token
    settings = load_settings(
        env=env, overrides={"data_dir": data_dir / "data", "port": 0, "auth_token": TOKEN, "log_level": "INFO"}
    )
    service = ConnectorService(settings)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@asynccontextmanager
async def linked_connector(
    data_dir: Path, gateway: GatewayLike, *, thread: str | None = "t1"
) -> AsyncIterator[ConnectorService]:
    """A connector linked to `gateway` (the link is up when this yields) with `thread` created in the default
    workspace, the starting point of most relay scenarios."""
    async with connector(data_dir, gateway.url, gateway.token) as service:
        await wait_for(lambda: service.container.gateway().connected, what="gateway connection")
        if thread is not None:
            status, body = await call(service.port, "POST", "/api/threads", {"id": thread})
            assert status == 201, body
        yield service


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Browser:
    """A browser-like client of the connector's relay: connect, send frames, collect what arrives."""

    socket: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read_forever(self) -> None:
        async for message in self.socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))
        self.closed.set()

    async def request(self, method: str, params: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        await self.socket.send_str(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
        return await wait_for(lambda: self.response(request_id), timeout_s, f"answer to {method}")

    def response(self, request_id: str) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == "res" and f.get("id") == request_id), None)

    def chat(self, state: str, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            f["payload"]
            for f in self.frames
            if f.get("type") == "event"
            and f.get("event") == "chat"
            and f["payload"].get("state") == state
            and (run_id is None or f["payload"].get("runId") == run_id)
        ]

    def clawchats(self, name: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "clawchats" and f.get("event") == name]

    async def close(self) -> None:
        await self.socket.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


@asynccontextmanager
async def browser(port: int, token: str = TOKEN, path: str = "/ws") -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as session:
        socket = await session.ws_connect(f"http://127.0.0.1:{port}{path}", max_msg_size=64 * 1024 * 1024)
        client = Browser(socket)
        challenge = json.loads((await socket.receive()).data)
        assert challenge["event"] == "connect.challenge"
        await socket.send_str(
            json.dumps({"type": "req", "id": "c1", "method": "connect", "params": {"auth": {"token": token}}})
        )
        client.reader = asyncio.create_task(client.read_forever())
        try:
            yield client
        finally:
            await client.close()


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A blocking HTTP call (run it with asyncio.to_thread)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=None if body is None else json.dumps(body).encode(), method=method
    )
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(api, port, method, path, body)
