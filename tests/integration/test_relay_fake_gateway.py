"""The browser relay and chat persistence end to end, against the fake gateway (fast; the same scenarios run
against the real gateway in test_relay_real_gateway.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.fake_gateway import FAKE_TOKEN, FakeGateway
from tests.integration.relay_harness import browser, call, connector, linked_connector, wait_for

pytestmark = pytest.mark.integration

KEY = "agent:main:default:chat:t1"


async def messages(port: int, thread: str = "t1") -> list[dict]:
    status, body = await call(port, "GET", f"/api/threads/{thread}/messages?limit=500")
    assert status == 200, body
    return body["messages"]


async def test_a_turn_streams_through_and_is_stored_once(tmp_path: Path) -> None:
    async with FakeGateway(chunks=4) as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        async with browser(port) as client:
            key = str(uuid.uuid4())
            answer = await client.request(
                "chat.send", {"sessionKey": KEY, "message": "hello there", "idempotencyKey": key}
            )
            assert answer["ok"] is True
            run_id = answer["payload"]["runId"]
            await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")
            assert len(client.chat("delta", run_id)) == 4
            assert client.chat("final", run_id)[0]["message"]["content"][0]["text"] == "echo: hello there"
            assert client.clawchats("streaming-delta")[-1]["content"] == "echo: hello there"
            saved = client.clawchats("message-saved")
            assert [s["message"]["role"] for s in saved] == ["user", "assistant"]
            # the reply is announced before the raw final, and the stream ends after it
            kinds = [(f.get("event"), (f.get("payload") or {}).get("state")) for f in client.frames]
            assert kinds.index(("message-saved", None)) < kinds.index(("chat", "final"))
        stored = await messages(port)
        assert [(m["role"], m["content"]) for m in stored] == [
            ("user", "hello there"),
            ("assistant", "echo: hello there"),
        ]
        assert stored[1]["metadata"] == {"runId": run_id}
        threads = (await call(port, "GET", "/api/threads"))[1]["threads"]
        assert threads[0]["title"] == "hello there" and threads[0]["unread_count"] == 1


async def test_the_web_apps_own_messages_are_filled_not_duplicated(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        async with browser(port) as client:
            await client.socket.send_str(
                json.dumps({"type": "clawchats", "action": "active-thread", "workspace": "default", "threadId": "t1"})
            )
            now = int(time.time() * 1000)
            user = {"id": "app-user-1", "role": "user", "content": "plan my week", "timestamp": now}
            placeholder = {
                "id": "app-bot-1",
                "role": "assistant",
                "content": "",
                "timestamp": now + 1,
                "metadata": {"pending": True},
            }
            assert (await call(port, "POST", "/api/threads/t1/messages", user))[0] == 201
            assert (await call(port, "POST", "/api/threads/t1/messages", placeholder))[0] == 201
            await client.request("chat.send", {"sessionKey": KEY, "message": "plan my week", "idempotencyKey": "k1"})
            await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")
        stored = await messages(port)
        assert [(m["id"], m["content"]) for m in stored] == [
            ("app-user-1", "plan my week"),
            ("app-bot-1", "echo: plan my week"),
        ]
        assert stored[1]["metadata"] == {"runId": "k1"}
        # the user was looking at the thread: the reply is not unread
        assert (await call(port, "GET", "/api/threads/t1"))[1]["thread"]["unread_count"] == 0


async def test_a_relayed_turn_yields_to_the_copy_the_app_posts_later(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        async with browser(port) as client:
            await client.request("chat.send", {"sessionKey": KEY, "message": "late post", "idempotencyKey": "k2"})
            await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")
        now = (await messages(port))[0]["timestamp"]
        await call(
            port,
            "POST",
            "/api/threads/t1/messages",
            {"id": "app-1", "role": "user", "content": "late post", "timestamp": now + 5},
        )
        stored = await messages(port)
        assert [(m["id"], m["role"]) for m in stored] == [("app-1", "user"), ("run-k2", "assistant")]


async def test_a_reply_that_finished_while_the_gateway_link_was_down_is_recovered_once(tmp_path: Path) -> None:
    async with (
        FakeGateway(chunks=3, hang_after_chunks=1) as gateway,
        linked_connector(tmp_path, gateway) as service,
    ):
        port = service.port
        client_link = service.container.gateway()
        async with browser(port) as client:
            await client.request("chat.send", {"sessionKey": KEY, "message": "survive", "idempotencyKey": "k3"})
            await wait_for(lambda: client.chat("delta"), what="a first delta")
            # The link drops mid-stream; the run goes on and finishes on the gateway while nobody listens.
            gateway.release()
            await gateway.kill_connections()
            await wait_for(lambda: client_link.connected, what="reconnection")
            await wait_for(lambda: client.clawchats("message-saved")[1:], what="recovered reply")
        for _ in range(3):  # more reconnections reconcile again: still once
            await gateway.kill_connections()
            await wait_for(lambda: client_link.connected, what="reconnection")
        stored = await messages(port)
        assert [(m["role"], m["content"]) for m in stored] == [("user", "survive"), ("assistant", "echo: survive")]
        assert await (await service.container.history_stores().open("default")).open_runs() == []


async def test_a_reply_that_finished_while_the_connector_was_down_is_recovered_once(tmp_path: Path) -> None:
    async with FakeGateway(chunks=3, hang_after_chunks=1) as gateway:
        async with linked_connector(tmp_path, gateway) as service:
            port = service.port
            async with browser(port) as client:
                await client.request("chat.send", {"sessionKey": KEY, "message": "while away", "idempotencyKey": "k4"})
                await wait_for(lambda: client.chat("delta"), what="a first delta")
        # connector stopped mid-stream; the run finishes without it
        gateway.release()
        await wait_for(lambda: len(gateway.sessions[KEY].messages) == 2, what="the run to finish on the gateway")
        async with connector(tmp_path, gateway.url, FAKE_TOKEN) as service:
            port = service.port

            async def recovered() -> bool:
                return len(await messages(port)) == 2

            await wait_for(recovered, what="recovered reply")
            stored = await messages(port)
            assert [(m["role"], m["content"]) for m in stored] == [
                ("user", "while away"),
                ("assistant", "echo: while away"),
            ]


async def test_a_browser_that_leaves_mid_stream_loses_nothing(tmp_path: Path) -> None:
    async with (
        FakeGateway(chunks=5, chunk_delay_s=0.05) as gateway,
        linked_connector(tmp_path, gateway) as service,
    ):
        port = service.port
        async with browser(port) as client:
            await client.request("chat.send", {"sessionKey": KEY, "message": "bye", "idempotencyKey": "k5"})
            await wait_for(lambda: client.chat("delta"), what="a first delta")
        async with browser(port) as again:
            await wait_for(lambda: again.clawchats("streaming-end"), what="the end, seen by the new browser")

            async def stored_twice() -> bool:
                return len(await messages(port)) == 2

            await wait_for(stored_twice, what="both turns")
        assert [m["role"] for m in await messages(port)] == ["user", "assistant"]


async def test_silent_replies_are_neither_shown_nor_stored(tmp_path: Path) -> None:
    async with (
        FakeGateway(reply=lambda _: "NO_REPLY", chunks=3) as gateway,
        linked_connector(tmp_path, gateway) as service,
    ):
        port = service.port
        placeholder = {"id": "p1", "role": "assistant", "content": "", "timestamp": 5, "metadata": {"pending": True}}
        await call(port, "POST", "/api/threads/t1/messages", placeholder)
        async with browser(port) as client:
            await client.request("chat.send", {"sessionKey": KEY, "message": "heartbeat", "idempotencyKey": "k6"})
            ended = await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")
            assert ended[0]["reason"] == "silent"
            assert client.chat("delta") == [] and client.chat("final") == []
        assert [m["id"] for m in await messages(port)] == ["turn-k6"]


async def test_wrong_tokens_bad_frames_and_floods_leave_others_unaffected(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway, thread=None) as service:
        port = service.port
        async with aiohttp.ClientSession() as session:
            wrong = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
            await wrong.receive()
            await wrong.send_str(
                json.dumps({"type": "req", "id": "c", "method": "connect", "params": {"auth": {"token": "nope"}}})
            )
            refused = json.loads((await wrong.receive()).data)
            assert refused["ok"] is False and refused["error"]["code"] == "AUTH_FAILED"
            assert (await wrong.receive()).type is aiohttp.WSMsgType.CLOSE and wrong.close_code == 4001

        async with browser(port) as steady, browser(port) as noisy:
            await noisy.socket.send_str("{not json")
            await noisy.socket.send_str(json.dumps({"type": "mystery"}))
            await wait_for(lambda: len(noisy.clawchats("error")) == 2, what="two error events")
            for _ in range(1000):
                if noisy.socket.closed:
                    break
                await noisy.socket.send_str(json.dumps({"type": "req", "id": "x", "method": "health", "params": {}}))
            await asyncio.wait_for(noisy.closed.wait(), 10)
            assert noisy.socket.close_code == 1008
            # the other browser is unaffected
            answer = await steady.request("health", {})
            assert answer["ok"] is True

        async with browser(port) as big:
            # The connector refuses the frame as soon as its header announces the size, and closes (1009)
            # without buffering it: the sender may not even get to finish writing it.
            with contextlib.suppress(ConnectionError):
                await big.socket.send_str("x" * (33 * 1024 * 1024))
            await asyncio.wait_for(big.closed.wait(), 20)
            assert big.socket.close_code in (1009, None)
        assert (await call(port, "GET", "/api/health"))[0] == 200


async def test_agents_come_from_the_gateway_and_a_missing_gateway_is_a_clean_503(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway, thread=None) as service:
        port = service.port
        status, body = await call(port, "GET", "/api/agents")
        assert status == 200 and body["defaultId"] == "main" and body["agents"][0]["id"] == "main"
        await gateway.stop()
        await wait_for(lambda: not service.container.gateway().connected, what="disconnection")
        status, body = await call(port, "GET", "/api/agents")
        assert status == 503 and "error" in body


async def test_a_turn_resumed_under_a_new_run_id_after_a_gateway_restart_is_stored_once(tmp_path: Path) -> None:
    """OpenClaw 2026.9.6 resumes an interrupted turn after a restart under a NEW runId: reconciliation and the live
    final of that run must converge on one stored reply."""
    async with (
        FakeGateway(chunks=3, hang_after_chunks=1) as gateway,
        linked_connector(tmp_path, gateway) as service,
    ):
        port = service.port
        link = service.container.gateway()
        async with browser(port) as client:
            await client.request("chat.send", {"sessionKey": KEY, "message": "resume me", "idempotencyKey": "k7"})
            await wait_for(lambda: client.chat("delta"), what="a first delta")
            resumed = {
                "role": "assistant",
                "content": [{"type": "text", "text": "resumed answer"}],
                "timestamp": int(time.time() * 1000),
                "__openclaw": {"id": "x", "seq": 9, "runId": "resumed-run"},
            }
            gateway.sessions[KEY].messages.append(resumed)
            await gateway.kill_connections()
            await wait_for(lambda: link.connected, what="reconnection")
            await wait_for(lambda: client.clawchats("message-saved")[1:], what="the reply found by reconciliation")
            final = {
                "runId": "resumed-run",
                "sessionKey": KEY,
                "seq": 5,
                "state": "final",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "resumed answer"}]},
            }
            await gateway.emit("chat", final)
            await wait_for(lambda: client.chat("final", "resumed-run"), what="the live final")
        stored = await messages(port)
        assert [(m["role"], m["content"]) for m in stored] == [("user", "resume me"), ("assistant", "resumed answer")]
        assert await (await service.container.history_stores().open("default")).open_runs() == []


async def test_a_failed_run_reported_twice_ends_once(tmp_path: Path) -> None:
    """The real gateway sends a failed run's `error` event twice: one settlement, one streaming-end."""
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        placeholder = {"id": "p1", "role": "assistant", "content": "", "timestamp": 5, "metadata": {"pending": True}}
        await call(port, "POST", "/api/threads/t1/messages", placeholder)
        async with browser(port) as client:
            failure = {"runId": "r-fail", "sessionKey": KEY, "seq": 4, "state": "error", "errorMessage": "model down"}
            await gateway.emit("chat", failure)
            await gateway.emit("chat", {**failure, "seq": 5})
            await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")
            await client.request("health", {})  # a round trip: anything still queued has arrived
            assert len(client.clawchats("streaming-end")) == 1
            assert client.clawchats("streaming-end")[0]["reason"] == "error"
        [settled] = await messages(port)
        assert settled["status"] == "error" and settled["metadata"] == {"runId": "r-fail", "error": "model down"}


async def test_the_browser_hello_carries_the_gateways_features(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway, thread=None) as service:
        async with browser(service.port) as client:
            hello = await wait_for(lambda: client.response("c1"), what="hello-ok")
        payload = hello["payload"]
        assert payload["type"] == "hello-ok" and payload["gateway"] == {"connected": True}
        assert "chat.send" in payload["features"]["methods"]
        assert payload["protocol"] == gateway.protocol
        assert payload["policy"]["maxPayload"] == 32 * 1024 * 1024
