"""What a file is, judged by its extension: the Content-Type to serve it with, and which size limit applies.

A fixed table rather than `mimetypes`, whose answers depend on the machine's /etc/mime.types: the same file gets
the same type everywhere. Types a browser would run as a page (HTML, SVG, XML) are served as attachments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

__all__ = ["FileType", "content_disposition", "file_type"]

_TEXT = "text/plain; charset=utf-8"
_TEXT_TYPES = {
    ".txt": _TEXT,
    ".md": "text/markdown; charset=utf-8",
    ".markdown": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".jsonl": "application/x-ndjson; charset=utf-8",
    ".yaml": "text/yaml; charset=utf-8",
    ".yml": "text/yaml; charset=utf-8",
    ".toml": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".svg": "image/svg+xml",
}
_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".bmp": "image/bmp",
    ".ico": "image/vnd.microsoft.icon",
    ".pdf": "application/pdf",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".opus": "audio/opus",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".ogv": "video/ogg",
}
_ACTIVE = frozenset({".html", ".htm", ".svg", ".xml", ".xhtml"})
"""A browser would run scripts in these if it opened them as a page."""


@dataclass(frozen=True, slots=True)
class FileType:
    content_type: str
    is_media: bool
    """Images, PDF, audio and video: the larger read limit applies."""
    active: bool
    """A browser would run it as a page: serve it as an attachment."""


def file_type(name: str) -> FileType:
    """The type of a file called `name`; anything unknown is text when it has no extension (README, Makefile), else
    opaque bytes."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _MEDIA_TYPES:
        return FileType(_MEDIA_TYPES[suffix], is_media=True, active=False)
    if suffix in _TEXT_TYPES:
        return FileType(_TEXT_TYPES[suffix], is_media=False, active=suffix in _ACTIVE)
    return FileType(_TEXT if not suffix else "application/octet-stream", is_media=False, active=suffix in _ACTIVE)


def content_disposition(name: str, *, attachment: bool) -> str:
    """`inline` or `attachment`, with the name in RFC 6266/8187 form (any character, percent-encoded)."""
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename*=UTF-8''{quote(name, safe='')}"
