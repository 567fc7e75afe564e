"""An OpenAPI 3.1 description built from the route table, so it can never drift from what is served."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from claw_core import __version__
from claw_core.api.contract import JSON, Param, Route

__all__ = ["openapi_document"]

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "claw-connector API", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", route.path)
    ]
    parameters += [_parameter(param, "query") for param in route.query]
    parameters += [_parameter(param, "header") for param in route.headers]
    if route.workspace_header:
        parameters.append(_workspace_header())
    responses: dict[str, Any] = {
        str(status): {"description": text, "content": _answer_content(route, status)}
        for status, text in sorted(route.responses.items())
    }
    responses.setdefault("200", {"description": "success", "content": _answer_content(route, 200)})
    error = {"description": "error", "content": {JSON: {"schema": _error_ref()}}}
    responses.setdefault("400", error)
    responses["default"] = error
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', route.path).strip('_')}",
        "parameters": parameters,
        "responses": responses,
    }
    if route.body_schema is not None:
        media_type = "multipart/form-data" if route.multipart is not None else route.body_type
        operation["requestBody"] = {
            "required": "required" in route.body_schema,
            "content": {media_type: {"schema": route.body_schema}},
        }
    if not route.requires_auth:
        operation["security"] = []
    return operation


def _parameter(param: Param, location: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.kind}
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    return {"name": param.name, "in": location, "required": False, "schema": schema, "description": param.description}


def _answer_content(route: Route, status: int) -> dict[str, Any]:
    """A success answer has the route's media type (any bytes for a served file), an error is `{error}` JSON."""
    if status >= 400:
        return {JSON: {"schema": _error_ref()}}
    if 200 <= status < 300 and route.answer_type != JSON:
        return {route.answer_type: {"schema": {"type": "string", "format": "binary"}}}
    return {JSON: {}}


def _workspace_header() -> dict[str, Any]:
    return {
        "name": "X-Workspace",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[a-z0-9-]{0,32}$"},
        "description": "the workspace to act on (absent or empty: the active one)",
    }


def _error_ref() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Error"}
