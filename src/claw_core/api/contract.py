"""The transport-neutral request/response contract and the router every transport dispatches into.

HTTP (aiohttp) and the WebRTC DataChannel `rpc` both turn what they receive into an `ApiRequest`, call
`Router.dispatch`, and render the `ApiResponse`. The route table is therefore written once, and so are the status
codes, the error shapes and the body limits.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claw_core.errors import ClawError, Invalid, NotFound, TooLarge

__all__ = [
    "ANY_TYPE",
    "DEFAULT_MAX_BODY",
    "JSON",
    "RANGE_HEADER",
    "ApiRequest",
    "ApiResponse",
    "FileBody",
    "Handler",
    "MultipartLimits",
    "Param",
    "ReceivedFile",
    "Route",
    "Router",
    "error_response",
]

log = logging.getLogger(__name__)

JSON = "application/json"
ANY_TYPE = "*/*"
"""The `answer_type` of a route that serves files: their own types, which their extensions say."""

DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes a JSON body may have unless its route says otherwise."""


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A file part of a multipart request, which the transport has already streamed to a staging file of its own
    (within the route's `MultipartLimits`). A handler takes it over by moving `staged_path` away; whatever is still
    there when the handler returns is deleted by the transport."""

    field: str
    """The form field it came in."""
    filename: str | None
    """As the client sent it: untrusted, may hold directories, `..` or control characters."""
    content_type: str
    size: int
    staged_path: str


@dataclass(frozen=True, slots=True)
class MultipartLimits:
    """A route that takes `multipart/form-data`: its files reach the handler as `ApiRequest.files`, its other
    fields as `ApiRequest.form`, and the transport refuses (413) what goes beyond these limits while streaming."""

    max_file_bytes: int
    max_total_bytes: int
    max_files: int = 20
    max_field_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class FileBody:
    """A response body that is a file on this machine, which the transport streams (with `Content-Length`, and
    `Range` requests answered with 206) instead of holding it in memory. The handler has checked that `path` may be
    served; `content_type` and `disposition` are its headers."""

    path: str
    content_type: str
    disposition: str | None = None
    """A full `Content-Disposition` value (`inline; filename*=UTF-8''...`), or None for none."""
    device: int | None = None
    inode: int | None = None
    """The file the handler checked (`st_dev`, `st_ino`), when it knows it: the transport opens `path` again and
    refuses to serve anything else (a file or a folder on the way swapped since the check)."""


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names in lower case."""
    body: bytes = b""
    path_params: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[ReceivedFile] = ()
    """The file parts of a multipart request (routes with `multipart` limits only)."""
    form: Mapping[str, str] = field(default_factory=dict)
    """The plain fields of a multipart request."""

    @property
    def workspace(self) -> str | None:
        """The workspace named by `X-Workspace`, if any."""
        return self.headers.get("x-workspace") or None

    def json(self) -> Any:
        """The body parsed as JSON; an empty body is an empty object."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise Invalid("Body is not valid JSON") from None

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise Invalid("Body must be a JSON object")
        return body


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: Any = None
    """A JSON-serialisable value, raw bytes (then `content_type` says what they are; bytes with the JSON
    content type are JSON already encoded, which transports pass on as they are), or a `FileBody`."""
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """A documented query parameter or request header (for the OpenAPI description and fuzzing)."""

    name: str
    kind: str = "string"
    """'string' or 'integer'."""
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None


RANGE_HEADER = Param("Range", description="`bytes=<first>-<last>`: that part of the file (206), 416 when none of it")
"""What a route answering a `FileBody` reads, since the transport serves those with ranges."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    """With `{name}` placeholders, e.g. `/api/threads/{id}`."""
    handler: Handler
    summary: str
    query: Sequence[Param] = ()
    body_schema: Mapping[str, Any] | None = None
    """JSON schema of the request body, or None when the route takes none."""
    responses: Mapping[int, str] = field(default_factory=dict)
    max_body: int = DEFAULT_MAX_BODY
    requires_auth: bool = True
    multipart: MultipartLimits | None = None
    """Set for routes that take `multipart/form-data` (then `max_body` is not what limits them, these are)."""
    body_type: str = JSON
    """The media type `body_schema` describes, for the description (a `multipart` route's is `multipart/form-data`)."""
    answer_type: str = JSON
    """The media type of the success answers, for the description: `*/*` for a route that answers a `FileBody`."""
    workspace_header: bool = False
    """True for a route that acts on one workspace's history: `X-Workspace` names it (absent or empty: the active
    one), and the description lists that header for these routes only."""
    headers: Sequence[Param] = ()
    """Other request headers it reads, for the description."""

    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")


def error_response(error: ClawError) -> ApiResponse:
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return ApiResponse(error.status, {"error": error.message}, headers=headers)


class Router:
    """Finds the route of a request and runs it; every failure becomes `{error}` with a status, never a traceback."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        # A placeholder matches one segment, so a path can only match routes with as many segments as it has.
        self._by_depth: dict[int, list[tuple[Route, re.Pattern[str]]]] = {}
        for route in self.routes:
            self._by_depth.setdefault(route.path.count("/"), []).append((route, route.pattern()))
        # A transport asks for the same request's route several times (token, body limit, dispatch): the last few
        # hundred answers are kept, so each request scans the table once.
        self._found = functools.lru_cache(maxsize=256)(self._scan)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for method and path. Raise NotFound for an unknown path, Invalid(405) for a known path
        with another method."""
        route, params, allowed = self._found(method, path)
        if route is not None:
            return route, dict(params)
        if allowed:
            raise MethodNotAllowed(allowed)
        raise NotFound("Not found")

    def _scan(self, method: str, path: str) -> tuple[Route | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
        """The route and its parameters, or None and the methods the path has under other routes."""
        allowed: list[str] = []
        for route, pattern in self._by_depth.get(path.count("/"), ()):
            found = pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, tuple(found.groupdict().items()), ()
            allowed.append(route.method)
        return None, (), tuple(allowed)

    async def dispatch(self, request: ApiRequest) -> ApiResponse:
        try:
            route, params = self.match(request.method, request.path)
            if len(request.body) > route.max_body:
                raise TooLarge(f"Body larger than {route.max_body} bytes")
            bound = ApiRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=request.body,
                path_params=params,
                files=request.files,
                form=request.form,
            )
            return await route.handler(bound)
        except MethodNotAllowed as error:
            return ApiResponse(405, {"error": "Method not allowed"}, headers={"Allow": ", ".join(error.allowed)})
        except ClawError as error:
            return error_response(error)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return ApiResponse(500, {"error": "Internal error"})

    def route_for(self, method: str, path: str) -> Route | None:
        """The route a request will reach, or None when it reaches none (the transport then lets `dispatch`
        answer 404 or 405)."""
        return self._found(method, path)[0]

    def max_body_for(self, method: str, path: str) -> int:
        """The body limit of the route a request will reach (the default when it reaches none), so a transport
        can refuse an oversized body before reading it."""
        route = self.route_for(method, path)
        return DEFAULT_MAX_BODY if route is None else route.max_body

    def requires_auth(self, method: str, path: str) -> bool:
        route = self.route_for(method, path)
        return route is None or route.requires_auth


class MethodNotAllowed(Exception):
    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__("method not allowed")
        self.allowed = list(allowed)
