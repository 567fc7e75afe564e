"""The OpenClaw gateway adapter: a `websockets` client implementing `claw_core.gateway.Gateway`, and the device
identity it signs the handshake with."""

from claw_adapters.gateway.client import DEFAULT_MAX_FRAME_BYTES, GatewayClient, GatewayItem
from claw_adapters.gateway.identity import DEFAULT_FILE_NAME, DeviceIdentity, DeviceIdentityError

__all__ = [
    "DEFAULT_FILE_NAME",
    "DEFAULT_MAX_FRAME_BYTES",
    "DeviceIdentity",
    "DeviceIdentityError",
    "GatewayClient",
    "GatewayItem",
]
