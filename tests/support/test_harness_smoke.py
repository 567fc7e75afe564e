"""Smoke test of the gateway harness: the fake model alone, then the real OpenClaw gateway over a raw WebSocket.

The assertions pin what docs/gateway-protocol-notes.md records about openclaw 2026.9.6; when one fails after an
upgrade, update the notes (and the connector) with it. Timings go to the log (`-o log_cli=true --log-cli-level=INFO`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_model import FakeModel, split_text
from tests.support.openclaw_gateway import (
    GatewayProcess,
    GatewayRpcError,
    RawGatewayClient,
    chat_event,
    connect_params,
)
from tests.support.openclaw_install import OPENCLAW_VERSION

log = logging.getLogger("harness")

TERMINAL = ("final", "error", "aborted")


def _post(model: FakeModel, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        model.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sse_payloads(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.split("\n\n") if line.startswith("data: ")]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def _still_running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _key() -> str:
    return f"idem-{uuid.uuid4()}"


# the fake model alone


def test_fake_model_streams_scripts_and_records(model: FakeModel) -> None:
    status, body = _post(model, {"model": "fake-1", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    payloads = _sse_payloads(body)
    assert status == 200
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: hi"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert len(chunks) == 4  # 3 content chunks (the default) and the finish chunk

    openclaw_prompt = [
        {"role": "system", "content": "You are a personal assistant running inside OpenClaw."},
        {
            "role": "user",
            "content": "[Wed 2026-11-25 11:03 UTC] hello world\n\nRuntime: agent=main | model=fake/fake-1",
        },
        {"role": "user", "content": [{"type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nx\n<<<END"}]},
    ]
    status, body = _post(model, {"model": "fake-1", "messages": openclaw_prompt})
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: hello world"

    model.push_script(error_status=500)
    model.push_script(reply="one two three", chunks=2)
    assert _post(model, {"messages": []})[0] == 500
    assert "".join(
        json.loads(p)["choices"][0]["delta"].get("content", "")
        for p in _sse_payloads(_post(model, {"stream": True, "messages": []})[1])[:-1]
    ) == ("one two three")

    model.push_script(reply="abcdef", chunks=3, hang_after_chunks=1)
    started = time.monotonic()
    model_release = threading.Timer(0.5, model.release)
    model_release.start()
    status, body = _post(model, {"stream": True, "messages": []})
    assert time.monotonic() - started >= 0.4
    assert [json.loads(p)["choices"][0]["delta"]["content"] for p in _sse_payloads(body)] == ["ab"]

    requests = model.wait_for_chat_requests(5, timeout=5)
    assert requests[1].prompt_text == "hello world"
    assert requests[1].last_user_text.startswith("<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>")
    with urllib.request.urlopen(model.base_url + "/models", timeout=5) as response:
        assert json.loads(response.read())["data"][0]["id"] == "fake-1"
    assert split_text("abcdefg", 3) == ["ab", "cde", "fg"]
    assert split_text("ab", 5) == ["a", "b"]


# the real gateway


@pytest.mark.integration
async def test_handshake_hello_ok_and_agents(openclaw_gateway: GatewayProcess) -> None:
    log.info(
        "gateway %s started in %.1f s (pid %s)",
        openclaw_gateway.url,
        openclaw_gateway.startup_seconds,
        openclaw_gateway.pid,
    )
    started = time.monotonic()
    async with RawGatewayClient(openclaw_gateway.url, openclaw_gateway.token) as client:
        log.info("handshake in %.0f ms", (time.monotonic() - started) * 1000)
        challenge = client.challenge
        assert challenge["type"] == "event"
        assert challenge["event"] == "connect.challenge"
        assert isinstance(challenge["payload"]["nonce"], str)
        assert isinstance(challenge["payload"]["ts"], int)

        hello = client.hello
        assert hello["type"] == "hello-ok"
        assert hello["protocol"] == 4
        assert hello["server"]["version"] == OPENCLAW_VERSION
        assert {"connId", "bootId"} <= hello["server"].keys()
        methods = set(hello["features"]["methods"])
        assert {"agents.list", "chat.send", "chat.history", "chat.abort", "sessions.list", "sessions.delete"} <= methods
        assert {"chat", "agent", "tick", "shutdown", "sessions.changed"} <= set(hello["features"]["events"])
        assert hello["auth"]["role"] == "operator"
        assert set(hello["auth"]["scopes"]) == {"operator.read", "operator.write", "operator.admin"}
        assert "deviceToken" not in hello["auth"]
        policy = hello["policy"]
        assert policy["maxPayload"] == 26214400
        assert policy["maxBufferedBytes"] == 52428800
        assert policy["tickIntervalMs"] == 30000
        assert policy["attachments"]["maxImageBytes"] == 6291456

        agents = await client.call("agents.list", {})
        assert agents["defaultId"] == "main"
        assert [a["id"] for a in agents["agents"]] == ["main"]
        assert agents["agents"][0]["model"] == {"primary": "fake/fake-1"}

        with pytest.raises(GatewayRpcError) as unknown:
            await client.call("agents.lst", {})
        assert unknown.value.code == "INVALID_REQUEST"
        assert unknown.value.message == "unknown method: agents.lst"


@pytest.mark.integration
async def test_bad_token_is_refused_and_closed(openclaw_gateway: GatewayProcess) -> None:
    client = RawGatewayClient(openclaw_gateway.url, "wrong-token", params=connect_params("wrong-token"))
    with pytest.raises(GatewayRpcError) as refused:
        await client.connect()
    assert refused.value.code == "INVALID_REQUEST"
    assert refused.value.details["code"] == "AUTH_TOKEN_MISMATCH"
    assert refused.value.details["recommendedNextStep"] == "update_auth_credentials"
    assert await client.wait_closed(10) == (1008, refused.value.message)
    await client.close()


@pytest.mark.integration
async def test_chat_turn_history_list_and_delete(openclaw_gateway: GatewayProcess, model: FakeModel) -> None:
    session = "agent:main:default:chat:t1"
    key = _key()
    async with (
        RawGatewayClient(openclaw_gateway.url, openclaw_gateway.token) as client,
        RawGatewayClient(openclaw_gateway.url, openclaw_gateway.token) as observer,
    ):
        started = time.monotonic()
        ack = await client.call("chat.send", {"sessionKey": session, "message": "hello harness", "idempotencyKey": key})
        assert ack == {"runId": key, "status": "started"}  # the runId IS the idempotencyKey
        events = await client.events_until(chat_event(session, *TERMINAL), 120)
        log.info("one chat turn in %.1f s", time.monotonic() - started)

        chats = [e["payload"] for e in events if e["event"] == "chat" and e["payload"].get("sessionKey") == session]
        final = chats[-1]
        assert final["state"] == "final", final
        assert final["runId"] == key
        assert final["stopReason"] == "stop"
        assert final["message"]["role"] == "assistant"
        assert _text(final["message"]) == "echo: hello harness"
        phases = [c["phase"] for c in chats if c["state"] == "status"]
        assert phases == ["preparing_workspace", "preparing_context", "starting_model"]
        deltas = [c for c in chats if c["state"] == "delta"]
        assert deltas
        assert "".join(d["deltaText"] for d in deltas) == "echo: hello harness"
        assert all(_text(d["message"]).startswith(d["deltaText"]) or d.get("replace") for d in deltas[:1])
        assert _text(deltas[-1]["message"]) == _text(final["message"])
        frame_seqs = [e["seq"] for e in events if "seq" in e]
        assert frame_seqs == sorted(frame_seqs)

        # Broadcast: another operator connection sees the run without subscribing to anything.
        seen = await observer.wait_event(chat_event(session, "final", run_id=key), 10)
        assert _text(seen["payload"]["message"]) == "echo: hello harness"

        sent = (await model.wait_for_chat_requests_async(1, timeout_s=5))[-1]
        assert sent.stream
        assert sent.model == "fake-1"
        assert sent.prompt_text == "hello harness"
        assert sent.body["stream_options"] == {"include_usage": True}

        # The same idempotencyKey again: answered from the dedupe cache, no second run.
        assert await client.call(
            "chat.send", {"sessionKey": session, "message": "hello harness", "idempotencyKey": key}
        ) == {"runId": key, "status": "ok"}
        with pytest.raises(GatewayRpcError) as conflict:
            await client.call("chat.send", {"sessionKey": session, "message": "other text", "idempotencyKey": key})
        assert conflict.value.code == "INVALID_REQUEST"
        assert conflict.value.details == {"reason": "chat-request-conflict"}
        assert len(model.chat_requests()) == 1

        history = await client.call("chat.history", {"sessionKey": session, "limit": 50})
        assert history["sessionKey"] == session
        assert isinstance(history["sessionId"], str)
        user, assistant = history["messages"]
        assert user["role"] == "user"
        assert user["content"] == "hello harness"
        assert user["idempotencyKey"] == f"{key}:user"
        assert user["__openclaw"]["idempotencyKey"] == f"{key}:user"
        assert user["__openclaw"]["seq"] == 1
        assert "runId" not in user["__openclaw"]
        assert assistant["role"] == "assistant"
        assert assistant["content"] == [{"type": "text", "text": "echo: hello harness"}]
        assert assistant["stopReason"] == "stop"
        assert assistant["__openclaw"]["runId"] == key
        assert assistant["__openclaw"]["seq"] == 2
        assert "idempotencyKey" not in assistant
        assert {m["__openclaw"]["id"] for m in history["messages"]} != {None}

        listed = await client.call("sessions.list", {})
        row = next(s for s in listed["sessions"] if s["key"] == session)
        assert row["sessionId"] == history["sessionId"]
        assert row["lastRunId"] == key
        assert row["agentId"] == "main"

        deleted = await client.call("sessions.delete", {"key": session})
        assert deleted["ok"] is True
        assert deleted["key"] == session
        assert deleted["deleted"] is True
        assert len(deleted["archived"]) == 1
        assert Path(deleted["archived"][0]).is_relative_to(openclaw_gateway.state_dir)
        again = await client.call("sessions.delete", {"key": session})
        assert (again["deleted"], again["archived"]) == (False, [])
        assert session not in [s["key"] for s in (await client.call("sessions.list", {}))["sessions"]]
        assert (await client.call("chat.history", {"sessionKey": session, "limit": 50}))["messages"] == []


@pytest.mark.integration
async def test_model_error_ends_the_run_with_two_error_events(
    openclaw_gateway: GatewayProcess, model: FakeModel
) -> None:
    session = "agent:main:default:chat:failing"
    key = _key()
    model.set_script(error_status=500, error_message="fake outage")
    async with RawGatewayClient(openclaw_gateway.url, openclaw_gateway.token) as client:
        started = time.monotonic()
        await client.call("chat.send", {"sessionKey": session, "message": "fail please", "idempotencyKey": key})
        first = await client.wait_event(chat_event(session, *TERMINAL, run_id=key), 120)
        second = await client.wait_event(chat_event(session, *TERMINAL, run_id=key), 30)
        log.info("model error surfaced in %.1f s", time.monotonic() - started)
        assert first["payload"]["state"] == second["payload"]["state"] == "error"
        assert "HTTP 500" in first["payload"]["errorMessage"]
        assert first["payload"]["errorDetail"]["provider"] == "fake"
        assert first["payload"]["errorDetail"]["failoverReason"] == "server_error"
        assert second["payload"]["errorMessage"].startswith("⚠️ Agent failed before reply:")
        assert len(model.chat_requests()) == 1  # provider_max_retries=0 in the harness
        history = await client.call("chat.history", {"sessionKey": session, "limit": 10})
        error_row = history["messages"][-1]
        assert error_row["role"] == "assistant"
        assert error_row["stopReason"] == "error"
        assert error_row["idempotencyKey"] == f"{key}:terminal-error"
        await client.call("sessions.delete", {"key": session})


@pytest.mark.integration
async def test_abort_mid_stream(openclaw_gateway: GatewayProcess, model: FakeModel) -> None:
    session = "agent:main:default:chat:aborted"
    key = _key()
    model.push_script(reply="hanging reply here", chunks=3, hang_after_chunks=1)
    async with RawGatewayClient(openclaw_gateway.url, openclaw_gateway.token) as client:
        await client.call("chat.send", {"sessionKey": session, "message": "hang please", "idempotencyKey": key})
        await client.wait_event(chat_event(session, "delta", run_id=key), 120)
        aborted = await client.call("chat.abort", {"sessionKey": session, "runId": key})
        assert aborted == {"ok": True, "aborted": True, "runIds": [key]}
        end = await client.wait_event(chat_event(session, *TERMINAL, run_id=key), 30)
        assert end["payload"]["state"] == "aborted"
        assert end["payload"]["stopReason"] == "rpc"
        assert _text(end["payload"]["message"]) == "hangin"
        history = await client.call("chat.history", {"sessionKey": session, "limit": 10})
        partial = history["messages"][-1]
        assert partial["idempotencyKey"] == f"{key}:assistant"
        assert partial["openclawAbort"] == {"aborted": True, "origin": "rpc", "runId": key}
        await client.call("sessions.delete", {"key": session})


@pytest.mark.integration
async def test_crash_mid_stream_then_restart_recovers_the_turn(fake_model: FakeModel, tmp_path: Path) -> None:
    """A gateway of its own: SIGKILL while the model streams, start again on the same port and HOME."""
    fake_model.reset()
    session = "agent:main:default:chat:crash"
    key = _key()
    gateway = GatewayProcess.for_model(fake_model, tmp_path)
    try:
        gateway.start()
        log.info("fault gateway started in %.1f s", gateway.startup_seconds)
        fake_model.push_script(reply="alpha beta gamma delta", chunks=4, hang_after_chunks=2)
        async with RawGatewayClient(gateway.url, gateway.token) as client:
            await client.call("chat.send", {"sessionKey": session, "message": "crash me", "idempotencyKey": key})
            await client.wait_event(chat_event(session, "delta", run_id=key), 120)
            started = time.monotonic()
            await gateway.restart_async(hard=True)
            assert await client.wait_closed(5) == (1006, "")
            assert not any(e["event"] == "shutdown" for e in client.drain_events())
            log.info("killed and restarted in %.1f s", time.monotonic() - started)
        fake_model.release()

        async with RawGatewayClient(gateway.url, gateway.token) as client:
            # Restart recovery resumes the interrupted turn by itself, under a NEW runId.
            final = await client.wait_event(chat_event(session, *TERMINAL), 120)
            assert final["payload"]["state"] == "final"
            recovery_run = final["payload"]["runId"]
            assert recovery_run != key
            uuid.UUID(recovery_run)
            history = (await client.call("chat.history", {"sessionKey": session, "limit": 20}))["messages"]
            assert history[0]["idempotencyKey"] == f"{key}:user"
            injected = history[1]
            assert injected["role"] == "user"
            assert injected["content"].startswith("[System] Your previous turn was interrupted by a gateway restart")
            assert injected["provenance"]["kind"] == "internal_system"
            assert injected["provenance"]["sourceTool"] == "main_session_restart_recovery"
            assert injected["idempotencyKey"] == f"{recovery_run}:user"
            assert history[-1]["__openclaw"]["runId"] == recovery_run
            log.info("recovered turn after restart: %.1f s", time.monotonic() - started)

            # The dedupe cache did not survive: the old key starts a new run, which fails (its user row exists).
            again = await client.call(
                "chat.send", {"sessionKey": session, "message": "crash me", "idempotencyKey": key}
            )
            assert again == {"runId": key, "status": "started"}
            end = await client.wait_event(chat_event(session, *TERMINAL, run_id=key), 120)
            log.info("resend after restart ended %s: %s", end["payload"]["state"], end["payload"].get("errorMessage"))

        # SIGUSR2: the in-process restart announces itself.
        async with RawGatewayClient(gateway.url, gateway.token) as client:
            old_boot = client.hello["server"]["bootId"]
            pid = gateway.pid
            started = time.monotonic()
            await asyncio.to_thread(gateway.restart_in_process)
            shutdown = await client.wait_event(lambda e: e["event"] == "shutdown", 10)
            assert shutdown["payload"] == {"reason": "gateway restarting", "restartExpectedMs": 1500}
            assert await client.wait_closed(10) == (1012, "service restart")
            assert gateway.pid == pid
            assert gateway.hello["server"]["bootId"] != old_boot
            log.info("in-process restart in %.1f s", time.monotonic() - started)

        # SIGTERM: the socket drops without a close frame; a `shutdown` event may or may not come first (a race).
        spawned = gateway.process_ids()  # the gateway, its spawn broker (own process group), a sqlite worker
        assert len(spawned) >= 3
        async with RawGatewayClient(gateway.url, gateway.token) as client:
            assert gateway.stop() == 143
            assert await client.wait_closed(10) == (1006, "")
            shutdowns = [e["payload"] for e in client.drain_events() if e["event"] == "shutdown"]
            assert shutdowns in ([], [{"reason": "gateway stopping"}])
        assert gateway.process_ids() == []
        assert _still_running(spawned) == []
    except BaseException:
        log.error("fault gateway log:\n%s", gateway.log_tail(80))
        raise
    finally:
        gateway.stop()
        fake_model.reset()


@pytest.mark.integration
def test_gateway_stayed_on_loopback(openclaw_gateway: GatewayProcess, fake_model: FakeModel) -> None:
    assert openclaw_gateway.running
    assert openclaw_gateway.foreign_connections() == []
    # Whatever tried to leave went to the trap on 127.0.0.1 and got a 403 (2026.9.6: CONNECT clawhub.ai:443).
    log.info("egress attempts refused by the trap: %s", fake_model.egress_attempts)
    assert all(line.startswith("CONNECT ") for line in fake_model.egress_attempts)
