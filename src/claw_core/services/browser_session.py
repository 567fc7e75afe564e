"""One browser's session on the connector's gateway relay, whatever carries its frames (a WebSocket, or the
WebRTC DataChannel's `gateway-msg`).

The browser speaks the gateway's own frame protocol to the connector: it gets a `connect.challenge`, answers
with `connect` carrying the CONNECTOR's token (checked here in constant time; the gateway's token never leaves
the machine), then its requests are sent upstream over the connector's single gateway connection and answered
with the browser's own ids, while every gateway event and the connector's own `clawchats` events reach it.
A browser that floods, or falls too far behind, is closed; the others never wait for it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from claw_core.api import gateway_frames as frames
from claw_core.errors import ClawError, Invalid, TooLarge, UpstreamError
from claw_core.gateway import Gateway
from claw_core.model import JsonObject
from claw_core.ports import Clock
from claw_core.services.chat_relay import ChatRelay
from claw_core.services.events import EventHub
from claw_core.services.history import ActiveThreads

__all__ = ["BrowserSession", "SessionEnd", "SessionLimits"]

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SessionLimits:
    connect_timeout_s: float = 10.0
    frames_per_second: float = 100.0
    burst: int = 200
    in_flight: int = 64
    """Requests of one browser waiting for the gateway at once."""
    backlog: int = 2000
    """Events queued for one browser before it counts as too slow and is closed."""
    max_frame_bytes: int = 32 * 1024 * 1024
    """Announced to the browser as policy.maxPayload; the transport enforces it."""


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Why a session ended, as a WebSocket close code and reason."""

    code: int
    reason: str


NORMAL = SessionEnd(1000, "bye")
AUTH_FAILED = SessionEnd(4001, "auth failed")
TIMEOUT = SessionEnd(4008, "connect timeout")
FLOODING = SessionEnd(1008, "too many frames")
TOO_SLOW = SessionEnd(1013, "too slow: events were dropped")


class BrowserSession:
    def __init__(
        self,
        *,
        token: str,
        gateway: Gateway,
        relay: ChatRelay,
        clients: EventHub[JsonObject],
        active: ActiveThreads,
        clock: Clock,
        server_version: str,
        limits: SessionLimits | None = None,
    ) -> None:
        self._token = token.encode()
        self._gateway = gateway
        self._relay = relay
        self._clients = clients
        self._active = active
        self._clock = clock
        self._version = server_version
        self._limits = limits or SessionLimits()
        self._tasks: set[asyncio.Task[None]] = set()
        self._allowance = float(self._limits.burst)
        self._last_frame = time.monotonic()

    async def serve(self, incoming: AsyncIterable[str], send: Send) -> SessionEnd:
        """Run the session until the browser leaves or breaks a rule; the caller closes with the answer."""
        received = aiter(incoming)
        nonce = str(uuid.uuid4())
        await send(_encode(frames.event("connect.challenge", {"nonce": nonce, "ts": self._clock.now_ms()})))
        try:
            first = await asyncio.wait_for(anext(received), self._limits.connect_timeout_s)
        except (TimeoutError, StopAsyncIteration):
            return TIMEOUT
        if not await self._connect(first, send):
            return AUTH_FAILED
        subscription = self._clients.subscribe(self._limits.backlog)
        pump = asyncio.create_task(self._pump(subscription, send))
        try:
            return await self._receive(received, send, pump)
        finally:
            subscription.close()
            pump.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(pump, *self._tasks, return_exceptions=True)

    async def _connect(self, text: str, send: Send) -> bool:
        frame = _parse(text)
        request_id = frame.get("id") if frame is not None else None
        params = frame.get("params") if frame is not None else None
        auth = params.get("auth") if isinstance(params, dict) else None
        token = auth.get("token") if isinstance(auth, dict) else None
        if (
            frame is None
            or frame.get("type") != "req"
            or frame.get("method") != "connect"
            or not isinstance(token, str)
            or not hmac.compare_digest(token.encode(), self._token)
        ):
            await send(_encode(_error(request_id, "AUTH_FAILED", "connect with the connector's token first")))
            return False
        await send(_encode(frames.res_ok(request_id, self._hello())))
        return True

    def _hello(self) -> JsonObject:
        """The gateway's own hello (protocol, features, snapshot) when it is connected, so a client sees what the
        gateway offers; the server block, the policy and the auth are the connector's."""
        upstream = self._gateway.hello or {}
        hello: JsonObject = {key: upstream[key] for key in ("protocol", "features", "snapshot") if key in upstream}
        hello.setdefault("protocol", 3)
        hello.update(
            {
                "type": "hello-ok",
                "server": {"version": self._version, "connId": str(uuid.uuid4()), "name": "claw-connector"},
                "gateway": {"connected": self._gateway.connected},
                "policy": {"tickIntervalMs": 30_000, "maxPayload": self._limits.max_frame_bytes},
            }
        )
        return hello

    async def _pump(self, subscription: Any, send: Send) -> None:
        async for event in subscription:
            await send(_encode(event))

    async def _receive(self, received: Any, send: Send, pump: asyncio.Task[None]) -> SessionEnd:
        receiving = asyncio.ensure_future(anext(received))
        try:
            while True:
                done, _ = await asyncio.wait({receiving, pump}, return_when=asyncio.FIRST_COMPLETED)
                if pump in done:
                    return TOO_SLOW  # the hub dropped this browser: it could not keep up
                try:
                    text = receiving.result()
                except StopAsyncIteration:
                    return NORMAL
                if not self._allow_frame():
                    await send(_encode(_clawchats_error("too many received: slow down")))
                    return FLOODING
                await self._handle(text, send)
                receiving = asyncio.ensure_future(anext(received))
        finally:
            receiving.cancel()

    def _allow_frame(self) -> bool:
        """A token bucket: `frames_per_second` sustained, `burst` at once."""
        now = time.monotonic()
        limits = self._limits
        self._allowance = min(
            float(limits.burst), self._allowance + (now - self._last_frame) * limits.frames_per_second
        )
        self._last_frame = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    async def _handle(self, text: str, send: Send) -> None:
        frame = _parse(text)
        if frame is None:
            await send(_encode(_clawchats_error("frame is not a JSON object")))
            return
        kind = frame.get("type")
        if kind == "clawchats":
            self._clawchats_action(frame)
        elif kind == "req":
            await self._request(frame, send)
        else:
            await send(_encode(_clawchats_error(f"unknown frame type {str(kind)[:32]!r}")))

    def _clawchats_action(self, frame: JsonObject) -> None:
        if frame.get("action") == "active-thread":
            workspace, thread_id = frame.get("workspace"), frame.get("threadId")
            if isinstance(workspace, str):
                self._active.set(workspace, thread_id if isinstance(thread_id, str) else None)

    async def _request(self, frame: JsonObject, send: Send) -> None:
        request_id, method, params = frame.get("id"), frame.get("method"), frame.get("params", {})
        if not isinstance(request_id, str) or not request_id or not isinstance(method, str) or not method:
            await send(_encode(_error(request_id, "INVALID_REQUEST", "a request needs a string id and method")))
            return
        if not isinstance(params, dict):
            await send(_encode(_error(request_id, "INVALID_REQUEST", "params must be an object")))
            return
        if method == "connect":
            await send(_encode(_error(request_id, "INVALID_REQUEST", "already connected")))
            return
        if len(self._tasks) >= self._limits.in_flight:
            await send(_encode(_error(request_id, "RATE_LIMITED", "too many requests in flight")))
            return
        task = asyncio.create_task(self._forward(request_id, method, params, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, request_id: str, method: str, params: JsonObject, send: Send) -> None:
        try:
            if method == "chat.send":
                params = await self._relay.user_turn(params)
            payload = await self._gateway.request(method, params)
            if method == "chat.send":
                await self._relay.run_started(params, payload)
            answer = frames.res_ok(request_id, payload)
        except UpstreamError as error:
            answer = _error(request_id, error.code, error.message, retryable=error.retryable, details=error.details)
        except (Invalid, TooLarge) as error:  # e.g. malformed attachments: refused before anything is forwarded
            answer = _error(request_id, "INVALID_REQUEST", error.message)
        except ClawError as error:
            answer = _error(request_id, "UNAVAILABLE", error.message, retryable=True)
        await send(_encode(answer))


def _parse(text: str) -> JsonObject | None:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


def _encode(frame: JsonObject) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _error(
    request_id: object, code: str, message: str, *, retryable: bool = False, details: object = None
) -> JsonObject:
    """An ok:false answer to a browser, which always says whether retrying may help."""
    return frames.res_error(request_id, code, message, retryable=retryable, details=details)


def _clawchats_error(message: str) -> JsonObject:
    return {"type": "clawchats", "event": "error", "message": message}
