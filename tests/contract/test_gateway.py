"""The gateway contract: `GatewayClient` against the fake gateway and against the real OpenClaw gateway.

ONE suite, parametrised over `gateway_server` ("fake": tests.fakes.fake_gateway.FakeGateway in this event loop;
"real": `openclaw gateway run` from tests.support.openclaw_gateway, one process per module, answering through the
tests' fake model). The fake is done when every test here passes against both.

Timings on the real gateway: start about 9 s, one chat turn about 2-5 s (agent preparation, not the model).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from claw_adapters.gateway import DeviceIdentity, GatewayClient
from claw_core.errors import Unavailable, UpstreamError
from claw_core.gateway import Gateway, GatewayEvent, GatewayStatus
from claw_core.model import JsonObject
from tests.fakes.fake_gateway import FakeGateway, FeedRecorder

if TYPE_CHECKING:
    from tests.support.fake_model import FakeModel
    from tests.support.openclaw_gateway import GatewayProcess

pytestmark = pytest.mark.timeout(180)

TURN_TIMEOUT_S = 60.0


@dataclass
class GatewayServer:
    """What the suite needs of either gateway: where it is, its token, a scripted reply and a restart."""

    kind: str
    url: str
    token: str
    fake: FakeGateway | None = None
    process: GatewayProcess | None = None
    model: FakeModel | None = None

    def script(self, reply: str, *, chunks: int = 4, hang_after_chunks: int | None = None) -> None:
        """Every chat turn from now on answers `reply` in `chunks` pieces (or stops after `hang_after_chunks`)."""
        if self.fake is not None:
            self.fake.reply = lambda _message: reply
            self.fake.chunks = chunks
            self.fake.hang_after_chunks = hang_after_chunks
        else:
            assert self.model is not None
            self.model.set_script(reply=reply, chunks=chunks, chunk_delay_s=0.02, hang_after_chunks=hang_after_chunks)

    def release(self) -> None:
        if self.fake is not None:
            self.fake.release()
        else:
            assert self.model is not None
            self.model.release()
            self.model.set_script()

    async def restart(self) -> None:
        """Stop the gateway, then start it again on the same port (with its state)."""
        if self.fake is not None:
            await self.fake.restart(down_s=0.3)
        else:
            assert self.process is not None
            await self.process.restart_async()


@pytest.fixture(scope="module")
def real_model() -> Iterator[FakeModel]:
    from tests.support.openclaw_gateway import session_fake_model

    yield from session_fake_model()


@pytest.fixture(scope="module")
def real_gateway(real_model: FakeModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    from tests.support.openclaw_gateway import session_gateway

    yield from session_gateway(real_model, tmp_path_factory.mktemp("openclaw-contract"))


@pytest.fixture(params=["fake", "real"])
async def gateway_server(request: pytest.FixtureRequest) -> AsyncIterator[GatewayServer]:
    if request.param == "fake":
        async with FakeGateway(chunk_delay_s=0.005) as fake:
            assert fake.token is not None
            yield GatewayServer("fake", fake.url, fake.token, fake=fake)
        return
    process: GatewayProcess = request.getfixturevalue("real_gateway")
    model: FakeModel = request.getfixturevalue("real_model")
    model.set_script()
    server = GatewayServer("real", process.url, process.token, process=process, model=model)
    try:
        yield server
    finally:
        model.release()
        model.set_script()


def make_client(server: GatewayServer, *, token: str | None = None, **options: Any) -> GatewayClient:
    options.setdefault("reconnect_initial_s", 0.05)
    options.setdefault("reconnect_max_s", 0.5)
    return GatewayClient(
        server.url, token if token is not None else server.token, None, client_version="0.1.0-test", **options
    )


async def wait_connected(client: GatewayClient, timeout_s: float = 20.0) -> None:
    recorder = FeedRecorder(client.subscribe())
    try:
        if not client.connected:
            await recorder.wait_for(lambda item: isinstance(item, GatewayStatus) and item.connected, timeout_s)
    finally:
        await recorder.stop()


@pytest.fixture
async def client(gateway_server: GatewayServer) -> AsyncIterator[GatewayClient]:
    gateway = make_client(gateway_server)
    await gateway.start()
    await wait_connected(gateway)
    yield gateway
    await gateway.close()


@pytest.fixture
async def events(client: GatewayClient) -> AsyncIterator[FeedRecorder]:
    recorder = FeedRecorder(client.subscribe(maxsize=10_000))
    yield recorder
    await recorder.stop()


def session_key() -> str:
    return f"agent:main:contract:chat:{uuid.uuid4().hex[:12]}"


def chat_event(run_id: str, *states: str) -> Any:
    def matches(item: object) -> bool:
        return (
            isinstance(item, GatewayEvent)
            and item.event == "chat"
            and item.payload.get("runId") == run_id
            and item.payload.get("state") in states
        )

    return matches


def message_text(message: JsonObject) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


async def chat_turn(client: GatewayClient, events: FeedRecorder, key: str, message: str) -> tuple[str, JsonObject]:
    """Send one message and wait for the final event; returns the runId and the final payload."""
    answer = await client.request(
        "chat.send", {"sessionKey": key, "message": message, "idempotencyKey": str(uuid.uuid4())}
    )
    run_id = answer["runId"]
    final: GatewayEvent = await events.wait_for(chat_event(run_id, "final", "error", "aborted"), TURN_TIMEOUT_S)
    assert final.payload["state"] == "final", final.payload
    return run_id, final.payload


# -- handshake -------------------------------------------------------------------------------------------------------


async def test_client_implements_the_port(client: GatewayClient) -> None:
    port: Gateway = client  # type-checked: GatewayClient satisfies the port
    assert port.connected


async def test_handshake_gives_hello_with_protocol_and_policy(client: GatewayClient) -> None:
    status = client.status
    assert status.connected
    hello = status.hello
    assert hello["type"] == "hello-ok"
    assert hello["protocol"] in (3, 4)
    policy = hello["policy"]
    assert isinstance(policy["maxPayload"], int) and policy["maxPayload"] > 0
    assert isinstance(policy["tickIntervalMs"], int) and policy["tickIntervalMs"] > 0
    methods = set(hello["features"]["methods"])
    assert {"chat.send", "chat.history", "chat.abort", "sessions.list", "sessions.delete", "agents.list"} <= methods
    assert client.hello == hello


async def test_handshake_signed_with_a_device_identity(gateway_server: GatewayServer, tmp_path: Path) -> None:
    identity = DeviceIdentity.load_or_create(tmp_path / "device.pem")
    gateway = GatewayClient(
        gateway_server.url, gateway_server.token, identity, client_version="0.1.0-test", reconnect_initial_s=0.05
    )
    await gateway.start()
    try:
        await wait_connected(gateway)
        assert (await gateway.request("agents.list", {}))["agents"]
    finally:
        await gateway.close()


async def test_bad_token_stays_disconnected_with_a_reason_and_no_tight_loop(
    gateway_server: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="claw_adapters.gateway")
    gateway = make_client(gateway_server, token="not-the-token", reconnect_initial_s=0.1, reconnect_max_s=0.4)
    recorder = FeedRecorder(gateway.subscribe())
    await gateway.start()
    try:
        status: GatewayStatus = await recorder.wait_for(lambda item: isinstance(item, GatewayStatus), 10)
        assert not status.connected
        assert "refused" in status.reason
        assert "token mismatch" in status.reason
        await asyncio.sleep(2.0)
        assert not gateway.connected
        assert not any(isinstance(item, GatewayStatus) and item.connected for item in recorder.items)
        refusals = [
            r for r in caplog.records if r.levelno == logging.WARNING and "refused the connection" in r.getMessage()
        ]
        # backoff 0.1 s doubling to 0.4 s with full jitter: a handful of attempts in 2 s, never hundreds
        assert 2 <= len(refusals) <= 30, len(refusals)
        assert all("INVALID_REQUEST" in r.getMessage() for r in refusals)
        assert "not-the-token" not in caplog.text
        with pytest.raises(Unavailable, match="gateway not connected"):
            await gateway.request("sessions.list", {})
    finally:
        await recorder.stop()
        await gateway.close()


# -- requests --------------------------------------------------------------------------------------------------------


async def test_unknown_method_is_an_upstream_error_and_the_client_keeps_working(client: GatewayClient) -> None:
    with pytest.raises(UpstreamError) as raised:
        await client.request("no.such.method", {})
    assert raised.value.code == "INVALID_REQUEST"
    assert "unknown method" in raised.value.message
    assert client.connected
    assert isinstance((await client.request("sessions.list", {}))["sessions"], list)


async def test_invalid_params_are_an_upstream_error(client: GatewayClient) -> None:
    with pytest.raises(UpstreamError) as raised:
        await client.request("chat.send", {"sessionKey": session_key()})
    assert raised.value.code == "INVALID_REQUEST"
    assert "message" in raised.value.message


async def test_agents_list(client: GatewayClient) -> None:
    payload = await client.request("agents.list", {})
    assert payload["defaultId"] == "main"
    assert "main" in [agent["id"] for agent in payload["agents"]]


async def test_request_timeout_is_unavailable_and_a_late_answer_is_harmless(
    gateway_server: GatewayServer, client: GatewayClient
) -> None:
    if gateway_server.fake is not None:
        gateway_server.fake.hold.add("sessions.list")  # received, never answered
        timeout_s = 0.2
    else:
        timeout_s = 1e-6  # the real gateway cannot be made slow: the deadline passes before any answer can arrive
    with pytest.raises(Unavailable, match=r"gateway did not answer sessions\.list in time"):
        await client.request("sessions.list", {}, timeout_s=timeout_s)
    if gateway_server.fake is not None:
        gateway_server.fake.hold.clear()
    await asyncio.sleep(0.2)  # any late answer arrives meanwhile and is dropped
    assert client.connected
    assert isinstance((await client.request("sessions.list", {}))["sessions"], list)


# -- chat ------------------------------------------------------------------------------------------------------------


async def test_chat_send_streams_deltas_then_a_final_with_the_reply(
    gateway_server: GatewayServer, client: GatewayClient, events: FeedRecorder
) -> None:
    reply = "The quick brown fox jumps over the lazy dog."
    gateway_server.script(reply, chunks=4)
    key = session_key()
    answer = await client.request(
        "chat.send", {"sessionKey": key, "message": "tell me about foxes", "idempotencyKey": str(uuid.uuid4())}
    )
    assert answer["status"] == "started"
    run_id = answer["runId"]
    assert isinstance(run_id, str) and run_id
    final: GatewayEvent = await events.wait_for(chat_event(run_id, "final", "error", "aborted"), TURN_TIMEOUT_S)
    assert final.payload["state"] == "final", final.payload
    assert final.payload["stopReason"] == "stop"
    assert final.payload["sessionKey"] == key
    assert final.payload["message"]["role"] == "assistant"
    assert message_text(final.payload["message"]) == reply

    deltas = [item for item in events.items if chat_event(run_id, "delta")(item)]
    assert deltas, "no delta before the final"
    assert events.items.index(deltas[-1]) < events.items.index(final)
    increments = ""
    for delta in deltas:
        so_far = message_text(delta.payload["message"])  # the FULL text so far
        increments += delta.payload["deltaText"]
        assert so_far == increments
        assert reply.startswith(so_far)
    frame_seqs = [item.seq for item in events.items if isinstance(item, GatewayEvent) and item.seq is not None]
    assert frame_seqs == sorted(frame_seqs)
    assert len(set(frame_seqs)) == len(frame_seqs)


async def test_idempotency_key_reuse_starts_no_second_run(
    gateway_server: GatewayServer, client: GatewayClient, events: FeedRecorder
) -> None:
    gateway_server.script("only once", chunks=2)
    key = session_key()
    params = {"sessionKey": key, "message": "say it once", "idempotencyKey": str(uuid.uuid4())}
    first, again = await asyncio.gather(client.request("chat.send", params), client.request("chat.send", params))
    assert first["runId"] == again["runId"]
    assert sorted([first["status"], again["status"]]) == ["in_flight", "started"]
    run_id = first["runId"]
    await events.wait_for(chat_event(run_id, "final"), TURN_TIMEOUT_S)
    after = await client.request("chat.send", params)
    assert after == {"runId": run_id, "status": "ok"}
    await asyncio.sleep(0.5)
    finals = [item for item in events.items if chat_event(run_id, "final")(item)]
    assert len(finals) == 1
    history = await client.request("chat.history", {"sessionKey": key, "limit": 50})
    assert [message_text(m) for m in history["messages"] if m["role"] == "user"] == ["say it once"]
    assert [message_text(m) for m in history["messages"] if m["role"] == "assistant"] == ["only once"]


async def test_chat_history_after_a_turn(
    gateway_server: GatewayServer, client: GatewayClient, events: FeedRecorder
) -> None:
    gateway_server.script("history is kept")
    key = session_key()
    run_id, _final = await chat_turn(client, events, key, "remember this")
    history = await client.request("chat.history", {"sessionKey": key, "limit": 10})
    assert history["sessionKey"] == key
    user, assistant = history["messages"][-2:]
    assert user["role"] == "user"
    assert message_text(user) == "remember this"
    assert assistant["role"] == "assistant"
    assert message_text(assistant) == "history is kept"
    for message in (user, assistant):
        assert isinstance(message["timestamp"], int)
        meta = message["__openclaw"]
        assert isinstance(meta["id"], str) and meta["id"]
        assert isinstance(meta["seq"], int)
    assert user["__openclaw"]["seq"] < assistant["__openclaw"]["seq"]
    assert assistant["__openclaw"]["runId"] == run_id


async def test_chat_abort_ends_the_run_as_aborted(
    gateway_server: GatewayServer, client: GatewayClient, events: FeedRecorder
) -> None:
    gateway_server.script("this reply never finishes", chunks=5, hang_after_chunks=1)
    key = session_key()
    answer = await client.request(
        "chat.send", {"sessionKey": key, "message": "start and hang", "idempotencyKey": str(uuid.uuid4())}
    )
    run_id = answer["runId"]
    try:
        await events.wait_for(chat_event(run_id, "delta"), TURN_TIMEOUT_S)
        aborted = await client.request("chat.abort", {"sessionKey": key, "runId": run_id})
        assert aborted["ok"] is True
        assert aborted["aborted"] is True
        assert aborted["runIds"] == [run_id]
        end: GatewayEvent = await events.wait_for(chat_event(run_id, "aborted", "final", "error"), 20)
        assert end.payload["state"] == "aborted"
    finally:
        gateway_server.release()
    nothing = await client.request("chat.abort", {"sessionKey": key})
    assert nothing["aborted"] is False


# -- sessions --------------------------------------------------------------------------------------------------------


async def test_sessions_list_and_delete(
    gateway_server: GatewayServer, client: GatewayClient, events: FeedRecorder
) -> None:
    gateway_server.script("a session to delete")
    key = session_key()
    await chat_turn(client, events, key, "hello")
    listed = await client.request("sessions.list", {})
    assert isinstance(listed["count"], int)
    assert key in [row["key"] for row in listed["sessions"]]

    deleted = await client.request("sessions.delete", {"key": key})
    assert deleted["ok"] is True
    assert deleted["key"] == key
    assert deleted["deleted"] is True
    assert isinstance(deleted["archived"], list)

    assert key not in [row["key"] for row in (await client.request("sessions.list", {}))["sessions"]]
    assert (await client.request("chat.history", {"sessionKey": key, "limit": 10}))["messages"] == []
    again = await client.request("sessions.delete", {"key": key})
    assert again["ok"] is True
    assert again["deleted"] is False


# -- reconnect -------------------------------------------------------------------------------------------------------


async def test_reconnects_after_the_gateway_restarts(gateway_server: GatewayServer) -> None:
    gateway = make_client(gateway_server, reconnect_initial_s=0.05, reconnect_max_s=0.5)
    recorder = FeedRecorder(gateway.subscribe())
    await gateway.start()
    try:
        up: GatewayStatus = await recorder.wait_for(lambda item: isinstance(item, GatewayStatus) and item.connected, 20)
        first_conn = up.hello["server"]["connId"]
        restart = asyncio.create_task(gateway_server.restart())
        down: GatewayStatus = await recorder.wait_for(
            lambda item: isinstance(item, GatewayStatus) and not item.connected, 30
        )
        assert down.reason
        with pytest.raises(Unavailable):
            await gateway.request("sessions.list", {})
        await restart
        start = recorder.items.index(down)
        again: GatewayStatus = await recorder.wait_for(
            lambda item: isinstance(item, GatewayStatus) and item.connected, 30, start=start
        )
        assert again.hello["server"]["connId"] != first_conn
        assert gateway.connected
        assert isinstance((await gateway.request("sessions.list", {}))["sessions"], list)
    finally:
        await recorder.stop()
        await gateway.close()
