"""The aiohttp application: the guards, then one catch-all route that hands every request to the core's router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDictProxy, MultiMapping

from claw_adapters.http.bodies import read_body
from claw_adapters.http.guards import defer_expect, guard_middleware, routed_method
from claw_adapters.http.multipart import StagedForm, multipart_limits, read_multipart
from claw_adapters.http.paths import decoded_path
from claw_adapters.http.protocol import protocol_options
from claw_adapters.http.ratelimit import FailureLimiter
from claw_adapters.http.responses import render, render_any
from claw_adapters.http.settings import HttpSettings
from claw_adapters.http.staging import StagingArea
from claw_core.api.contract import DEFAULT_MAX_BODY, ApiRequest, Router, error_response
from claw_core.errors import ClawError

__all__ = ["LIMITER_KEY", "SETTINGS_KEY", "create_app"]

SETTINGS_KEY = web.AppKey("claw_http_settings", HttpSettings)
"""Where `create_app` leaves its settings, for `start_http` to configure the connections with."""

LIMITER_KEY = web.AppKey("claw_http_limiter", FailureLimiter)
"""The failed-authentication limiter, for routes that authenticate on their own to report their failures to."""

_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})


def create_app(router: Router, settings: HttpSettings, *, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """An aiohttp application serving `router` behind the guards.

    `extra_routes` (the browser WebSocket relay, say) are matched before the catch-all that feeds the router and
    pass through the same guards: Host, Origin, token, limiter. Routes added to the app afterwards would be shadowed
    by the catch-all, so they must come through here.

    When a route takes multipart bodies, the app owns a staging area for their files (`settings.staging_dir`, or a
    private temporary folder), opened when the app starts and emptied (or removed) when it stops.
    """
    limiter = FailureLimiter(settings.auth_failures_per_minute, max_clients=settings.max_tracked_clients)
    app = web.Application(
        middlewares=[guard_middleware(router, settings, limiter)],
        client_max_size=max((route.max_body for route in router.routes), default=DEFAULT_MAX_BODY),
        handler_args=protocol_options(settings),
    )
    app[SETTINGS_KEY] = settings
    app[LIMITER_KEY] = limiter
    for route in extra_routes:
        web.RouteDef(
            route.method, route.path, route.handler, {"expect_handler": defer_expect, **route.kwargs}
        ).register(app.router)
    staging = StagingArea(settings.staging_dir)
    if any(route.multipart is not None for route in router.routes):
        app.cleanup_ctx.append(_staging_context(staging))
    app.router.add_route("*", "/{tail:.*}", _api_handler(router, settings, staging), expect_handler=defer_expect)
    return app


def _staging_context(staging: StagingArea) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(staging.open)
        yield
        await asyncio.to_thread(staging.close)

    return context


def _api_handler(router: Router, settings: HttpSettings, staging: StagingArea) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        method = routed_method(request)  # HEAD as GET: aiohttp leaves the body out, and keeps a file's length
        staged: StagedForm | None = None
        body = b""
        try:
            path = decoded_path(request.raw_path)
            limits = multipart_limits(router, method, path)
            if limits is None:
                body = await read_body(request, router.max_body_for(method, path), settings.body_timeout_s)
            else:
                staged = await read_multipart(request, limits, staging, settings.upload_timeout_s)
        except ClawError as error:
            response = render(error_response(error))
            response.force_close()
            return response
        api_request = ApiRequest(
            method=method,
            path=path,
            query=_first_values(request.query),
            headers=_plain_headers(request.headers),
            body=body,
            files=tuple(staged.files) if staged is not None else (),
            form=dict(staged.form) if staged is not None else {},
        )
        try:
            answer = await router.dispatch(api_request)
        finally:
            if staged is not None:
                staged.discard()  # what the handler did not take over, also when it failed or was cancelled
        return render_any(answer)

    return handle


def _first_values(query: MultiMapping[str]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in query.items():
        first.setdefault(name, value)
    return first


def _plain_headers(headers: CIMultiDictProxy[str]) -> Mapping[str, str]:
    """Lower-cased names, repeated fields joined with `, ` (RFC 9110 5.3). The credentials stay in the transport:
    the token was checked by the guards and handlers have no use for it (nor for cookies, which browsers attach
    for other local apps too)."""
    plain: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _CREDENTIAL_HEADERS:
            continue
        plain[key] = f"{plain[key]}, {value}" if key in plain else value
    return plain
