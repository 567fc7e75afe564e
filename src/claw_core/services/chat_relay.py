"""Chat persistence: every turn relayed to the gateway lands in the history exactly once.

The relay is the one consumer of the gateway's events. For each it decides what to store and what every
browser sees, in order: deltas are streamed (never written), a final reply is stored before it is announced,
and the run's record is kept until its reply is stored, so a reply that finished while the connector (or the
gateway) was down is recovered from `chat.history` on the next connection.

Message ids (docs/adr/0005-chat-persistence.md): a relayed user turn is `turn-<idempotencyKey>`; a reply fills
the newest pending placeholder the web app posted, or is `run-<runId>`; every reply carries `metadata.runId`,
which is what makes storing it idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from claw_core.api import gateway_frames as frames
from claw_core.errors import ClawError, Invalid, NotFound, Unavailable
from claw_core.gateway import Gateway, GatewayEvent, GatewayStatus
from claw_core.model import JsonObject, Message, Role, SessionKey, Workspace
from claw_core.ports import Clock, EventSink, HistoryStore, HistoryStores, RunRecord, StoredUpload, UploadStore
from claw_core.services.attachments import Attachment, attachment_line, parse_attachments
from claw_core.services.history import TWIN_WINDOW_MS, HistoryService
from claw_core.services.workspaces import WorkspaceService

__all__ = ["SILENT_REPLIES", "ChatRelay", "message_text"]

log = logging.getLogger(__name__)

SILENT_REPLIES = ("NO_REPLY", "HEARTBEAT_OK")
"""Whole replies that mean "nothing to say": never shown, never stored."""

HISTORY_LOOKBACK = 50
"""Messages of `chat.history` searched for a run's reply when reconciling."""

INTERRUPTED_AFTER_MS = 15 * 60_000
"""A run whose reply the gateway still does not have after this long is given up as interrupted."""

INTERRUPTED_TEXT = "[Response interrupted]"

ENDED_RUNS_KEPT = 1000


def message_text(message: object) -> str:
    """The text of a gateway chat message: `content` is a string or a list of parts of which the text ones count."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _could_become_silent(text: str) -> bool:
    stripped = text.strip()
    return any(token.startswith(stripped) for token in SILENT_REPLIES)


@dataclass(frozen=True, slots=True)
class _Route:
    workspace: Workspace
    thread_id: str
    session_key: str


class ChatRelay:
    def __init__(
        self,
        *,
        workspaces: WorkspaceService,
        stores: HistoryStores,
        history: HistoryService,
        gateway: Gateway,
        clock: Clock,
        clients: EventSink,
        uploads: UploadStore,
    ) -> None:
        self._workspaces = workspaces
        self._uploads = uploads
        self._stores = stores
        self._history = history
        self._gateway = gateway
        self._clock = clock
        self._clients = clients
        self._pump: asyncio.Task[None] | None = None
        self._ended: OrderedDict[str, None] = OrderedDict()
        """Runs whose terminal event was handled (the gateway may send a failed run's `error` twice)."""

    # lifecycle

    async def start(self) -> None:
        """Consume the gateway's events from now on (subscribing before the gateway connects loses nothing)."""
        feed = self._gateway.subscribe(maxsize=10_000)
        self._pump = asyncio.create_task(self._consume(feed))

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None

    async def _consume(self, feed: Any) -> None:
        try:
            async for item in feed:
                try:
                    if isinstance(item, GatewayStatus):
                        await self._on_status(item)
                    else:
                        await self.on_event(item)
                except Exception:
                    log.exception("could not handle a gateway event")
            log.error("the gateway event feed ended (the relay fell too far behind); replies will be reconciled")
        finally:
            feed.close()

    # routing

    def route(self, session_key: object) -> _Route | None:
        """The workspace and thread a session key belongs to, or None for sessions that are not ours to store
        (other channels, utility sessions, deleted workspaces)."""
        if not isinstance(session_key, str):
            return None
        key = SessionKey.parse(session_key)
        if key is None:
            return None
        workspace = self._workspaces.state.find(key.workspace)
        if workspace is None:
            return None
        return _Route(workspace, key.thread_id, session_key)

    async def _store(self, route: _Route) -> HistoryStore:
        return await self._stores.open(route.workspace.name)

    # the user's side: chat.send

    async def user_turn(self, params: JsonObject) -> JsonObject:
        """Store the user turn of a relayed `chat.send` before it goes upstream, and answer the params to send.

        A turn the web app has posted itself (same text, close in time) is not stored twice; see
        HistoryService.post_message for the other order. Inline attachments of a turn in one of our threads are
        saved to the thread's uploads and the message gains one line per file with its absolute path (the agent
        runs on this machine); the stored turn lists them in `metadata.attachments`, and the attachments stay in
        the params for the gateway. Malformed attachments raise Invalid or TooLarge: nothing is saved or stored,
        and the caller must not forward. Sessions that are not ours are forwarded as they are."""
        route = self.route(params.get("sessionKey"))
        if route is None:
            return params
        attachments = parse_attachments(params)
        text = params.get("message")
        if attachments and text is None:
            text = ""
        if not isinstance(text, str):
            if attachments:
                raise Invalid("message must be a string")
            return params
        key = params.get("idempotencyKey")
        turn_key = key if isinstance(key, str) and key else str(uuid.uuid4())
        turn_id = f"turn-{turn_key}"[:256]
        store = await self._store(route)
        typed = text
        uploads: list[StoredUpload] = []
        if attachments:
            try:
                if await store.get_thread(route.thread_id) is None:
                    return params  # not a thread of ours (any more): relayed, never stored
                earlier = await store.get_message(turn_id)
            except NotFound:
                return params
            if earlier is not None and earlier.thread_id == route.thread_id:
                # A resend of the same turn (same idempotency key): the files are saved already.
                return {**params, "message": earlier.content}
            uploads = await self._save_uploads(route, attachments)
            text += "".join(attachment_line(upload) for upload in uploads)
            params = {**params, "message": text}
        if not text.strip():
            return params
        now = self._clock.now_ms()
        try:
            nearby = await store.messages_near(route.thread_id, Role.USER, now, TWIN_WINDOW_MS)
        except NotFound:
            return params
        twins = {text, typed} if typed.strip() else {text}  # the app posts what the user typed
        if any(m.content in twins for m in nearby):
            return params
        metadata: JsonObject = {"source": "relay", "idempotencyKey": turn_key}
        if uploads:
            metadata["attachments"] = [upload.to_json() for upload in uploads]
        turn = Message(
            id=turn_id,
            thread_id=route.thread_id,
            role=Role.USER,
            content=text,
            timestamp=now,
            metadata=metadata,
        )
        try:
            stored, created = await self._history.post_message(route.workspace, turn)
        except NotFound:
            return params
        if created:
            self._announce_saved(route, stored)
        return params

    async def _save_uploads(self, route: _Route, attachments: list[Attachment]) -> list[StoredUpload]:
        saved: list[StoredUpload] = []
        for attachment in attachments:
            try:
                saved.append(
                    await self._uploads.save(
                        route.workspace.name,
                        route.thread_id,
                        attachment.data,
                        mime_type=attachment.mime_type,
                        file_name=attachment.file_name,
                    )
                )
            except OSError as error:
                log.error("could not save an attachment of thread %s: %s", route.thread_id, error)
                raise Unavailable("could not save the attachment") from None
        return saved

    async def run_started(self, params: JsonObject, response: JsonObject) -> None:
        """Remember the run `chat.send` started, until its reply is stored."""
        route = self.route(params.get("sessionKey"))
        run_id = response.get("runId")
        if route is None or not isinstance(run_id, str):
            return
        key = params.get("idempotencyKey")
        record = RunRecord(
            run_id=run_id,
            session_key=route.session_key,
            thread_id=route.thread_id,
            started_at=self._clock.now_ms(),
            idempotency_key=key if isinstance(key, str) else None,
        )
        store = await self._store(route)
        try:
            await store.record_run(record)
        except NotFound:
            return

    # the agent's side: chat events

    async def on_event(self, event: GatewayEvent) -> None:
        frame = frames.event(event.event, event.payload, event.seq)
        if event.event != "chat":
            self._clients.publish(frame)
            return
        payload = event.payload
        state = payload.get("state")
        route = self.route(payload.get("sessionKey"))
        raw_run_id = payload.get("runId")
        run_id = raw_run_id if isinstance(raw_run_id, str) else ""
        if state == "delta":
            self._on_delta(route, run_id, payload, frame)
        elif state in ("final", "aborted", "error") and self._already_ended(run_id):
            return
        elif state == "final":
            await self._on_final(route, run_id, payload, frame)
        elif state in ("aborted", "error"):
            await self._on_end(route, run_id, payload, frame, state)
        else:
            self._clients.publish(frame)

    def _already_ended(self, run_id: str) -> bool:
        """True for a second terminal event of the same run; remembers the last ENDED_RUNS_KEPT runs."""
        if not run_id:
            return False
        if run_id in self._ended:
            return True
        self._ended[run_id] = None
        if len(self._ended) > ENDED_RUNS_KEPT:
            self._ended.popitem(last=False)
        return False

    def _on_delta(self, route: _Route | None, run_id: str, payload: JsonObject, frame: JsonObject) -> None:
        text = message_text(payload.get("message"))
        if _could_become_silent(text):
            return  # held back: the text so far could still become a silent reply
        self._clients.publish(frame)
        if route is not None:
            self._clients.publish(
                _clawchats(
                    "streaming-delta",
                    workspace=route.workspace.name,
                    threadId=route.thread_id,
                    runId=run_id,
                    content=text,
                )
            )

    async def _on_final(self, route: _Route | None, run_id: str, payload: JsonObject, frame: JsonObject) -> None:
        message = payload.get("message")
        text = message_text(message)
        if text.strip() in SILENT_REPLIES:
            if route is not None:
                await self._drop_placeholder(route, run_id)
                self._stream_end(route, run_id, "silent")
            return
        stored = None
        if route is not None and run_id:
            timestamp = message.get("timestamp") if isinstance(message, dict) else None
            stored = await self._save_reply(route, run_id, text, timestamp if isinstance(timestamp, int) else None)
        self._clients.publish(frame)
        if route is not None:
            self._stream_end(route, run_id, "complete")
        if route is not None and stored is not None:
            # After the announcements: counting it unread is a second write the browser need not wait for.
            await self._history.mark_unread(route.workspace, route.thread_id, stored.id)

    async def _on_end(
        self, route: _Route | None, run_id: str, payload: JsonObject, frame: JsonObject, state: str
    ) -> None:
        self._clients.publish(frame)
        if route is None:
            return
        error = payload.get("errorMessage") if state == "error" else None
        await self._settle_placeholder(route, run_id, error=str(error or "error") if state == "error" else None)
        end = _clawchats("streaming-end", workspace=route.workspace.name, threadId=route.thread_id, runId=run_id)
        end["reason"] = state
        if state == "error":
            end["errorMessage"] = str(error or "")
        self._clients.publish(end)

    async def _save_reply(self, route: _Route, run_id: str, text: str, timestamp: int | None) -> Message | None:
        """Store the reply exactly once (the store guarantees it per run) and announce it; None when it was
        stored before (or its thread is gone). The caller counts it unread."""
        now = self._clock.now_ms()
        reply = Message(
            id=f"run-{run_id}"[:256],
            thread_id=route.thread_id,
            role=Role.ASSISTANT,
            content=text,
            timestamp=timestamp or now,
            metadata={"runId": run_id},
        )
        store = await self._store(route)
        try:
            stored = await store.store_reply(reply, run_id=run_id, now=now)
        except NotFound:
            return None  # the thread was deleted while the agent answered: nothing to keep
        if stored is not None:
            self._announce_saved(route, stored)
        return stored

    async def _settle_placeholder(self, route: _Route, run_id: str, *, error: str | None) -> None:
        """An aborted run leaves what was streamed, no longer pending; a failed one is marked with its error."""
        store = await self._store(route)
        try:
            pending = await store.latest_pending(route.thread_id)
            if pending is not None:
                metadata = {k: v for k, v in (pending.metadata or {}).items() if k != "pending"}
                metadata["runId"] = run_id
                status = pending.status
                if error is not None:
                    metadata["error"] = error
                    status = "error"
                settled = replace(pending, status=status, metadata=metadata)
                await store.upsert_message(settled, now=self._clock.now_ms())
            if run_id:
                await store.finish_run(run_id)
        except NotFound:
            return

    async def _drop_placeholder(self, route: _Route, run_id: str) -> None:
        store = await self._store(route)
        try:
            pending = await store.latest_pending(route.thread_id)
            if pending is not None:
                await store.delete_message(route.thread_id, pending.id)
            if run_id:
                await store.finish_run(run_id)
        except NotFound:
            return

    # reconciliation

    async def _on_status(self, status: GatewayStatus) -> None:
        self._clients.publish(_clawchats("gateway-status", connected=status.connected))
        if status.connected:
            await self.reconcile()

    async def reconcile(self) -> None:
        """Store the replies of runs that finished while nobody was listening; give up on runs that the gateway
        no longer knows after INTERRUPTED_AFTER_MS."""
        for workspace in list(self._workspaces.state.workspaces):
            store = await self._stores.open(workspace.name)
            for run in await store.open_runs():
                try:
                    await self._reconcile_run(workspace, store, run)
                except ClawError as error:
                    log.warning("could not reconcile run %s: %s", run.run_id, error)
                    return  # the gateway is unreachable again: the next connection retries

    async def _reconcile_run(self, workspace: Workspace, store: HistoryStore, run: RunRecord) -> None:
        route = _Route(workspace, run.thread_id, run.session_key)
        history = await self._gateway.request(
            "chat.history", {"sessionKey": run.session_key, "limit": HISTORY_LOOKBACK}
        )
        reply = _find_reply(history.get("messages"), run)
        if reply is not None:
            text = message_text(reply)
            if text.strip() in SILENT_REPLIES:
                await self._drop_placeholder(route, run.run_id)
                return
            timestamp = reply.get("timestamp")
            # A turn interrupted by a gateway restart is resumed under a new runId: store it under that one, the
            # id the live final carries too, so whichever comes first stores it and the other finds it stored.
            reply_run = _meta(reply).get("runId")
            run_id = reply_run if isinstance(reply_run, str) and reply_run else run.run_id
            stored = await self._save_reply(route, run_id, text, timestamp if isinstance(timestamp, int) else None)
            if run_id != run.run_id:
                await store.finish_run(run.run_id)
            if stored is not None:
                log.info("recovered the reply of run %s in thread %s", run.run_id, run.thread_id)
                self._stream_end(route, run.run_id, "complete")
                await self._history.mark_unread(workspace, run.thread_id, stored.id)
            return
        if self._clock.now_ms() - run.started_at > INTERRUPTED_AFTER_MS:
            await self._interrupt(route, store, run)

    async def _interrupt(self, route: _Route, store: HistoryStore, run: RunRecord) -> None:
        pending = await store.latest_pending(route.thread_id)
        if pending is not None and not pending.content.strip():
            await self._save_reply(route, run.run_id, INTERRUPTED_TEXT, None)
        else:
            await self._settle_placeholder(route, run.run_id, error=None)
        self._stream_end(route, run.run_id, "interrupted")

    # announcements

    def _announce_saved(self, route: _Route, message: Message) -> None:
        self._clients.publish(
            _clawchats(
                "message-saved",
                workspace=route.workspace.name,
                threadId=route.thread_id,
                messageId=message.id,
                message=message.to_json(),
            )
        )

    def _stream_end(self, route: _Route, run_id: str, reason: str) -> None:
        self._clients.publish(
            _clawchats(
                "streaming-end", workspace=route.workspace.name, threadId=route.thread_id, runId=run_id, reason=reason
            )
        )


def _find_reply(messages: object, run: RunRecord) -> JsonObject | None:
    """The assistant message of `run` in a `chat.history` answer: tagged with its runId, or else the first
    assistant message after the user turn that carried the run's idempotency key."""
    if not isinstance(messages, list):
        return None
    entries: list[JsonObject] = [m for m in messages if isinstance(m, dict)]
    for entry in entries:
        if entry.get("role") == "assistant" and _meta(entry).get("runId") == run.run_id:
            return entry
    if run.idempotency_key is None:
        return None
    # The gateway tags the user turn with the run's idempotency key (2026.9.6 writes "<key>:user").
    turn_keys = {run.idempotency_key, f"{run.idempotency_key}:user"}
    after_turn = False
    for entry in entries:
        meta = _meta(entry)
        if entry.get("role") == "user":
            after_turn = meta.get("idempotencyKey") in turn_keys
        elif after_turn and entry.get("role") == "assistant" and message_text(entry).strip():
            return entry
    return None


def _meta(entry: JsonObject) -> JsonObject:
    meta = entry.get("__openclaw")
    return meta if isinstance(meta, dict) else {}


def _clawchats(name: str, **fields: Any) -> JsonObject:
    return {"type": "clawchats", "event": name, **fields}
