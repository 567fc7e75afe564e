"""The inline attachments of a relayed `chat.send`: read, checked and decoded before anything is saved.

A browser sends `params.attachments = [{type, mimeType, content: <base64>, fileName?}, ...]`. Everything here is
refused with a client error (`Invalid`, or `TooLarge` for counts and sizes) before a byte is written: sizes are
checked on the encoded length, for every attachment, before any of them is decoded, so an oversized request
costs no decoding and no memory beyond the frame that carried it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from claw_core.errors import Invalid, TooLarge
from claw_core.ports import StoredUpload

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_BYTES",
    "MAX_FILE_NAME_CHARS",
    "MAX_TOTAL_BYTES",
    "Attachment",
    "attachment_line",
    "parse_attachments",
]

MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
"""Decoded size of one attachment."""
MAX_TOTAL_BYTES = 30 * 1024 * 1024
"""Decoded size of all the attachments of one message."""
MAX_FILE_NAME_CHARS = 1024
MAX_TYPE_CHARS = 32

# RFC 6838 section 4.2: type "/" subtype, each a restricted-name (no parameters, no wildcards, no spaces).
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")


@dataclass(frozen=True, slots=True)
class Attachment:
    type: str
    mime_type: str
    """Lower-cased `type/subtype`."""
    file_name: str | None
    """As the client sent it (untrusted: the upload store never uses it as a path)."""
    data: bytes = field(repr=False)


def parse_attachments(params: Mapping[str, Any]) -> list[Attachment]:
    """The decoded attachments of `chat.send` params; an empty list when there are none (absent, null or [])."""
    raw = params.get("attachments")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Invalid("attachments must be an array")
    if len(raw) > MAX_ATTACHMENTS:
        raise TooLarge(f"at most {MAX_ATTACHMENTS} attachments per message")
    checked = [_check(index, item) for index, item in enumerate(raw)]
    total = sum(size for *_, size in checked)
    if total > MAX_TOTAL_BYTES:
        raise TooLarge(f"attachments may hold at most {MAX_TOTAL_BYTES // (1024 * 1024)} MiB in total")
    return [
        Attachment(type=kind, mime_type=mime, file_name=name, data=_decode(index, content, size))
        for index, (kind, mime, name, content, size) in enumerate(checked)
    ]


ATTACHMENT_PREFIX = "[attachment: "


def attachment_line(upload: StoredUpload) -> str:
    """What is appended to the message text for the agent, which runs on this machine and opens the file."""
    return f"\n{ATTACHMENT_PREFIX}{upload.path} ({upload.mime_type}, {upload.size} bytes)]"


def without_attachment_lines(text: str) -> str:
    """The text the user typed, without the lines the relay appended for attachments."""
    return "\n".join(line for line in text.split("\n") if not line.startswith(ATTACHMENT_PREFIX)).rstrip("\n")


def _check(index: int, item: object) -> tuple[str, str, str | None, str, int]:
    """An attachment's fields and its decoded size, computed from the encoded length (nothing decoded yet)."""
    where = f"attachments[{index}]"
    if not isinstance(item, dict):
        raise Invalid(f"{where} must be an object")
    kind = item.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > MAX_TYPE_CHARS:
        raise Invalid(f"{where}.type must be a string of 1-{MAX_TYPE_CHARS} characters")
    mime = item.get("mimeType")
    if not isinstance(mime, str) or not _MIME_TYPE.fullmatch(mime):
        raise Invalid(f"{where}.mimeType must be a MIME type of the form type/subtype")
    name = item.get("fileName")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_FILE_NAME_CHARS):
        raise Invalid(f"{where}.fileName must be a string of at most {MAX_FILE_NAME_CHARS} characters")
    content = item.get("content")
    if not isinstance(content, str):
        raise Invalid(f"{where}.content must be a base64 string")
    size = _decoded_size(content)
    if size > MAX_ATTACHMENT_BYTES:
        raise TooLarge(f"{where} is larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB")
    return kind, mime.lower(), name, content, size


def _decoded_size(content: str) -> int:
    """Exact for well-formed base64 (length a multiple of 4, at most two '=' of padding); an upper bound else,
    and then decoding refuses it anyway."""
    padding = 2 if content.endswith("==") else 1 if content.endswith("=") else 0
    return max(0, (len(content) + 3) // 4 * 3 - padding)


def _decode(index: int, content: str, size: int) -> bytes:
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a str with non-ASCII characters
        raise Invalid(f"attachments[{index}].content is not valid base64") from None
    if len(data) > size:  # cannot happen for valid base64; never let a miscount through the size caps
        raise TooLarge(f"attachments[{index}] is larger than announced")
    return data
