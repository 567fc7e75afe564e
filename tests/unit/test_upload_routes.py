"""The upload routes in the core, transport aside: files handed over as staged paths, answers as `FileBody`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claw_core.api.contract import ApiRequest, ApiResponse, FileBody, ReceivedFile
from claw_core.api.upload_routes import content_disposition
from tests.unit.api_harness import Harness, build_harness


@pytest.fixture
async def api() -> Harness:
    harness = await build_harness()
    assert (await harness.call("POST", "/api/threads", {"id": "t1"})).status == 201
    return harness


def staged(tmp_path: Path, data: bytes, name: str = "upload-1.part") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def dispatch(api: Harness, method: str, path: str, **fields: object) -> ApiResponse:
    return await api.router.dispatch(ApiRequest(method=method, path=path, **fields))  # type: ignore[arg-type]


async def test_staged_files_are_taken_over_and_described(api: Harness, tmp_path: Path) -> None:
    files = (
        ReceivedFile("files", "../a.png", "image/png", 3, staged(tmp_path, b"png", "upload-1.part")),
        ReceivedFile("files", None, "text/plain", 4, staged(tmp_path, b"text", "upload-2.part")),
    )
    response = await dispatch(api, "POST", "/api/threads/t1/upload", files=files)
    assert response.status == 200
    first, second = response.body["files"]
    assert (first["filename"], first["mimeType"], first["size"]) == ("a.png", "image/png", 3)
    assert first["path"] == f"/api/uploads/t1/{first['id']}.png"
    assert second["filename"] == f"{second['id']}.txt"  # no name given: the stored one
    assert os.listdir(tmp_path) == []  # both moved into the store
    assert api.uploads.count("default", "t1") == 2


async def test_a_served_upload_is_a_file_body_with_its_headers(api: Harness, tmp_path: Path) -> None:
    files = (ReceivedFile("files", "Ünï.pdf", "application/pdf", 3, staged(tmp_path, b"pdf")),)
    entry = (await dispatch(api, "POST", "/api/threads/t1/upload", files=files)).body["files"][0]
    response = await dispatch(api, "GET", entry["path"])
    assert response.status == 200
    assert response.body == FileBody(
        f"/memory/uploads/default/t1/{entry['id']}.pdf",
        "application/pdf",
        "inline; filename*=UTF-8''%C3%9Cn%C3%AF.pdf",
    )


async def test_nothing_is_taken_for_an_unknown_thread_or_a_wrong_field(api: Harness, tmp_path: Path) -> None:
    path = staged(tmp_path, b"x")
    unknown = await dispatch(
        api, "POST", "/api/threads/nope/upload", files=(ReceivedFile("files", "a", "x/y", 1, path),)
    )
    assert (unknown.status, unknown.body) == (404, {"error": "Thread not found"})
    wrong = await dispatch(api, "POST", "/api/threads/t1/upload", files=(ReceivedFile("file", "a", "x/y", 1, path),))
    assert wrong.status == 400
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # left for the transport to delete
    assert api.uploads.count("default", "t1") == 0


@pytest.mark.parametrize(
    ("mime_type", "name", "expected"),
    [
        ("image/png", "a.png", "inline; filename*=UTF-8''a.png"),
        ("image/svg+xml", "a.svg", "attachment; filename*=UTF-8''a.svg"),
        ("application/pdf", None, "inline"),
        ("video/mp4", "", "inline"),
        ("text/html", "x.html", "attachment; filename*=UTF-8''x.html"),
        ("text/plain", 'a "b";\r\n.txt', "attachment; filename*=UTF-8''a%20%22b%22%3B%0D%0A.txt"),
        ("application/octet-stream", "100%/x?.bin", "attachment; filename*=UTF-8''100%25%2Fx%3F.bin"),
        ("audio/ogg", "chanson d'été.ogg", "inline; filename*=UTF-8''chanson%20d%27%C3%A9t%C3%A9.ogg"),
    ],
)
def test_content_disposition(mime_type: str, name: str | None, expected: str) -> None:
    assert content_disposition(mime_type, name) == expected
