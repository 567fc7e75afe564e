"""Builds the one router both transports dispatch into: the route tables plus the OpenAPI description of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from claw_core.api.contract import ApiRequest, ApiResponse, Route, Router
from claw_core.api.openapi import openapi_document

__all__ = ["build_router"]


def build_router(routes: Sequence[Route]) -> Router:
    document: dict[str, Any] = {}

    async def openapi(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, document)

    served = [*routes, Route("GET", "/api/openapi.json", openapi, "This description", requires_auth=False)]
    document.update(openapi_document(served))
    return Router(served)
