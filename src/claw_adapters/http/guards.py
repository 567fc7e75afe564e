"""The middleware every request passes through, WebSocket upgrades included, before any handler runs.

In order: Host allowlist (DNS rebinding), Origin three-state (cross-site requests and WebSocket hijacking), path
decoding, CORS preflight, the failed-authentication limiter, bearer-token authentication, body limits. Whatever
happens behind it, the client gets a JSON error and never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import math

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from claw_adapters.http.addresses import client_key, host_allowed
from claw_adapters.http.bodies import too_large
from claw_adapters.http.multipart import body_limit
from claw_adapters.http.paths import decoded_path
from claw_adapters.http.ratelimit import FailureLimiter
from claw_adapters.http.responses import error_message, json_error, render, secure_headers
from claw_adapters.http.settings import HttpSettings
from claw_core.api.contract import Router, error_response
from claw_core.errors import ClawError

__all__ = ["CORS_ALLOW_HEADERS", "CORS_ALLOW_METHODS", "defer_expect", "guard_middleware", "routed_method"]

log = logging.getLogger(__name__)

CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-Workspace, Range"


def guard_middleware(router: Router, settings: HttpSettings, limiter: FailureLimiter) -> Middleware:
    """The guard middleware for an app serving `router`: it asks the router which routes need the token and how
    large their bodies may be, so those rules are written once, in the route table."""
    guards = _Guards(router, settings, limiter)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = guards.allowed_origin(request)
        try:
            response = await guards.run(request, handler, origin)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = json_error(error.status, error_message(error.status), _kept_headers(error))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.rel_url.raw_path)
            response = json_error(500, "Internal error")
        secure_headers(response, origin)
        return response

    return middleware


class _Guards:
    """The checks, each a method answering a refusal or None; `run` applies them in order."""

    def __init__(self, router: Router, settings: HttpSettings, limiter: FailureLimiter) -> None:
        self._router = router
        self._settings = settings
        self._limiter = limiter
        self._token = settings.token.encode()
        self._origins = {origin.lower() for origin in settings.cors_origins}

    def allowed_origin(self, request: web.Request) -> str | None:
        """The request's `Origin` when it is allowlisted (exactly one, compared case-insensitively), else None."""
        values = request.headers.getall(hdrs.ORIGIN, [])
        if len(values) == 1 and values[0].lower() in self._origins:
            return values[0]
        return None

    async def run(self, request: web.Request, handler: Handler, origin: str | None) -> web.StreamResponse:
        refusal = self._check_host_and_origin(request, origin)
        if refusal is not None:
            return refusal
        try:
            path = decoded_path(request.raw_path)
        except ClawError as error:
            return render(error_response(error))
        if (
            request.method == hdrs.METH_OPTIONS
            and origin is not None
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            return _preflight(request, self._settings)
        refusal = self._check_credentials(request, path)
        if refusal is None:
            refusal = await self._check_body(request, path)
        if refusal is not None:
            return refusal
        return await handler(request)

    def _check_host_and_origin(self, request: web.Request, origin: str | None) -> web.Response | None:
        """DNS rebinding (a foreign Host) and cross-site calls (a foreign or `null` Origin; absent is fine, the
        token is still required). Such a client has no business here: its connection is closed after the answer."""
        hosts = request.headers.getall(hdrs.HOST, [])
        if len(hosts) != 1 or not host_allowed(hosts[0], self._settings.allowed_hosts):
            refusal = "Host not allowed"
        elif origin is None and hdrs.ORIGIN in request.headers:
            refusal = "Origin not allowed"
        else:
            return None
        log.info("refused %s: %s", request.method, refusal)
        response = json_error(403, refusal)
        response.force_close()
        return response

    def _check_credentials(self, request: web.Request, path: str) -> web.Response | None:
        """A client that used up its failure budget is refused whatever it sends, so it cannot keep guessing."""
        client = client_key(request.remote)
        retry_after = self._limiter.retry_after(client)
        if retry_after is not None:
            return json_error(429, "Too many failed attempts", {"Retry-After": str(max(1, math.ceil(retry_after)))})
        needs_token = path not in self._settings.self_authenticating_paths and self._router.requires_auth(
            routed_method(request), path
        )
        if needs_token and not self._authorized(request):
            self._limiter.record_failure(client)
            return json_error(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        return None

    def _authorized(self, request: web.Request) -> bool:
        """Only `Authorization: Bearer <token>`, compared in constant time; never a query parameter or a cookie."""
        values = request.headers.getall(hdrs.AUTHORIZATION, [])
        if len(values) != 1:
            return False
        scheme, _, credentials = values[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), self._token)

    async def _check_body(self, request: web.Request, path: str) -> web.Response | None:
        """Refuse a body before reading a byte of it, and only then answer `Expect: 100-continue`."""
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        if encoding != "identity":
            return json_error(415, "Content-Encoding not supported")
        limit = body_limit(self._router, routed_method(request), path)
        if request.content_length is not None and request.content_length > limit:
            response = render(error_response(too_large(limit)))
            response.force_close()
            return response
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.strip().lower() != "100-continue":
                return json_error(417, "Expectation failed")
            if request.version >= (1, 1):
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None


async def defer_expect(request: web.Request) -> None:
    """An `expect_handler` that sends nothing: aiohttp's default answers `100 Continue` before any middleware runs,
    inviting a client from a refused Host or with an oversized body to send it. The guards answer it instead."""


def _preflight(request: web.Request, settings: HttpSettings) -> web.Response:
    """The answer to a preflight from an allowlisted origin (the allow-origin header itself is added with the
    others). Chrome asks a page served from the internet for leave to reach a local address with
    `Access-Control-Request-Private-Network`; an allowlisted origin gets it."""
    headers = {
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Max-Age": str(settings.cors_max_age_s),
    }
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


def _kept_headers(error: web.HTTPException) -> CIMultiDict[str]:
    """An aiohttp HTTP error's headers (`Allow` of a 405, say) without those describing its text body."""
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in error.headers.items():
        if name.lower() not in {"content-type", "content-length"}:
            kept.add(name, value)
    return kept


def routed_method(request: web.Request) -> str:
    """The method the router answers for: HEAD is GET without the body (aiohttp leaves the body out), so it is
    guarded, limited and routed exactly as GET."""
    return hdrs.METH_GET if request.method == hdrs.METH_HEAD else request.method
