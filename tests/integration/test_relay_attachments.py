"""Inline attachments of a relayed `chat.send`, end to end against the fake gateway: saved under the thread's
uploads folder, their paths appended to the message the gateway receives, or the request refused whole."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fake_gateway import FakeGateway
from tests.integration.relay_harness import browser, call, linked_connector, wait_for

pytestmark = pytest.mark.integration

KEY = "agent:main:default:chat:t1"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOTES = b"meeting notes\n"


def attachment(data: bytes, mime_type: str, file_name: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "image" if mime_type.startswith("image/") else "file", "mimeType": mime_type}
    item["content"] = base64.b64encode(data).decode()
    if file_name is not None:
        item["fileName"] = file_name
    return item


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


async def test_attachments_are_saved_and_the_gateway_gets_their_paths(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        attachments = [attachment(PNG, "image/png", "shot.png"), attachment(NOTES, "text/plain", "../../notes.txt")]
        async with browser(port) as client:
            answer = await client.request(
                "chat.send",
                {"sessionKey": KEY, "message": "what is in these?", "idempotencyKey": "a1", "attachments": attachments},
            )
            assert answer["ok"] is True, answer
            await wait_for(lambda: client.clawchats("streaming-end"), what="streaming-end")

        uploads = (tmp_path / "data" / "uploads").resolve() / "default" / "t1"
        [sent] = gateway.requests("chat.send")
        forwarded = sent["params"]
        lines = forwarded["message"].split("\n")
        assert lines[0] == "what is in these?"
        paths = [Path(line.split(" ")[1]) for line in lines[1:]]
        assert lines[1:] == [
            f"[attachment: {paths[0]} (image/png, {len(PNG)} bytes)]",
            f"[attachment: {paths[1]} (text/plain, {len(NOTES)} bytes)]",
        ]
        assert forwarded["attachments"] == attachments  # images still reach the gateway inline
        assert [p.parent for p in paths] == [uploads, uploads]
        assert [p.suffix for p in paths] == [".png", ".txt"]
        # No temporary files, nothing named by the user: each file and the sidecar keeping its original name.
        assert listing(uploads) == sorted([*(p.name for p in paths), *(f".{p.name}.json" for p in paths)])
        assert [p.read_bytes() for p in paths] == [PNG, NOTES]
        assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o600, 0o600]
        assert stat.S_IMODE(uploads.stat().st_mode) == 0o700

        status, body = await call(port, "GET", "/api/threads/t1/messages")
        assert status == 200
        user, reply = body["messages"]
        assert user["content"] == forwarded["message"]
        assert user["metadata"]["attachments"] == [
            {
                "id": p.stem,
                "fileName": name,
                "mimeType": mime,
                "size": size,
                "url": f"/api/uploads/t1/{p.name}",
            }
            for p, name, mime, size in zip(
                paths, ["shot.png", "notes.txt"], ["image/png", "text/plain"], [len(PNG), len(NOTES)], strict=True
            )
        ]
        assert reply["content"] == "echo: " + forwarded["message"]


@pytest.mark.parametrize(
    "attachments",
    [
        [attachment(PNG, "image/png"), {"type": "image", "mimeType": "image/png", "content": "not base64!"}],
        [attachment(PNG, "image/png")] * 11,
        [attachment(PNG, "png")],
        {"type": "image"},
    ],
    ids=["bad-base64", "too-many", "bad-mime", "not-a-list"],
)
async def test_malformed_attachments_are_refused_and_nothing_is_forwarded(tmp_path: Path, attachments: object) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway) as service:
        port = service.port
        async with browser(port) as client:
            answer = await client.request(
                "chat.send", {"sessionKey": KEY, "message": "look", "idempotencyKey": "a2", "attachments": attachments}
            )
            assert answer["ok"] is False
            assert answer["error"]["code"] == "INVALID_REQUEST" and answer["error"]["retryable"] is False
            assert "attachment" in answer["error"]["message"]
            # the relay still works for the next request
            assert (await client.request("chat.send", {"sessionKey": KEY, "message": "hi", "idempotencyKey": "a3"}))[
                "ok"
            ]
        assert [r["params"]["idempotencyKey"] for r in gateway.requests("chat.send")] == ["a3"]
        assert listing(tmp_path / "data" / "uploads" / "default") == []
        messages = (await call(port, "GET", "/api/threads/t1/messages"))[1]["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == ["hi"]


async def test_attachments_of_sessions_that_are_not_ours_are_forwarded_unchanged(tmp_path: Path) -> None:
    async with FakeGateway() as gateway, linked_connector(tmp_path, gateway, thread=None) as service:
        port = service.port
        params = {
            "sessionKey": "agent:main:default:telegram:42",
            "message": "from elsewhere",
            "idempotencyKey": "a4",
            "attachments": [attachment(PNG, "image/png")],
        }
        async with browser(port) as client:
            assert (await client.request("chat.send", params))["ok"] is True
        assert gateway.requests("chat.send")[0]["params"] == params
        assert not (tmp_path / "data" / "uploads").exists()
