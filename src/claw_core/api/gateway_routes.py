"""Routes answered by the gateway itself."""

from __future__ import annotations

from claw_core.api.contract import ApiRequest, ApiResponse, Route
from claw_core.gateway import Gateway

__all__ = ["gateway_routes"]


def gateway_routes(gateway: Gateway) -> list[Route]:
    async def agents(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, await gateway.request("agents.list", {}))

    return [
        Route(
            "GET",
            "/api/agents",
            agents,
            "The gateway's agents (agents.list)",
            responses={502: "the gateway refused", 503: "the gateway is not connected"},
        )
    ]
