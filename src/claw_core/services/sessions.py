"""Cleaning up the gateway sessions behind deleted threads, so a deleted conversation leaves no context behind.

`sessions.delete` is the supported way; a gateway that does not know it (older releases) kept transcripts as
`<sessionId>.jsonl` files, which are removed instead, and only those. Cleanup never delays the user: it runs in
the background and, while the gateway is unreachable, waits and retries. What is still to clean up is kept in a
`PendingSessions` store, so a restart of the connector resumes it instead of leaving the sessions behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from claw_core.errors import Unavailable, UpstreamError
from claw_core.gateway import Gateway
from claw_core.model import SessionKey

__all__ = ["PendingSessions", "SessionCleanup", "SessionJanitor", "SessionRef", "TranscriptFiles"]

log = logging.getLogger(__name__)

RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class SessionRef:
    key: str
    session_id: str | None = None


class TranscriptFiles(Protocol):
    """Transcripts kept as files by gateways older than `sessions.delete`."""

    async def remove(self, agent: str, session_id: str) -> bool: ...


class PendingSessions(Protocol):
    """Where the sessions still to be cleaned up are kept across restarts."""

    async def load(self) -> list[SessionRef]: ...

    async def save(self, sessions: Sequence[SessionRef]) -> None:
        """Replace what is kept, atomically."""


class SessionCleanup(Protocol):
    """What the routes need: hand over the sessions of deleted threads and move on."""

    def forget(self, sessions: Iterable[SessionRef]) -> None: ...


class SessionJanitor:
    """Implements SessionCleanup against the gateway."""

    def __init__(
        self,
        gateway: Gateway,
        transcripts: TranscriptFiles,
        *,
        kept: PendingSessions | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self._gateway = gateway
        self._transcripts = transcripts
        self._kept = kept
        self._retry_s = retry_s
        self._pending: dict[str, SessionRef] = {}
        self._saved: list[SessionRef] = []
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Resume the cleanups a previous run left unfinished."""
        if self._kept is not None:
            self._saved = await self._kept.load()
            self.forget(self._saved)

    def forget(self, sessions: Iterable[SessionRef]) -> None:
        """Delete these sessions on the gateway, soon; returns at once."""
        for ref in sessions:
            self._pending[ref.key] = ref
        if self._pending and self._worker is None:
            self._worker = asyncio.create_task(self._work())

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait until every session handed in so far is cleaned up (or given up)."""
        while self._worker is not None:
            await asyncio.shield(self._worker)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _work(self) -> None:
        try:
            while self._pending:
                await self._keep()
                key, ref = next(iter(self._pending.items()))
                try:
                    await self._delete(ref)
                except Unavailable:
                    await asyncio.sleep(self._retry_s)  # the gateway is away: keep the session for later
                    continue
                self._pending.pop(key, None)
            await self._keep()
        finally:
            self._worker = None

    async def _keep(self) -> None:
        """Save the pending list when it changed since the last save (the first thing the worker does after
        `forget`, so a crash right after a delete request loses nothing)."""
        pending = list(self._pending.values())
        if self._kept is None or pending == self._saved:
            return
        try:
            await self._kept.save(pending)
        except OSError as error:
            log.warning("could not save the pending session cleanups: %s", error)
            return
        self._saved = pending

    async def _delete(self, ref: SessionRef) -> None:
        try:
            await self._gateway.request("sessions.delete", {"key": ref.key})
        except UpstreamError as error:
            if not error.message.startswith("unknown method"):
                log.warning("the gateway refused to delete session %s: %s", ref.key, error.message)
                return
            await self._remove_transcript(ref)

    async def _remove_transcript(self, ref: SessionRef) -> None:
        key = SessionKey.parse(ref.key)
        if key is None or not ref.session_id:
            return
        if await self._transcripts.remove(key.agent, ref.session_id):
            log.info("removed the transcript of session %s", ref.key)
