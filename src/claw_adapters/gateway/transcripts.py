"""Session transcript files of older gateways: `<sessions_dir>/<agent>/sessions/<sessionId>.jsonl`.

Only files of exactly that shape are ever removed: the agent and the session id are checked against a strict
alphabet, and the resolved path must still lie inside the sessions directory (no `..`, no symlink out).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

__all__ = ["SessionTranscriptFiles"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class SessionTranscriptFiles:
    def __init__(self, sessions_dir: Path) -> None:
        self._root = sessions_dir

    async def remove(self, agent: str, session_id: str) -> bool:
        return await asyncio.to_thread(self._remove, agent, session_id)

    def _remove(self, agent: str, session_id: str) -> bool:
        if not (_NAME.fullmatch(agent) and _NAME.fullmatch(session_id)):
            return False
        root = self._root.resolve()
        candidate = root / agent / "sessions" / f"{session_id}.jsonl"
        if candidate.is_symlink() or not candidate.resolve().is_relative_to(root):
            return False
        try:
            candidate.unlink()
        except FileNotFoundError:
            return False
        return True
