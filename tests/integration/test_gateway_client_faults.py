"""GatewayClient under faults, against the fake gateway (and a few raw sockets): bad frames, oversized frames, missing
ticks, dropped connections, slow handshakes, lagging subscribers, prompt close, and logs free of secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from claw_adapters.gateway import DeviceIdentity, GatewayClient
from claw_core.errors import Invalid, TooLarge, Unavailable, UpstreamError
from claw_core.gateway import GatewayEvent, GatewayStatus
from tests.fakes.fake_gateway import FakeGateway, FeedRecorder

pytestmark = pytest.mark.timeout(60)


def make_client(url: str, token: str | None, **options: Any) -> GatewayClient:
    identity = options.pop("identity", None)
    options.setdefault("reconnect_initial_s", 0.05)
    options.setdefault("reconnect_max_s", 0.2)
    return GatewayClient(url, token, identity, client_version="0.1.0-test", **options)


def is_up(item: object) -> bool:
    return isinstance(item, GatewayStatus) and item.connected


def is_down(item: object) -> bool:
    return isinstance(item, GatewayStatus) and not item.connected


@pytest.fixture
async def fake() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
async def client(fake: FakeGateway) -> AsyncIterator[GatewayClient]:
    gateway = make_client(fake.url, fake.token)
    yield gateway
    await gateway.close()


@pytest.fixture
async def feed(client: GatewayClient) -> AsyncIterator[FeedRecorder]:
    recorder = FeedRecorder(client.subscribe(maxsize=10_000))
    await client.start()
    await recorder.wait_for(is_up)
    yield recorder
    await recorder.stop()


# -- what the gateway sends --------------------------------------------------------------------------------------------


async def test_malformed_and_unknown_frames_are_ignored(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="claw_adapters.gateway")
    tail = "TAIL-OF-A-LONG-MALFORMED-FRAME"
    for raw in (
        "not json at all {",
        "{" + "x" * 200 + tail,
        '{"type":"weird","id":"1"}',
        '{"type":"event"}',
        '{"type":"event","event":"x","payload":[1,2]}',
        '{"type":"res","id":"nobody-asked","ok":true,"payload":{}}',
        '{"type":"req","id":"1","method":"node.invoke","params":{}}',
        "[1,2,3]",
        "null",
        b"\x00\x01binary",
    ):
        await fake.inject(raw)
    await fake.emit("after.garbage", {"fine": True})
    event: GatewayEvent = await feed.wait_for(
        lambda item: isinstance(item, GatewayEvent) and item.event == "after.garbage"
    )
    assert event.payload == {"fine": True}
    assert isinstance(event.seq, int)
    assert client.connected
    assert fake.connection_attempts == 1
    assert isinstance((await client.request("sessions.list", {}))["sessions"], list)
    assert "ignoring a malformed frame" in caplog.text
    assert "ignoring a binary frame" in caplog.text
    assert tail not in caplog.text  # only a short prefix of a bad frame is logged
    assert [item for item in feed.items if isinstance(item, GatewayStatus)] == [feed.items[0]]


async def test_a_frame_larger_than_max_frame_bytes_closes_the_connection_and_the_client_reconnects(
    fake: FakeGateway,
) -> None:
    client = make_client(fake.url, fake.token, max_frame_bytes=8192)
    recorder = FeedRecorder(client.subscribe())
    await client.start()
    try:
        await recorder.wait_for(is_up)
        await fake.inject(json.dumps({"type": "event", "event": "huge", "payload": {"blob": "x" * 20_000}}))
        down: GatewayStatus = await recorder.wait_for(is_down)
        assert "1009" in down.reason
        await recorder.wait_for(is_up, start=recorder.items.index(down))
        assert fake.connection_attempts == 2
        assert not any(isinstance(item, GatewayEvent) and item.event == "huge" for item in recorder.items)
        assert isinstance((await client.request("sessions.list", {}))["sessions"], list)
    finally:
        await recorder.stop()
        await client.close()


async def test_missing_ticks_trigger_a_reconnect() -> None:
    async with FakeGateway(tick_interval_ms=100) as fake:
        client = make_client(fake.url, fake.token)
        recorder = FeedRecorder(client.subscribe())
        await client.start()
        try:
            up: GatewayStatus = await recorder.wait_for(is_up)
            assert up.hello["policy"]["tickIntervalMs"] == 100
            await asyncio.sleep(0.6)  # ticks flow: the watchdog (200 ms) is reset by each one
            assert sum(1 for item in recorder.items if isinstance(item, GatewayEvent) and item.event == "tick") >= 3
            assert fake.connection_attempts == 1
            assert client.connected

            fake.pause_ticks = True
            paused_at = time.monotonic()
            down: GatewayStatus = await recorder.wait_for(is_down, 5)
            assert "no tick" in down.reason
            assert time.monotonic() - paused_at < 2.0
            fake.pause_ticks = False
            await recorder.wait_for(is_up, start=recorder.items.index(down))
            assert fake.connection_attempts >= 2
            assert isinstance((await client.request("sessions.list", {}))["sessions"], list)
        finally:
            await recorder.stop()
            await client.close()


async def test_any_frame_resets_the_watchdog() -> None:
    async with FakeGateway(tick_interval_ms=200) as fake:
        fake.pause_ticks = True
        client = make_client(fake.url, fake.token)
        await client.start()
        try:
            await fake.wait_for_connections(1)
            for _ in range(8):  # 0.8 s without a tick (watchdog 0.4 s), but never 0.4 s without a frame
                await asyncio.sleep(0.1)
                await fake.emit("presence", {})
            assert client.connected
            assert fake.connection_attempts == 1
        finally:
            await client.close()


async def test_a_gateway_that_never_sends_the_challenge_times_out_and_is_retried() -> None:
    attempts = 0

    async def silent(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = make_client(f"ws://127.0.0.1:{port}", "token", connect_timeout_s=0.2)
        recorder = FeedRecorder(client.subscribe())
        await client.start()
        try:
            down: GatewayStatus = await recorder.wait_for(is_down, 5)
            assert "handshake in time" in down.reason
            await asyncio.sleep(0.6)
            assert attempts >= 2
            assert not client.connected
        finally:
            await recorder.stop()
            await client.close()


# -- requests ----------------------------------------------------------------------------------------------------------


async def test_pending_requests_fail_at_once_when_the_connection_drops(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder
) -> None:
    fake.hold.add("sessions.list")
    pending = [asyncio.create_task(client.request("sessions.list", {}, timeout_s=30)) for _ in range(3)]
    await fake.wait_for_requests("sessions.list", 3)
    started = time.monotonic()
    await fake.kill_connections()  # no close frame: a crash
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert time.monotonic() - started < 1.0
    assert all(isinstance(result, Unavailable) for result in results), results
    assert all("connection lost" in str(result) for result in results)
    fake.hold.clear()
    await feed.wait_for(is_up, start=1)
    assert isinstance((await client.request("sessions.list", {}))["sessions"], list)


async def test_responses_are_matched_by_id_whatever_their_order_and_shape(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder
) -> None:
    fake.hold.update({"a.method", "b.method", "c.method"})
    tasks = {name: asyncio.create_task(client.request(f"{name}.method", {})) for name in "abc"}
    for name in "abc":
        await fake.wait_for_requests(f"{name}.method")
    ids = {name: fake.requests(f"{name}.method")[0]["id"] for name in "abc"}
    assert len(set(ids.values())) == 3
    await fake.inject(
        json.dumps(
            {
                "type": "res",
                "id": ids["c"],
                "ok": False,
                "error": {"code": "UNAVAILABLE", "message": "busy", "retryable": True, "retryAfterMs": 250},
            }
        )
    )
    await fake.inject(json.dumps({"type": "res", "id": ids["b"], "ok": True}))
    await fake.inject(json.dumps({"type": "res", "id": ids["a"], "ok": True, "payload": [1, 2]}))
    with pytest.raises(UpstreamError) as raised:
        await tasks["c"]
    assert (raised.value.code, raised.value.retryable, raised.value.message) == ("UNAVAILABLE", True, "busy")
    assert raised.value.details == {"retryAfterMs": 250}
    assert await tasks["b"] == {}
    with pytest.raises(UpstreamError) as not_an_object:
        await tasks["a"]
    assert not_an_object.value.code == "INVALID_RESPONSE"
    assert client.connected


async def test_params_that_are_not_json_are_invalid(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder
) -> None:
    with pytest.raises(Invalid):
        await client.request("chat.send", {"when": object()})
    with pytest.raises(Invalid):
        await client.request("chat.send", {"x": float("nan")})
    assert client.connected


async def test_not_connected_is_unavailable(fake: FakeGateway, client: GatewayClient) -> None:
    with pytest.raises(Unavailable, match="gateway not connected"):
        await client.request("sessions.list", {})


async def test_an_oversized_request_is_refused_before_sending_and_the_limit_is_reread_on_connect() -> None:
    async with FakeGateway(max_payload=4096) as fake:
        client = make_client(fake.url, fake.token)
        recorder = FeedRecorder(client.subscribe())
        await client.start()
        try:
            await recorder.wait_for(is_up)
            big = {"sessionKey": "agent:main:x:chat:y", "message": "é" * 2500, "idempotencyKey": "k"}  # 5000+ bytes
            with pytest.raises(TooLarge, match="4096"):
                await client.request("chat.send", big)
            assert fake.requests("chat.send") == []
            assert client.connected

            fake.max_payload = 64 * 1024  # the next hello advertises a larger policy
            await fake.restart()
            down = await recorder.wait_for(is_down)
            await recorder.wait_for(is_up, start=recorder.items.index(down))
            answer = await client.request("chat.send", big)
            assert answer["status"] == "started"
        finally:
            await recorder.stop()
            await client.close()


async def test_a_lagging_subscriber_is_dropped_without_blocking_the_others(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder
) -> None:
    lagging = client.subscribe(maxsize=5)  # never read
    for index in range(50):
        await fake.emit("burst", {"i": index})
    await feed.wait_for(lambda item: isinstance(item, GatewayEvent) and item.payload.get("i") == 49)
    assert lagging.overflowed
    assert lagging.closed
    assert [
        item.payload["i"] for item in feed.items if isinstance(item, GatewayEvent) and item.event == "burst"
    ] == list(range(50))
    assert client.connected


# -- close -------------------------------------------------------------------------------------------------------------


async def test_close_is_prompt_while_waiting_to_reconnect(fake: FakeGateway) -> None:
    client = make_client(fake.url, fake.token, reconnect_initial_s=30.0, reconnect_max_s=30.0)
    recorder = FeedRecorder(client.subscribe())
    await client.start()
    await recorder.wait_for(is_up)
    await fake.stop()
    await recorder.wait_for(is_down)
    await asyncio.sleep(0.1)  # now in a backoff of up to 30 s
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 1.0
    await recorder.wait_ended(1.0)


async def test_close_is_prompt_while_connecting_to_a_black_hole() -> None:
    async def accept_and_ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_client(f"ws://127.0.0.1:{port}", "token", connect_timeout_s=10.0)
    try:
        await client.start()
        await asyncio.sleep(0.2)  # the opening handshake is waiting for an answer that never comes
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 1.0
    finally:
        server.close()
        await server.wait_closed()


async def test_close_while_connected_fails_pending_requests_and_ends_feeds(
    fake: FakeGateway, client: GatewayClient, feed: FeedRecorder
) -> None:
    fake.hold.add("sessions.list")
    pending = asyncio.create_task(client.request("sessions.list", {}, timeout_s=30))
    await fake.wait_for_requests("sessions.list")
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 1.0
    with pytest.raises(Unavailable):
        await pending
    await feed.wait_ended(1.0)
    assert feed.items[-1] == GatewayStatus(connected=False, reason="closed")
    assert not client.connected
    with pytest.raises(Unavailable):
        await client.request("sessions.list", {})
    await client.close()  # twice is fine
    with pytest.raises(RuntimeError):
        await client.start()


# -- logs --------------------------------------------------------------------------------------------------------------


async def test_the_token_and_the_signature_never_appear_in_logs(
    fake: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert fake.token is not None
    identity = DeviceIdentity.load_or_create(tmp_path / "device.pem")
    good = make_client(fake.url, fake.token, identity=identity)
    recorder = FeedRecorder(good.subscribe())
    bad_token = "wrong-" + fake.token
    bad = make_client(fake.url, bad_token, identity=identity)
    await good.start()
    await bad.start()
    try:
        await recorder.wait_for(is_up)
        await good.request("sessions.list", {})
        with contextlib.suppress(Exception):
            await good.request("no.such.method", {})
        await fake.inject("garbage " + fake.token)  # even a gateway echoing the token does not get it logged
        await fake.kill_connections()
        await recorder.wait_for(is_up, start=2)
        await asyncio.sleep(0.5)  # the bad client is refused a few times meanwhile
        assert "refused the connection" in caplog.text
    finally:
        await recorder.stop()
        await good.close()
        await bad.close()
    signatures = [
        frame["params"]["device"]["signature"]
        for frame in fake.requests("connect")
        if isinstance(frame.get("params"), dict) and "device" in frame["params"]
    ]
    assert signatures
    client_side = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("websockets.server")
    )
    assert "claw_adapters.gateway" in {record.name.rsplit(".", 1)[0] for record in caplog.records}
    for secret in (fake.token, bad_token, *signatures):
        assert secret not in client_side
