import asyncio

from claw_core.services.events import EventHub


async def test_every_subscriber_gets_every_event() -> None:
    hub = EventHub()
    first, second = hub.subscribe(), hub.subscribe()
    hub.publish({"event": "a"})
    hub.publish({"event": "b"})
    first.close()
    second.close()
    assert [e["event"] async for e in first] == ["a", "b"]
    assert [e["event"] async for e in second] == ["a", "b"]
    assert hub.subscriber_count == 0


async def test_a_slow_subscriber_is_dropped_not_buffered_without_bound() -> None:
    hub = EventHub()
    slow, fast = hub.subscribe(maxsize=3), hub.subscribe(maxsize=100)
    for index in range(10):
        hub.publish({"n": index})
    assert slow.overflowed and slow.closed
    assert hub.subscriber_count == 1
    received = [e["n"] async for e in slow]
    assert received == [0, 1, 2]
    fast.close()
    assert len([e async for e in fast]) == 10


async def test_iteration_waits_for_events() -> None:
    hub = EventHub()
    subscription = hub.subscribe()

    async def later() -> None:
        await asyncio.sleep(0.01)
        hub.publish({"n": 1})
        subscription.close()

    task = asyncio.create_task(later())
    assert [e async for e in subscription] == [{"n": 1}]
    await task
