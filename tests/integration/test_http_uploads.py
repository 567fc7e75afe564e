"""Thread uploads over a real aiohttp server: multipart streamed to staging files within the route's limits, moved
into the file upload store, and served back with the token, by exact name, with Range and safe headers."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claw_adapters.http import HttpServer, HttpSettings, create_app, start_http
from claw_adapters.http.multipart import envelope_bytes
from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.uploads import FileUploadStore
from claw_adapters.storage.workspace_file import InMemoryWorkspaceRegistry
from claw_core.api.contract import ApiRequest, MultipartLimits
from claw_core.api.history_routes import HistoryApi, history_routes
from claw_core.api.router import build_router
from claw_core.api.upload_routes import THREAD_UPLOAD_LIMITS, UploadsApi, upload_routes
from claw_core.services.history import ActiveThreads, HistoryService
from claw_core.services.titles import FirstMessageTitles
from claw_core.services.transfer import TransferService
from claw_core.services.workspaces import WorkspaceService
from tests.integration.conftest import raw_request
from tests.unit.api_harness import FakeClock, RecordingCleanup, RecordingSink

pytestmark = pytest.mark.integration

TOKEN = "upload-test-token"
ORIGIN = "https://chat.example"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUNDARY = "----clawTestBoundary7MA4YWxkTrZu0gW"
MIB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SMALL = MultipartLimits(max_file_bytes=1000, max_total_bytes=1500, max_files=3, max_field_bytes=100)


@dataclass
class Part:
    """One part of a multipart body, its Content-Disposition written out as a browser (or an attacker) would."""

    data: bytes
    filename: str | None = "file.bin"
    name: str = "files"
    content_type: str | None = "application/octet-stream"
    disposition: str | None = None
    """A whole Content-Disposition value, replacing the one built from name and filename."""


def multipart(*parts: Part) -> bytes:
    body = b""
    for part in parts:
        disposition = part.disposition
        if disposition is None:
            disposition = f'form-data; name="{part.name}"'
            if part.filename is not None:
                disposition += f'; filename="{part.filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if part.content_type is not None:
            body += f"Content-Type: {part.content_type}\r\n".encode()
        body += b"\r\n" + part.data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass
class Uploads:
    server: HttpServer
    session: aiohttp.ClientSession
    store_root: Path
    staging: Path

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    async def thread(self, thread_id: str, workspace: str | None = None) -> None:
        headers = {**AUTH, **({"X-Workspace": workspace} if workspace else {})}
        async with self.session.post(self.url("/api/threads"), json={"id": thread_id}, headers=headers) as response:
            assert response.status == 201

    async def upload(
        self, thread_id: str, *parts: Part, workspace: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {**AUTH, **MULTIPART, **({"X-Workspace": workspace} if workspace else {}), **(headers or {})}
        async with self.session.post(
            self.url(f"/api/threads/{thread_id}/upload"), data=multipart(*parts), headers=sent
        ) as response:
            return response.status, await response.json()

    async def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        async with self.session.get(self.url(path), headers=headers) as response:
            return response.status, dict(response.headers), await response.read()

    def staged(self) -> list[str]:
        return os.listdir(self.staging)

    def stored(self) -> list[str]:
        """Every file under the store root, relative to it."""
        return sorted(
            str((Path(folder) / name).relative_to(self.store_root))
            for folder, _, names in os.walk(self.store_root)
            for name in names
        )


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Uploads]]]:
    servers: list[HttpServer] = []

    async with aiohttp.ClientSession() as session:

        async def start(limits: MultipartLimits = THREAD_UPLOAD_LIMITS, **overrides: Any) -> Uploads:
            home = tmp_path / f"server{len(servers)}"
            stores, clock = InMemoryHistoryStores(), FakeClock()
            workspaces = WorkspaceService(InMemoryWorkspaceRegistry(), stores, clock)
            await workspaces.start()
            history = HistoryService(stores, clock, RecordingSink(), FirstMessageTitles(), ActiveThreads())
            store = FileUploadStore(home / "uploads")
            api = HistoryApi(workspaces, history, TransferService(stores), RecordingCleanup(), store, clock, 0.0)
            routes = [*history_routes(api), *upload_routes(UploadsApi(workspaces, history, store), limits=limits)]
            settings: dict[str, Any] = {
                "token": TOKEN,
                "cors_origins": (ORIGIN,),
                "staging_dir": str(home / "staging"),
                **overrides,
            }
            server = await start_http(create_app(build_router(routes), HttpSettings(**settings)), "127.0.0.1", 0)
            servers.append(server)
            (home / "uploads").mkdir(parents=True, exist_ok=True)
            uploads = Uploads(server, session, home / "uploads", home / "staging")
            await uploads.thread("t1")
            return uploads

        yield start
        for server in servers:
            await server.stop()


@pytest.fixture
async def uploads(serve: Callable[..., Awaitable[Uploads]]) -> Uploads:
    return await serve()


async def test_one_file_is_uploaded_and_served_back(uploads: Uploads) -> None:
    status, body = await uploads.upload("t1", Part(PNG, "holiday.png", content_type="image/png"))
    assert status == 200
    [entry] = body["files"]
    assert set(entry) == {"id", "filename", "path", "mimeType", "size"}
    assert (entry["filename"], entry["mimeType"], entry["size"]) == ("holiday.png", "image/png", len(PNG))
    assert entry["path"] == f"/api/uploads/t1/{entry['id']}.png"
    assert uploads.stored() == sorted([f"default/t1/{entry['id']}.png", f"default/t1/.{entry['id']}.png.json"])
    assert uploads.staged() == []

    status, headers, data = await uploads.get(entry["path"], **AUTH)
    assert (status, data) == (200, PNG)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(len(PNG))
    assert headers["Content-Disposition"] == "inline; filename*=UTF-8''holiday.png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["Accept-Ranges"] == "bytes"


async def test_several_files_in_one_request(uploads: Uploads) -> None:
    parts = [Part(f"file {n}".encode() * (n + 1), f"f{n}.txt", content_type="text/plain") for n in range(3)]
    status, body = await uploads.upload("t1", *parts)
    assert status == 200
    assert [entry["filename"] for entry in body["files"]] == ["f0.txt", "f1.txt", "f2.txt"]
    assert len({entry["id"] for entry in body["files"]}) == 3
    for part, entry in zip(parts, body["files"], strict=True):
        assert entry["size"] == len(part.data)
        status, headers, data = await uploads.get(entry["path"], **AUTH)
        assert (status, data) == (200, part.data)
        assert headers["Content-Type"] == "text/plain"
        assert headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{part.filename}"
    assert uploads.staged() == []


@pytest.mark.parametrize(
    ("disposition", "kept", "served"),
    [
        ('form-data; name="files"; filename="../../../etc/passwd.txt"', "passwd.txt", "passwd.txt"),
        ('form-data; name="files"; filename="C:\\\\Users\\\\me\\\\cv.txt"', "cv.txt", "cv.txt"),
        ("form-data; name=\"files\"; filename*=UTF-8''nul%00byte.txt", "nulbyte.txt", "nulbyte.txt"),
        (
            'form-data; name="files"; filename="résumé 📄.txt"',
            "résumé 📄.txt",
            "r%C3%A9sum%C3%A9%20%F0%9F%93%84.txt",
        ),
        ("form-data; name=\"files\"; filename*=UTF-8''%E2%80%AEtxt.exe", "txt.exe", "txt.exe"),
        (
            'form-data; name="files"; filename="say %22hi%22 100%.txt"',
            'say "hi" 100%.txt',
            "say%20%22hi%22%20100%25.txt",
        ),
        ('form-data; name="files"; filename=".."', None, None),
    ],
)
async def test_the_original_name_is_metadata_never_a_path(
    uploads: Uploads, disposition: str, kept: str | None, served: str | None
) -> None:
    status, body = await uploads.upload("t1", Part(b"text", disposition=disposition, content_type="text/plain"))
    assert status == 200
    [entry] = body["files"]
    assert entry["filename"] == (kept if kept is not None else f"{entry['id']}.txt")
    assert f"default/t1/{entry['id']}.txt" in uploads.stored()
    assert all(name.startswith("default/t1/") for name in uploads.stored())
    _, headers, _ = await uploads.get(entry["path"], **AUTH)
    expected = "attachment" if served is None else f"attachment; filename*=UTF-8''{served}"
    assert headers["Content-Disposition"] == expected


async def test_a_raw_nul_in_a_part_header_is_a_bad_request(uploads: Uploads) -> None:
    status, body = await uploads.upload("t1", Part(b"x", disposition='form-data; name="files"; filename="a\x00b"'))
    assert status == 400 and "error" in body
    assert uploads.staged() == [] and uploads.stored() == []


async def test_a_file_at_the_per_file_limit_is_taken_one_byte_more_is_not(uploads: Uploads) -> None:
    at_limit = THREAD_UPLOAD_LIMITS.max_file_bytes
    status, body = await uploads.upload("t1", Part(b"a" * at_limit, "exact.bin"))
    assert status == 200 and body["files"][0]["size"] == at_limit
    before = uploads.stored()
    status, body = await uploads.upload("t1", Part(b"small", "first.bin"), Part(b"b" * (at_limit + 1), "over.bin"))
    assert status == 413
    assert body == {"error": f"File larger than {at_limit} bytes"}
    assert uploads.staged() == [] and uploads.stored() == before


async def test_twenty_files_are_taken_twenty_one_are_not(uploads: Uploads) -> None:
    limit = THREAD_UPLOAD_LIMITS.max_files
    status, body = await uploads.upload("t1", *[Part(b"x", f"{n}.bin") for n in range(limit)])
    assert status == 200 and len(body["files"]) == limit
    before = uploads.stored()
    status, body = await uploads.upload("t1", *[Part(b"x", f"{n}.bin") for n in range(limit + 1)])
    assert (status, body) == (413, {"error": f"More than {limit} files"})
    assert uploads.staged() == [] and uploads.stored() == before


async def test_the_real_request_total_is_a_hundred_mebibytes(uploads: Uploads) -> None:
    per_file = THREAD_UPLOAD_LIMITS.max_file_bytes
    files = THREAD_UPLOAD_LIMITS.max_total_bytes // per_file
    status, body = await uploads.upload("t1", *[Part(b"t" * per_file, f"{n}.bin") for n in range(files)])
    assert status == 200 and sum(entry["size"] for entry in body["files"]) == THREAD_UPLOAD_LIMITS.max_total_bytes
    before = uploads.stored()
    status, body = await uploads.upload("t1", *[Part(b"t" * per_file, f"{n}.bin") for n in range(files)], Part(b"!"))
    assert (status, body) == (413, {"error": f"Files larger than {THREAD_UPLOAD_LIMITS.max_total_bytes} bytes in all"})
    assert uploads.staged() == [] and uploads.stored() == before


async def test_the_request_total_is_enforced(serve: Callable[..., Awaitable[Uploads]]) -> None:
    uploads = await serve(SMALL)
    status, _ = await uploads.upload("t1", Part(b"a" * 1000), Part(b"b" * 500))  # exactly 1500
    assert status == 200
    before = uploads.stored()
    status, body = await uploads.upload("t1", Part(b"a" * 1000), Part(b"b" * 501))
    assert (status, body) == (413, {"error": "Files larger than 1500 bytes in all"})
    assert uploads.staged() == [] and uploads.stored() == before


async def test_form_fields_are_limited_in_size(serve: Callable[..., Awaitable[Uploads]]) -> None:
    uploads = await serve(SMALL)
    field_at_limit = Part(b"v" * 100, None, name="note", content_type=None)
    status, _ = await uploads.upload("t1", Part(b"data"), field_at_limit)
    assert status == 200
    status, body = await uploads.upload("t1", Part(b"data"), Part(b"v" * 101, None, name="note", content_type=None))
    assert (status, body) == (413, {"error": "Form field larger than 100 bytes"})
    assert uploads.staged() == []


async def test_too_many_form_fields_are_refused(uploads: Uploads) -> None:
    fields = [Part(b"v", None, name=f"field{n}", content_type=None) for n in range(33)]
    status, body = await uploads.upload("t1", Part(b"data"), *fields)
    assert (status, body) == (413, {"error": "More than 32 form fields"})
    assert uploads.staged() == []


async def test_a_declared_length_past_the_envelope_is_refused_before_the_body(uploads: Uploads) -> None:
    declared = envelope_bytes(THREAD_UPLOAD_LIMITS) + 1
    head = (
        f"POST /api/threads/t1/upload HTTP/1.1\r\nHost: 127.0.0.1:{uploads.server.port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = await raw_request(uploads.server.port, head.encode())
    assert answer.status == 413
    assert b"100 Continue" not in answer.head


async def test_a_declared_length_within_the_envelope_passes_the_guard(uploads: Uploads) -> None:
    """The generic 1 MiB body limit does not apply to a multipart route: its own limits do."""
    status, body = await uploads.upload("t1", Part(b"z" * (3 * MIB), "big.bin"))
    assert status == 200 and body["files"][0]["size"] == 3 * MIB


async def test_a_chunked_body_past_the_limit_is_cut_off(serve: Callable[..., Awaitable[Uploads]]) -> None:
    uploads = await serve(SMALL)

    async def chunks() -> AsyncIterator[bytes]:
        body = multipart(Part(b"c" * 5000))
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with uploads.session.post(
        uploads.url("/api/threads/t1/upload"), data=chunks(), headers={**AUTH, **MULTIPART}
    ) as response:
        assert response.status == 413
        assert response.headers.get("Connection", "").lower() == "close"
    assert uploads.staged() == [] and uploads.stored() == []


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("application/json", b'{"files": []}', 415),
        ("text/plain", b"just text", 415),
        (None, b"", 415),
        ("multipart/mixed; boundary=x", b"--x--\r\n", 415),
        ("multipart/form-data", b"--x--\r\n", 400),  # no boundary
        (f"multipart/form-data; boundary={BOUNDARY}", b"no boundary line at all", 400),
        (f"multipart/form-data; boundary={BOUNDARY}", multipart(Part(b"x"))[:-20], 400),  # cut short
    ],
)
async def test_what_is_not_a_multipart_form_is_refused(
    uploads: Uploads, content_type: str | None, data: bytes, status: int
) -> None:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    async with uploads.session.post(uploads.url("/api/threads/t1/upload"), data=data, headers=headers) as response:
        assert response.status == status
        assert "error" in await response.json()
    assert uploads.staged() == [] and uploads.stored() == []


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ((), "No files uploaded"),
        ((Part(b"v", None, name="note"),), "No files uploaded"),
        ((Part(b"x", "a.txt", name="file"),), "Files must be sent in the 'files' field"),
        ((Part(b"x", disposition='form-data; filename="a.txt"'),), "A multipart part has no name"),
    ],
)
async def test_a_form_without_files_where_they_belong_is_a_bad_request(
    uploads: Uploads, parts: tuple[Part, ...], error: str
) -> None:
    assert await uploads.upload("t1", *parts) == (400, {"error": error})
    assert uploads.staged() == [] and uploads.stored() == []


async def test_an_encoded_part_is_refused(uploads: Uploads) -> None:
    body = multipart(Part(b"aGVsbG8=")).replace(
        b"Content-Type: application/octet-stream\r\n",
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n",
    )
    headers = {**AUTH, **MULTIPART}
    async with uploads.session.post(uploads.url("/api/threads/t1/upload"), data=body, headers=headers) as response:
        assert response.status == 415
    assert uploads.staged() == []


async def test_an_unknown_thread_is_not_found_and_its_staged_files_are_deleted(uploads: Uploads) -> None:
    assert await uploads.upload("nope", Part(PNG)) == (404, {"error": "Thread not found"})
    assert uploads.staged() == [] and uploads.stored() == []


async def test_a_thread_of_another_workspace_is_not_found(uploads: Uploads) -> None:
    async with uploads.session.post(uploads.url("/api/workspaces"), json={"name": "work"}, headers=AUTH) as response:
        assert response.status == 201
    await uploads.thread("w1", workspace="work")
    assert (await uploads.upload("w1", Part(PNG)))[0] == 404  # default workspace: no such thread
    assert (await uploads.upload("t1", Part(PNG), workspace="work"))[0] == 404
    status, body = await uploads.upload("w1", Part(PNG, "w.png", content_type="image/png"), workspace="work")
    assert status == 200
    path = body["files"][0]["path"]
    assert (await uploads.get(path, **AUTH))[0] == 404  # looked up in the active workspace
    assert (await uploads.get(path, **AUTH, **{"X-Workspace": "work"}))[0] == 200
    assert (await uploads.get(f"{path}?workspace=work", **AUTH))[0] == 200
    assert (await uploads.get(f"{path}?workspace=work", **AUTH, **{"X-Workspace": "default"}))[0] == 400
    assert (await uploads.get(f"{path}?workspace=nowhere", **AUTH))[0] == 404


async def test_the_token_is_required_to_upload_and_to_read(uploads: Uploads) -> None:
    status, body = await uploads.upload("t1", Part(PNG), headers={"Authorization": "Bearer wrong"})
    assert (status, body) == (401, {"error": "Unauthorized"})
    status, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    path = body["files"][0]["path"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, _, data = await uploads.get(path, **headers)
        assert status == 401 and json.loads(data) == {"error": "Unauthorized"}
    assert (await uploads.get(f"{path}?token={TOKEN}"))[0] == 401  # never a token in the query
    assert uploads.staged() == []


async def test_ranges_are_served(uploads: Uploads) -> None:
    data = bytes(range(256)) * 8
    _, body = await uploads.upload("t1", Part(data, "blob.bin"))
    path = body["files"][0]["path"]

    status, headers, part = await uploads.get(path, Range="bytes=0-9", **AUTH)
    assert (status, part) == (206, data[:10])
    assert headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert headers["Content-Length"] == "10"
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, headers, part = await uploads.get(path, Range="bytes=-16", **AUTH)
    assert (status, part) == (206, data[-16:])
    assert headers["Content-Range"] == f"bytes {len(data) - 16}-{len(data) - 1}/{len(data)}"

    status, _, part = await uploads.get(path, Range="bytes=2000-", **AUTH)
    assert (status, part) == (206, data[2000:])

    for bad in (f"bytes={len(data)}-", "bytes=5-2", "bytes=abc", "pages=1-2"):
        status, headers, part = await uploads.get(path, Range=bad, **AUTH)
        assert status == 416, bad
        assert headers["Content-Range"] == f"bytes */{len(data)}"
        assert_json_error(headers, part, "Requested Range Not Satisfiable")


async def test_refusals_made_while_serving_a_file_are_json_errors(uploads: Uploads) -> None:
    """aiohttp's file serving answers a failed precondition (412) or a bad Range (416, also to HEAD) itself; those
    are `{error}` JSON like every error, never an empty body under the file's type (found by fuzzing)."""
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    path = body["files"][0]["path"]

    status, headers, part = await uploads.get(path, **{"If-Match": '"not-this-one"'}, **AUTH)
    assert status == 412
    assert_json_error(headers, part, "Precondition Failed")

    async with uploads.session.head(uploads.url(path), headers={"Range": "bytes=99999-", **AUTH}) as response:
        assert response.status == 416
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await response.read() == b""


def assert_json_error(headers: dict[str, str], body: bytes, message: str) -> None:
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert "Content-Disposition" not in headers
    assert json.loads(body) == {"error": message}


async def test_head_gives_the_headers_without_the_body(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    async with uploads.session.head(uploads.url(body["files"][0]["path"]), headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(PNG))
        assert response.headers["Content-Type"] == "image/png"
        assert await response.read() == b""


async def test_head_works_on_json_routes_too(uploads: Uploads) -> None:
    async with uploads.session.get(uploads.url("/api/threads/t1"), headers=AUTH) as response:
        length = len(await response.read())
    async with uploads.session.head(uploads.url("/api/threads/t1"), headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(length)
        assert await response.read() == b""


async def test_a_conditional_request_gets_not_modified(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    path = body["files"][0]["path"]
    _, headers, _ = await uploads.get(path, **AUTH)
    status, _, data = await uploads.get(path, **AUTH, **{"If-None-Match": headers["Etag"]})
    assert (status, data) == (304, b"")


@pytest.mark.parametrize(
    ("content_type", "file_name", "served_type", "disposition"),
    [
        ("image/png", "a.png", "image/png", "inline"),
        ("application/pdf", "a.pdf", "application/pdf", "inline"),
        ("audio/mpeg", "a.mp3", "audio/mpeg", "inline"),
        ("video/mp4", "a.mp4", "video/mp4", "inline"),
        ("image/svg+xml", "a.svg", "image/svg+xml", "attachment"),
        ("text/html", "a.html", "text/html", "attachment"),
        ("application/x-msdownload", "a.exe", "application/octet-stream", "attachment"),
        ("Image/PNG; name=evil.html", "a.png", "image/png", "inline"),
        ("not a type", "a.png", "application/octet-stream", "attachment"),
    ],
)
async def test_the_served_type_comes_from_the_stored_extension(
    uploads: Uploads, content_type: str, file_name: str, served_type: str, disposition: str
) -> None:
    status, body = await uploads.upload("t1", Part(b"<svg onload=alert(1)>", file_name, content_type=content_type))
    assert status == 200
    status, headers, _ = await uploads.get(body["files"][0]["path"], **AUTH)
    assert status == 200
    assert headers["Content-Type"] == served_type
    assert headers["Content-Disposition"] == f"{disposition}; filename*=UTF-8''{file_name}"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"


async def test_only_the_exact_stored_name_is_served(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    file_id = body["files"][0]["id"]
    for name in (file_id, file_id[:10], f"{file_id}.jpg", f"{file_id}.pn", f".{file_id}.png.json", "x"):
        status, _, data = await uploads.get(f"/api/uploads/t1/{name}", **AUTH)
        assert status == 404 and json.loads(data) == {"error": "File not found"}, name
    assert (await uploads.get(f"/api/uploads/t2/{file_id}.png", **AUTH))[0] == 404


async def test_a_compressed_sibling_is_never_served_instead(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(b"the real bytes", "a.txt", content_type="text/plain"))
    path = body["files"][0]["path"]
    stored = uploads.store_root / "default" / "t1" / path.rsplit("/", 1)[1]
    stored.with_name(stored.name + ".gz").write_bytes(b"planted")
    async with uploads.session.get(
        uploads.url(path), headers={**AUTH, "Accept-Encoding": "gzip, br", "Origin": ORIGIN}
    ) as response:
        assert response.status == 200
        assert await response.read() == b"the real bytes"
        assert "Content-Encoding" not in response.headers
        assert "Origin" in response.headers["Vary"]
        assert "Content-Disposition" in response.headers["Access-Control-Expose-Headers"]


async def test_a_link_planted_under_a_stored_name_is_refused(uploads: Uploads, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    assert (await uploads.upload("t1", Part(b"x", "a.txt", content_type="text/plain")))[0] == 200
    folder = uploads.store_root / "default" / "t1"
    (folder / ("L" * 22 + ".txt")).symlink_to(secret)
    status, _, data = await uploads.get("/api/uploads/t1/" + "L" * 22 + ".txt", **AUTH)
    assert status == 403 and b"secret" not in data


@pytest.mark.parametrize("swap", ["fifo", "link", "folder", "file"])
async def test_a_stored_file_swapped_after_it_was_located_is_refused_without_hanging(
    uploads: Uploads, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """The transport opens the located path itself: once, without following a link or waiting on a FIFO."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    _, body = await uploads.upload("t1", Part(b"mine", "a.txt", content_type="text/plain"))
    path = body["files"][0]["path"]
    stored = uploads.store_root / "default" / "t1" / path.rsplit("/", 1)[1]
    located = FileUploadStore.locate

    async def locate_then_swap(self: FileUploadStore, *args: str) -> object:
        found = await located(self, *args)
        if swap == "folder":  # the thread's folder becomes a link to one holding a file of the same name
            elsewhere = tmp_path / "elsewhere"
            elsewhere.mkdir()
            (elsewhere / stored.name).write_bytes(b"secret")
            stored.parent.rename(tmp_path / "moved-away")
            stored.parent.symlink_to(elsewhere)
            return found
        stored.rename(tmp_path / "moved-away")  # kept, so that its inode number cannot be reused at once
        if swap == "fifo":
            os.mkfifo(stored)
        elif swap == "link":
            stored.symlink_to(secret)
        else:  # another regular file under the same name
            stored.write_bytes(b"secret")
        return found

    monkeypatch.setattr(FileUploadStore, "locate", locate_then_swap)
    status, headers, data = await uploads.get(path, **AUTH)
    assert status in {403, 404}
    assert b"secret" not in data
    assert_json_error(headers, data, "Forbidden" if status == 403 else "Not Found")


async def test_preconditions_are_read_on_the_opened_file(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"))
    path = body["files"][0]["path"]
    _, headers, _ = await uploads.get(path, **AUTH)
    etag, modified = headers["Etag"], headers["Last-Modified"]
    assert (await uploads.get(path, **{"If-Match": etag}, **AUTH))[::2] == (200, PNG)
    assert (await uploads.get(path, **{"If-Modified-Since": modified}, **AUTH))[::2] == (304, b"")
    assert (await uploads.get(path, **{"If-Unmodified-Since": modified}, **AUTH))[::2] == (200, PNG)
    past = "Mon, 01 Jan 2001 00:00:00 GMT"
    status, headers, data = await uploads.get(path, **{"If-Unmodified-Since": past}, **AUTH)
    assert status == 412
    assert_json_error(headers, data, "Precondition Failed")
    assert (await uploads.get(path, **{"If-Modified-Since": past}, **AUTH))[::2] == (200, PNG)


async def test_deleting_the_thread_removes_its_files(uploads: Uploads) -> None:
    _, body = await uploads.upload("t1", Part(PNG, "a.png", content_type="image/png"), Part(b"x", "b.txt"))
    await uploads.thread("t2")
    _, other = await uploads.upload("t2", Part(b"kept", "c.txt"))
    async with uploads.session.delete(uploads.url("/api/threads/t1"), headers=AUTH) as response:
        assert response.status == 200
    for entry in body["files"]:
        assert (await uploads.get(entry["path"], **AUTH))[0] == 404
    assert not (uploads.store_root / "default" / "t1").exists()
    assert (await uploads.get(other["files"][0]["path"], **AUTH))[2] == b"kept"


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing_staged(uploads: Uploads) -> None:
    body = multipart(Part(b"h" * (2 * MIB)))
    head = (
        f"POST /api/threads/t1/upload HTTP/1.1\r\nHost: 127.0.0.1:{uploads.server.port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", uploads.server.port)
    writer.write(head + body[: MIB + 1000])
    await writer.drain()
    await eventually(lambda: len(uploads.staged()) == 1)  # the part is streaming to its staging file
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: uploads.staged() == [])
    assert uploads.stored() == []


async def test_an_upload_too_slow_for_the_deadline_is_cut_off(serve: Callable[..., Awaitable[Uploads]]) -> None:
    uploads = await serve(upload_timeout_s=0.5)
    body = multipart(Part(b"s" * 100))
    head = (
        f"POST /api/threads/t1/upload HTTP/1.1\r\nHost: 127.0.0.1:{uploads.server.port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = await raw_request(uploads.server.port, head + body[:-30], wait_s=10)
    assert answer.status == 408
    assert uploads.staged() == [] and uploads.stored() == []


async def test_the_default_staging_folder_is_private_and_removed_at_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    stores, clock = InMemoryHistoryStores(), FakeClock()
    workspaces = WorkspaceService(InMemoryWorkspaceRegistry(), stores, clock)
    await workspaces.start()
    history = HistoryService(stores, clock, RecordingSink(), FirstMessageTitles(), ActiveThreads())
    store = FileUploadStore(tmp_path / "uploads")
    router = build_router(upload_routes(UploadsApi(workspaces, history, store)))
    server = await start_http(create_app(router, HttpSettings(token=TOKEN)), "127.0.0.1", 0)
    try:
        [folder] = list(temporary.iterdir())
        assert folder.name.startswith("claw-staging-")
        assert os.stat(folder).st_mode & 0o777 == 0o700
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{server.url}/api/threads/nope/upload", data=multipart(Part(b"x")), headers={**AUTH, **MULTIPART}
            ) as response,
        ):
            assert response.status == 404
        assert os.listdir(folder) == []
    finally:
        await server.stop()
    assert os.listdir(temporary) == []


async def test_an_app_without_multipart_routes_stages_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = await start_http(create_app(build_router([]), HttpSettings(token=TOKEN)), "127.0.0.1", 0)
    await server.stop()
    assert os.listdir(tmp_path) == []


async def test_a_configured_staging_folder_is_cleared_of_leftovers_only(
    serve: Callable[..., Awaitable[Uploads]], tmp_path: Path
) -> None:
    staging = tmp_path / "server0" / "staging"
    staging.mkdir(parents=True)
    staging.chmod(0o755)
    (staging / ("upload-" + "0" * 32 + ".part")).write_bytes(b"left by a crash")
    (staging / "not-ours.txt").write_bytes(b"kept")
    uploads = await serve()
    assert uploads.staged() == ["not-ours.txt"]
    assert staging.stat().st_mode & 0o777 == 0o700


async def test_the_openapi_description_has_the_multipart_body() -> None:
    router = build_router(upload_routes(UploadsApi(None, None, None)))  # type: ignore[arg-type]
    [openapi] = [route for route in router.routes if route.path == "/api/openapi.json"]
    document = (await openapi.handler(ApiRequest("GET", "/api/openapi.json"))).body
    upload = document["paths"]["/api/threads/{id}/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    served = document["paths"]["/api/uploads/{threadId}/{fileId}"]["get"]
    assert "security" not in served  # the token is required
    # A served file is of its own type, and may be asked for in part (the description once said JSON, no Range).
    assert list(served["responses"]["200"]["content"]) == ["*/*"]
    assert list(served["responses"]["206"]["content"]) == ["*/*"]
    assert list(served["responses"]["416"]["content"]) == ["application/json"]
    assert "Range" in [parameter["name"] for parameter in served["parameters"] if parameter["in"] == "header"]


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `condition` holds (bounded): for effects of another task, not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
