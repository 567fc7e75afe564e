"""The browser WebSocket relay: moves text frames between a browser and a `BrowserSession` of the core.

Everything the protocol means lives in `claw_core.services.browser_session`, shared with the DataChannel; this
module only knows WebSockets: the message size limit (an oversized frame closes the socket with 1009 before it
is buffered whole), binary frames refused, heartbeats, one writer at a time, the close code the session chose,
and reporting a wrong token to the failed-authentication limiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import WSMsgType, web

from claw_adapters.http.addresses import client_key
from claw_adapters.http.app import LIMITER_KEY
from claw_core.services.browser_session import AUTH_FAILED, BrowserSession, SessionLimits

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "browser_relay_route"]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = SessionLimits().max_frame_bytes
"""A browser's frame at most (the session announces it as policy.maxPayload): the gateway's own limit, 25 MiB,
plus room for the envelope."""


def browser_relay_route(
    path: str, new_session: Callable[[], BrowserSession], *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> web.RouteDef:
    async def handle(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(max_msg_size=max_message_bytes, heartbeat=30.0, compress=False)
        await socket.prepare(request)
        lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with lock:
                await socket.send_str(text)

        end = await new_session().serve(_texts(socket), send)
        if end is AUTH_FAILED:
            request.app[LIMITER_KEY].record_failure(client_key(request.remote))
        if not socket.closed:
            await socket.close(code=end.code, message=end.reason.encode())
        return socket

    return web.get(path, handle)


async def _texts(socket: web.WebSocketResponse) -> AsyncIterator[str]:
    async for message in socket:
        if message.type is WSMsgType.TEXT:
            yield message.data
        elif message.type is WSMsgType.BINARY:
            await socket.close(code=1003, message=b"text frames only")
            return
        else:  # ERROR (e.g. a frame over the size limit: aiohttp has already closed with 1009) or CLOSE
            if message.type is WSMsgType.ERROR:
                log.info("browser WebSocket closed: %s", socket.exception())
            return
