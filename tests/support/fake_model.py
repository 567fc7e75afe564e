"""A small OpenAI-compatible model server that the tests own and script.

It runs aiohttp on its own event loop in a daemon thread, so sync and async tests use it alike, and listens on a
free port of 127.0.0.1:

- `POST /v1/chat/completions`, streaming (`stream: true`: SSE chunks, a `finish_reason` chunk, `data: [DONE]`)
  or one JSON completion;
- `GET /v1/models`.

By default every completion echoes what the user typed in the latest turn (`"echo: <text>"`, see
`prompt_text`). A test changes that with `set_script(...)` (the default from now on) or `push_script(...)` (the
next completions, first in first out): the reply text, the number of chunks, a delay between chunks, a hang
(headers and the first chunks sent, then nothing until `release()` or `stop()`), or an HTTP error. Every request
is recorded (`requests`, `chat_requests()`, `wait_for_chat_requests(n)`).

It also serves as the gateway's egress trap: `egress_proxy_url` is a forward-proxy address on loopback that records
and refuses every request (`egress_attempts`); the gateway harness points OpenClaw's managed proxy at it, so any
attempt of the gateway to reach a non-loopback host fails and is visible to the tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

__all__ = [
    "ChatRequest",
    "FakeModel",
    "ModelScript",
    "RecordedRequest",
    "echo_reply",
    "last_user_text",
    "prompt_text",
    "split_text",
]

MODEL_ID = "fake-1"
INTERNAL_CONTEXT_MARK = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
RUNTIME_SUFFIX_MARK = "\n\nRuntime: "
_TIMESTAMP_PREFIX = re.compile(r"^\[[^\]\n]{1,64}\] ")
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received; `body` is the decoded JSON body (None when absent or not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float


@dataclass(frozen=True)
class ChatRequest:
    """A recorded `POST /v1/chat/completions`, with helpers to read what the gateway sent."""

    raw: RecordedRequest

    @property
    def body(self) -> dict[str, Any]:
        return self.raw.body if isinstance(self.raw.body, dict) else {}

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    def texts(self, role: str) -> list[str]:
        """The text of every message with `role`, in order (content parts joined)."""
        return [_content_text(m.get("content")) for m in self.messages if m.get("role") == role]

    @property
    def last_user_text(self) -> str:
        return last_user_text(self.messages)

    @property
    def prompt_text(self) -> str:
        return prompt_text(self.messages)


ReplyFn = Callable[[ChatRequest], str]


@dataclass(frozen=True)
class ModelScript:
    """How the fake model answers one completion.

    reply: the text, or a function of the request; None echoes (`echo_reply`).
    chunks: how many SSE content chunks the text is cut into (at most one per character; at least one).
    chunk_delay_s: the pause before each content chunk after the first (and before the finish chunk).
    hang_after_chunks: None never hangs; N sends the headers and N content chunks, then waits until `release()`
        or `stop()` and ends the response without a finish chunk. For non-streaming requests any N hangs before
        answering.
    error_status: answer with this HTTP status and an OpenAI-style error body instead (e.g. 500, 429).
    error_message: the message in that error body.
    """

    reply: str | ReplyFn | None = None
    chunks: int = 3
    chunk_delay_s: float = 0.0
    hang_after_chunks: int | None = None
    error_status: int | None = None
    error_message: str = "fake model failure"

    def text_for(self, request: ChatRequest) -> str:
        if self.reply is None:
            return echo_reply(request)
        if isinstance(self.reply, str):
            return self.reply
        return self.reply(request)


def echo_reply(request: ChatRequest) -> str:
    return f"echo: {request.prompt_text}"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The raw text of the last user message (for OpenClaw: often its internal-context block, see `prompt_text`)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """What the user typed in the latest turn, as OpenClaw 2026.9.6 sends it: the last user message that is not an
    internal-context block, without the `[Wed 2026-11-25 11:03 UTC] ` prefix and the `\\n\\nRuntime: ...` suffix."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = _content_text(message.get("content"))
        if text.lstrip().startswith(INTERNAL_CONTEXT_MARK):
            continue
        text = _TIMESTAMP_PREFIX.sub("", text, count=1)
        return text.split(RUNTIME_SUFFIX_MARK, 1)[0]
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def split_text(text: str, chunks: int) -> list[str]:
    """`text` cut into `chunks` consecutive pieces of near-equal length (fewer when the text is shorter)."""
    count = max(1, min(chunks, len(text)))
    bounds = [round(i * len(text) / count) for i in range(count + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(count)]


@dataclass
class _State:
    default: ModelScript = field(default_factory=ModelScript)
    queue: deque[ModelScript] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    egress: list[str] = field(default_factory=list)
    completions: int = 0


class FakeModel:
    """The server; `start()`/`stop()` or a `with` block. Thread-safe: scripts and records sit behind a lock."""

    def __init__(self, model_id: str = MODEL_ID) -> None:
        self.model_id = model_id
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._trap: asyncio.Server | None = None
        self._release: asyncio.Event | None = None
        self._port = 0
        self._trap_port = 0

    # lifecycle

    def start(self) -> FakeModel:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as error:
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-model", daemon=True)
        self._thread.start()
        if not ready.wait(STOP_TIMEOUT_S) or failure:
            raise RuntimeError(f"fake model did not start: {failure[0] if failure else 'timeout'}")
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._release = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        self._port = int(listener.getsockname()[1])
        await web.SockSite(self._runner, listener).start()
        self._trap = await asyncio.start_server(self._egress_trap, "127.0.0.1", 0)
        self._trap_port = int(self._trap.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._trap is not None:
            self._trap.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """What OpenClaw's provider `baseUrl` is set to: `http://127.0.0.1:PORT/v1`."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def egress_proxy_url(self) -> str:
        return f"http://127.0.0.1:{self._trap_port}"

    # scripting

    def set_script(self, script: ModelScript | None = None, **changes: Any) -> None:
        """Make `script` (or the echo default with `changes`) the answer to every completion from now on."""
        with self._lock:
            self._state.default = replace(script or ModelScript(), **changes)

    def push_script(self, script: ModelScript | None = None, **changes: Any) -> None:
        """Queue a script for the next completion only; queued scripts go before the default, in order."""
        with self._lock:
            self._state.queue.append(replace(script or ModelScript(), **changes))

    def release(self) -> None:
        """End every hanging response now (they close without a finish chunk); later hangs hang again."""
        loop, event = self._loop, self._release
        if loop is not None and event is not None:

            def fire() -> None:
                event.set()
                self._release = asyncio.Event()

            loop.call_soon_threadsafe(fire)

    def reset(self) -> None:
        """Back to the echo default; queued scripts and recorded requests are dropped, hanging responses end.
        Egress attempts are kept: they are a guard over the whole session."""
        with self._lock:
            self._state = _State(egress=self._state.egress)
        self.release()

    # records

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def chat_requests(self) -> list[ChatRequest]:
        return [ChatRequest(r) for r in self.requests if r.path == "/v1/chat/completions"]

    @property
    def egress_attempts(self) -> list[str]:
        """The request lines of every attempt to leave loopback through the egress trap (e.g. `CONNECT x:443`)."""
        with self._lock:
            return list(self._state.egress)

    def wait_for_chat_requests(self, count: int, timeout: float = 30.0) -> list[ChatRequest]:
        """Block until at least `count` completions were requested; raises TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._state.completions < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._state.completions} of {count} completion requests in {timeout} s")
                self._changed.wait(remaining)
        return self.chat_requests()

    async def wait_for_chat_requests_async(self, count: int, timeout_s: float = 30.0) -> list[ChatRequest]:
        """`wait_for_chat_requests` for async tests (waits in a worker thread, not on the event loop)."""
        return await asyncio.to_thread(self.wait_for_chat_requests, count, timeout_s)

    # handlers

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(request.method, request.path, dict(request.headers), body, time.time())
        with self._changed:
            self._state.requests.append(record)
            if request.path == "/v1/chat/completions":
                self._state.completions += 1
            self._changed.notify_all()
        return record

    def _next_script(self) -> ModelScript:
        with self._lock:
            return self._state.queue.popleft() if self._state.queue else self._state.default

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        model = {"id": self.model_id, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [model]})

    async def _other(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"error": {"message": "not found", "type": "invalid_request_error"}}, status=404)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        chat = ChatRequest(recorded)
        script = self._next_script()
        if script.error_status is not None:
            error = {"message": script.error_message, "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=script.error_status)
        text = script.text_for(chat)
        completion_id = f"chatcmpl-fake-{time.monotonic_ns()}"
        if not chat.stream:
            if script.hang_after_chunks is not None:
                await self._hang()
                raise web.HTTPServiceUnavailable()
            return web.json_response(self._completion(completion_id, text, chat))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for index, piece in enumerate(split_text(text, script.chunks)):
            if script.hang_after_chunks is not None and index >= script.hang_after_chunks:
                break
            if index and script.chunk_delay_s:
                await asyncio.sleep(script.chunk_delay_s)
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            await _send_event(response, self._chunk(completion_id, delta, None))
        if script.hang_after_chunks is not None:
            await self._hang()
            return response
        if script.chunk_delay_s:
            await asyncio.sleep(script.chunk_delay_s)
        final = self._chunk(completion_id, {}, "stop")
        if (chat.body.get("stream_options") or {}).get("include_usage"):
            final["usage"] = _usage(chat, text)
        await _send_event(response, final)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _hang(self) -> None:
        if self._release is not None:
            await self._release.wait()

    def _chunk(self, completion_id: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _completion(self, completion_id: str, text: str, chat: ChatRequest) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": _usage(chat, text),
        }

    async def _egress_trap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            with self._lock:
                self._state.egress.append(line.decode("latin-1").strip())
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def _send_event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())


def _usage(chat: ChatRequest, text: str) -> dict[str, int]:
    prompt = sum(len(t.split()) for m in ("system", "user", "assistant") for t in chat.texts(m))
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
