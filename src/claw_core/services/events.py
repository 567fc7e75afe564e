"""An in-process event hub: producers publish, every subscriber has its own bounded queue.

A subscriber that falls `maxsize` events behind is dropped (its feed ends) rather than letting the connector
buffer without bound for one slow client; the transport then closes that client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from claw_core.model import JsonObject

__all__ = ["ClientEvents", "EventHub", "Subscription"]

T = TypeVar("T")


class Subscription(Generic[T]):
    def __init__(self, hub: EventHub[T], maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.overflowed = False
        self.closed = False

    def offer(self, event: T) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._maxsize:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event


class EventHub(Generic[T]):
    """Publish/subscribe within one event loop. `EventHub[JsonObject]` implements the EventSink port."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription[T]] = set()

    def publish(self, event: T) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    def subscribe(self, maxsize: int = 1000) -> Subscription[T]:
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


ClientEvents = EventHub[JsonObject]
"""The hub of the connector's own events for connected clients (thread-title-updated, unread-update, ...)."""
