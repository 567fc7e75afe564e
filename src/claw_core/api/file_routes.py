"""The file routes: `/api/file`, the workspace browser (`/api/workspace...`) and `/api/memory/files`.

Each handler turns the client's path into a checked absolute one with `FilePolicy` (malformed -> 400, outside the
roots -> 403) and hands it to the `LocalFiles` port, which checks it again on the real file system. Reads answer a
`FileBody` the transport streams; nothing here holds a whole file in memory except a PUT body (at most 1 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from claw_core.api.contract import (
    ANY_TYPE,
    RANGE_HEADER,
    ApiRequest,
    ApiResponse,
    FileBody,
    MultipartLimits,
    Param,
    Route,
)
from claw_core.api.schemas import FILES_BODY, TEXT_BODY
from claw_core.errors import Forbidden, Invalid, NotFound, TooLarge
from claw_core.ports import FileEntry, LocalFiles
from claw_core.services.file_policy import FilePolicy, clean_upload_name
from claw_core.services.file_types import content_disposition, file_type
from claw_core.validation import query_int

__all__ = [
    "DEFAULT_WORKSPACE_PATH",
    "MAX_MEDIA_BYTES",
    "MAX_TEXT_BYTES",
    "UPLOAD_LIMITS",
    "FileApi",
    "file_routes",
]

DEFAULT_WORKSPACE_PATH = "~/.openclaw/workspace"
MAX_TEXT_BYTES = 1024 * 1024
"""What the workspace browser reads (and writes) of a text or other file."""
MAX_MEDIA_BYTES = 20 * 1024 * 1024
"""What it reads of an image, PDF, audio or video file."""
UPLOAD_LIMITS = MultipartLimits(max_file_bytes=MAX_MEDIA_BYTES, max_total_bytes=100 * 1024 * 1024, max_files=20)
UPLOAD_FIELD = "files"

DEPTH = (2, 5)
"""Default and largest listing depth."""
PAGE = (500, 2000)
"""Default and largest listing page."""
MAX_SCANNED = 20_000
"""A listing walks at most this many entries (the answer then says `truncated`)."""
MEMORY_DEPTH = 8
MAX_MEMORY_FILES = 2000

_SANDBOX = {"Content-Security-Policy": "sandbox; default-src 'none'"}
"""Even a file opened as a page by mistake runs nothing at the API's origin."""
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class FileApi:
    """What the file routes need: the policy (roots, HOME, the agent's workspace) and the files themselves."""

    policy: FilePolicy
    files: LocalFiles


def _path_param(request: ApiRequest, default: str | None = None) -> str:
    raw = request.query.get("path") or default
    if raw is None:
        raise Invalid("path is required")
    return raw


def _flag(request: ApiRequest, name: str) -> bool:
    return request.query.get(name, "").strip().lower() in _TRUE


def _entry_json(entry: FileEntry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "type": "dir" if entry.is_dir else "file",
        "name": entry.name,
        "size": entry.size,
        "modified": entry.modified_ms,
    }


def file_routes(api: FileApi) -> list[Route]:
    policy, files = api.policy, api.files
    home_only = (policy.home,)

    async def serve(path: PurePosixPath, roots: tuple[PurePosixPath, ...], *, limited: bool) -> ApiResponse:
        info = await files.file_info(path, roots)
        kind = file_type(path.name)
        if limited:
            limit = MAX_MEDIA_BYTES if kind.is_media else MAX_TEXT_BYTES
            if info.size > limit:
                raise TooLarge(f"File is larger than {limit // (1024 * 1024)} MB")
        disposition = content_disposition(path.name, attachment=kind.active)
        body = FileBody(info.real_path, kind.content_type, disposition, device=info.device, inode=info.inode)
        return ApiResponse(200, body, content_type=kind.content_type, headers=_SANDBOX)

    async def read_any(request: ApiRequest) -> ApiResponse:
        path = policy.readable(_path_param(request))
        return await serve(path, policy.read_roots, limited=False)

    async def list_workspace(request: ApiRequest) -> ApiResponse:
        path = policy.in_home(_path_param(request, DEFAULT_WORKSPACE_PATH))
        depth = query_int(request.query, "depth", default=DEPTH[0], minimum=1, maximum=DEPTH[1])
        offset = query_int(request.query, "offset", default=0, minimum=0)
        limit = query_int(request.query, "limit", default=PAGE[0], minimum=1, maximum=PAGE[1])
        listing = await files.list_tree(
            path, home_only, depth=depth, hidden=_flag(request, "hidden"), max_entries=MAX_SCANNED
        )
        page = listing.entries[offset : offset + limit]
        return ApiResponse(
            200,
            {
                "files": [_entry_json(entry) for entry in page],
                "cwd": str(path),
                "total": len(listing.entries),
                "offset": offset,
                "hasMore": offset + len(page) < len(listing.entries),
                "truncated": listing.truncated,
            },
        )

    async def read_file(request: ApiRequest) -> ApiResponse:
        return await serve(policy.in_home(_path_param(request)), home_only, limited=True)

    async def write_file(request: ApiRequest) -> ApiResponse:
        path = policy.in_home(_path_param(request))
        try:
            request.body.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Invalid("Body must be UTF-8 text") from None
        await files.write(path, request.body, home_only)
        return ApiResponse(200, {"ok": True})

    async def delete_file(request: ApiRequest) -> ApiResponse:
        path = policy.deletable(_path_param(request))
        kind = await files.delete(path, home_only, policy.protected)
        return ApiResponse(200, {"ok": True, "type": kind})

    async def upload(request: ApiRequest) -> ApiResponse:
        directory = policy.in_home(_path_param(request, DEFAULT_WORKSPACE_PATH))
        parts = [part for part in request.files if part.field == UPLOAD_FIELD]
        if not parts:
            raise Invalid(f"No files: send them as multipart/form-data in the field {UPLOAD_FIELD!r}")
        named = [(clean_upload_name(part.filename), part.staged_path) for part in parts]
        saved = await files.save_uploads(directory, named, home_only)
        return ApiResponse(200, {"ok": True, "uploaded": [{"name": f.name, "size": f.size} for f in saved]})

    async def memory_files(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"files": await _memory_files(files, policy.agent_workspace)})

    path_param = Param("path", description="A path: absolute, `~/...`, or relative")
    return [
        Route(
            "GET",
            "/api/file",
            read_any,
            "A file from the allowed roots (HOME and /tmp by default; relative paths start at the agent's workspace)",
            query=[path_param],
            responses={
                200: "The file's bytes",
                206: "Part of them (Range)",
                400: "Malformed path",
                403: "Outside the roots",
                404: "Missing",
                416: "Range not satisfiable",
            },
            answer_type=ANY_TYPE,
            headers=[RANGE_HEADER],
        ),
        Route(
            "GET",
            "/api/workspace",
            list_workspace,
            "List a folder inside HOME: `{files, cwd, total, offset, hasMore, truncated}`",
            query=[
                Param("path", description=f"A folder inside HOME (default {DEFAULT_WORKSPACE_PATH})"),
                Param("depth", "integer", "Levels to list", minimum=1, maximum=DEPTH[1]),
                Param("hidden", description="true to show dot-files"),
                Param("offset", "integer", "Entries to skip", minimum=0),
                Param("limit", "integer", "Entries per page", minimum=1, maximum=PAGE[1]),
            ],
            responses={200: "The listing", 403: "Outside HOME", 404: "Missing"},
        ),
        Route(
            "GET",
            "/api/workspace/file",
            read_file,
            "A file inside HOME (text up to 1 MB; images, PDF, audio and video up to 20 MB)",
            query=[path_param],
            responses={
                200: "The file's bytes",
                206: "Part of them (Range)",
                403: "Outside HOME",
                404: "Missing",
                413: "Too large",
                416: "Range not satisfiable",
            },
            answer_type=ANY_TYPE,
            headers=[RANGE_HEADER],
        ),
        Route(
            "PUT",
            "/api/workspace/file",
            write_file,
            "Write UTF-8 text to a file inside HOME, atomically, creating its folders",
            query=[path_param],
            body_schema=TEXT_BODY,
            body_type="text/plain",
            max_body=MAX_TEXT_BYTES,
            responses={200: "`{ok:true}`", 400: "Not UTF-8, or a folder", 403: "Outside HOME"},
        ),
        Route(
            "DELETE",
            "/api/workspace/file",
            delete_file,
            "Delete a file, a link or a folder (recursively) inside HOME: `{ok:true, type}`",
            query=[path_param],
            responses={200: "`{ok:true, type}`", 403: "Outside HOME or protected", 404: "Missing"},
        ),
        Route(
            "POST",
            "/api/workspace/upload",
            upload,
            f"Upload files (multipart field {UPLOAD_FIELD!r}) into a folder inside HOME, never replacing one",
            query=[Param("path", description=f"The folder (default {DEFAULT_WORKSPACE_PATH})")],
            body_schema=FILES_BODY,
            multipart=UPLOAD_LIMITS,
            responses={200: "`{ok:true, uploaded:[{name,size}]}`", 403: "Outside HOME", 413: "Too large"},
        ),
        Route(
            "GET",
            "/api/memory/files",
            memory_files,
            "The agent's memory files (MEMORY.md and memory/**/*.md): `{files:[{path,name,size,modified}]}`",
            responses={200: "The files"},
        ),
    ]


async def _memory_files(files: LocalFiles, workspace: PurePosixPath) -> list[dict[str, Any]]:
    """`MEMORY.md` and `memory/**/*.md` of the agent's workspace, read inside that workspace only (a link out of
    it is left out); absolute paths, for `/api/workspace/file`."""
    roots = (workspace,)
    found: list[dict[str, Any]] = []
    try:
        info = await files.file_info(workspace / "MEMORY.md", roots)
    except (NotFound, Invalid, Forbidden):
        pass
    else:
        found.append(
            {"path": str(workspace / "MEMORY.md"), "name": "MEMORY.md", "size": info.size, "modified": info.modified_ms}
        )
    try:
        listing = await files.list_tree(
            workspace / "memory", roots, depth=MEMORY_DEPTH, hidden=False, max_entries=MAX_MEMORY_FILES
        )
    except (NotFound, Invalid, Forbidden):
        return found
    for entry in listing.entries:
        if not entry.is_dir and entry.name.lower().endswith(".md"):
            path = workspace / "memory" / entry.path
            found.append({"path": str(path), "name": entry.name, "size": entry.size, "modified": entry.modified_ms})
    return found
