"""Properties of the history that must hold for any data, on every storage backend:
- paging through a thread (backward with `before`, forward with `after`) never loses or repeats a message,
  even when many messages share a timestamp;
- export then import into an empty workspace round-trips every thread and message.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claw_adapters.storage.memory import InMemoryHistoryStores
from claw_adapters.storage.sqlite import SqliteHistoryStores
from claw_core.model import Message, MessageCursor, Role, SessionKey, Thread, ThreadExport
from claw_core.ports import HistoryStores, MessagePage
from claw_core.services.transfer import parse_export_threads

BACKENDS = ("memory", "sqlite")
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_on_every_backend(scenario: Callable[[HistoryStores], Awaitable[None]]) -> None:
    """Hypothesis drives synchronous tests: each example gets fresh stores and its own event loop."""
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory() as directory:
            stores: HistoryStores = (
                InMemoryHistoryStores() if backend == "memory" else SqliteHistoryStores(Path(directory))
            )

            async def run(stores: HistoryStores = stores) -> None:
                try:
                    await scenario(stores)
                finally:
                    await stores.close()

            asyncio.run(run())


def thread(thread_id: str) -> Thread:
    return Thread(id=thread_id, session_key=SessionKey("main", "default", thread_id).format(), created_at=1)


# Few distinct timestamps on purpose: ties are where paging by timestamp alone goes wrong.
timestamps = st.integers(min_value=0, max_value=6)


@PROPERTY_SETTINGS
@given(stamps=st.lists(timestamps, min_size=0, max_size=40), limit=st.integers(min_value=1, max_value=7))
def test_paging_never_loses_or_repeats_a_message(stamps: list[int], limit: int) -> None:
    async def scenario(stores: HistoryStores) -> None:
        store = await stores.open("default")
        await store.create_thread(thread("t"))
        for index, stamp in enumerate(stamps):
            await store.upsert_message(Message(f"m{index:02d}", "t", Role.USER, f"text {index}", stamp), now=1)
        expected = sorted((stamp, f"m{index:02d}") for index, stamp in enumerate(stamps))

        async def same_when_rendered(page: MessagePage, **cursor: MessageCursor) -> None:
            rendered = await store.render_messages("t", limit=limit, **cursor)
            assert json.loads(rendered.json) == [m.to_json() for m in page.messages]
            assert rendered.has_more == page.has_more

        backward: list[tuple[int, str]] = []
        page = await store.page_messages("t", limit=limit)
        await same_when_rendered(page)
        while True:
            backward[:0] = [(m.timestamp, m.id) for m in page.messages]
            if not page.has_more:
                break
            oldest = page.messages[0]
            cursor = MessageCursor(oldest.timestamp, oldest.id)
            page = await store.page_messages("t", limit=limit, before=cursor)
            await same_when_rendered(page, before=cursor)
            by_time = MessageCursor(oldest.timestamp)
            await same_when_rendered(await store.page_messages("t", limit=limit, before=by_time), before=by_time)
        assert backward == expected

        forward: list[tuple[int, str]] = []
        cursor = MessageCursor(-1)
        while True:
            page = await store.page_messages("t", limit=limit, after=cursor)
            await same_when_rendered(page, after=cursor)
            forward += [(m.timestamp, m.id) for m in page.messages]
            if not page.has_more:
                break
            cursor = page.messages[-1].cursor
        assert forward == expected

    run_on_every_backend(scenario)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
metadata = st.none() | st.dictionaries(
    st.text(max_size=5), st.integers() | st.booleans() | st.text(max_size=5), max_size=3
)
message_specs = st.lists(
    st.tuples(st.sampled_from(list(Role)), texts, st.integers(min_value=0, max_value=2**40), metadata),
    max_size=6,
)
thread_specs = st.lists(
    st.tuples(texts.filter(lambda t: t.strip() != ""), st.booleans(), message_specs), min_size=0, max_size=5
)


@PROPERTY_SETTINGS
@given(specs=thread_specs)
def test_export_then_import_round_trips_every_thread_and_message(
    specs: list[tuple[str, bool, list[tuple[Role, str, int, dict[str, object] | None]]]],
) -> None:
    async def scenario(stores: HistoryStores) -> None:
        source = await stores.open("source")
        for index, (title, pinned, messages) in enumerate(specs):
            thread_id = f"t{index}"
            await source.create_thread(thread(thread_id).with_changes(title=title, pinned=pinned, created_at=index))
            for position, (role, content, stamp, meta) in enumerate(messages):
                stored = Message(f"{thread_id}-m{position}", thread_id, role, content, stamp, metadata=meta)
                await source.upsert_message(stored, now=1)
        exported = [t async for t in source.export_threads()]
        # Through the wire form, as a file or an HTTP body carries it.
        parsed = parse_export_threads([t.to_json() for t in exported], now=0)
        target = await stores.open("target")
        counts = await target.import_threads(parsed)
        assert counts.threads == len(specs)
        assert counts.messages == sum(len(messages) for _, _, messages in specs)
        assert _comparable([t async for t in target.export_threads()]) == _comparable(exported)

    run_on_every_backend(scenario)


def _comparable(threads: list[ThreadExport]) -> list[tuple[object, ...]]:
    return sorted(
        (
            t.thread.id,
            t.thread.title,
            t.thread.pinned,
            tuple(sorted((m.id, m.role, m.content, m.timestamp, repr(m.metadata)) for m in t.messages)),
        )
        for t in threads
    )
