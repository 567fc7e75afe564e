"""JSON schemas of the request bodies, for the OpenAPI description (and so for fuzzing and client generation)."""

from __future__ import annotations

from typing import Any

from claw_core.validation import MAX_SAFE_INT

__all__ = [
    "ACTIVE_THREAD_BODY",
    "CREATE_THREAD_BODY",
    "CREATE_WORKSPACE_BODY",
    "FILES_BODY",
    "IMPORT_BODY",
    "MARK_READ_BODY",
    "MESSAGE_BODY",
    "PATCH_THREAD_BODY",
    "PATCH_WORKSPACE_BODY",
    "REORDER_BODY",
    "TEXT_BODY",
]

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_INTEGER: Schema = {"type": "integer", "minimum": -MAX_SAFE_INT, "maximum": MAX_SAFE_INT}
_OBJECT_OR_NULL: Schema = {"type": ["object", "null"]}


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


CREATE_WORKSPACE_BODY = _object(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"},
        "label": _STRING,
        "color": _STRING,
        "icon": _STRING,
        "agent": _STRING,
    },
    ("name",),
)
PATCH_WORKSPACE_BODY = _object(
    {"label": _STRING, "color": _STRING, "icon": _STRING, "lastThread": _NULLABLE_STRING, "agent": _STRING}
)
REORDER_BODY = _object({"order": {"type": "array", "items": _STRING}}, ("order",))
CREATE_THREAD_BODY = _object({"id": _STRING})
PATCH_THREAD_BODY = _object(
    {
        "title": _STRING,
        "model": _NULLABLE_STRING,
        "pinned": {"type": "boolean"},
        "pin_order": _INTEGER,
        "sort_order": _INTEGER,
        "metadata": _OBJECT_OR_NULL,
        "unread_count": {**_INTEGER, "minimum": 0},
    }
)
MARK_READ_BODY = _object({"messageIds": {"type": "array", "items": _STRING, "minItems": 1}}, ("messageIds",))
MESSAGE_BODY = _object(
    {
        "id": _STRING,
        "role": {"type": "string", "enum": ["user", "assistant", "system", "tool"]},
        "content": _STRING,
        "timestamp": _INTEGER,
        "status": _STRING,
        "metadata": _OBJECT_OR_NULL,
        "seq": {**_INTEGER, "type": ["integer", "null"]},
    },
    ("id", "role", "content", "timestamp"),
)
ACTIVE_THREAD_BODY = _object({"workspace": _STRING, "threadId": _NULLABLE_STRING}, ("workspace",))
IMPORT_BODY = _object({"threads": {"type": "array", "items": {"type": "object"}}}, ("threads",))
FILES_BODY = _object({"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}, ("files",))
"""A multipart upload: its files in the field `files`, as the web app sends them."""
TEXT_BODY: Schema = {"type": "string", "description": "UTF-8 text"}
