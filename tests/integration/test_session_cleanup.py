"""Session cleanup against the fake gateway: sessions.delete, the transcript fallback, retry while away."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from claw_adapters.gateway.client import GatewayClient
from claw_adapters.gateway.transcripts import SessionTranscriptFiles
from claw_adapters.storage.pending_sessions import JsonFilePendingSessions
from claw_core.services.sessions import SessionJanitor, SessionRef
from tests.fakes.fake_gateway import FAKE_TOKEN, FakeGateway
from tests.integration.relay_harness import wait_for

pytestmark = pytest.mark.integration

KEY = "agent:main:default:chat:t1"


async def test_sessions_are_deleted_on_the_gateway_and_retried_while_it_is_away(tmp_path: Path) -> None:
    async with FakeGateway() as gateway:
        client = GatewayClient(gateway.url, FAKE_TOKEN, None, client_version="test", reconnect_initial_s=0.05)
        await client.start()
        await wait_for(lambda: client.connected, what="connection")
        await client.request("chat.send", {"sessionKey": KEY, "message": "hi", "idempotencyKey": "k"})
        janitor = SessionJanitor(client, SessionTranscriptFiles(tmp_path), retry_s=0.05)
        await gateway.stop()
        janitor.forget([SessionRef(KEY)])
        await gateway.start()
        await wait_for(lambda: janitor.pending == 0, what="cleanup after the gateway came back")
        assert KEY not in gateway.sessions
        assert gateway.requests("sessions.delete")[-1]["params"] == {"key": KEY}
        await janitor.close()
        await client.close()


async def test_cleanups_left_pending_by_a_stopped_connector_resume_at_the_next_start(tmp_path: Path) -> None:
    kept_file = tmp_path / "pending.json"
    async with FakeGateway() as gateway:
        client = GatewayClient(gateway.url, FAKE_TOKEN, None, client_version="test", reconnect_initial_s=0.05)
        await client.start()
        await wait_for(lambda: client.connected, what="connection")
        await client.request("chat.send", {"sessionKey": KEY, "message": "hi", "idempotencyKey": "k"})
        await gateway.stop()
        first = SessionJanitor(client, SessionTranscriptFiles(tmp_path), kept=JsonFilePendingSessions(kept_file))
        await first.start()
        first.forget([SessionRef(KEY, "sid-1")])
        await wait_for(kept_file.exists, what="the pending cleanup to be kept")
        await first.close()  # the connector stops with the gateway still away
        assert json.loads(kept_file.read_text()) == [{"key": KEY, "sessionId": "sid-1"}]
        assert kept_file.stat().st_mode & 0o777 == 0o600

        await gateway.start()
        second = SessionJanitor(
            client, SessionTranscriptFiles(tmp_path), kept=JsonFilePendingSessions(kept_file), retry_s=0.05
        )
        await second.start()
        await wait_for(lambda: second.pending == 0, what="the resumed cleanup")
        await second.drain()
        assert KEY not in gateway.sessions
        assert json.loads(kept_file.read_text()) == []
        await second.close()
        await client.close()


@pytest.mark.parametrize(
    "content", [b"not json", b'{"key": "x"}', b'[{"key": 5}, "junk", {"key": "k", "sessionId": 3}]']
)
async def test_an_unreadable_pending_file_is_ignored(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "pending.json").write_bytes(content)
    assert await JsonFilePendingSessions(tmp_path / "pending.json").load() == []


async def test_without_sessions_delete_only_the_sessions_transcript_file_goes(tmp_path: Path) -> None:
    sessions = tmp_path / "agents"
    (sessions / "main" / "sessions").mkdir(parents=True)
    transcript = sessions / "main" / "sessions" / "abc-123.jsonl"
    neighbour = sessions / "main" / "sessions" / "other.jsonl"
    transcript.write_text("{}")
    neighbour.write_text("{}")
    async with FakeGateway() as gateway:
        gateway.unknown_methods.add("sessions.delete")
        client = GatewayClient(gateway.url, FAKE_TOKEN, None, client_version="test")
        await client.start()
        await wait_for(lambda: client.connected, what="connection")
        janitor = SessionJanitor(client, SessionTranscriptFiles(sessions))
        janitor.forget([SessionRef(KEY, "abc-123")])
        await janitor.drain()
        assert not transcript.exists() and neighbour.exists()
        await client.close()


@pytest.mark.parametrize(
    ("agent", "session_id"), [("..", "x"), ("main", "../../etc/passwd"), ("main", "a/b"), ("", "x")]
)
async def test_transcript_removal_never_leaves_the_sessions_directory(
    tmp_path: Path, agent: str, session_id: str
) -> None:
    assert await SessionTranscriptFiles(tmp_path / "agents").remove(agent, session_id) is False


async def test_a_symlinked_transcript_pointing_out_is_left_alone(tmp_path: Path) -> None:
    outside = tmp_path / "precious.jsonl"
    outside.write_text("keep")
    folder = tmp_path / "agents" / "main" / "sessions"
    folder.mkdir(parents=True)
    os.symlink(outside, folder / "s1.jsonl")
    assert await SessionTranscriptFiles(tmp_path / "agents").remove("main", "s1") is False
    assert outside.read_text() == "keep"
