"""From the core's `ApiResponse` (and the transport's own refusals) to aiohttp responses, always JSON errors."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
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
    return _ExactFileResponse(body.path, status=response.status, headers=headers)


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


class _ExactFileResponse(web.FileResponse, _JsonFileErrors):
    """aiohttp's FileResponse serving exactly the path it was given. Left to itself it would serve a `.gz` or
    `.br` sibling instead when `Accept-Encoding` allows (other bytes than the handler checked, and a `Vary` that
    replaces ours), and follow a link at the last component; here the path is `lstat`ed, must be a regular file
    (else 403) and is never swapped for a sibling."""

    def _get_file_path_stat_encoding(self, accept_encoding: str) -> tuple[Path | None, os.stat_result, str | None]:
        found = self._path.lstat()
        return (self._path if stat.S_ISREG(found.st_mode) else None), found, None


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
