"""The thread upload routes: files attached to a thread over multipart, and each one served back by its exact name.

Uploading answers what the ClawChats web app expects (`{files:[{id, filename, path, mimeType, size}]}`, 200).
Serving differs from the original on purpose: it needs the token like every route (see ADR 0007), finds a file
by its exact stored name `<id><ext>` only (never by an id prefix), serves it with the type its extension says,
and inline only for kinds a browser shows without running anything (images other than SVG, PDF, audio, video).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from claw_core.api.contract import (
    ANY_TYPE,
    RANGE_HEADER,
    ApiRequest,
    ApiResponse,
    FileBody,
    MultipartLimits,
    Param,
    ReceivedFile,
    Route,
)
from claw_core.api.schemas import FILES_BODY
from claw_core.errors import Invalid
from claw_core.model import Workspace
from claw_core.ports import StoredUpload, UploadStore
from claw_core.services.history import HistoryService
from claw_core.services.workspaces import WorkspaceService

__all__ = ["THREAD_UPLOAD_LIMITS", "UPLOAD_FIELD", "UploadsApi", "content_disposition", "upload_routes"]

MIB = 1024 * 1024
THREAD_UPLOAD_LIMITS = MultipartLimits(max_file_bytes=20 * MIB, max_total_bytes=100 * MIB, max_files=20)
UPLOAD_FIELD = "files"
"""The form field the web app sends its files in."""

_INLINE_PREFIXES = ("image/", "audio/", "video/")
_NEVER_INLINE = frozenset({"image/svg+xml"})
"""SVG is a document that can carry script: it is downloaded, never shown from our origin."""
_RFC5987_SAFE = "!#$&+-.^_`|~"
"""The `attr-char`s of RFC 5987 besides letters and digits: what `filename*` may carry unescaped."""


@dataclass(frozen=True, slots=True)
class UploadsApi:
    """What the upload routes need: the workspaces (to resolve X-Workspace), the history (the thread must exist)
    and the store."""

    workspaces: WorkspaceService
    history: HistoryService
    uploads: UploadStore


def content_disposition(mime_type: str, file_name: str | None) -> str:
    """`inline` for what a browser displays inertly, `attachment` otherwise, with the user's file name as
    `filename*=UTF-8''<percent-encoded>` when it is known (RFC 6266)."""
    inline = mime_type == "application/pdf" or (
        mime_type.startswith(_INLINE_PREFIXES) and mime_type not in _NEVER_INLINE
    )
    kind = "inline" if inline else "attachment"
    if not file_name:
        return kind
    return f"{kind}; filename*=UTF-8''{quote(file_name, safe=_RFC5987_SAFE)}"


def upload_routes(api: UploadsApi, *, limits: MultipartLimits = THREAD_UPLOAD_LIMITS) -> list[Route]:
    async def upload(request: ApiRequest) -> ApiResponse:
        workspace = api.workspaces.resolve(request.workspace)
        thread = await api.history.get_thread(workspace, request.path_params["id"])
        files = _uploaded_files(request.files)
        stored = [
            await api.uploads.adopt(
                workspace.name, thread.id, part.staged_path, mime_type=part.content_type, file_name=part.filename
            )
            for part in files
        ]
        return ApiResponse(200, {"files": [_described(upload) for upload in stored]})

    async def serve(request: ApiRequest) -> ApiResponse:
        workspace = _served_workspace(api, request)
        params = request.path_params
        upload = await api.uploads.locate(workspace.name, params["threadId"], params["fileId"])
        disposition = content_disposition(upload.mime_type, upload.file_name)
        body = FileBody(upload.path, upload.mime_type, disposition, device=upload.device, inode=upload.inode)
        return ApiResponse(200, body)

    return [
        Route(
            "POST",
            "/api/threads/{id}/upload",
            upload,
            f"Attach files to a thread (multipart, field `{UPLOAD_FIELD}`)",
            workspace_header=True,
            body_schema=FILES_BODY,
            responses={404: "Thread not found", 413: "too large", 415: "not multipart/form-data"},
            multipart=limits,
        ),
        Route(
            "GET",
            "/api/uploads/{threadId}/{fileId}",
            serve,
            "A file attached to a thread, by its exact stored name (Range supported)",
            workspace_header=True,
            query=(Param("workspace", description="the workspace, for links that cannot send X-Workspace"),),
            responses={200: "the file", 206: "part of the file", 404: "File not found", 416: "bad range"},
            answer_type=ANY_TYPE,
            headers=[RANGE_HEADER],
        ),
    ]


def _uploaded_files(files: Sequence[ReceivedFile]) -> list[ReceivedFile]:
    received = list(files)
    if any(part.field != UPLOAD_FIELD for part in received):
        raise Invalid(f"Files must be sent in the '{UPLOAD_FIELD}' field")
    if not received:
        raise Invalid("No files uploaded")
    return received


def _served_workspace(api: UploadsApi, request: ApiRequest) -> Workspace:
    """X-Workspace, or `?workspace=` for a link (an `<a href>` or a fetch built from the upload's path); both
    naming different workspaces is refused rather than guessed."""
    header, query = request.workspace, request.query.get("workspace") or None
    if header is not None and query is not None and header != query:
        raise Invalid("X-Workspace and ?workspace= name different workspaces")
    return api.workspaces.resolve(header or query)


def _described(upload: StoredUpload) -> dict[str, object]:
    return {
        "id": upload.id,
        "filename": upload.file_name or upload.url.rsplit("/", 1)[-1],
        "path": upload.url,
        "mimeType": upload.mime_type,
        "size": upload.size,
    }
