"""Reading a `multipart/form-data` body for a route with `MultipartLimits`: file parts streamed into staging files,
plain fields kept as text, and every limit enforced while the bytes arrive, never after.

A body over a limit is refused (413) as soon as the byte that crosses it is read, and whatever was staged for it
is deleted; so is everything staged for a body that fails in any other way (malformed, cut off, too slow). The
whole body is also held to an envelope (the files, the fields, a boundary and headers per part), which the guards
apply to a declared `Content-Length` before a byte is read and this reader to what actually arrives.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader, parse_content_disposition

from claw_adapters.http.bodies import BodyTimeout
from claw_adapters.http.staging import StagingArea, discard
from claw_core.api.contract import MultipartLimits, ReceivedFile, Router
from claw_core.errors import ClawError, Invalid, TooLarge

__all__ = [
    "MAX_FORM_FIELDS",
    "PART_ALLOWANCE",
    "StagedForm",
    "UnsupportedMediaType",
    "body_limit",
    "envelope_bytes",
    "multipart_limits",
    "read_multipart",
]

MAX_FORM_FIELDS = 32
"""Plain (non-file) fields a multipart body may have."""
PART_ALLOWANCE = 8 * 1024
"""Bytes allowed per part for its boundary and headers (a browser sends about 200)."""

_READ_CHUNK = 256 * 1024
_WRITE_BATCH = 1024 * 1024
_DEFAULT_MEDIA_TYPE = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_IDENTITY_TRANSFER = frozenset({"binary", "8bit", "7bit"})
_BROWSER_ESCAPES = {"%22": '"', "%0D": "\r", "%0A": "\n"}
_BROWSER_ESCAPE = re.compile("%22|%0[dDaA]")


class UnsupportedMediaType(ClawError):
    """The body is not `multipart/form-data`, or a part is encoded in a way we do not decode."""

    status = 415


@dataclass
class StagedForm:
    """What a multipart body held: its file parts (staged on disk) and its plain fields (first value of each)."""

    files: list[ReceivedFile] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    staged_paths: list[str] = field(default_factory=list)
    """Every staging file made for this body, complete or not: what `discard` deletes."""

    def discard(self) -> None:
        """Delete every staged file a handler did not move away. Synchronous (an unlink each), so it also runs
        to the end in a `finally` of a cancelled task."""
        for path in self.staged_paths:
            discard(path)


def multipart_limits(router: Router, method: str, path: str) -> MultipartLimits | None:
    """The limits of the route a request will reach, when that route takes multipart bodies."""
    route = router.route_for(method, path)
    return None if route is None else route.multipart


def envelope_bytes(limits: MultipartLimits) -> int:
    """The most a whole multipart body may carry: all its files, all its fields, a boundary and headers per part."""
    parts = limits.max_files + MAX_FORM_FIELDS + 1
    return limits.max_total_bytes + MAX_FORM_FIELDS * limits.max_field_bytes + parts * PART_ALLOWANCE


def body_limit(router: Router, method: str, path: str) -> int:
    """The largest body a request may declare: the multipart envelope on a multipart route, else the route's
    `max_body` (its own limit for JSON or raw bodies)."""
    limits = multipart_limits(router, method, path)
    return envelope_bytes(limits) if limits is not None else router.max_body_for(method, path)


async def read_multipart(
    request: web.Request, limits: MultipartLimits, staging: StagingArea, timeout_s: float
) -> StagedForm:
    """Read the whole body within `limits` and `timeout_s` (an absolute deadline). Raise UnsupportedMediaType (415)
    for another content type, TooLarge (413) past a limit, BodyTimeout (408), Invalid (400) for a malformed or
    cut-off body; nothing stays staged after any of these."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Expected a multipart/form-data body")
    form = StagedForm()
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await _FormReader(request, limits, staging, form).read()
        except TimeoutError:
            raise BodyTimeout("Request body timeout") from None
        except (web.RequestPayloadError, ConnectionError):
            raise Invalid("Incomplete or malformed body") from None
        except (ValueError, HttpProcessingError):
            raise Invalid("Malformed multipart body") from None
    except BaseException:
        form.discard()
        raise
    return form


class _FormReader:
    def __init__(self, request: web.Request, limits: MultipartLimits, staging: StagingArea, form: StagedForm) -> None:
        self._request = request
        self._limits = limits
        self._staging = staging
        self._form = form
        self._envelope = envelope_bytes(limits)
        self._fields = 0
        self._file_bytes = 0

    async def read(self) -> None:
        reader = await self._request.multipart()
        while (part := await reader.next()) is not None:
            self._check_received()
            if not isinstance(part, BodyPartReader):
                raise Invalid("Nested multipart bodies are not supported")
            _check_encoding(part)
            name = part.name
            if name is None:
                raise Invalid("A multipart part has no name")
            is_file, file_name = _file_name(part)
            if is_file:
                await self._read_file(part, name, file_name)
            else:
                await self._read_field(part, name)
        self._check_received()

    def _check_received(self) -> None:
        """What arrived so far (buffered included), against the envelope: a chunked body declares no length."""
        if self._request.content.total_bytes > self._envelope:
            raise TooLarge(f"Body larger than {self._envelope} bytes")

    async def _read_field(self, part: BodyPartReader, name: str) -> None:
        if self._fields >= MAX_FORM_FIELDS:
            raise TooLarge(f"More than {MAX_FORM_FIELDS} form fields")
        self._fields += 1
        limit = self._limits.max_field_bytes
        value = bytearray()
        while chunk := await part.read_chunk(_READ_CHUNK):
            value += chunk
            if len(value) > limit:
                raise TooLarge(f"Form field larger than {limit} bytes")
            self._check_received()
        try:
            self._form.form.setdefault(name, value.decode("utf-8"))
        except UnicodeDecodeError:
            raise Invalid("Form fields must be UTF-8") from None

    async def _read_file(self, part: BodyPartReader, name: str, file_name: str | None) -> None:
        limits = self._limits
        if len(self._form.files) >= limits.max_files:
            raise TooLarge(f"More than {limits.max_files} files")
        fd, path = self._staging.create()
        self._form.staged_paths.append(path)
        writer = _StagedWriter(fd)
        size = 0
        pending = bytearray()
        try:
            while chunk := await part.read_chunk(_READ_CHUNK):
                size += len(chunk)
                self._file_bytes += len(chunk)
                if size > limits.max_file_bytes:
                    raise TooLarge(f"File larger than {limits.max_file_bytes} bytes")
                if self._file_bytes > limits.max_total_bytes:
                    raise TooLarge(f"Files larger than {limits.max_total_bytes} bytes in all")
                self._check_received()
                pending += chunk
                if len(pending) >= _WRITE_BATCH:
                    await writer.write(bytes(pending))
                    pending.clear()
            if pending:
                await writer.write(bytes(pending))
        finally:
            writer.close()
        self._form.files.append(
            ReceivedFile(
                field=name,
                filename=file_name,
                content_type=_media_type(part),
                size=size,
                staged_path=path,
            )
        )


class _StagedWriter:
    """Writes a staging file from a worker thread. Its descriptor is closed only once no write is in flight, even
    when the reading task is cancelled mid-write: a descriptor closed under a running write could be reused by
    another file, which would then get the write."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        self._pending = asyncio.get_running_loop().run_in_executor(None, _write_all, self._fd, data)
        await asyncio.shield(self._pending)

    def close(self) -> None:
        pending = self._pending
        if pending is None or pending.done():
            os.close(self._fd)
        else:
            pending.add_done_callback(self._close_after)

    def _close_after(self, write: asyncio.Future[None]) -> None:
        if not write.cancelled():
            write.exception()  # retrieved: the request already failed for another reason
        os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _file_name(part: BodyPartReader) -> tuple[bool, str | None]:
    """Whether the part is a file (its Content-Disposition names one, even an empty or undecodable name), and the
    name. An RFC 5987 `filename*` is decoded by aiohttp. A plain `filename` is what browsers send: the name in
    quotes as it is, with only `"`, CR and LF escaped as `%22`, `%0D`, `%0A` (the HTML standard's form-data
    encoding); those three are undone, and any other `%` is the name's own."""
    _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
    if not any(key == "filename" or key.startswith("filename*") for key in params):
        return False, None
    name = part.filename
    if name is not None and "filename" in params and not any(key.startswith("filename*") for key in params):
        name = _BROWSER_ESCAPE.sub(lambda escape: _BROWSER_ESCAPES[escape.group(0).upper()], name)
    return True, name


def _check_encoding(part: BodyPartReader) -> None:
    """Browsers send parts as they are; a base64 or compressed part would grow past the limits when decoded."""
    transfer = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "binary").strip().lower()
    encoding = part.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if transfer not in _IDENTITY_TRANSFER or encoding != "identity":
        raise UnsupportedMediaType("Encoded multipart parts are not supported")


def _media_type(part: BodyPartReader) -> str:
    """The part's declared type without parameters, lower-cased; `application/octet-stream` when it is missing or
    not a plausible `type/subtype`."""
    declared = part.headers.get(hdrs.CONTENT_TYPE, "").split(";", 1)[0].strip().lower()
    return declared if _MEDIA_TYPE.fullmatch(declared) else _DEFAULT_MEDIA_TYPE
