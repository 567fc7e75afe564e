"""`GatewayClient`: the connector's one connection to its OpenClaw gateway (the `claw_core.gateway.Gateway` port).

One background task connects, answers the `connect.challenge` (signed with the device identity when there is one),
keeps the `hello-ok` (protocol, methods, policy), then reads frames until the connection ends, and reconnects for
ever with exponential backoff and full jitter. Responses are matched to requests by id; events and connection
status changes go to subscribers through an `EventHub`, whose bounded queues drop a lagging subscriber instead of
ever blocking the reader.

Limits and failure handling, in one place:

- incoming frames larger than `max_frame_bytes` are refused by `websockets` (close 1009), and the client reconnects;
- an outgoing request whose encoded frame exceeds the gateway's `policy.maxPayload` (re-read on every connect) is
  refused locally with `TooLarge` before anything is sent;
- no frame at all (ticks included) for twice `policy.tickIntervalMs` drops the connection and reconnects;
- a malformed or unknown frame is logged with a short prefix and ignored;
- a refused handshake (a bad token, say) is logged with the gateway's code and retried with the same backoff;
- the token and the device signature never reach a log line: the `websockets` frame trace is switched off for this
  connection, and every reason string is scrubbed of the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import sys
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from claw_adapters.gateway.identity import DeviceIdentity
from claw_core.api import gateway_frames as frames
from claw_core.errors import Invalid, TooLarge, Unavailable, UpstreamError
from claw_core.gateway import GatewayEvent, GatewayStatus
from claw_core.model import JsonObject
from claw_core.services.events import EventHub, Subscription

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "GatewayClient", "GatewayItem"]

log = logging.getLogger(__name__)

GatewayItem = GatewayEvent | GatewayStatus

DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
"""Incoming frame limit when none is given: above the gateway's own 25 MiB payload and 50 MiB buffer policies."""

_LOG_PREFIX = 40
_CHALLENGE_EVENT = "connect.challenge"
_SUPPORTS_PROXY_ARG = "proxy" in inspect.signature(connect.__init__).parameters


class _NoFrameTrace(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to `websockets`: never at DEBUG, so it never traces frames (the connect frame carries the
    token and the device signature). Its INFO and higher messages pass through."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WIRE_LOGGER = _NoFrameTrace(logging.getLogger(f"{__name__}.wire"), {})


class _HandshakeRefused(Exception):
    def __init__(self, error: frames.ErrorShape) -> None:
        super().__init__(error.code)
        self.error = error


@dataclass(slots=True)
class _Connection:
    ws: ClientConnection
    hello: frames.Hello
    pending: dict[str, asyncio.Future[frames.ResFrame]] = field(default_factory=dict)
    up_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _Outcome:
    reason: str
    healthy: bool = False
    retry_after_s: float = 0.0


class GatewayClient:
    """The `Gateway` port over `websockets`. `start()` begins connecting in the background; `close()` stops it.

    `request` raises `Unavailable` when not connected, when the connection is lost while waiting or when no answer
    comes in time; `UpstreamError` (with the gateway's code) for an ok:false answer; `TooLarge` for a request
    bigger than the gateway's `policy.maxPayload`; `Invalid` for params that are not JSON.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        identity: DeviceIdentity | None,
        *,
        client_version: str,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        request_timeout_s: float = 30.0,
        max_frame_bytes: int | None = None,
        connect_timeout_s: float = 10.0,
        healthy_after_s: float = 10.0,
        close_timeout_s: float = 0.5,
        platform: str = sys.platform,
    ) -> None:
        if reconnect_initial_s <= 0 or reconnect_max_s < reconnect_initial_s:
            raise ValueError("need 0 < reconnect_initial_s <= reconnect_max_s")
        self._url = url
        self._token = token
        self._identity = identity
        self._client_version = client_version
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s
        self._request_timeout_s = request_timeout_s
        self._max_frame_bytes = max_frame_bytes if max_frame_bytes is not None else DEFAULT_MAX_FRAME_BYTES
        self._connect_timeout_s = connect_timeout_s
        self._healthy_after_s = healthy_after_s
        self._close_timeout_s = close_timeout_s
        self._platform = platform
        self._hub: EventHub[GatewayItem] = EventHub()
        self._feeds: weakref.WeakSet[Subscription[GatewayItem]] = weakref.WeakSet()
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._status = GatewayStatus(connected=False, reason="not started")
        self._safe_url = _safe_url(url)

    # -- the port ------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def status(self) -> GatewayStatus:
        """The last status published: connected with the hello, or disconnected with the reason."""
        return self._status

    @property
    def hello(self) -> JsonObject | None:
        """The current connection's `hello-ok` payload, None while disconnected."""
        conn = self._conn
        return conn.hello.raw if conn is not None else None

    def subscribe(self, maxsize: int = 1000) -> Subscription[GatewayItem]:
        feed = self._hub.subscribe(maxsize)
        if self._closing:
            feed.close()
        else:
            self._feeds.add(feed)
        return feed

    async def start(self) -> None:
        if self._closing:
            raise RuntimeError("GatewayClient is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"gateway-client {self._safe_url}")

    async def close(self) -> None:
        """Stop reconnecting, close the socket, fail pending requests and end every feed. Prompt: it waits for
        at most `close_timeout_s` of closing handshake."""
        if self._closing:
            if self._task is not None:
                await asyncio.wait({self._task})
            return
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self._set_status(GatewayStatus(connected=False, reason="closed"))
        for feed in list(self._feeds):
            feed.close()

    async def request(self, method: str, params: JsonObject, *, timeout_s: float | None = None) -> JsonObject:
        conn = self._conn
        if conn is None or self._closing:
            raise Unavailable("gateway not connected")
        request_id = str(uuid.uuid4())
        try:
            text = frames.encode(frames.req(request_id, method, params))
        except (TypeError, ValueError):
            raise Invalid(f"the params of {method} are not JSON") from None
        size = frames.encoded_size(text)
        if size > conn.hello.max_payload:
            raise TooLarge(
                f"{method} request is {size} bytes, more than the gateway accepts ({conn.hello.max_payload} bytes)"
            )
        future: asyncio.Future[frames.ResFrame] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = future
        timeout = self._request_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout):
                try:
                    await conn.ws.send(text)
                except ConnectionClosed:
                    raise Unavailable("gateway connection lost") from None
                response = await future
        except TimeoutError:
            raise Unavailable(f"gateway did not answer {method} in time") from None
        finally:
            conn.pending.pop(request_id, None)
        if not response.ok:
            assert response.error is not None
            raise frames.upstream_error(response.error)
        if response.payload is None:
            return {}
        if not isinstance(response.payload, dict):
            raise UpstreamError(f"gateway answered {method} with a non-object payload", code="INVALID_RESPONSE")
        return response.payload

    # -- the connection loop -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        cap = self._reconnect_initial_s
        while not self._closing:
            try:
                outcome = await self._attempt()
            except Exception as error:  # a bug must not end reconnecting for good
                log.error("gateway %s: unexpected %s", self._safe_url, type(error).__name__, exc_info=True)
                outcome = _Outcome(f"unexpected {type(error).__name__}")
                self._set_status(GatewayStatus(connected=False, reason=outcome.reason))
            if outcome.healthy:
                cap = self._reconnect_initial_s
            delay = random.uniform(0.0, cap)  # noqa: S311 - jitter, not cryptography
            if outcome.retry_after_s:
                delay = max(delay, min(outcome.retry_after_s, self._reconnect_max_s))
            cap = min(cap * 2.0, self._reconnect_max_s)
            log.info("gateway %s: %s; reconnecting in %.2f s", self._safe_url, outcome.reason, delay)
            await asyncio.sleep(delay)

    async def _attempt(self) -> _Outcome:
        try:
            ws = await self._open()
        except (OSError, TimeoutError, WebSocketException) as error:
            outcome = _Outcome(f"cannot reach the gateway ({self._describe(error)})")
            self._set_status(GatewayStatus(connected=False, reason=outcome.reason))
            return outcome
        conn: _Connection | None = None
        outcome = _Outcome("connection closed")
        try:
            outcome, conn = await self._establish(ws)
            if conn is not None:
                self._conn = conn
                log.info(
                    "gateway %s: connected (protocol %d, %d methods, maxPayload %d, tick %d ms)",
                    self._safe_url,
                    conn.hello.protocol,
                    len(conn.hello.methods),
                    conn.hello.max_payload,
                    conn.hello.tick_interval_ms,
                )
                self._set_status(GatewayStatus(connected=True, hello=conn.hello.raw))
                reason = await self._read(conn)
                healthy = time.monotonic() - conn.up_at >= self._healthy_after_s
                outcome = _Outcome(reason, healthy=healthy)
        finally:
            # Runs on cancellation too (close()): pending requests fail at once, then the socket closes.
            if conn is not None:
                self._drop(conn, outcome.reason if not self._closing else "closed")
            if not self._closing:
                self._set_status(GatewayStatus(connected=False, reason=outcome.reason))
            await self._close_socket(ws)
        return outcome

    async def _open(self) -> ClientConnection:
        options: dict[str, Any] = {}
        if _SUPPORTS_PROXY_ARG:
            options["proxy"] = None  # the gateway is reached directly, never through an environment proxy
        return await connect(
            self._url,
            max_size=self._max_frame_bytes,
            open_timeout=self._connect_timeout_s,
            close_timeout=self._close_timeout_s,
            compression=None,  # the gateway does not negotiate permessage-deflate
            user_agent_header=f"claw-connector/{self._client_version}",
            logger=_WIRE_LOGGER,
            **options,
        )

    async def _establish(self, ws: ClientConnection) -> tuple[_Outcome, _Connection | None]:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                hello = await self._handshake(ws)
        except TimeoutError:
            return _Outcome("the gateway did not complete the handshake in time"), None
        except _HandshakeRefused as refused:
            error = refused.error
            detail = error.details.get("code") if isinstance(error.details, dict) else None
            log.warning(
                "gateway %s refused the connection: %s%s: %s",
                self._safe_url,
                error.code,
                f" ({detail})" if isinstance(detail, str) else "",
                self._scrub(error.message),
            )
            retry_after_s = (error.retry_after_ms or 0) / 1000.0
            reason = f"gateway refused the connection: {error.code}: {self._scrub(error.message)}"
            return _Outcome(reason, retry_after_s=retry_after_s), None
        except Invalid as error:
            log.warning("gateway %s: handshake failed: %s", self._safe_url, error)
            return _Outcome(f"handshake failed: {error}"), None
        except ConnectionClosed as closed:
            return _Outcome(f"connection closed during the handshake ({self._describe_close(closed)})"), None
        return _Outcome("connection closed"), _Connection(ws, hello)

    async def _handshake(self, ws: ClientConnection) -> frames.Hello:
        challenge: frames.Challenge | None = None
        while challenge is None:
            frame = await self._next_frame(ws)
            if isinstance(frame, frames.EventFrame) and frame.event == _CHALLENGE_EVENT:
                challenge = frames.parse_challenge(frame.payload)
        connect_id = str(uuid.uuid4())
        await ws.send(frames.encode(frames.req(connect_id, "connect", self._connect_params(challenge))))
        while True:
            frame = await self._next_frame(ws)
            if isinstance(frame, frames.ResFrame) and frame.id == connect_id:
                if not frame.ok:
                    assert frame.error is not None
                    raise _HandshakeRefused(frame.error)
                return frames.parse_hello(frame.payload)

    def _connect_params(self, challenge: frames.Challenge) -> JsonObject:
        device: JsonObject | None = None
        if self._identity is not None:
            identity = self._identity
            payload = frames.device_auth_payload_v3(
                identity.device_id,
                frames.CLIENT_ID,
                frames.CLIENT_MODE,
                frames.ROLE,
                frames.DEFAULT_SCOPES,
                challenge.ts,
                self._token,
                challenge.nonce,
                self._platform,
                None,
            )
            device = frames.device_block(
                identity.device_id, identity.public_key_b64url, identity.sign(payload), challenge.ts, challenge.nonce
            )
        return frames.connect_params(
            client_version=self._client_version, platform=self._platform, token=self._token, device=device
        )

    async def _next_frame(self, ws: ClientConnection) -> frames.Frame:
        """The next well-formed frame; malformed ones are logged and skipped."""
        while True:
            frame = self._parse(await ws.recv())
            if frame is not None:
                return frame

    async def _read(self, conn: _Connection) -> str:
        watchdog_s = 2 * conn.hello.tick_interval_ms / 1000.0
        while True:
            try:
                async with asyncio.timeout(watchdog_s):
                    message = await conn.ws.recv()
            except TimeoutError:
                log.warning(
                    "gateway %s: nothing received for %.1f s (no tick); reconnecting", self._safe_url, watchdog_s
                )
                return f"no tick from the gateway for {watchdog_s:g} s"
            except ConnectionClosed as closed:
                reason = f"connection closed ({self._describe_close(closed)})"
                log.warning("gateway %s: %s", self._safe_url, reason)
                return reason
            self._dispatch(conn, message)

    def _dispatch(self, conn: _Connection, message: str | bytes) -> None:
        frame = self._parse(message)
        if isinstance(frame, frames.EventFrame):
            self._hub.publish(GatewayEvent(frame.event, frame.payload, frame.seq))
        elif isinstance(frame, frames.ResFrame):
            future = conn.pending.get(frame.id)
            if future is not None and not future.done():
                future.set_result(frame)
            else:
                log.debug("gateway: response to no pending request (id %s)", frame.id[:_LOG_PREFIX])
        elif isinstance(frame, frames.ReqFrame):
            log.warning("gateway: ignoring a request frame from the gateway (method %r)", frame.method[:_LOG_PREFIX])

    def _parse(self, message: str | bytes) -> frames.Frame | None:
        if isinstance(message, bytes):
            log.warning("gateway: ignoring a binary frame of %d bytes", len(message))
            return None
        try:
            return frames.parse_frame(message)
        except Invalid as error:
            log.warning(
                "gateway: ignoring a malformed frame (%s), %d chars starting %r",
                error,
                len(message),
                self._scrub(message[:_LOG_PREFIX]),
            )
            return None

    # -- state -----------------------------------------------------------------------------------------------------

    def _drop(self, conn: _Connection, reason: str) -> None:
        if self._conn is conn:
            self._conn = None
        pending = list(conn.pending.values())
        conn.pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(Unavailable(f"gateway connection lost ({reason})"))

    def _set_status(self, status: GatewayStatus) -> None:
        """Publish a status when it says something new: every connect, a disconnect, a new reason."""
        previous = self._status
        self._status = status
        if status.connected or previous.connected or previous.reason != status.reason:
            self._hub.publish(status)

    async def _close_socket(self, ws: ClientConnection) -> None:
        try:
            await ws.close()
        except Exception:  # closing a dead socket may fail in many ways; it is closed either way
            log.debug("gateway: error while closing the socket", exc_info=True)
        with contextlib.suppress(Exception):
            ws.transport.abort()

    # -- log hygiene -------------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        token = self._token
        if token and token in text:
            text = text.replace(token, "***")
        return text

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, InvalidURI):
            return "invalid gateway URL"
        if isinstance(error, InvalidStatus):
            return f"HTTP {error.response.status_code}"
        if isinstance(error, TimeoutError):
            return "timed out"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
        return self._scrub(f"{type(error).__name__}: {error}")

    def _describe_close(self, closed: ConnectionClosed) -> str:
        frame = closed.rcvd or closed.sent
        if frame is None:
            return "no close frame"
        reason = self._scrub(frame.reason[:120])
        return f"{frame.code} {reason}".strip()


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment, for log lines."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
