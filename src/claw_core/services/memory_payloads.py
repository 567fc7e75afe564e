"""The rules every memory adapter applies the same way: ids, texts, and the payload fields mem0 fills in.

Shared so that SQLite, Qdrant, Postgres and the in-memory fake cannot drift apart on what an id is, what text is
acceptable, or what `add` and `update` write into a payload (the contract suite holds them all to these).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

from claw_core.errors import Invalid
from claw_core.model import JsonObject

__all__ = [
    "canonical_memory_id",
    "content_hash",
    "new_memory_id",
    "new_payload",
    "now_iso",
    "require_memory_id",
    "require_text",
    "search_words",
    "text_words",
    "updated_payload",
]

MAX_TEXT_CHARS = 100_000
"""A memory is a sentence or a paragraph; anything this long is a mistake (or an attack on the index)."""

_WORD = re.compile(r"[^\W_]+")
"""Letters and digits: what SQLite's unicode61 tokenizer keeps as a word (everything else separates words)."""


def canonical_memory_id(text: str) -> str | None:
    """The canonical lower-case form of a UUID, or None when `text` is not one (such an id is never found)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def require_memory_id(text: str) -> str:
    """A UUID to store a memory under; Invalid when it is not one."""
    memory_id = canonical_memory_id(text)
    if memory_id is None:
        raise Invalid("A memory id must be a UUID")
    return memory_id


def new_memory_id() -> str:
    return str(uuid.uuid4())


def require_text(data: object) -> str:
    """The text of a memory: a string with something besides white space in it, kept exactly as given."""
    if not isinstance(data, str):
        raise Invalid("data must be a string")
    if not data.strip():
        raise Invalid("data must not be empty")
    if len(data) > MAX_TEXT_CHARS:
        raise Invalid(f"data must be at most {MAX_TEXT_CHARS} characters")
    return data


def content_hash(text: str) -> str:
    """What mem0 stores as `hash`: the MD5 of the text, in hex (a change marker, not a security measure)."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def now_iso() -> str:
    """A timestamp in the ISO 8601 form mem0 writes (with an offset), in UTC."""
    return datetime.now(UTC).isoformat()


def new_payload(data: str, payload: JsonObject | None = None, *, now: str | None = None) -> JsonObject:
    """The payload `add` stores: `payload`'s fields, the text as `data`, and `hash` and `created_at` when missing."""
    text = require_text(data)
    stored: JsonObject = dict(payload or {})
    stored["data"] = text
    if not isinstance(stored.get("hash"), str):
        stored["hash"] = content_hash(text)
    if not isinstance(stored.get("created_at"), str):
        stored["created_at"] = now or now_iso()
    return stored


def updated_payload(payload: JsonObject, data: str, *, now: str | None = None) -> JsonObject:
    """The payload `update` stores: the same fields, with the new text, its hash and a fresh `updated_at`."""
    text = require_text(data)
    return {**payload, "data": text, "hash": content_hash(text), "updated_at": now or now_iso()}


def text_words(text: str) -> list[str]:
    """Every word of a text, lower-cased, repeats included."""
    return [word.casefold() for word in _WORD.findall(text)]


def search_words(query: str) -> list[str]:
    """The words of a search query, lower-cased and without duplicates; none for a blank or punctuation-only query."""
    return list(dict.fromkeys(text_words(query)))
