"""An in-process event hub: the core publishes, every connected client has its own bounded queue.

A subscriber that falls `maxsize` events behind is dropped (its queue is closed) rather than letting the
connector buffer without bound for one slow browser; the transport then closes that client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from claw_core.model import JsonObject

__all__ = ["EventHub", "Subscription"]


class Subscription:
    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[JsonObject | None] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.overflowed = False
        self.closed = False

    def offer(self, event: JsonObject) -> None:
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

    async def __aiter__(self) -> AsyncIterator[JsonObject]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event


class EventHub:
    """Implements the EventSink port."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def publish(self, event: JsonObject) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
