"""Inline attachments of a relayed `chat.send`: reading them (claw_core.services.attachments), then what
`ChatRelay.user_turn` does with them, over in-memory adapters."""

from __future__ import annotations

import base64
from typing import Any, cast

import pytest

from claw_adapters.storage.uploads import InMemoryUploadStore
from claw_core.errors import Invalid, TooLarge
from claw_core.gateway import Gateway
from claw_core.model import JsonObject, Message, Role
from claw_core.ports import StoredUpload
from claw_core.services.attachments import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_TOTAL_BYTES,
    Attachment,
    attachment_line,
    parse_attachments,
)
from claw_core.services.chat_relay import ChatRelay
from tests.unit.api_harness import FakeClock, Harness, build_harness

MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
KEY = "agent:main:default:chat:t1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def item(data: bytes = PNG, **fields: Any) -> JsonObject:
    body: JsonObject = {"type": "image", "mimeType": "image/png", "content": b64(data)}
    body.update(fields)
    return body


# --- reading the attachments ---


@pytest.mark.parametrize("params", [{}, {"attachments": None}, {"attachments": []}])
def test_no_attachments_is_an_empty_list(params: JsonObject) -> None:
    assert parse_attachments(params) == []


def test_attachments_are_decoded_with_their_fields() -> None:
    parsed = parse_attachments(
        {"attachments": [item(), item(b"hi\n", type="file", mimeType="Text/Plain", fileName="../notes.txt")]}
    )
    assert parsed == [
        Attachment(type="image", mime_type="image/png", file_name=None, data=PNG),
        Attachment(type="file", mime_type="text/plain", file_name="../notes.txt", data=b"hi\n"),
    ]
    assert "data" not in repr(parsed[0])  # a 20 MiB attachment never lands in a log line


def test_an_empty_file_is_an_attachment() -> None:
    assert parse_attachments({"attachments": [item(b"")]})[0].data == b""


@pytest.mark.parametrize("raw", [{}, "QUJD", 3, True, {"0": item()}])
def test_attachments_that_are_not_a_list_are_invalid(raw: object) -> None:
    with pytest.raises(Invalid, match="array"):
        parse_attachments({"attachments": raw})


def test_more_than_ten_attachments_are_too_many() -> None:
    assert len(parse_attachments({"attachments": [item()] * MAX_ATTACHMENTS})) == MAX_ATTACHMENTS
    with pytest.raises(TooLarge, match="at most 10"):
        parse_attachments({"attachments": [item()] * (MAX_ATTACHMENTS + 1)})


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("QUJD", "must be an object"),
        (None, "must be an object"),
        ({"mimeType": "image/png", "content": "QUJD"}, "type"),
        (item(type=""), "type"),
        (item(type=7), "type"),
        (item(type="x" * 33), "type"),
        (item(content=None), "content"),
        (item(content=b"QUJD"), "content"),
        (item(content=["QUJD"]), "content"),
        (item(fileName=5), "fileName"),
        (item(fileName="n" * 1025), "fileName"),
    ],
)
def test_malformed_entries_are_invalid(entry: object, complaint: str) -> None:
    with pytest.raises(Invalid, match=complaint):
        parse_attachments({"attachments": [item(), entry]})


@pytest.mark.parametrize(
    "mime",
    [
        None,
        5,
        "",
        "image",
        "image/",
        "/png",
        "image/png; charset=binary",
        "image/*",
        "*/*",
        " image/png",
        "image/png\n",
        "image//png",
        "image/png/x",
        "ímage/png",
        "image/" + "p" * 128,
    ],
)
def test_a_mime_type_must_be_type_slash_subtype(mime: object) -> None:
    with pytest.raises(Invalid, match="mimeType"):
        parse_attachments({"attachments": [item(mimeType=mime)]})


@pytest.mark.parametrize("mime", ["application/vnd.openxmlformats-officedocument.wordprocessingml.document", "a/b"])
def test_unusual_but_well_formed_mime_types_are_accepted(mime: str) -> None:
    assert parse_attachments({"attachments": [item(mimeType=mime)]})[0].mime_type == mime


@pytest.mark.parametrize(
    "content",
    [
        "QUJ",  # length not a multiple of 4
        "QQ=",  # short padding
        "Q===",  # too much padding
        "QQ==QQ==",  # data after the padding
        "=QQ=",  # padding first
        "QU JD",  # whitespace
        "QUJD\n",  # a line break
        "QU-_",  # the URL-safe alphabet
        "QUJD!",  # a character outside the alphabet
        "QUJDé===",  # not ASCII
        "data:image/png;base64,QUJD",  # a data URL is not base64
    ],
)
def test_content_that_is_not_strict_base64_is_invalid(content: str) -> None:
    with pytest.raises(Invalid, match=r"attachments\[0\]\.content is not valid base64"):
        parse_attachments({"attachments": [item(content=content)]})


def test_one_attachment_may_hold_exactly_20_mib() -> None:
    parsed = parse_attachments({"attachments": [item(bytes(MAX_ATTACHMENT_BYTES))]})
    assert len(parsed[0].data) == MAX_ATTACHMENT_BYTES
    with pytest.raises(TooLarge, match=r"attachments\[0\] is larger than 20 MiB"):
        parse_attachments({"attachments": [item(bytes(MAX_ATTACHMENT_BYTES + 1))]})


def test_the_size_of_one_is_checked_on_the_encoded_length_before_decoding() -> None:
    # Not base64 at all, but too long to be 20 MiB or less once decoded: refused for its size, so it was never
    # decoded (a decoding attempt would have answered Invalid).
    oversized = "!" * (MAX_ATTACHMENT_BYTES // 3 * 4 + 8)
    with pytest.raises(TooLarge):
        parse_attachments({"attachments": [item(content=oversized)]})


def test_the_total_is_checked_before_any_is_decoded() -> None:
    sixteen = b64(bytes(16 * MiB))
    with pytest.raises(TooLarge, match="30 MiB in total"):
        parse_attachments({"attachments": [item(content=sixteen), item(content="!" * len(sixteen))]})
    fifteen = bytes(MAX_TOTAL_BYTES // 2)
    assert len(parse_attachments({"attachments": [item(fifteen), item(fifteen)]})) == 2  # exactly 30 MiB


def test_the_line_for_the_agent_names_the_absolute_path_type_and_size() -> None:
    upload = StoredUpload(
        "abc", "x.png", "image/png", 12, "/data/uploads/default/t1/abc.png", "/api/uploads/t1/abc.png"
    )
    assert attachment_line(upload) == "\n[attachment: /data/uploads/default/t1/abc.png (image/png, 12 bytes)]"


# --- ChatRelay.user_turn ---


class Relayed:
    def __init__(self, harness: Harness, uploads: InMemoryUploadStore, relay: ChatRelay) -> None:
        self.harness, self.uploads, self.relay = harness, uploads, relay

    async def messages(self, thread_id: str = "t1") -> list[Message]:
        store = await self.harness.stores.open("default")
        return (await store.page_messages(thread_id, limit=100)).messages

    def nothing_saved(self) -> bool:
        return self.uploads.count("default", "t1") == 0


def paths_in(text: str) -> list[str]:
    return [line.split(" ")[1] for line in text.splitlines() if line.startswith("[attachment: ")]


@pytest.fixture
async def relayed() -> Relayed:
    harness = await build_harness()
    uploads = InMemoryUploadStore("/srv/claw/uploads")
    relay = ChatRelay(
        workspaces=harness.workspaces,
        stores=harness.stores,
        history=harness.history,
        gateway=cast(Gateway, object()),  # user_turn never talks to the gateway
        clock=FakeClock(),
        clients=harness.events,
        uploads=uploads,
    )
    await harness.call("POST", "/api/threads", {"id": "t1"})
    return Relayed(harness, uploads, relay)


async def test_attachments_are_saved_and_their_paths_appended_to_what_is_forwarded(relayed: Relayed) -> None:
    attachments = [item(), item(b"plain\n", type="file", mimeType="text/plain", fileName="C:\\docs\\notes.txt")]
    params: JsonObject = {"sessionKey": KEY, "message": "look", "idempotencyKey": "k1", "attachments": attachments}
    forwarded = await relayed.relay.user_turn(params)

    [turn] = await relayed.messages()
    assert turn.id == "turn-k1" and turn.role is Role.USER
    paths = paths_in(turn.content)
    assert turn.content == (
        f"look\n[attachment: {paths[0]} (image/png, {len(PNG)} bytes)]\n[attachment: {paths[1]} (text/plain, 6 bytes)]"
    )
    listed = (turn.metadata or {})["attachments"]
    assert [(a["fileName"], a["mimeType"], a["size"]) for a in listed] == [
        (None, "image/png", len(PNG)),
        ("notes.txt", "text/plain", 6),
    ]
    names = [f"{a['id']}{ext}" for a, ext in zip(listed, (".png", ".txt"), strict=True)]
    assert [a["url"] for a in listed] == [f"/api/uploads/t1/{name}" for name in names]
    assert paths == [f"/srv/claw/uploads/default/t1/{name}" for name in names]
    assert set(listed[0]) == {"id", "fileName", "mimeType", "size", "url"}  # the path stays on the machine
    assert (turn.metadata or {})["source"] == "relay"
    assert [relayed.uploads.contents(path) for path in paths] == [PNG, b"plain\n"]

    # The gateway gets the same text, and still the attachments (it takes images inline).
    assert forwarded == {**params, "message": turn.content}
    assert forwarded["attachments"] is attachments
    assert params["message"] == "look"  # the caller's params are left as they were
    saved = relayed.harness.events.named("message-saved")
    assert [e["message"]["content"] for e in saved] == [turn.content]


async def test_a_message_of_attachments_alone_is_stored_with_their_lines(relayed: Relayed) -> None:
    for message in ("", None):
        params: JsonObject = {"sessionKey": KEY, "idempotencyKey": f"k-{message}", "attachments": [item()]}
        if message is not None:
            params["message"] = message
        forwarded = await relayed.relay.user_turn(params)
        assert forwarded["message"].startswith("\n[attachment: ")
    assert len(await relayed.messages()) == 2


async def test_without_attachments_the_turn_is_stored_as_before(relayed: Relayed) -> None:
    params: JsonObject = {"sessionKey": KEY, "message": "plain", "idempotencyKey": "k2"}
    assert await relayed.relay.user_turn(params) == params
    [turn] = await relayed.messages()
    assert (turn.content, turn.metadata) == ("plain", {"source": "relay", "idempotencyKey": "k2"})


@pytest.mark.parametrize(
    "attachments",
    [
        "not a list",
        [item(content="not base64!")],
        [item(mimeType="png")],
        [item()] * (MAX_ATTACHMENTS + 1),
        [item(), {"type": "image"}],
    ],
)
async def test_malformed_attachments_save_and_store_nothing(relayed: Relayed, attachments: object) -> None:
    params: JsonObject = {"sessionKey": KEY, "message": "look", "idempotencyKey": "k3", "attachments": attachments}
    with pytest.raises((Invalid, TooLarge)):
        await relayed.relay.user_turn(params)
    assert await relayed.messages() == []
    assert relayed.nothing_saved()


@pytest.mark.parametrize(
    "session_key",
    [
        "agent:main:nowhere:chat:t1",  # a workspace that does not exist
        "agent:main:default:telegram:123",  # another channel
        "__clawchats_title_t1",  # a utility session
        None,
    ],
)
async def test_sessions_that_are_not_ours_are_forwarded_unchanged(relayed: Relayed, session_key: str | None) -> None:
    params: JsonObject = {"sessionKey": session_key, "message": "hi", "attachments": [item(content="%%")]}
    assert await relayed.relay.user_turn(params) is params
    assert relayed.nothing_saved()
    assert await relayed.messages() == []


async def test_a_thread_that_does_not_exist_keeps_no_files(relayed: Relayed) -> None:
    params: JsonObject = {"sessionKey": "agent:main:default:chat:gone", "message": "hi", "attachments": [item()]}
    assert await relayed.relay.user_turn(params) is params
    assert relayed.nothing_saved()


async def test_a_resend_with_the_same_idempotency_key_saves_nothing_twice(relayed: Relayed) -> None:
    params: JsonObject = {"sessionKey": KEY, "message": "again", "idempotencyKey": "k4", "attachments": [item()]}
    first = await relayed.relay.user_turn(params)
    second = await relayed.relay.user_turn(params)
    assert second["message"] == first["message"]
    assert relayed.uploads.count("default", "t1") == 1
    assert len(await relayed.messages()) == 1


async def test_a_turn_the_app_posted_with_the_typed_text_is_not_stored_twice(relayed: Relayed) -> None:
    posted = {"id": "app-1", "role": "user", "content": "see this", "timestamp": FakeClock().now_ms()}
    assert (await relayed.harness.call("POST", "/api/threads/t1/messages", posted)).status == 201
    params: JsonObject = {"sessionKey": KEY, "message": "see this", "idempotencyKey": "k5", "attachments": [item()]}
    forwarded = await relayed.relay.user_turn(params)
    assert forwarded["message"].startswith("see this\n[attachment: ")  # the agent still gets the paths
    assert [m.id for m in await relayed.messages()] == ["app-1"]
