"""From the core's `ApiResponse` (and the transport's own refusals) to aiohttp responses, always JSON errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Mapping
from http import HTTPStatus

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_fileresponse import _FileResponseResult
from multidict import CIMultiDict

from claw_core.api.contract import ApiResponse, FileBody

__all__ = [
    "JSON_CONTENT_TYPE",
    "encode_json",
    "error_message",
    "json_error",
    "render",
    "render_any",
    "render_file",
    "secure_headers",
]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_NO_BODY = frozenset({204, 304})
_MESSAGES = {400: "Bad request", 500: "Internal error"}


def error_message(status: int) -> str:
    """A fixed, client-safe message for a status: never an exception's text, which may quote the request."""
    if status in _MESSAGES:
        return _MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def encode_json(value: object) -> bytes:
    """orjson is ten times faster than the standard library on a page of messages; it refuses a few values that
    JSON allows (integers beyond 64 bits, which a client may have stored in metadata), and those fall back."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"error": message}` with `status`, the one shape every refusal of this transport has."""
    body = encode_json({"error": message})
    merged: CIMultiDict[str] = CIMultiDict(headers or {})
    merged["Content-Type"] = JSON_CONTENT_TYPE
    return web.Response(status=status, body=body, headers=merged)


def render(response: ApiResponse) -> web.Response:
    """Raw bytes go out with the response's own content type; anything else is JSON in UTF-8."""
    if isinstance(response.body, bytes):
        body, content_type = response.body, response.content_type
    else:
        body = encode_json(response.body)
        content_type = response.content_type
        if "charset=" not in content_type.lower():
            content_type = f"{content_type}; charset=utf-8"
    if response.status in _NO_BODY:
        body = b""
    headers: CIMultiDict[str] = CIMultiDict(response.headers)
    headers["Content-Type"] = content_type
    return web.Response(status=response.status, body=body, headers=headers)


def render_any(response: ApiResponse) -> web.StreamResponse:
    """`render`, or `render_file` for a `FileBody`."""
    if isinstance(response.body, FileBody):
        return render_file(response, response.body)
    return render(response)


def render_file(response: ApiResponse, body: FileBody) -> web.FileResponse:
    """The file streamed by aiohttp (`Content-Length`, `Range` answered with 206 and `Content-Range`, an
    unsatisfiable range with 416 `{error}`, `ETag`/`Last-Modified` with 304 for conditional requests, HEAD without
    a body), with the handler's `Content-Type` and `Content-Disposition`; the guards add `nosniff` and the sandboxing
    CSP."""
    headers: CIMultiDict[str] = CIMultiDict(response.headers)
    headers["Content-Type"] = body.content_type
    if body.disposition is not None:
        headers["Content-Disposition"] = body.disposition
    return _ExactFileResponse(body, status=response.status, headers=headers)


class _JsonFileErrors(web.StreamResponse):
    """Placed between aiohttp's FileResponse and StreamResponse (see `_ExactFileResponse`), this sees the refusals
    FileResponse makes up on its own (416 for an unsatisfiable or malformed Range, 412 for a failed precondition,
    403/404 for a file gone or changed since the handler checked it), which would go out with an empty body and
    the file's type, and gives them the `{error}` JSON body every error of this API has."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.status < 400 or self.prepared:
            return await super().prepare(request)
        body = encode_json({"error": error_message(self.status)})
        self.headers["Content-Type"] = JSON_CONTENT_TYPE
        self.headers.popall("Content-Disposition", None)
        self.content_length = len(body)
        writer = await super().prepare(request)
        if request.method != "HEAD":
            await self.write(body)
        return writer


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _ExactFileResponse(web.FileResponse, _JsonFileErrors):
    """aiohttp's FileResponse serving exactly the file the handler checked. Left to itself it would serve a `.gz`
    or `.br` sibling instead when `Accept-Encoding` allows (other bytes than the handler checked, and a `Vary` that
    replaces ours), `stat` the path, then open it again by name following every link, and block a worker thread
    for good on a FIFO. Here the open step (`_make_response`, run in a worker thread) is replaced: the path is
    opened once, with `O_NOFOLLOW | O_NONBLOCK`, `fstat`ed, refused (403) unless it is a regular file and, when the
    handler said which, the very file it checked (same device and inode: a file or a folder on the way swapped
    since the check is another file), and that descriptor is what is streamed. aiohttp's own code then answers
    ranges, conditional requests and HEAD from it."""

    def __init__(self, body: FileBody, *, status: int, headers: CIMultiDict[str]) -> None:
        super().__init__(body.path, status=status, headers=headers)
        self._checked = None if body.device is None or body.inode is None else (body.device, body.inode)

    def _make_response(
        self, request: web.BaseRequest, accept_encoding: str
    ) -> tuple[_FileResponseResult, io.BufferedReader | None, os.stat_result, str | None]:
        fd = os.open(self._path, _OPEN_FLAGS)
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or (
                self._checked is not None and (found.st_dev, found.st_ino) != self._checked
            ):
                os.close(fd)
                return _FileResponseResult.NOT_ACCEPTABLE, None, found, None
            result = _precondition(request, found)
            if result is not _FileResponseResult.SEND_FILE:
                os.close(fd)
                return result, None, found, None
            return result, open(fd, "rb", closefd=True), found, None  # aiohttp closes it
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise


def _precondition(request: web.BaseRequest, found: os.stat_result) -> _FileResponseResult:
    """aiohttp's own reading of `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since`
    (RFC 9110 section 13.2.2), on the opened file's `fstat`."""
    etag = f"{found.st_mtime_ns:x}-{found.st_size:x}"
    if_match = request.if_match
    if if_match is not None and not web.FileResponse._etag_match(etag, if_match, weak=False):
        return _FileResponseResult.PRE_CONDITION_FAILED
    unmodified_since = request.if_unmodified_since
    if unmodified_since is not None and if_match is None and found.st_mtime > unmodified_since.timestamp():
        return _FileResponseResult.PRE_CONDITION_FAILED
    if_none_match = request.if_none_match
    if if_none_match is not None and web.FileResponse._etag_match(etag, if_none_match, weak=True):
        return _FileResponseResult.NOT_MODIFIED
    modified_since = request.if_modified_since
    if modified_since is not None and if_none_match is None and found.st_mtime <= modified_since.timestamp():
        return _FileResponseResult.NOT_MODIFIED
    return _FileResponseResult.SEND_FILE


def secure_headers(response: web.StreamResponse, allowed_origin: str | None) -> None:
    """Headers every response carries: `Vary: Origin` (the answer depends on it), the CORS allow header for an
    allowlisted origin only (never `*`), and the headers that stop a served file from being sniffed into a page
    or cached by the browser."""
    if response.prepared:
        return
    headers = response.headers
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in {part.strip().lower() for part in vary.split(",")}:
        headers["Vary"] = f"{vary}, Origin"
    if allowed_origin is not None:
        headers["Access-Control-Allow-Origin"] = allowed_origin
        headers["Access-Control-Expose-Headers"] = (
            "Retry-After, WWW-Authenticate, Content-Disposition, Content-Range, Accept-Ranges"
        )
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
