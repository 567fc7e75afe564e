"""The copy use case over two in-memory stores: complete, resumable after an interruption, and checked by counts."""

from __future__ import annotations

import asyncio

import pytest

from claw_adapters.memory.in_memory import InMemoryMemoryStore
from claw_core.errors import Invalid, Unavailable
from claw_core.model import MemoryItem
from claw_core.ports import MemoryPage
from claw_core.services.memory_copy import MAX_CONCURRENT_PUTS, CopyProgress, CopyReport, copy_memories


async def filled(count: int) -> InMemoryMemoryStore:
    store = InMemoryMemoryStore()
    for n in range(count):
        await store.add(f"memory {n}", payload={"user_id": "alice", "n": n})
    return store


async def everything(store: InMemoryMemoryStore) -> dict[str, dict[str, object]]:
    page = await store.page(limit=10_000)
    return {item.id: item.payload for item in page.memories}


class FailingAfter(InMemoryMemoryStore):
    """A source whose backend goes away after `pages` pages."""

    def __init__(self, pages: int) -> None:
        super().__init__()
        self.pages_left = pages

    async def page(self, *, limit: int, cursor: str | None = None) -> MemoryPage:
        if self.pages_left == 0:
            raise Unavailable("gone")
        self.pages_left -= 1
        return await super().page(limit=limit, cursor=cursor)


async def test_copies_every_memory_as_it_is() -> None:
    source, target = await filled(23), InMemoryMemoryStore()
    steps: list[CopyProgress] = []
    report = await copy_memories(source, target, batch_size=5, on_batch=steps.append)
    assert await everything(target) == await everything(source)
    assert report == CopyReport(source_count=23, walked=23, copied=23, created=23, target_before=0, target_after=23)
    assert report.problems == []
    assert [step.batch for step in steps] == [5, 5, 5, 5, 3]
    assert [step.walked for step in steps] == [5, 10, 15, 20, 23]
    assert steps[-1].next_cursor is None


async def test_a_second_run_replaces_and_adds_nothing() -> None:
    source, target = await filled(12), InMemoryMemoryStore()
    await copy_memories(source, target, batch_size=5)
    again = await copy_memories(source, target, batch_size=5)
    assert (again.copied, again.created, again.target_after) == (12, 0, 12)
    assert again.problems == []


async def test_memories_already_in_the_target_are_kept() -> None:
    source, target = await filled(4), await filled(3)
    report = await copy_memories(source, target, batch_size=2)
    assert report.target_after == 7
    assert report.problems == []


async def test_an_interrupted_copy_resumes_from_the_last_written_page() -> None:
    source, target = FailingAfter(pages=2), InMemoryMemoryStore()
    for n in range(10):
        await source.add(f"memory {n}")
    steps: list[CopyProgress] = []
    with pytest.raises(Unavailable):
        await copy_memories(source, target, batch_size=3, on_batch=steps.append)
    assert await target.count() == 6
    last = steps[-1]

    source.pages_left = 100
    report = await copy_memories(
        source, target, batch_size=3, start_cursor=last.next_cursor, already_walked=last.walked
    )
    assert (report.walked, report.copied, report.created) == (10, 4, 4)
    assert report.problems == []
    assert await everything(target) == await everything(source)


async def test_counts_that_disagree_are_reported() -> None:
    class Forgetful(InMemoryMemoryStore):
        async def put(self, item: MemoryItem) -> bool:
            return True  # says it stored what it dropped

    report = await copy_memories(await filled(5), Forgetful(), batch_size=2)
    assert len(report.problems) == 2
    assert "was given 5 new ones, but now holds 0" in report.problems[0]
    assert "fewer than the source's 5" in report.problems[1]


async def test_a_source_that_changes_during_the_copy_is_reported() -> None:
    report = CopyReport(source_count=11, walked=10, copied=10, created=10, target_before=0, target_after=10)
    assert any("the source holds 11 memories but 10 were copied" in problem for problem in report.problems)


async def test_a_target_that_fails_stops_the_copy() -> None:
    target = InMemoryMemoryStore(available=False)
    with pytest.raises(Unavailable):
        await copy_memories(await filled(3), target)


async def test_the_batch_size_must_be_positive() -> None:
    with pytest.raises(Invalid):
        await copy_memories(InMemoryMemoryStore(), InMemoryMemoryStore(), batch_size=0)


async def test_the_puts_of_a_page_run_together_up_to_the_cap() -> None:
    class Watched(InMemoryMemoryStore):
        """Counts the puts in flight; each yields to the loop once, so the others can start meanwhile."""

        def __init__(self) -> None:
            super().__init__()
            self.in_flight = 0
            self.most_in_flight = 0

        async def put(self, item: MemoryItem) -> bool:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0)
                return await super().put(item)
            finally:
                self.in_flight -= 1

    target = Watched()
    report = await copy_memories(await filled(3 * MAX_CONCURRENT_PUTS), target, batch_size=3 * MAX_CONCURRENT_PUTS)
    assert report.problems == []
    assert target.most_in_flight == MAX_CONCURRENT_PUTS
