"""The connector as a service with a start and a stop, so it can run from the CLI or be embedded (a plugin host,
a test) and always shut down the same way: stop accepting, finish in-flight requests, close the databases."""

from __future__ import annotations

import logging
import time

from claw_adapters.http import HttpServer, HttpSettings, create_app, start_http
from claw_adapters.http.websocket import browser_relay_route
from claw_app.container import Container, build_container
from claw_app.settings import Settings
from claw_core.api.contract import Router
from claw_core.api.file_routes import file_routes
from claw_core.api.gateway_routes import gateway_routes
from claw_core.api.history_routes import HistoryApi, history_routes
from claw_core.api.memory_routes import MemoryApi, memory_routes
from claw_core.api.router import build_router
from claw_core.api.upload_routes import UploadsApi, upload_routes

__all__ = ["ConnectorService"]

log = logging.getLogger(__name__)

UPLOAD_STAGING_DIR = "uploads-staging"
"""Under the data folder: where multipart uploads stream to before a handler moves them into the uploads."""

RELAY_PATHS = ("/", "/ws")
"""Where browsers open the gateway relay WebSocket: `/` as on the gateway itself, `/ws` as an explicit alias."""


class ConnectorService:
    def __init__(self, settings: Settings, container: Container | None = None) -> None:
        if settings.auth_token is None:
            raise ValueError("the connector needs an API token (see claw_app.settings.ensure_auth_token)")
        self.settings = settings
        self.container = container or build_container(settings)
        self._http: HttpServer | None = None

    def router(self) -> Router:
        container = self.container
        api = HistoryApi(
            workspaces=container.workspaces(),
            history=container.history(),
            transfer=container.transfer(),
            sessions=container.session_janitor(),
            uploads=container.uploads(),
            clock=container.clock(),
            started_monotonic=time.monotonic(),
        )
        return build_router(
            [
                *history_routes(api),
                *upload_routes(UploadsApi(container.workspaces(), container.history(), container.uploads())),
                *gateway_routes(container.gateway()),
                *file_routes(container.file_api()),
                # Last: its `/api/memory/{id}` routes would take any other path under /api/memory/ listed after them.
                *memory_routes(MemoryApi(container.memory_store())),
            ]
        )

    async def start(self) -> str:
        """Open the stores, start relaying the gateway (connecting in the background: the connector serves its
        history with no gateway at all), start serving; returns the URL it listens on."""
        settings = self.settings
        container = self.container
        await container.workspaces().start()
        await container.chat_relay().start()
        await container.session_janitor().start()
        await container.gateway().start()
        if (embedder := container.embedder()) is not None:
            embedder.prefetch_dimensions()  # in the background: the stores read the vector size before embedding
        http_settings = HttpSettings(
            token=settings.auth_token or "",
            allowed_hosts=settings.allowed_hosts,
            cors_origins=settings.cors_origins,
            self_authenticating_paths=RELAY_PATHS,
            # Beside the uploads folder, on its filesystem: taking an uploaded file over is then a rename.
            staging_dir=str(settings.data_dir / UPLOAD_STAGING_DIR),
        )
        relay_routes = [browser_relay_route(path, container.browser_session) for path in RELAY_PATHS]
        app = create_app(self.router(), http_settings, extra_routes=relay_routes)
        self._http = await start_http(app, settings.host, settings.port)
        return self._http.url

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("not started")
        return self._http.port

    async def stop(self) -> None:
        """Idempotent. Stops the HTTP server first so no request touches a closed database."""
        if self._http is not None:
            await self._http.stop()
            self._http = None
        await self.container.chat_relay().close()
        await self.container.session_janitor().close()
        await self.container.gateway().close()
        await self.container.history().close()
        await self.container.history_stores().close()
        await self.container.memory_store().close()
        if (embedder := self.container.embedder()) is not None:
            await embedder.close()
        log.info("connector stopped")
