"""Thread titles: the rule that names a thread after its first user message, and the local title suggester.

The suggester is what `generate-title` uses when no agent is wired to propose titles: it applies the same rule
to the thread's first user message, so the route does something useful with no gateway at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from claw_core.model import Message, Role, Thread
from claw_core.services.attachments import without_attachment_lines

__all__ = ["TITLE_LENGTH", "FirstMessageTitles", "title_from_text"]

TITLE_LENGTH = 40


def title_from_text(text: str) -> str:
    """The first non-empty line the user typed (attachment lines skipped), cut to 40 characters with "..." when
    it was longer; "" for blank text."""
    typed = without_attachment_lines(text)
    line = next((candidate.strip() for candidate in typed.splitlines() if candidate.strip()), "")
    if len(line) <= TITLE_LENGTH:
        return line
    return line[:TITLE_LENGTH].rstrip() + "..."


class FirstMessageTitles:
    """Implements TitleSuggester without an agent."""

    async def suggest_title(self, thread: Thread, messages: Sequence[Message]) -> str | None:
        first = next((m for m in messages if m.role is Role.USER and m.content.strip()), None)
        return title_from_text(first.content) if first is not None else None
