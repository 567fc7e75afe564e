"""The relay end to end with real processes: `claw serve`, the real OpenClaw gateway (npm, 2026.9.6) and a fake
model the tests own. Killing either process mid-reply must neither lose a finished reply nor duplicate one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.processes import TOKEN, ClawProcess, start_claw
from tests.integration.relay_harness import wait_for
from tests.support.fake_model import FakeModel
from tests.support.openclaw_gateway import GatewayProcess

pytestmark = pytest.mark.integration

KEY = "agent:main:default:chat:t1"
TURN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(model: FakeModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess.for_model(model, tmp_path_factory.mktemp("gateway"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def fresh_model(model: FakeModel) -> Iterator[FakeModel]:
    model.reset()
    yield model
    model.release()
    model.reset()


def serve(home: Path, gateway: GatewayProcess, port: int | None = None) -> ClawProcess:
    return start_claw(home, port=port, GATEWAY_WS_URL=gateway.url, OPENCLAW_GATEWAY_TOKEN=gateway.token)


class Browser:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))

    async def send_chat(self, text: str, key: str) -> dict[str, Any]:
        params = {"sessionKey": KEY, "message": text, "idempotencyKey": key}
        await self.socket.send_str(json.dumps({"type": "req", "id": key, "method": "chat.send", "params": params}))
        return await wait_for(
            lambda: next((f for f in self.frames if f.get("type") == "res" and f.get("id") == key), None),
            TURN_TIMEOUT_S,
            "the chat.send answer",
        )

    def chat(self, state: str) -> list[dict[str, Any]]:
        return [
            f["payload"] for f in self.frames if f.get("event") == "chat" and f.get("payload", {}).get("state") == state
        ]


@contextlib.asynccontextmanager
async def browser(claw: ClawProcess) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as session:
        socket = await session.ws_connect(f"{claw.url}/ws")
        assert json.loads((await socket.receive()).data)["event"] == "connect.challenge"
        connect = {"type": "req", "id": "c", "method": "connect", "params": {"auth": {"token": TOKEN}}}
        await socket.send_str(json.dumps(connect))
        client = Browser(socket)
        try:
            yield client
        finally:
            await socket.close()
            client.reader.cancel()
            await asyncio.gather(client.reader, return_exceptions=True)


async def stored(claw: ClawProcess) -> list[tuple[str, str]]:
    status, body = await asyncio.to_thread(claw.request, "GET", "/api/threads/t1/messages?limit=500")
    assert status == 200, body
    return [(m["role"], m["content"]) for m in body["messages"]]


async def until_stored(claw: ClawProcess, count: int) -> list[tuple[str, str]]:
    async def enough() -> list[tuple[str, str]] | None:
        messages = await stored(claw)
        return messages if len(messages) >= count else None

    return await wait_for(enough, TURN_TIMEOUT_S, f"{count} stored messages")


async def gateway_linked(claw: ClawProcess) -> None:
    async def linked() -> bool:
        status, _ = await asyncio.to_thread(claw.request, "GET", "/api/agents")
        return status == 200

    await wait_for(linked, TURN_TIMEOUT_S, "the connector's gateway link")


async def test_a_turn_through_claw_serve_and_the_real_gateway_is_stored_once(
    tmp_path: Path, gateway: GatewayProcess, fresh_model: FakeModel
) -> None:
    fresh_model.set_script(chunks=5, chunk_delay_s=0.05)
    claw = serve(tmp_path, gateway)
    try:
        await gateway_linked(claw)
        assert claw.request("POST", "/api/threads", {"id": "t1"})[0] == 201
        async with browser(claw) as client:
            answer = await client.send_chat("hello real gateway", str(uuid.uuid4()))
            assert answer["ok"] is True, answer
            await wait_for(lambda: client.chat("final"), TURN_TIMEOUT_S, "the final")
            assert client.chat("delta"), "deltas were relayed"
            final_text = client.chat("final")[0]["message"]["content"][0]["text"]
        messages = await until_stored(claw, 2)
        await asyncio.sleep(0.5)  # nothing more arrives later
        assert await stored(claw) == messages == [("user", "hello real gateway"), ("assistant", final_text)]
        agents = claw.request("GET", "/api/agents")[1]
        assert any(agent["id"] == "main" for agent in agents["agents"])
    finally:
        claw.kill(signal.SIGTERM)


async def test_claw_serve_killed_mid_reply_recovers_it_once_after_restart(
    tmp_path: Path, gateway: GatewayProcess, fresh_model: FakeModel
) -> None:
    fresh_model.set_script(chunks=8, chunk_delay_s=0.4)
    claw = serve(tmp_path, gateway)
    await gateway_linked(claw)
    claw.request("POST", "/api/threads", {"id": "t1"})
    async with browser(claw) as client:
        await client.send_chat("survive a crash", str(uuid.uuid4()))
        await wait_for(lambda: client.chat("delta"), TURN_TIMEOUT_S, "the first delta")
    claw.kill(signal.SIGKILL)  # mid-stream: the gateway finishes the reply with nobody listening
    await asyncio.sleep(5)
    again = serve(tmp_path, gateway, port=claw.port)
    try:
        messages = await until_stored(again, 2)
        await asyncio.sleep(1)
        assert await stored(again) == messages
        assert [role for role, _ in messages] == ["user", "assistant"]
        assert messages[1][1].startswith("echo: survive a crash")
    finally:
        again.kill(signal.SIGTERM)


async def test_a_browser_leaving_mid_reply_loses_nothing(
    tmp_path: Path, gateway: GatewayProcess, fresh_model: FakeModel
) -> None:
    fresh_model.set_script(chunks=6, chunk_delay_s=0.3)
    claw = serve(tmp_path, gateway)
    try:
        await gateway_linked(claw)
        claw.request("POST", "/api/threads", {"id": "t1"})
        async with browser(claw) as client:
            await client.send_chat("I will leave", str(uuid.uuid4()))
            await wait_for(lambda: client.chat("delta"), TURN_TIMEOUT_S, "the first delta")
        async with browser(claw) as back:
            await wait_for(lambda: back.chat("final"), TURN_TIMEOUT_S, "the final, seen after reconnecting")
        messages = await until_stored(claw, 2)
        assert [role for role, _ in messages] == ["user", "assistant"]
    finally:
        claw.kill(signal.SIGTERM)


async def test_the_gateway_killed_mid_reply_and_restarted(
    tmp_path: Path, gateway: GatewayProcess, fresh_model: FakeModel
) -> None:
    """The reply in flight dies with the gateway; the connector reconnects by itself, nothing is duplicated, the
    interrupted run stays open for reconciliation, and the next turn is stored once."""
    fresh_model.set_script(chunks=8, chunk_delay_s=0.5)
    claw = serve(tmp_path, gateway)
    try:
        await gateway_linked(claw)
        claw.request("POST", "/api/threads", {"id": "t1"})
        async with browser(claw) as client:
            await client.send_chat("first try", str(uuid.uuid4()))
            await wait_for(lambda: client.chat("delta"), TURN_TIMEOUT_S, "the first delta")
            gateway.kill()
            fresh_model.release()
            fresh_model.set_script(chunks=3)
            await asyncio.to_thread(gateway.restart)
            await gateway_linked(claw)
            answer = await client.send_chat("second try", str(uuid.uuid4()))
            assert answer["ok"] is True, answer
            await wait_for(
                lambda: any(
                    "second try" in f["message"]["content"][0]["text"] for f in client.chat("final") if f.get("message")
                ),
                TURN_TIMEOUT_S,
                "the second reply",
            )
        messages = await until_stored(claw, 3)
        await asyncio.sleep(1)
        final = await stored(claw)
        assert final == messages
        assert [m for m in final if m[0] == "user"] == [("user", "first try"), ("user", "second try")]
        replies = [text for role, text in final if role == "assistant"]
        assert len(replies) == len(set(replies)) and any("second try" in text for text in replies)
    finally:
        claw.kill(signal.SIGTERM)
