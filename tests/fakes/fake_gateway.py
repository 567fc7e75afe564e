"""`FakeGateway`: an in-process OpenClaw gateway speaking the wire protocol as far as the connector uses it.

Every behaviour here was checked against the real gateway (openclaw 2026.9.6, protocol 4):

- on connect it sends `connect.challenge` {nonce, ts} (no `seq`); the first frame must be a `connect` request, else
  `INVALID_REQUEST "invalid handshake: first request must be connect"` and close 1008; text that is not JSON before
  the handshake closes with 1000;
- `connect`: protocol range checked (`INVALID_REQUEST` "protocol mismatch", details.code `PROTOCOL_MISMATCH`, close
  1002); a wrong token gives `INVALID_REQUEST` "unauthorized: gateway token mismatch (provide gateway auth token)" with
  details.code `AUTH_TOKEN_MISMATCH` and closes 1008; no token and no device gives `NOT_PAIRED` "device identity
  required"; a `device` block is verified (id = sha256 of the raw key, nonce, ed25519 signature over the v3 or v2
  payload: `DEVICE_AUTH_SIGNATURE_INVALID` and friends);
- `hello-ok` {type, protocol, server, features{methods, events}, snapshot, auth{role, scopes}, policy{maxPayload,
  maxBufferedBytes, tickIntervalMs}}; then `tick` events {ts} every tickIntervalMs; events carry a per-connection
  `seq` starting at 1;
- after the handshake, text that is not JSON is ignored; a JSON frame that is not a request gets a response with id
  "invalid" and `INVALID_REQUEST`; an unknown method gets `INVALID_REQUEST "unknown method: <name>"`;
- `chat.send` {sessionKey, message, idempotencyKey}: the runId IS the idempotency key; answers {runId,
  status:"started"}, then `chat` events: "status" phases, "delta" (message.content[0].text the full text so far,
  deltaText the increment), "final" (stopReason "stop"), interleaved with informational `agent` events. The same key
  again answers {runId, status:"in_flight"} while the run lasts and {runId, status:"ok"} after, with no second run;
- `chat.abort` {sessionKey, runId?}: a `chat` event state "aborted" (stopReason "rpc"), then {ok, aborted, runIds};
- `chat.history` {sessionKey, limit?}: {sessionKey, sessionId?, messages, hasMore, totalMessages}; a user message
  has string content and idempotencyKey "<runId>:user", an assistant message content parts; both `__openclaw`
  {id, seq, runId?, idempotencyKey?};
- `sessions.list` {count, totalCount, sessions:[{key, sessionId, agentId, ...}], hasMore};
  `sessions.delete` {key} -> {ok:true, key, deleted, archived:[...]}; `agents.list` {defaultId, mainKey, agents}.

The default reply is "echo: <message>", like the tests' fake model behind the real gateway, so one contract suite
can expect the same text from both.

Controls for tests: `kill_connections()`, `stop()`/`start()` (same port), `pause_ticks`, `inject(raw)`, `emit(...)`,
`hold` (methods never answered), `delays`, `received` (every frame a client sent, parsed when it was JSON),
`connection_attempts`, `refused_handshakes`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from claw_core.api import gateway_frames as frames
from claw_core.errors import Invalid
from claw_core.model import JsonObject

__all__ = ["FAKE_TOKEN", "FakeGateway", "FeedRecorder", "echo_reply"]

FAKE_TOKEN = "fake-gateway-token-7f3a"
SERVER_VERSION = "fake-2026.9.6"
PROTOCOL = 4
MAX_PREAUTH_BYTES = 64 * 1024

METHODS = [
    "agents.list",
    "chat.abort",
    "chat.history",
    "chat.send",
    "health",
    "sessions.delete",
    "sessions.list",
]
EVENTS = ["connect.challenge", "agent", "chat", "chat.metadata.changed", "tick", "shutdown", "health"]


def echo_reply(message: str) -> str:
    return f"echo: {message}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Refused(Exception):
    def __init__(self, code: str, message: str, details: JsonObject | None = None, close_code: int = 1008) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.close_code = close_code


class _BadRequest(Exception):
    def __init__(self, message: str, code: str = "INVALID_REQUEST") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    nonce: str
    ts: int
    authed: bool = False
    seq: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass
class _Run:
    run_id: str
    session_key: str
    task: asyncio.Task[None] | None = None
    done: bool = False
    seq: int = 0


@dataclass
class _Session:
    key: str
    session_id: str
    agent_id: str
    created_at: int
    updated_at: int
    messages: list[JsonObject] = field(default_factory=list)
    seq: int = 0


class FakeGateway:
    """Start with `await FakeGateway().start()` (or `async with FakeGateway() as gateway`); `url` and `token` are
    what a client needs. Runs in the caller's event loop."""

    def __init__(
        self,
        *,
        token: str | None = FAKE_TOKEN,
        protocol: int = PROTOCOL,
        max_payload: int = 26_214_400,
        tick_interval_ms: int = 30_000,
        reply: Callable[[str], str] = echo_reply,
        chunks: int = 3,
        chunk_delay_s: float = 0.01,
        hang_after_chunks: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.protocol = protocol
        self.max_payload = max_payload
        self.tick_interval_ms = tick_interval_ms
        self.reply = reply
        self.chunks = chunks
        self.chunk_delay_s = chunk_delay_s
        self.hang_after_chunks = hang_after_chunks
        """None: runs finish; N: a run streams N deltas, then waits until aborted or `release()`."""
        self._release = asyncio.Event()
        self.host = host
        self.port = port
        self.pause_ticks = False
        self.hold: set[str] = set()
        """Methods that are received but never answered (request timeouts)."""
        self.unknown_methods: set[str] = set()
        """Methods answered as unknown, as an older gateway would (e.g. one without sessions.delete)."""
        self.delays: dict[str, float] = {}
        """Seconds to wait before answering a method."""
        self.received: list[Any] = []
        """Every frame a client sent, parsed when it was JSON, else the raw text or bytes."""
        self.connection_attempts = 0
        self.refused_handshakes = 0
        self.sessions: dict[str, _Session] = {}
        self._runs: dict[str, _Run] = {}
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeGateway is not started")
        return f"ws://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def connections(self) -> int:
        """Clients past the handshake."""
        return sum(1 for client in self._clients if client.authed)

    async def start(self) -> FakeGateway:
        if self._server is not None:
            return self
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=max(self.max_payload, MAX_PREAUTH_BYTES),
            compression=None,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if not self.port else self.port
        self._ticker = asyncio.create_task(self._tick_loop(), name="fake-gateway-ticks")
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection (after a `shutdown` event, as the real gateway does)."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._broadcast("shutdown", {"reason": "gateway stopping", "restartExpectedMs": None})
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for run in list(self._runs.values()):
            if run.task is not None and not run.done:
                run.task.cancel()
        server.close(close_connections=True)
        await server.wait_closed()

    async def restart(self, down_s: float = 0.0) -> None:
        await self.stop()
        if down_s:
            await asyncio.sleep(down_s)
        await self.start()

    async def __aenter__(self) -> FakeGateway:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- controls ----------------------------------------------------------------------------------------------------

    async def kill_connections(self, code: int | None = None) -> None:
        """Drop every client: without a close frame (a crash) when `code` is None, else with that close code."""
        for client in list(self._clients):
            if code is None:
                client.ws.transport.abort()
            else:
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.close(code, "fake gateway closed the connection")

    def release(self) -> None:
        """Let hanging runs go on (later runs hang again only after `hang_after_chunks` is set anew)."""
        self.hang_after_chunks = None
        self._release.set()
        self._release = asyncio.Event()

    async def inject(self, raw: str | bytes) -> None:
        """Send `raw` as it is to every client past the handshake."""
        for client in list(self._clients):
            if client.authed:
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send(raw)

    async def emit(self, name: str, payload: JsonObject) -> None:
        """Broadcast a well-formed event (with each connection's next `seq`)."""
        await self._broadcast(name, payload)

    async def wait_for_connections(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Until at least `count` clients are past the handshake."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.connections >= count)

    async def wait_for_requests(self, method: str, count: int = 1, timeout_s: float = 5.0) -> None:
        """Until at least `count` requests of `method` have been received."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.requests(method)) >= count)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def requests(self, method: str | None = None) -> list[JsonObject]:
        """The request frames received (optionally of one method), `connect` included."""
        return [
            frame
            for frame in self.received
            if isinstance(frame, dict)
            and frame.get("type") == "req"
            and (method is None or frame.get("method") == method)
        ]

    # -- connection ----------------------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connection_attempts += 1
        client = _Client(ws, nonce=str(uuid.uuid4()), ts=_now_ms())
        self._clients.add(client)
        try:
            await ws.send(frames.encode(frames.event("connect.challenge", {"nonce": client.nonce, "ts": client.ts})))
            async for message in ws:
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            for task in list(client.tasks):
                task.cancel()
            await self._notify()

    async def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            parsed: Any = json.loads(message)
        except ValueError:
            parsed = message
        self.received.append(parsed)
        await self._notify()
        if not client.authed:
            await self._pre_handshake(client, message)
            return
        try:
            frame = frames.parse_frame(message)
        except Invalid as error:
            if isinstance(parsed, dict):  # JSON but not a frame
                message_text = f"invalid request frame: {error}"
                await self._send(client, frames.res_error("invalid", "INVALID_REQUEST", message_text))
            return  # not JSON at all: ignored, as the real gateway does
        if not isinstance(frame, frames.ReqFrame):
            await self._send(client, frames.res_error("invalid", "INVALID_REQUEST", "invalid request frame"))
            return
        task = asyncio.create_task(self._answer(client, frame))
        client.tasks.add(task)
        task.add_done_callback(client.tasks.discard)

    async def _pre_handshake(self, client: _Client, message: str | bytes) -> None:
        try:
            frame = frames.parse_frame(message)
        except Invalid:
            await client.ws.close(1000)
            return
        if not isinstance(frame, frames.ReqFrame) or frame.method != "connect":
            frame_id = frame.id if isinstance(frame, frames.ReqFrame) else "invalid"
            message_text = "invalid handshake: first request must be connect"
            await self._send(client, frames.res_error(frame_id, "INVALID_REQUEST", message_text))
            await client.ws.close(1008, message_text)
            return
        try:
            hello = self._check_connect(client, frame.params)
        except _Refused as refused:
            self.refused_handshakes += 1
            await self._send(client, frames.res_error(frame.id, refused.code, refused.message, details=refused.details))
            await client.ws.close(refused.close_code, refused.message)
            return
        await self._send(client, frames.res_ok(frame.id, hello))
        client.authed = True
        await self._notify()

    def _check_connect(self, client: _Client, params: JsonObject) -> JsonObject:
        low, high = params.get("minProtocol"), params.get("maxProtocol")
        if not isinstance(low, int) or not isinstance(high, int) or not low <= self.protocol <= high:
            raise _Refused(
                "INVALID_REQUEST",
                "protocol mismatch",
                {"code": "PROTOCOL_MISMATCH", "clientMinProtocol": low, "clientMaxProtocol": high},
                close_code=1002,
            )
        auth = _obj(params.get("auth"))
        token = auth.get("token")
        device = params.get("device")
        if self.token is not None:
            if token is None and device is None:
                raise _Refused("NOT_PAIRED", "device identity required", {"code": "DEVICE_IDENTITY_REQUIRED"})
            if token != self.token:
                raise _Refused(
                    "INVALID_REQUEST",
                    "unauthorized: gateway token mismatch (provide gateway auth token)",
                    {
                        "code": "AUTH_TOKEN_MISMATCH",
                        "authReason": "token_mismatch",
                        "canRetryWithDeviceToken": False,
                        "recommendedNextStep": "update_auth_credentials",
                    },
                )
        if device is not None:
            self._check_device(client, params, device)
        client_info = _obj(params.get("client"))
        scopes = params.get("scopes") if isinstance(params.get("scopes"), list) else []
        return {
            "type": "hello-ok",
            "protocol": self.protocol,
            "server": {"version": SERVER_VERSION, "connId": str(uuid.uuid4())},
            "features": {"methods": list(METHODS), "events": list(EVENTS)},
            "snapshot": {"presence": [], "health": {"ok": True}},
            "auth": {"method": "token", "role": params.get("role", "operator"), "scopes": scopes},
            "policy": {
                "maxPayload": self.max_payload,
                "maxBufferedBytes": 2 * self.max_payload,
                "tickIntervalMs": self.tick_interval_ms,
            },
            "client": {"id": client_info.get("id")},
        }

    def _check_device(self, client: _Client, params: JsonObject, device: Any) -> None:
        def refuse(message: str, code: str, reason: str) -> _Refused:
            return _Refused("INVALID_REQUEST", message, {"code": code, "reason": reason})

        if not isinstance(device, dict):
            raise refuse("device public key invalid", "DEVICE_AUTH_PUBLIC_KEY_INVALID", "device-public-key")
        if not device.get("nonce"):
            raise refuse("device nonce required", "DEVICE_AUTH_NONCE_REQUIRED", "device-nonce-missing")
        if device.get("nonce") != client.nonce:
            raise refuse("device nonce mismatch", "DEVICE_AUTH_NONCE_MISMATCH", "device-nonce-mismatch")
        try:
            raw = _b64url_decode(str(device.get("publicKey", "")))
            public_key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise refuse("device public key invalid", "DEVICE_AUTH_PUBLIC_KEY_INVALID", "device-public-key") from None
        if device.get("id") != hashlib.sha256(raw).hexdigest():
            raise refuse("device identity mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH", "device-id-mismatch")
        signed_at = device.get("signedAt")
        if not isinstance(signed_at, int) or abs(signed_at - client.ts) > 10 * 60 * 1000:
            raise refuse("device signature expired", "DEVICE_AUTH_SIGNATURE_EXPIRED", "device-signature-stale")
        client_info = _obj(params.get("client"))
        auth = _obj(params.get("auth"))
        common = (
            str(device["id"]),
            str(client_info.get("id", "")),
            str(client_info.get("mode", "")),
            str(params.get("role", "")),
            [str(scope) for scope in params.get("scopes", [])],
            signed_at,
            auth.get("token"),
            client.nonce,
        )
        candidates = [
            frames.device_auth_payload_v3(
                *common, str(client_info.get("platform", "")), client_info.get("deviceFamily")
            ),
            frames.device_auth_payload_v2(*common),
        ]
        try:
            signature = _b64url_decode(str(device.get("signature", "")))
        except ValueError:
            signature = b""
        for payload in candidates:
            try:
                public_key.verify(signature, payload.encode("utf-8"))
                return
            except InvalidSignature:
                continue
        raise refuse("device signature invalid", "DEVICE_AUTH_SIGNATURE_INVALID", "device-signature")

    # -- methods -------------------------------------------------------------------------------------------------------

    async def _answer(self, client: _Client, frame: frames.ReqFrame) -> None:
        if frame.method in self.hold:
            return
        delay = self.delays.get(frame.method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        handler = getattr(self, "_m_" + frame.method.replace(".", "_"), None)
        if frame.method not in METHODS or handler is None or frame.method in self.unknown_methods:
            await self._send(client, frames.res_error(frame.id, "INVALID_REQUEST", f"unknown method: {frame.method}"))
            return
        try:
            payload = await handler(client, frame.params)
        except _BadRequest as error:
            await self._send(client, frames.res_error(frame.id, error.code, error.message))
            return
        await self._send(client, frames.res_ok(frame.id, payload))

    async def _m_health(self, client: _Client, params: JsonObject) -> JsonObject:
        return {"ok": True, "ts": _now_ms()}

    async def _m_agents_list(self, client: _Client, params: JsonObject) -> JsonObject:
        return {
            "defaultId": "main",
            "mainKey": "main",
            "scope": "per-sender",
            "agents": [{"id": "main", "model": {"primary": "fake/fake-1"}}],
        }

    async def _m_sessions_list(self, client: _Client, params: JsonObject) -> JsonObject:
        rows = [
            {
                "key": session.key,
                "sessionId": session.session_id,
                "agentId": session.agent_id,
                "kind": "direct",
                "createdAt": session.created_at,
                "updatedAt": session.updated_at,
            }
            for session in sorted(self.sessions.values(), key=lambda s: s.updated_at, reverse=True)
        ]
        return {
            "ts": _now_ms(),
            "count": len(rows),
            "totalCount": len(rows),
            "hasMore": False,
            "nextOffset": None,
            "sessions": rows,
        }

    async def _m_sessions_delete(self, client: _Client, params: JsonObject) -> JsonObject:
        key = _required_str(params, "key", "sessions.delete")
        session = self.sessions.pop(key, None)
        archived = [f"/fake/agents/{session.agent_id}/sessions/{session.session_id}.jsonl.deleted"] if session else []
        return {"ok": True, "key": key, "deleted": session is not None, "archived": archived}

    async def _m_chat_history(self, client: _Client, params: JsonObject) -> JsonObject:
        key = _required_str(params, "sessionKey", "chat.history")
        limit = params.get("limit", 200)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _BadRequest("invalid chat.history params: limit must be a positive integer")
        session = self.sessions.get(key)
        messages = session.messages if session else []
        payload: JsonObject = {
            "sessionKey": key,
            "messages": [dict(message) for message in messages[-limit:]],
            "hasMore": len(messages) > limit,
            "totalMessages": len(messages),
        }
        if session is not None:
            payload["sessionId"] = session.session_id
        return payload

    async def _m_chat_send(self, client: _Client, params: JsonObject) -> JsonObject:
        for name in ("sessionKey", "message", "idempotencyKey"):
            if not isinstance(params.get(name), str):
                raise _BadRequest(f"invalid chat.send params: must have required property '{name}'")
        key, text, run_id = params["sessionKey"], params["message"], params["idempotencyKey"]
        existing = self._runs.get(run_id)
        if existing is not None:
            return {"runId": run_id, "status": "ok" if existing.done else "in_flight"}
        session = self._session(key)
        now = _now_ms()
        session.seq += 1
        session.messages.append(
            {
                "role": "user",
                "content": text,
                "timestamp": now,
                "idempotencyKey": f"{run_id}:user",
                "__openclaw": {"id": str(uuid.uuid4()), "idempotencyKey": f"{run_id}:user", "seq": session.seq},
            }
        )
        session.updated_at = now
        run = _Run(run_id, key)
        self._runs[run_id] = run
        run.task = asyncio.create_task(self._play(run, session, self.reply(text)), name=f"fake-run {run_id}")
        return {"runId": run_id, "status": "started"}

    async def _m_chat_abort(self, client: _Client, params: JsonObject) -> JsonObject:
        key = _required_str(params, "sessionKey", "chat.abort")
        wanted = params.get("runId")
        aborted: list[str] = []
        for run in list(self._runs.values()):
            if run.done or run.session_key != key or (wanted is not None and run.run_id != wanted):
                continue
            run.done = True
            if run.task is not None:
                run.task.cancel()
            aborted.append(run.run_id)
            run.seq += 1
            await self._broadcast(
                "chat",
                {
                    "runId": run.run_id,
                    "sessionKey": key,
                    "agentId": self._session(key).agent_id,
                    "seq": run.seq,
                    "state": "aborted",
                    "stopReason": "rpc",
                },
            )
        return {"ok": True, "aborted": bool(aborted), "runIds": aborted}

    # -- a chat run ----------------------------------------------------------------------------------------------------

    async def _play(self, run: _Run, session: _Session, reply: str) -> None:
        base = {"runId": run.run_id, "sessionKey": session.key, "agentId": session.agent_id}

        async def chat(payload: JsonObject) -> None:
            run.seq += 1
            await self._broadcast("chat", {**base, "seq": run.seq, **payload})

        async def agent(stream: str, data: JsonObject) -> None:
            await self._broadcast("agent", {**base, "stream": stream, "data": data, "seq": run.seq, "ts": _now_ms()})

        try:
            for phase in ("preparing_workspace", "preparing_context", "starting_model"):
                await chat({"state": "status", "phase": phase})
            await agent("lifecycle", {"phase": "start", "startedAt": _now_ms()})
            text = ""
            for index, piece in enumerate(_split(reply, self.chunks)):
                if self.hang_after_chunks is not None and index >= self.hang_after_chunks:
                    await self._release.wait()
                await asyncio.sleep(self.chunk_delay_s)
                text += piece
                await agent("assistant", {"text": text, "delta": piece})
                await chat(
                    {
                        "state": "delta",
                        "deltaText": piece,
                        "message": _assistant_message(text, _now_ms()),
                    }
                )
            now = _now_ms()
            session.seq += 1
            stored = _assistant_message(text, now)
            stored["stopReason"] = "stop"
            stored["__openclaw"] = {"runId": run.run_id, "id": str(uuid.uuid4()), "seq": session.seq}
            session.messages.append(stored)
            session.updated_at = now
            run.done = True
            await agent("lifecycle", {"phase": "end", "stopReason": "stop", "aborted": False, "endedAt": now})
            await chat({"state": "final", "stopReason": "stop", "message": _assistant_message(text, now)})
        finally:
            run.done = True

    def _session(self, key: str) -> _Session:
        session = self.sessions.get(key)
        if session is None:
            parts = key.split(":")
            agent_id = parts[1] if len(parts) > 2 and parts[0] == "agent" else "main"
            now = _now_ms()
            session = _Session(key, str(uuid.uuid4()), agent_id, now, now)
            self.sessions[key] = session
        return session

    # -- sending -------------------------------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_ms / 1000.0)
            if not self.pause_ticks:
                await self._broadcast("tick", {"ts": _now_ms()})

    async def _broadcast(self, name: str, payload: JsonObject) -> None:
        for client in list(self._clients):
            if client.authed:
                client.seq += 1
                await self._send(client, frames.event(name, payload, client.seq))

    async def _send(self, client: _Client, frame: JsonObject) -> None:
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(frames.encode(frame))


def _obj(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _required_str(params: JsonObject, name: str, method: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"invalid {method} params: must have required property '{name}'")
    return value


def _assistant_message(text: str, timestamp: int) -> JsonObject:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": timestamp}


def _split(text: str, chunks: int) -> list[str]:
    """`text` in at most `chunks` non-empty pieces (one empty piece for an empty text)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, chunks)))
    return [text[i : i + size] for i in range(0, len(text), size)]


class FeedRecorder:
    """Collects everything a gateway feed yields, in the background, so a test can wait for what it expects:
    `await recorder.wait_for(lambda item: ...)`. `stop()` ends the pump (the feed itself is closed by its owner)."""

    def __init__(self, feed: AsyncIterable[Any]) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(feed), name="feed-recorder")

    async def _pump(self, feed: AsyncIterable[Any]) -> None:
        async for item in feed:
            self.items.append(item)
            self._changed.set()

    @property
    def ended(self) -> bool:
        """The feed finished (closed, or dropped for lagging)."""
        return self._task.done()

    async def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float = 10.0, start: int = 0) -> Any:
        """The first item (from index `start`) matching `predicate`; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            index = start
            while True:
                for item in self.items[index:]:
                    if predicate(item):
                        return item
                index = len(self.items)
                self._changed.clear()
                await self._changed.wait()

    async def wait_ended(self, timeout_s: float = 1.0) -> None:
        """Until the feed has ended (its owner closed it, or dropped it)."""
        await asyncio.wait_for(asyncio.shield(self._task), timeout_s)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
