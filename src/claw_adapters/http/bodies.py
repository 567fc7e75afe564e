"""Reading a request body with a size cap and an absolute deadline, never more than the route allows."""

from __future__ import annotations

import asyncio

from aiohttp import web

from claw_core.errors import ClawError, Invalid, TooLarge

__all__ = ["BodyTimeout", "read_body", "too_large"]


class BodyTimeout(ClawError):
    """The body did not arrive in time: a slow-body attack or a stalled client."""

    status = 408


def too_large(limit: int) -> TooLarge:
    return TooLarge(f"Body larger than {limit} bytes")


async def read_body(request: web.BaseRequest, limit: int, timeout_s: float) -> bytes:
    """The whole body, or TooLarge as soon as it passes `limit` (chunked bodies included: the declared length was
    already checked, this catches what was not declared), or BodyTimeout when it is not complete within
    `timeout_s`, however steadily the bytes trickle in. A malformed chunked encoding, or a client that hangs up
    mid-body, is the client's error (400), not the server's."""
    if not request.body_exists:  # neither a length nor chunks: most GETs
        return b""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.readany():
                if len(body) + len(chunk) > limit:
                    raise too_large(limit)
                body += chunk
    except TimeoutError:
        raise BodyTimeout("Request body timeout") from None
    except (web.RequestPayloadError, ConnectionError):
        raise Invalid("Incomplete or malformed body") from None
    return bytes(body)
