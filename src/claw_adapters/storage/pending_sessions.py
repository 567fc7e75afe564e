"""The gateway sessions still to be cleaned up, kept in a small private JSON file across restarts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from claw_adapters.storage.atomic_file import write_private_file
from claw_core.services.sessions import SessionRef

__all__ = ["JsonFilePendingSessions"]

log = logging.getLogger(__name__)


class JsonFilePendingSessions:
    """`[{"key": ..., "sessionId": ...}]` written atomically. A file that cannot be read is logged and treated as
    empty: the cleanups it held are lost, the connector still starts."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = asyncio.Lock()

    async def load(self) -> list[SessionRef]:
        return await asyncio.to_thread(self._load)

    async def save(self, sessions: Sequence[SessionRef]) -> None:
        rows = [{"key": ref.key, "sessionId": ref.session_id} for ref in sessions]
        data = (json.dumps(rows, ensure_ascii=False) + "\n").encode()
        async with self._lock:
            await asyncio.to_thread(write_private_file, self._path, data)

    def _load(self) -> list[SessionRef]:
        try:
            rows = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            log.warning("ignoring the unreadable pending-cleanup file %s: %s", self._path, error)
            return []
        if not isinstance(rows, list):
            log.warning("ignoring the pending-cleanup file %s: not a list", self._path)
            return []
        kept: list[SessionRef] = []
        for row in rows:
            key = row.get("key") if isinstance(row, dict) else None
            session_id = row.get("sessionId") if isinstance(row, dict) else None
            if isinstance(key, str) and (session_id is None or isinstance(session_id, str)):
                kept.append(SessionRef(key, session_id))
        return kept
