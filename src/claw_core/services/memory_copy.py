"""Copying every memory from one store to another (`claw memory copy`), over the MemoryStore port alone.

The source is walked with `page()` and each page is `put()` into the target, ids and payloads as they are. `put`
replaces, so a copy that stops half way can simply run again (from the start, or from the cursor of the last page
that was fully written, which `on_batch` hands out after each page). At the end the counts are checked: every
memory the source holds must have been walked, and the target must have grown by exactly the memories it did not
have before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from claw_core.errors import Invalid
from claw_core.model import MemoryItem
from claw_core.ports import MemoryStore

__all__ = ["DEFAULT_BATCH_SIZE", "MAX_CONCURRENT_PUTS", "CopyProgress", "CopyReport", "copy_memories"]

DEFAULT_BATCH_SIZE = 100
MAX_CONCURRENT_PUTS = 8
"""Puts of one page in flight at once. A remote backend answers several in parallel, but each put may wait for an
embedding and a pooled connection (the Postgres store has 4, each asked for with a timeout): a whole page at once
would make the last ones time out behind a slow embedder."""


@dataclass(frozen=True, slots=True)
class CopyProgress:
    """After a page was fully written to the target."""

    walked: int
    """Source memories copied so far, earlier runs included."""
    created: int
    """Of those in this run, how many the target did not hold before."""
    batch: int
    """How many this page held."""
    next_cursor: str | None
    """Where a resumed copy starts; None once the source is exhausted."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    source_count: int
    walked: int
    """Source memories copied, earlier runs of a resumed copy included."""
    copied: int
    """In this run."""
    created: int
    """In this run: those the target did not hold before."""
    target_before: int
    target_after: int

    @property
    def problems(self) -> list[str]:
        """What the counts say went wrong; empty when the copy is complete."""
        found = []
        if self.walked != self.source_count:
            found.append(
                f"the source holds {self.source_count} memories but {self.walked} were copied"
                " (did it change during the copy? run it again)"
            )
        if self.target_after != self.target_before + self.created:
            found.append(
                f"the target held {self.target_before} memories and was given {self.created} new ones,"
                f" but now holds {self.target_after}"
            )
        if self.target_after < self.source_count:
            found.append(f"the target holds {self.target_after} memories, fewer than the source's {self.source_count}")
        return found


ProgressCallback = Callable[[CopyProgress], Awaitable[None] | None]


async def copy_memories(
    source: MemoryStore,
    target: MemoryStore,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    start_cursor: str | None = None,
    already_walked: int = 0,
    on_batch: ProgressCallback | None = None,
) -> CopyReport:
    """Copy every memory of `source` (from `start_cursor`, when resuming after `already_walked` of them) into
    `target`, `batch_size` at a time, and count both at the end."""
    if batch_size < 1:
        raise Invalid("batch size must be at least 1")
    slots = asyncio.Semaphore(MAX_CONCURRENT_PUTS)
    target_before = await target.count()
    walked, copied, created = already_walked, 0, 0
    cursor = start_cursor
    while True:
        page = await source.page(limit=batch_size, cursor=cursor)
        # The puts of one page run together, MAX_CONCURRENT_PUTS at a time; a failure cancels the rest.
        async with asyncio.TaskGroup() as group:
            puts = [group.create_task(_put(target, item, slots)) for item in page.memories]
        batch_created = sum(1 for put in puts if put.result())
        walked += len(page.memories)
        copied += len(page.memories)
        created += batch_created
        cursor = page.next_cursor
        if on_batch is not None:
            done = on_batch(CopyProgress(walked, created, len(page.memories), cursor))
            if done is not None:
                await done
        if cursor is None:
            break
    return CopyReport(
        source_count=await source.count(),
        walked=walked,
        copied=copied,
        created=created,
        target_before=target_before,
        target_after=await target.count(),
    )


async def _put(target: MemoryStore, item: MemoryItem, slots: asyncio.Semaphore) -> bool:
    async with slots:
        return await target.put(item)
