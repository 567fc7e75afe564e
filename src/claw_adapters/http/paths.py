"""The one way this transport turns a request target into the path the router matches."""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

from claw_core.errors import Invalid

__all__ = ["decoded_path"]

# A path of plain segments: nothing to decode, no separator or control character hidden in a segment.
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@]*)+")
_FORBIDDEN_IN_SEGMENT = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")


@functools.lru_cache(maxsize=256)
def decoded_path(raw_target: str) -> str:
    """The percent-decoded path of an origin-form request target (`/a/b?q`), segment by segment.

    aiohttp decodes the whole path at once, so `/api/threads/a%2Fmessages` would become `/api/threads/a/messages`:
    another route. Decoding each segment on its own and refusing any that decodes to a separator (`/`, `\\`),
    a control character (NUL included), a dot segment or invalid UTF-8 means a path is either refused or reaches
    exactly the route its segments spell. Absolute-form targets (`GET http://other.host/...`) are for proxies and
    are refused, so the only authority is the checked `Host` header.

    Kept for the last targets seen: the guards and the handler both ask, and clients repeat their requests.
    """
    path = raw_target.split("?", 1)[0]
    if _PLAIN_PATH.fullmatch(path):
        segments = path.split("/")[1:]
        if "." in segments or ".." in segments:
            raise Invalid("Invalid path")
        return path
    if not path.startswith("/") or "#" in path:
        raise Invalid("Invalid request target")
    decoded = []
    for raw in path.split("/")[1:]:
        try:
            segment = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Invalid("Invalid path") from None
        if segment in {".", ".."} or _FORBIDDEN_IN_SEGMENT.search(segment):
            raise Invalid("Invalid path")
        decoded.append(segment)
    return "/" + "/".join(decoded)
