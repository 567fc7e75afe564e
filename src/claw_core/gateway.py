"""The gateway port: what the core needs from the user's OpenClaw gateway, whatever carries it.

The adapter (claw_adapters.gateway) keeps one authenticated connection, reconnects on its own, and hands every
event and every change of connection state to its subscribers. The core never sees frames, ids or sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from claw_core.model import JsonObject

__all__ = ["Gateway", "GatewayEvent", "GatewayFeed", "GatewayStatus"]


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """One `{"type":"event"}` frame: its name, payload and the gateway's frame sequence number."""

    event: str
    payload: JsonObject
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The connection went up (with the gateway's hello-ok payload: protocol, features, policy) or down."""

    connected: bool
    hello: JsonObject = field(default_factory=dict)
    reason: str = ""


class GatewayFeed(Protocol):
    """A subscriber's view: every event and status change in order, until closed (or dropped for lagging)."""

    def __aiter__(self) -> AsyncIterator[GatewayEvent | GatewayStatus]: ...

    def close(self) -> None: ...


class Gateway(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def hello(self) -> JsonObject | None:
        """The current connection's hello-ok payload (protocol, features, snapshot, policy); None while down."""

    async def request(self, method: str, params: JsonObject, *, timeout_s: float | None = None) -> JsonObject:
        """Send a request and return the response payload (`timeout_s` None: the adapter's own timeout).
        Raise claw_core.errors.Unavailable when not connected or when no answer came in time, UpstreamError when
        the gateway answered ok:false, TooLarge for a request over the gateway's policy.maxPayload, Invalid for
        params that are not JSON."""

    def subscribe(self, maxsize: int = 1000) -> GatewayFeed:
        """Events and status changes from now on (subscribe before `start` to see the first connection). An
        event whose payload is not an object is malformed and dropped. A subscriber more than `maxsize` behind
        is dropped: its feed ends."""

    async def start(self) -> None:
        """Begin connecting (and reconnecting) in the background; returns at once."""

    async def close(self) -> None: ...
