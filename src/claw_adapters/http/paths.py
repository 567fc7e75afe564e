"""The one way this transport turns a request target into the path the router matches."""

from __future__ import annotations

from urllib.parse import unquote

from claw_core.errors import Invalid

__all__ = ["decoded_path"]


def decoded_path(raw_target: str) -> str:
    """The percent-decoded path of an origin-form request target (`/a/b?q`), segment by segment.

    aiohttp decodes the whole path at once, so `/api/threads/a%2Fmessages` would become `/api/threads/a/messages`:
    another route. Decoding each segment on its own and refusing any that decodes to a separator (`/`, `\\`),
    a control character (NUL included), a dot segment or invalid UTF-8 means a path is either refused or reaches
    exactly the route its segments spell. Absolute-form targets (`GET http://other.host/...`) are for proxies and
    are refused, so the only authority is the checked `Host` header.
    """
    path = raw_target.split("?", 1)[0]
    if not path.startswith("/") or "#" in path:
        raise Invalid("Invalid request target")
    segments = []
    for raw in path.split("/")[1:]:
        try:
            segment = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Invalid("Invalid path") from None
        if segment in {".", ".."} or any(char in "/\\" or _is_control(char) for char in segment):
            raise Invalid("Invalid path")
        segments.append(segment)
    return "/" + "/".join(segments)


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0
