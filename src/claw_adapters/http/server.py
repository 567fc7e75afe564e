"""Starting and stopping the HTTP server on a TCP address."""

from __future__ import annotations

from aiohttp import web

from claw_adapters.http.app import SETTINGS_KEY
from claw_adapters.http.protocol import GuardedServer, protocol_options
from claw_adapters.http.settings import HttpSettings

__all__ = ["HttpServer", "start_http"]


class HttpServer:
    """A running server: where it listens, and how to stop it."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner: web.AppRunner | None = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The base URL of the bound address (never derived from a request's Host header)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish within the settings' `shutdown_timeout_s`, then cancel
        what is left and run the app's cleanup. Stopping twice does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class _GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are `GuardedProtocol`s (JSON parse errors, per-client connection cap)."""

    __slots__ = ("_settings",)

    def __init__(self, app: web.Application, settings: HttpSettings) -> None:
        super().__init__(app, shutdown_timeout=settings.shutdown_timeout_s)
        self._settings = settings

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            max_connections_per_client=self._settings.max_connections_per_client,
            **protocol_options(self._settings),
        )


async def start_http(app: web.Application, host: str, port: int) -> HttpServer:
    """Serve `app` (made by `create_app`) on `host:port`; port 0 picks a free port, reported by `.port`.

    Pass a literal address: a name such as `localhost` may bind several sockets, each on its own free port.
    """
    settings = app.get(SETTINGS_KEY)
    if settings is None:
        raise TypeError("start_http serves applications made by create_app")
    runner = _GuardedRunner(app, settings)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    return HttpServer(runner, host, bound_port)
