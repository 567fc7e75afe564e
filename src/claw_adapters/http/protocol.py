"""What happens below the application: per-connection limits, JSON for aiohttp's own parse errors, the access log.

aiohttp answers a request it cannot parse (garbage request line, bad method token, malformed or oversized
headers) itself, in text, before any middleware runs; `GuardedProtocol` answers those in JSON instead and caps the
connections a client may hold open. `protocol_options` gives every aiohttp runner the header limits and deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from claw_adapters.http.addresses import client_key
from claw_adapters.http.responses import error_message, json_error
from claw_adapters.http.settings import HttpSettings

__all__ = ["ACCESS_LOGGER", "AccessLog", "GuardedProtocol", "GuardedServer", "protocol_options"]

ACCESS_LOGGER = logging.getLogger("claw_adapters.http.access")
log = logging.getLogger(__name__)

_LINGERING_S = 2.0
"""How long an unread (refused) body is drained so the client can read the answer before the connection closes."""


class AccessLog(AbstractAccessLogger):
    """One line per request: method, path, status, duration. Never headers (the token travels in one) and never
    the query string (it may carry secrets a client put there by mistake)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d %.1fms", request.method, request.rel_url.raw_path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def protocol_options(settings: HttpSettings) -> dict[str, Any]:
    """Keyword arguments for aiohttp's `RequestHandler` (an Application's `handler_args`).

    aiohttp's keep-alive timer is armed when a connection opens and after each response, is not pushed back by
    incoming bytes, and closes the connection only while no complete request has arrived: it is the absolute
    header deadline `header_timeout_s` promises. Request bodies are never decompressed (the guards refuse any
    `Content-Encoding`), so a small compressed body cannot expand past a limit.
    """
    return {
        "keepalive_timeout": settings.header_timeout_s,
        "max_line_size": settings.max_header_bytes,
        "max_field_size": settings.max_header_bytes,
        "max_headers": settings.max_headers,
        "lingering_time": _LINGERING_S,
        "auto_decompress": False,
        "access_log_class": AccessLog,
        "access_log": ACCESS_LOGGER,
    }


class GuardedServer(web.Server):
    """aiohttp's low-level server, making `GuardedProtocol` connections and counting them per client."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        max_connections_per_client: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._protocol_kwargs = {
            name: value
            for name, value in kwargs.items()
            if name not in {"request_factory", "handler_cancellation", "loop"}
        }
        self._event_loop = kwargs.get("loop") or asyncio.get_running_loop()
        self._max_per_client = max_connections_per_client
        self._open: Counter[str] = Counter()

    def __call__(self) -> web.RequestHandler:
        return GuardedProtocol(self, loop=self._event_loop, **self._protocol_kwargs)

    def admit(self, client: str) -> bool:
        """Count a new connection of `client`; False (and not counted) when it already holds the maximum."""
        if self._open[client] >= self._max_per_client:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class GuardedProtocol(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a per-client connection cap and JSON answers to unparsable requests."""

    __slots__ = ("_client", "_guarded_server")

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guarded_server = manager
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        client = client_key(str(peer[0]) if isinstance(peer, tuple) else None)
        if self._guarded_server.admit(client):
            self._client = client
        else:
            log.info("closed a connection: too many open connections from one client")
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is not None:
            self._guarded_server.release(self._client)
            self._client = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """JSON instead of aiohttp's text page, with a fixed message: a parse error's text quotes the request,
        and a 500 here means the guards themselves failed, whose details belong in the server log only."""
        if status >= 500:
            log.error("error handling a request", exc_info=exc)
        else:
            log.info("refused an unparsable request (%s)", type(exc).__name__ if exc else status)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = json_error(status, error_message(status))
        response.force_close()
        return response
