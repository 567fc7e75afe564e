"""The file routes through the core router (as any transport calls them), over the real adapter and real files
under tmp_path, with HOME injected (never read from the environment)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claw_adapters.files import LocalDiskFiles
from claw_core.api.contract import ApiRequest, ApiResponse, FileBody, ReceivedFile, Router
from claw_core.api.file_routes import MAX_TEXT_BYTES, FileApi, file_routes
from claw_core.api.router import build_router
from claw_core.services.file_policy import FilePolicy


@dataclass
class Setup:
    home: Path
    tmp_root: Path
    workspace: Path
    outside: Path
    router: Router

    async def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        files: tuple[ReceivedFile, ...] = (),
    ) -> ApiResponse:
        request = ApiRequest(method=method, path=path, query=dict(query or {}), body=body, files=files)
        return await self.router.dispatch(request)

    async def json(self, method: str, path: str, query: Mapping[str, str] | None = None, **kw: Any) -> Any:
        response = await self.call(method, path, query, **kw)
        return response.status, json.loads(response.encoded())


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    home, tmp_root, outside = tmp_path / "home", tmp_path / "tmp", tmp_path / "outside"
    workspace = home / ".openclaw" / "workspace"
    for folder in (workspace, tmp_root, outside):
        folder.mkdir(parents=True)
    (outside / "canary.txt").write_text("canary")
    policy = FilePolicy.create(
        home=str(home),
        read_roots=[str(home), str(tmp_root)],
        agent_workspace=str(workspace),
        protected=[str(home / ".openclaw"), str(workspace)],
    )
    router = build_router(file_routes(FileApi(policy, LocalDiskFiles())))
    return Setup(home, tmp_root, workspace, outside, router)


# --- /api/file ----------------------------------------------------------------------------------------------------


async def test_api_file_serves_a_file_body_with_its_type(setup: Setup) -> None:
    (setup.tmp_root / "photo.PNG").write_bytes(b"\x89PNG")
    response = await setup.call("GET", "/api/file", {"path": str(setup.tmp_root / "photo.PNG")})
    assert response.status == 200
    assert isinstance(response.body, FileBody)
    assert response.body.path == str(setup.tmp_root / "photo.PNG")
    assert response.body.content_type == response.content_type == "image/png"
    assert response.body.disposition == "inline; filename*=UTF-8''photo.PNG"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    checked = (setup.tmp_root / "photo.PNG").stat()
    assert (response.body.device, response.body.inode) == (checked.st_dev, checked.st_ino)


async def test_api_file_resolves_relative_paths_against_the_agent_workspace(setup: Setup) -> None:
    (setup.workspace / "MEMORY.md").write_text("memory")
    (setup.home / ".openclaw" / "other.md").write_text("other")
    first = await setup.call("GET", "/api/file", {"path": "./MEMORY.md"})
    assert isinstance(first.body, FileBody)
    assert first.body.path == str(setup.workspace / "MEMORY.md")
    second = await setup.call("GET", "/api/file", {"path": "../other.md"})
    assert isinstance(second.body, FileBody)
    assert second.body.path == str(setup.home / ".openclaw" / "other.md")


async def test_api_file_expands_tilde_to_the_injected_home(setup: Setup) -> None:
    (setup.home / "a.txt").write_text("a")
    response = await setup.call("GET", "/api/file", {"path": "~/a.txt"})
    assert isinstance(response.body, FileBody)
    assert response.body.path == str(setup.home / "a.txt")


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 400),
        ({"path": "/etc/passwd"}, 403),
        ({"path": "OUTSIDE/canary.txt"}, 403),
        ({"path": "~/missing.txt"}, 404),
        ({"path": "~/../outside/canary.txt"}, 403),
        ({"path": "~/a\x00b"}, 400),
        ({"path": "%2e%2e%2f%2e%2e%2fetc%2fpasswd"}, 400),
        ({"path": "~/.openclaw"}, 400),
    ],
)
async def test_api_file_refusals(setup: Setup, query: dict[str, str], status: int) -> None:
    if query.get("path", "").startswith("OUTSIDE"):
        query = {"path": query["path"].replace("OUTSIDE", str(setup.outside))}
    code, body = await setup.json("GET", "/api/file", query)
    assert code == status
    assert set(body) == {"error"}


async def test_html_and_svg_are_served_as_attachments(setup: Setup) -> None:
    for name in ("page.html", "logo.svg"):
        (setup.home / name).write_text("<script>alert(1)</script>")
        response = await setup.call("GET", "/api/workspace/file", {"path": f"~/{name}"})
        assert isinstance(response.body, FileBody)
        assert response.body.disposition is not None
        assert response.body.disposition.startswith("attachment;")


# --- the workspace browser ----------------------------------------------------------------------------------------


async def test_listing_defaults_to_the_openclaw_workspace(setup: Setup) -> None:
    (setup.workspace / "notes").mkdir()
    (setup.workspace / "notes" / "a.md").write_text("aaa")
    (setup.workspace / "b.md").write_text("b")
    status, body = await setup.json("GET", "/api/workspace")
    assert status == 200
    assert body["cwd"] == str(setup.workspace)
    assert [(f["path"], f["type"], f["name"], f["size"]) for f in body["files"]] == [
        ("notes", "dir", "notes", 0),
        ("notes/a.md", "file", "a.md", 3),
        ("b.md", "file", "b.md", 1),
    ]
    assert body["total"] == 3
    assert body["hasMore"] is False
    assert body["truncated"] is False


async def test_listing_pages(setup: Setup) -> None:
    (setup.home / "p").mkdir()
    for index in range(7):
        (setup.home / "p" / f"f{index}.txt").write_text("x")
    status, first = await setup.json("GET", "/api/workspace", {"path": "~/p", "limit": "3"})
    assert status == 200
    assert [f["name"] for f in first["files"]] == ["f0.txt", "f1.txt", "f2.txt"]
    assert (first["total"], first["hasMore"]) == (7, True)
    _, last = await setup.json("GET", "/api/workspace", {"path": "~/p", "limit": "3", "offset": "6"})
    assert [f["name"] for f in last["files"]] == ["f6.txt"]
    assert last["hasMore"] is False


async def test_listing_hides_dot_files_unless_asked(setup: Setup) -> None:
    (setup.home / ".bashrc").write_text("x")
    _, hidden = await setup.json("GET", "/api/workspace", {"path": "~", "depth": "1"})
    assert [f["name"] for f in hidden["files"]] == [".openclaw"]
    _, shown = await setup.json("GET", "/api/workspace", {"path": "~", "depth": "1", "hidden": "true"})
    assert [f["name"] for f in shown["files"]] == [".openclaw", ".bashrc"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"path": "/tmp"}, 403),
        ({"path": "~/nope"}, 404),
        ({"path": "~", "depth": "x"}, 400),
        ({"path": "~\\.."}, 400),
    ],
)
async def test_listing_refusals(setup: Setup, query: dict[str, str], status: int) -> None:
    code, _ = await setup.json("GET", "/api/workspace", query)
    assert code == status


async def test_reading_applies_the_size_limits(setup: Setup) -> None:
    (setup.home / "big.txt").write_bytes(b"x" * (MAX_TEXT_BYTES + 1))
    (setup.home / "big.png").write_bytes(b"x" * (MAX_TEXT_BYTES + 1))
    (setup.home / "ok.txt").write_bytes(b"x" * MAX_TEXT_BYTES)
    assert (await setup.call("GET", "/api/workspace/file", {"path": "~/big.txt"})).status == 413
    assert (await setup.call("GET", "/api/workspace/file", {"path": "~/big.png"})).status == 200
    assert (await setup.call("GET", "/api/workspace/file", {"path": "~/ok.txt"})).status == 200


async def test_reading_outside_home_is_refused_even_in_a_read_root(setup: Setup) -> None:
    (setup.tmp_root / "t.txt").write_text("t")
    assert (await setup.call("GET", "/api/workspace/file", {"path": str(setup.tmp_root / "t.txt")})).status == 403


async def test_put_writes_utf8_text_and_creates_folders(setup: Setup) -> None:
    status, body = await setup.json("PUT", "/api/workspace/file", {"path": "~/new/dir/n.md"}, body="é".encode())
    assert (status, body) == (200, {"ok": True})
    assert (setup.home / "new" / "dir" / "n.md").read_text() == "é"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("~/bin.md", b"\xff\xfe\x00", 400),
        ("~/big.md", b"x" * (MAX_TEXT_BYTES + 1), 413),
        ("/tmp/x.md", b"x", 403),
        ("~/../outside/canary.txt", b"x", 403),
        ("~/.openclaw", b"x", 400),
    ],
)
async def test_put_refusals(setup: Setup, path: str, body: bytes, status: int) -> None:
    assert (await setup.call("PUT", "/api/workspace/file", {"path": path}, body=body)).status == status
    assert (setup.outside / "canary.txt").read_text() == "canary"


async def test_delete_answers_the_type(setup: Setup) -> None:
    (setup.home / "f.txt").write_text("x")
    (setup.home / "d").mkdir()
    assert await setup.json("DELETE", "/api/workspace/file", {"path": "~/f.txt"}) == (200, {"ok": True, "type": "file"})
    assert await setup.json("DELETE", "/api/workspace/file", {"path": "~/d"}) == (200, {"ok": True, "type": "dir"})


@pytest.mark.parametrize(
    ("path", "status"),
    [("~", 403), ("~/.openclaw", 403), ("~/.openclaw/workspace", 403), ("~/missing", 404), ("/tmp", 403)],
)
async def test_delete_refusals(setup: Setup, path: str, status: int) -> None:
    assert (await setup.call("DELETE", "/api/workspace/file", {"path": path})).status == status
    assert setup.workspace.is_dir()


async def test_upload_numbers_clashes(setup: Setup, tmp_path: Path) -> None:
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"abc")
    (setup.workspace / "a.txt").write_text("keep")
    parts = (
        ReceivedFile("files", "../../a.txt", "text/plain", 3, str(staged)),
        ReceivedFile("files", "a.txt", "text/plain", 3, str(staged)),
        ReceivedFile("other", "ignored.txt", "text/plain", 3, str(staged)),
    )
    status, body = await setup.json("POST", "/api/workspace/upload", files=parts)
    assert status == 200
    assert body == {"ok": True, "uploaded": [{"name": "a (1).txt", "size": 3}, {"name": "a (2).txt", "size": 3}]}
    assert (setup.workspace / "a.txt").read_text() == "keep"
    assert not (setup.workspace / "ignored.txt").exists()


async def test_upload_refusals(setup: Setup, tmp_path: Path) -> None:
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"abc")
    good = (ReceivedFile("files", "x.txt", "text/plain", 3, str(staged)),)
    assert (await setup.call("POST", "/api/workspace/upload")).status == 400
    assert (await setup.call("POST", "/api/workspace/upload", {"path": "/tmp"}, files=good)).status == 403
    nameless = (ReceivedFile("files", "..", "text/plain", 3, str(staged)),)
    assert (await setup.call("POST", "/api/workspace/upload", files=nameless)).status == 400


# --- /api/memory/files --------------------------------------------------------------------------------------------


async def test_memory_files_lists_memory_md_and_the_memory_folder(setup: Setup) -> None:
    (setup.workspace / "MEMORY.md").write_text("main")
    (setup.workspace / "memory" / "2026").mkdir(parents=True)
    (setup.workspace / "memory" / "2026" / "11-25.md").write_text("day")
    (setup.workspace / "memory" / "notes.txt").write_text("not markdown")
    (setup.workspace / "memory" / "escape.md").symlink_to(setup.outside / "canary.txt")
    status, body = await setup.json("GET", "/api/memory/files")
    assert status == 200
    assert [(f["path"], f["name"], f["size"]) for f in body["files"]] == [
        (str(setup.workspace / "MEMORY.md"), "MEMORY.md", 4),
        (str(setup.workspace / "memory" / "2026" / "11-25.md"), "11-25.md", 3),
    ]
    assert all(isinstance(f["modified"], int) for f in body["files"])


async def test_memory_files_is_empty_without_any(setup: Setup) -> None:
    assert await setup.json("GET", "/api/memory/files") == (200, {"files": []})


# --- the description ----------------------------------------------------------------------------------------------


async def test_the_description_says_what_the_file_routes_take_and_answer(setup: Setup) -> None:
    """Found by fuzzing: the description called every answer JSON (a served file is of its own type), left out the
    bodies of PUT /api/workspace/file and of the upload, and did not list the Range header the reads honour."""
    status, document = await setup.json("GET", "/api/openapi.json")
    assert status == 200
    paths = document["paths"]
    for path in ("/api/file", "/api/workspace/file"):
        read = paths[path]["get"]
        for status in ("200", "206"):
            assert read["responses"][status]["content"] == {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        for status in ("404", "416"):
            assert list(read["responses"][status]["content"]) == ["application/json"]
        assert {"name": "Range", "in": "header"}.items() <= next(
            p for p in read["parameters"] if p["name"] == "Range"
        ).items()
    write = paths["/api/workspace/file"]["put"]
    assert write["requestBody"]["content"]["text/plain"]["schema"]["type"] == "string"
    assert write["responses"]["200"]["content"] == {"application/json": {}}
    upload = paths["/api/workspace/upload"]["post"]["requestBody"]
    assert upload["required"] is True
    assert upload["content"]["multipart/form-data"]["schema"]["properties"]["files"]["items"]["format"] == "binary"
