"""Reading untrusted JSON values into typed ones, with errors a client can act on.

Used by the API layer (request bodies and query strings) and by import (exported files): both read data that
came from outside, and both must answer 400 with a clear message, never fail deeper in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claw_core.errors import Invalid

__all__ = [
    "MAX_SAFE_INT",
    "optional_bool",
    "optional_int",
    "optional_str",
    "query_int",
    "require_int",
    "require_str",
]

MAX_ID_LENGTH = 256
MAX_SAFE_INT = 2**53 - 1
"""The largest integer JavaScript (so the web app) holds exactly. A body's number beyond it (either sign) is refused,
a query's is capped to it: what the stores then compute from it (a page times its size, a timestamp plus a window)
stays well within SQLite's 64-bit integers."""


def require_str(body: Mapping[str, Any], key: str, *, max_length: int | None = None, allow_empty: bool = True) -> str:
    value = body.get(key)
    if value is None:
        raise Invalid(f"{key} is required")
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    if not allow_empty and not value:
        raise Invalid(f"{key} must not be empty")
    if max_length is not None and len(value) > max_length:
        raise Invalid(f"{key} must be at most {max_length} characters")
    return value


def optional_str(body: Mapping[str, Any], key: str, *, max_length: int | None = None) -> str | None:
    if body.get(key) is None:
        return None
    return require_str(body, key, max_length=max_length)


def require_int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if value is None:
        raise Invalid(f"{key} is required")
    return _as_int(key, value)


def optional_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    return None if value is None else _as_int(key, value)


def optional_bool(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Invalid(f"{key} must be a boolean")


def query_int(query: Mapping[str, str], key: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """An integer query parameter, clamped into [minimum, maximum] (`MAX_SAFE_INT` without one): a too-large limit
    is capped, not refused."""
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{key} must be an integer") from None
    return max(minimum, min(MAX_SAFE_INT if maximum is None else maximum, value))


def _as_int(key: str, value: object) -> int:
    # bool is an int in Python but never a number a client meant.
    if isinstance(value, bool):
        raise Invalid(f"{key} must be a number")
    if isinstance(value, int | float) and abs(value) > MAX_SAFE_INT:
        raise Invalid(f"{key} is out of range")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Invalid(f"{key} must be an integer")
