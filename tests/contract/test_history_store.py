"""The HistoryStore / HistoryStores contract: every test runs on every adapter (the in-memory fake and SQLite).

Search tests use plain words only: the fake does not stem and knows no FTS5 syntax (see its module docstring).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from claw_core.errors import Conflict, Invalid, NotFound, Unavailable
from claw_core.model import JsonObject, Message, MessageCursor, Role, SessionKey, Thread, ThreadExport
from claw_core.ports import HistoryStore, HistoryStores, ImportCounts, RunRecord


def thread(thread_id: str, *, workspace: str = "default", **fields: Any) -> Thread:
    defaults = {"created_at": 100, "updated_at": 100}
    return Thread(id=thread_id, session_key=SessionKey("main", workspace, thread_id).format(), **{**defaults, **fields})


def message(
    message_id: str,
    thread_id: str = "t1",
    content: str = "hello",
    *,
    timestamp: int = 1_000,
    role: Role = Role.USER,
    metadata: JsonObject | None = None,
    **fields: Any,
) -> Message:
    return Message(message_id, thread_id, role, content, timestamp, metadata=metadata, **fields)


async def stored_thread(store: HistoryStore, thread_id: str) -> Thread:
    found = await store.get_thread(thread_id)
    assert found is not None
    return found


async def stored_message(store: HistoryStore, message_id: str) -> Message:
    found = await store.get_message(message_id)
    assert found is not None
    return found


async def add_messages(store: HistoryStore, *messages: Message) -> None:
    for item in messages:
        await store.upsert_message(item, now=5_000)


async def ids(store: HistoryStore, **page: Any) -> tuple[list[str], bool]:
    result = await store.page_messages("t1", **page)
    return [m.id for m in result.messages], result.has_more


async def listed(store: HistoryStore, search: str | None = None) -> list[str]:
    page = await store.list_threads(offset=0, limit=100, search=search)
    return [summary.thread.id for summary in page.threads]


# --- threads ---


async def test_a_thread_round_trips_every_field(history_store: HistoryStore) -> None:
    original = Thread(
        id="t1",
        session_key="agent:main:default:chat:t1",
        title="Plans",
        pinned=True,
        pin_order=3,
        sort_order=7,
        model="gpt",
        last_session_id="s-1",
        unread_count=0,
        metadata={"nested": {"list": [1, "two", None]}, "flag": True},
        created_at=10,
        updated_at=20,
    )
    await history_store.create_thread(original)
    assert await history_store.get_thread("t1") == original
    assert await history_store.get_thread("missing") is None
    assert await history_store.count_threads() == 1


async def test_metadata_none_stays_none(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    stored = (await history_store.upsert_message(message("m1"), now=1)).message
    assert (await stored_thread(history_store, "t1")).metadata is None
    assert stored.metadata is None


async def test_stored_values_do_not_alias_the_callers(history_store: HistoryStore) -> None:
    metadata: JsonObject = {"tags": ["a"]}
    await history_store.create_thread(thread("t1", metadata=metadata))
    metadata["tags"].append("b")
    assert (await stored_thread(history_store, "t1")).metadata == {"tags": ["a"]}


async def test_a_duplicate_thread_id_conflicts(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    with pytest.raises(Conflict, match="Thread already exists"):
        await history_store.create_thread(thread("t1").with_changes(session_key="agent:main:default:chat:other"))


async def test_a_duplicate_session_key_conflicts(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    with pytest.raises(Conflict, match="Thread already exists"):
        await history_store.create_thread(thread("t2").with_changes(session_key=thread("t1").session_key))
    assert await history_store.count_threads() == 1


async def test_save_thread_replaces_every_field(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    changed = thread("t1").with_changes(
        session_key="agent:other:default:chat:t1",
        title="Renamed",
        pinned=True,
        pin_order=2,
        sort_order=-1,
        model="m",
        last_session_id="s",
        unread_count=4,
        metadata={"k": "v"},
        created_at=1,
        updated_at=999,
    )
    await history_store.save_thread(changed)
    assert await history_store.get_thread("t1") == changed


async def test_saving_a_missing_thread_is_not_found(history_store: HistoryStore) -> None:
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.save_thread(thread("gone"))


async def test_saving_another_threads_session_key_conflicts(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    with pytest.raises(Conflict):
        await history_store.save_thread(thread("t2").with_changes(session_key=thread("t1").session_key))
    assert await history_store.get_thread("t2") == thread("t2")


async def test_delete_thread_cascades_to_messages_unread_marks_and_search(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, message("m1", content="needle"), message("m2", "t2", content="needle"))
    await history_store.add_unread("t1", "m1")
    await history_store.add_unread("t2", "m2")

    assert await history_store.delete_thread("t1") is True
    assert await history_store.get_thread("t1") is None
    assert await history_store.get_message("m1") is None
    with pytest.raises(NotFound):
        await history_store.page_messages("t1", limit=10)
    assert [u.id for u in await history_store.unread_threads()] == ["t2"]
    assert await history_store.total_unread() == 1
    hits, total = await history_store.search("needle", offset=0, limit=10)
    assert ([h.message_id for h in hits], total) == (["m2"], 1)
    assert await history_store.delete_thread("t1") is False
    # the id is free again, with nothing left over
    await history_store.create_thread(thread("t1"))
    assert (await history_store.page_messages("t1", limit=10)).messages == []


async def test_threads_are_listed_pinned_first_then_by_sort_order_and_recency(history_store: HistoryStore) -> None:
    for item in [
        thread("plain-old", updated_at=1),
        thread("plain-new", updated_at=9),
        thread("plain-tie-b", updated_at=5),
        thread("plain-tie-a", updated_at=5),
        thread("sorted-high", sort_order=2, updated_at=1),
        thread("sorted-low", sort_order=1, updated_at=1),
        thread("pin-second", pinned=True, pin_order=2, updated_at=99),
        thread("pin-first", pinned=True, pin_order=1, updated_at=1),
        # pin_order only orders pinned threads: a stale one on an unpinned thread is ignored
        thread("unpinned-stale-order", pin_order=-5, updated_at=2),
    ]:
        await history_store.create_thread(item)
    assert await listed(history_store) == [
        "pin-first",
        "pin-second",
        "sorted-high",
        "sorted-low",
        "plain-new",
        "plain-tie-a",
        "plain-tie-b",
        "unpinned-stale-order",
        "plain-old",
    ]


async def test_thread_pages_use_offset_and_limit_and_count_every_thread(history_store: HistoryStore) -> None:
    for index in range(5):
        await history_store.create_thread(thread(f"t{index}", updated_at=index))
    page = await history_store.list_threads(offset=1, limit=2)
    assert ([s.thread.id for s in page.threads], page.total) == (["t3", "t2"], 5)
    past_the_end = await history_store.list_threads(offset=10, limit=2)
    assert (past_the_end.threads, past_the_end.total) == ([], 5)


async def test_negative_windows_are_invalid(history_store: HistoryStore) -> None:
    with pytest.raises(Invalid):
        await history_store.list_threads(offset=-1, limit=10)
    with pytest.raises(Invalid):
        await history_store.search("x", offset=0, limit=-1)
    with pytest.raises(Invalid):
        await history_store.page_messages("t1", limit=-1)


@pytest.mark.parametrize(
    ("role", "metadata", "pending"),
    [
        (Role.ASSISTANT, {"pending": True}, True),
        (Role.ASSISTANT, {"pending": 1}, True),
        (Role.ASSISTANT, {"pending": "yes"}, True),
        (Role.ASSISTANT, {"pending": False}, False),
        (Role.ASSISTANT, {"pending": 0}, False),
        (Role.ASSISTANT, {"pending": ""}, False),
        (Role.ASSISTANT, {"pending": None}, False),
        (Role.ASSISTANT, {"other": True}, False),
        (Role.ASSISTANT, None, False),
        (Role.USER, {"pending": True}, False),
    ],
)
async def test_has_pending_means_an_assistant_message_with_a_truthy_pending_flag(
    history_store: HistoryStore, role: Role, metadata: JsonObject | None, pending: bool
) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, message("m1", role=role, metadata=metadata), message("m2", "t2"))
    page = await history_store.list_threads(offset=0, limit=10)
    assert {s.thread.id: s.has_pending for s in page.threads} == {"t1": pending, "t2": False}


async def test_has_pending_clears_when_the_placeholder_is_filled(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("m1", role=Role.ASSISTANT, content="", metadata={"pending": True}))
    await add_messages(history_store, message("m1", role=Role.ASSISTANT, content="done", metadata={"pending": False}))
    [summary] = (await history_store.list_threads(offset=0, limit=10)).threads
    assert summary.has_pending is False


# --- message pages ---


async def five_messages(store: HistoryStore) -> None:
    await store.create_thread(thread("t1"))
    # inserted out of order on purpose; two pairs share a timestamp
    for message_id, timestamp in [("e", 30), ("a", 10), ("c", 20), ("b", 20), ("d", 20)]:
        await store.upsert_message(message(message_id, timestamp=timestamp), now=1)


async def test_without_a_cursor_the_newest_messages_come_oldest_first(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    assert await ids(history_store, limit=2) == (["d", "e"], True)
    assert await ids(history_store, limit=5) == (["a", "b", "c", "d", "e"], False)
    assert await ids(history_store, limit=50) == (["a", "b", "c", "d", "e"], False)


async def test_before_a_message_cursor_pages_backwards_through_timestamp_ties(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    assert await ids(history_store, limit=2, before=MessageCursor(20, "d")) == (["b", "c"], True)
    assert await ids(history_store, limit=2, before=MessageCursor(20, "b")) == (["a"], False)
    assert await ids(history_store, limit=2, before=MessageCursor(10, "a")) == ([], False)


async def test_after_a_message_cursor_pages_forwards_through_timestamp_ties(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    assert await ids(history_store, limit=2, after=MessageCursor(10, "a")) == (["b", "c"], True)
    assert await ids(history_store, limit=2, after=MessageCursor(20, "c")) == (["d", "e"], False)
    assert await ids(history_store, limit=2, after=MessageCursor(30, "e")) == ([], False)


async def test_a_cursor_without_a_message_id_compares_on_the_timestamp_alone(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    assert await ids(history_store, limit=10, before=MessageCursor(20)) == (["a"], False)
    assert await ids(history_store, limit=10, after=MessageCursor(20)) == (["e"], False)
    assert await ids(history_store, limit=1, after=MessageCursor(0)) == (["a"], True)


async def test_before_and_after_together_are_invalid(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    with pytest.raises(Invalid):
        await history_store.page_messages("t1", limit=5, before=MessageCursor(30), after=MessageCursor(10))


async def test_pages_only_hold_the_threads_own_messages(history_store: HistoryStore) -> None:
    await five_messages(history_store)
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, message("other", "t2", timestamp=20))
    assert await ids(history_store, limit=10) == (["a", "b", "c", "d", "e"], False)
    await history_store.create_thread(thread("empty"))
    empty = await history_store.page_messages("empty", limit=10)
    assert (empty.messages, empty.has_more) == ([], False)
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.page_messages("unknown", limit=10)


# --- messages ---


async def test_upsert_creates_then_updates_in_place(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1", updated_at=100))
    first = message("m1", content="draft", timestamp=1_000, metadata={"pending": True}, seq=3, created_at=1_001)
    result = await history_store.upsert_message(first, now=2_000)
    stored, created = result.message, result.created
    assert (stored, created) == (first, True)
    assert (await stored_thread(history_store, "t1")).updated_at == 2_000

    second = message("m1", content="final", timestamp=9_999, role=Role.ASSISTANT, status="error", metadata={"x": 1})
    result = await history_store.upsert_message(second, now=3_000)
    stored, created = result.message, result.created
    assert created is False
    # content, status and metadata change; the role, timestamp, created_at stay; seq stays when not given
    assert stored == Message(
        "m1", "t1", Role.USER, "final", 1_000, status="error", metadata={"x": 1}, seq=3, created_at=1_001
    )
    assert await history_store.get_message("m1") == stored
    assert (await stored_thread(history_store, "t1")).updated_at == 3_000

    stored = (await history_store.upsert_message(message("m1", content="final", seq=4), now=4_000)).message
    assert stored.seq == 4


async def test_a_created_message_titles_only_an_untitled_thread(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    first = await history_store.upsert_message(message("m1", content="hello"), now=10, title="Hello")
    assert first.retitled is not None and first.retitled.title == "Hello"
    assert (await stored_thread(history_store, "t1")).title == "Hello"
    again = await history_store.upsert_message(message("m2", content="next"), now=11, title="Next")
    assert again.retitled is None
    assert (await stored_thread(history_store, "t1")).title == "Hello"

    await history_store.create_thread(thread("t2"))
    await history_store.upsert_message(message("m3", "t2"), now=12)
    update = await history_store.upsert_message(message("m3", "t2", content="edited"), now=13, title="Edited")
    assert update.created is False and update.retitled is None
    assert (await stored_thread(history_store, "t2")).title == "New chat"


async def test_rendered_pages_are_the_pages_as_json(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("empty"))
    await add_messages(
        history_store,
        message("a", content='quote " and \\ backslash \n newline', timestamp=1, metadata={"pending": True, "n": [1]}),
        message("b", content="ünïcödé ✓ \u2028", timestamp=2, seq=7, role=Role.ASSISTANT),
        message("c", content="", timestamp=2, status="error"),
        message("d", timestamp=3),
    )
    for kwargs in (
        {"limit": 10},
        {"limit": 2},
        {"limit": 1, "before": MessageCursor(2, "c")},
        {"limit": 2, "after": MessageCursor(1)},
        {"limit": 0},
    ):
        page = await history_store.page_messages("t1", **kwargs)
        rendered = await history_store.render_messages("t1", **kwargs)
        assert json.loads(rendered.json) == [m.to_json() for m in page.messages], kwargs
        assert rendered.has_more == page.has_more, kwargs
    empty = await history_store.render_messages("empty", limit=5)
    assert (json.loads(empty.json), empty.has_more) == ([], False)
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.render_messages("unknown", limit=5)
    with pytest.raises(Invalid):
        await history_store.render_messages("t1", limit=5, before=MessageCursor(1), after=MessageCursor(0))


async def test_a_new_message_without_created_at_is_stamped_now(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    stored = (await history_store.upsert_message(message("m1"), now=7_777)).message
    assert stored.created_at == 7_777


async def test_upsert_into_a_missing_thread_is_not_found(history_store: HistoryStore) -> None:
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.upsert_message(message("m1", "gone"), now=1)


async def test_a_message_id_of_another_thread_conflicts(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2", updated_at=100))
    await add_messages(history_store, message("m1", content="mine"))
    with pytest.raises(Conflict):
        await history_store.upsert_message(message("m1", "t2", content="theirs"), now=9_000)
    assert (await stored_message(history_store, "m1")).content == "mine"
    assert (await stored_thread(history_store, "t2")).updated_at == 100


async def test_delete_message(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, message("m1"), message("m2"))
    assert await history_store.delete_message("t2", "m1") is False  # not that thread's message
    assert await history_store.delete_message("t1", "m1") is True
    assert await history_store.delete_message("t1", "m1") is False
    assert await history_store.get_message("m1") is None
    assert await ids(history_store, limit=10) == (["m2"], False)


async def test_deleting_an_unread_message_drops_its_unread_mark(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("m1"), message("m2"))
    await history_store.add_unread("t1", "m1")
    await history_store.add_unread("t1", "m2")
    await history_store.delete_message("t1", "m1")
    [unread] = await history_store.unread_threads()
    assert (unread.unread_count, unread.unread_message_ids) == (1, ("m2",))


# --- unread ---


async def test_unread_marks_count_per_thread(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    assert await history_store.add_unread("t1", "m1") == 1
    assert await history_store.add_unread("t1", "m1") == 1  # a duplicate mark counts once
    assert await history_store.add_unread("t1", "m2") == 2
    assert await history_store.add_unread("t1", "m3") == 3
    assert await history_store.add_unread("t2", "x") == 1
    assert await history_store.total_unread() == 4

    assert await history_store.mark_read("t1", ["m1", "m3", "never-unread"]) == 1
    assert (await stored_thread(history_store, "t1")).unread_count == 1
    await history_store.clear_unread("t2")
    assert (await stored_thread(history_store, "t2")).unread_count == 0
    assert await history_store.total_unread() == 1


async def test_unread_threads_show_the_newest_message_cut_to_100_characters(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1", title="First"))
    await history_store.create_thread(thread("t2", title="Second"))
    await history_store.create_thread(thread("read"))
    long_text = "é" * 150
    await add_messages(history_store, message("new", content=long_text, timestamp=2), message("old", timestamp=1))
    await history_store.add_unread("t1", "new")
    await history_store.add_unread("t1", "old")
    await history_store.add_unread("t2", "ghost")

    unread = {u.id: u for u in await history_store.unread_threads()}
    assert set(unread) == {"t1", "t2"}
    assert (unread["t1"].title, unread["t1"].unread_count) == ("First", 2)
    assert unread["t1"].last_message == "é" * 100
    assert unread["t1"].unread_message_ids == ("new", "old")  # in the order they were marked
    assert (unread["t2"].last_message, unread["t2"].unread_message_ids) == (None, ("ghost",))


async def test_unread_marks_need_the_thread(history_store: HistoryStore) -> None:
    with pytest.raises(NotFound):
        await history_store.add_unread("gone", "m1")
    with pytest.raises(NotFound):
        await history_store.mark_read("gone", ["m1"])
    with pytest.raises(NotFound):
        await history_store.clear_unread("gone")


# --- search ---


async def searchable(store: HistoryStore) -> None:
    await store.create_thread(thread("t1", title="Travel"))
    await store.create_thread(thread("t2", title="Cooking"))
    await add_messages(
        store,
        message("m1", "t1", "Pack the blue suitcase", timestamp=3),
        message("m2", "t2", "Blue cheese goes with pears", role=Role.ASSISTANT, timestamp=1),
        message("m3", "t1", "I don't like blue", timestamp=2),
        message("m4", "t2", "Nothing relevant here", timestamp=4),
    )


async def test_search_finds_whole_words_most_recently_stored_first(history_store: HistoryStore) -> None:
    await searchable(history_store)
    hits, total = await history_store.search("BLUE", offset=0, limit=10)
    assert total == 3
    assert [h.message_id for h in hits] == ["m3", "m2", "m1"]
    cheese = hits[1]
    assert (cheese.thread_id, cheese.thread_title, cheese.role, cheese.timestamp) == ("t2", "Cooking", "assistant", 1)
    assert cheese.snippet == "<mark>Blue</mark> cheese goes with pears"
    assert await history_store.search("blu", offset=0, limit=10) == ([], 0)


async def test_search_pages_and_keeps_the_total(history_store: HistoryStore) -> None:
    await searchable(history_store)
    hits, total = await history_store.search("blue", offset=1, limit=1)
    assert ([h.message_id for h in hits], total) == (["m2"], 3)


async def test_search_needs_every_word(history_store: HistoryStore) -> None:
    await searchable(history_store)
    hits, total = await history_store.search("blue suitcase", offset=0, limit=10)
    assert ([h.message_id for h in hits], total) == (["m1"], 1)
    assert hits[0].snippet == "Pack the <mark>blue</mark> <mark>suitcase</mark>"


async def test_search_keeps_apostrophes_inside_words(history_store: HistoryStore) -> None:
    await searchable(history_store)
    hits, _ = await history_store.search("don't", offset=0, limit=10)
    assert [h.message_id for h in hits] == ["m3"]
    assert hits[0].snippet == "I <mark>don't</mark> like blue"
    assert await history_store.search("don", offset=0, limit=10) == ([], 0)


@pytest.mark.parametrize("query", ['suitcase"', "(suitcase", "suitcase:", "suitcase)"])
async def test_a_malformed_query_falls_back_to_its_words(history_store: HistoryStore, query: str) -> None:
    await searchable(history_store)
    hits, total = await history_store.search(query, offset=0, limit=10)
    assert ([h.message_id for h in hits], total) == (["m1"], 1)


@pytest.mark.parametrize("query", ["", "   ", '"', "unknownword AND", "(nowhere", "missing:"])
async def test_a_query_that_matches_nothing_gives_no_hit_and_no_error(history_store: HistoryStore, query: str) -> None:
    await searchable(history_store)
    assert await history_store.search(query, offset=0, limit=10) == ([], 0)
    page = await history_store.list_threads(offset=0, limit=10, search=query)
    assert (page.threads, page.total) == ([], 0)


async def test_search_follows_edits_and_deletes(history_store: HistoryStore) -> None:
    await searchable(history_store)
    await add_messages(history_store, message("m1", "t1", "Pack the red suitcase", timestamp=3))
    await history_store.delete_message("t1", "m3")
    hits, total = await history_store.search("blue", offset=0, limit=10)
    assert ([h.message_id for h in hits], total) == (["m2"], 1)
    assert [h.message_id for h in (await history_store.search("red", offset=0, limit=10))[0]] == ["m1"]


async def test_listing_threads_with_a_search_keeps_the_threads_with_a_match(history_store: HistoryStore) -> None:
    await searchable(history_store)
    await history_store.create_thread(thread("t3"))
    assert await listed(history_store, "suitcase") == ["t1"]
    assert sorted(await listed(history_store, "blue")) == ["t1", "t2"]
    page = await history_store.list_threads(offset=0, limit=1, search="blue")
    assert (len(page.threads), page.total) == (1, 2)
    past_the_end = await history_store.list_threads(offset=5, limit=1, search="blue")
    assert (past_the_end.threads, past_the_end.total) == ([], 2)
    assert await listed(history_store, 'suitcase"') == ["t1"]


# --- export and import ---


async def history_of_two_threads(store: HistoryStore) -> None:
    await store.create_thread(thread("b-later", created_at=200, title="B", metadata={"k": [1]}))
    await store.create_thread(thread("z-first", created_at=100))
    await store.create_thread(thread("a-first", created_at=100, pinned=True))
    await add_messages(
        store,
        message("m2", "b-later", "second", timestamp=20, metadata={"pending": False}, seq=2),
        message("m1", "b-later", "first", timestamp=10, role=Role.ASSISTANT, status="error"),
        message("m3", "a-first", "alone", timestamp=5),
    )


async def exported(store: HistoryStore) -> list[ThreadExport]:
    return [export async for export in store.export_threads()]


async def test_export_yields_threads_by_creation_with_messages_oldest_first(history_store: HistoryStore) -> None:
    await history_of_two_threads(history_store)
    exports = await exported(history_store)
    assert [e.thread.id for e in exports] == ["a-first", "z-first", "b-later"]
    assert [[m.id for m in e.messages] for e in exports] == [["m3"], [], ["m1", "m2"]]
    assert exports[2].thread == await history_store.get_thread("b-later")
    assert exports[2].messages[0] == await history_store.get_message("m1")


async def test_export_then_import_round_trips(history_stores: HistoryStores) -> None:
    source = await history_stores.open("default")
    await history_of_two_threads(source)
    exports = await exported(source)

    target = await history_stores.open("copy")
    assert await target.import_threads(exports) == ImportCounts(threads=3, messages=3)
    assert await exported(target) == exports
    assert await target.count_threads() == 3
    hits, _ = await target.search("alone", offset=0, limit=10)
    assert [h.message_id for h in hits] == ["m3"]
    # what is stored after the import is searchable too
    await add_messages(target, message("m4", "a-first", "alone again"))
    hits, _ = await target.search("alone", offset=0, limit=10)
    assert [h.message_id for h in hits] == ["m4", "m3"]


async def test_a_failed_import_stores_nothing(history_store: HistoryStore) -> None:
    unstorable = message("bad", "t2", metadata={"not json": object()})
    with pytest.raises(TypeError):
        await history_store.import_threads([ThreadExport(thread("t2"), (message("ok", "t2", "beacon"), unstorable))])
    assert await history_store.count_threads() == 0
    assert await history_store.get_message("ok") is None
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("m1", content="beacon"))
    hits, total = await history_store.search("beacon", offset=0, limit=10)
    assert ([h.message_id for h in hits], total) == (["m1"], 1)


async def test_import_leaves_existing_threads_and_messages_as_they_are(history_store: HistoryStore) -> None:
    await history_of_two_threads(history_store)
    before = await exported(history_store)
    altered = [
        ThreadExport(
            thread=e.thread.with_changes(title="Imported"),
            messages=tuple(Message(m.id, m.thread_id, m.role, "imported", m.timestamp) for m in e.messages),
        )
        for e in before
    ]
    assert await history_store.import_threads(altered) == ImportCounts(threads=0, messages=0)
    assert await exported(history_store) == before


async def test_import_adds_only_what_is_missing(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("old"))
    incoming = [
        ThreadExport(
            thread("t1", title="ignored"), (message("old", content="ignored"), message("new", timestamp=2_000))
        ),
        ThreadExport(thread("t2"), (message("m2", "t2"),)),
        # a message whose thread is neither imported nor stored is skipped
        ThreadExport(thread("t3"), (message("orphan", "nowhere"),)),
    ]
    assert await history_store.import_threads(incoming) == ImportCounts(threads=2, messages=2)
    assert await ids(history_store, limit=10) == (["old", "new"], False)
    assert (await stored_thread(history_store, "t1")).title == thread("t1").title
    assert await history_store.get_message("orphan") is None
    assert await history_store.import_threads([]) == ImportCounts(threads=0, messages=0)


async def test_import_skips_a_thread_whose_session_key_is_taken(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    clash = thread("t2").with_changes(session_key=thread("t1").session_key)
    counts = await history_store.import_threads([ThreadExport(clash, (message("m", "t2"),))])
    assert counts == ImportCounts(threads=0, messages=0)
    assert await history_store.count_threads() == 1


# --- runs and replies ---


def run(run_id: str = "r1", thread_id: str = "t1", *, started_at: int = 1_000, **fields: Any) -> RunRecord:
    return RunRecord(run_id, f"agent:main:default:chat:{thread_id}", thread_id, started_at, **fields)


def reply(
    message_id: str = "reply",
    thread_id: str = "t1",
    content: str = "the answer",
    *,
    run_id: str = "r1",
    timestamp: int = 2_000,
    **fields: Any,
) -> Message:
    return message(
        message_id, thread_id, content, timestamp=timestamp, role=Role.ASSISTANT, metadata={"runId": run_id}, **fields
    )


def placeholder(message_id: str, thread_id: str = "t1", *, timestamp: int, **fields: Any) -> Message:
    return message(
        message_id,
        thread_id,
        "thinking",
        timestamp=timestamp,
        role=Role.ASSISTANT,
        metadata={"pending": True},
        **fields,
    )


async def run_ids(store: HistoryStore) -> list[str]:
    return [r.run_id for r in await store.open_runs()]


async def assistant_messages(store: HistoryStore, thread_id: str = "t1") -> list[Message]:
    page = await store.page_messages(thread_id, limit=1_000)
    return [m for m in page.messages if m.role is Role.ASSISTANT]


async def test_rendered_pages_follow_every_edit_of_a_message(history_store: HistoryStore) -> None:
    """SQLite keeps each message's rendering beside it: an edit, a status, new metadata or a filled placeholder
    must show in the next rendered page exactly as in the objects."""
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("a", timestamp=1), placeholder("p", timestamp=2, created_at=3))
    await history_store.upsert_message(
        message("a", content='edited "quoted"', timestamp=1, status="error", metadata={"n": [1, {"x": None}]}, seq=9),
        now=6_000,
    )
    await history_store.record_run(run())
    await history_store.store_reply(reply(status="final", seq=7), run_id="r1", now=7_000)

    page = await history_store.page_messages("t1", limit=10)
    rendered = await history_store.render_messages("t1", limit=10)
    assert [m.content for m in page.messages] == ['edited "quoted"', "the answer"]
    assert json.loads(rendered.json) == [m.to_json() for m in page.messages]


async def test_a_reply_without_a_placeholder_is_inserted_as_it_is(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1", updated_at=100))
    await add_messages(history_store, message("question", timestamp=1_000))
    await history_store.record_run(run())
    answer = reply(seq=4, created_at=2_001, status="error")

    assert await history_store.store_reply(answer, run_id="r1", now=3_000) == answer
    assert await history_store.get_message("reply") == answer
    assert await ids(history_store, limit=10) == (["question", "reply"], False)
    assert (await stored_thread(history_store, "t1")).updated_at == 3_000
    assert await history_store.open_runs() == []


async def test_an_inserted_reply_without_created_at_is_stamped_now(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    stored = await history_store.store_reply(reply(), run_id="r1", now=3_000)
    assert stored is not None and stored.created_at == 3_000


async def test_a_reply_fills_the_newest_pending_placeholder_keeping_its_identity(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1", updated_at=100))
    await add_messages(
        history_store,
        placeholder("p-old", timestamp=1_500, created_at=1_501),
        placeholder("p-new", timestamp=1_600, created_at=1_601),
        # newer, but neither pending nor an assistant placeholder
        message("done", timestamp=1_700, role=Role.ASSISTANT, metadata={"pending": False}),
        message("user", timestamp=1_800, metadata={"pending": True}),
    )
    await history_store.record_run(run())

    stored = await history_store.store_reply(reply(status="final", seq=7, created_at=9), run_id="r1", now=3_000)
    filled = Message(
        "p-new", "t1", Role.ASSISTANT, "the answer", 1_600, status="final", metadata={"runId": "r1"}, seq=7,
        created_at=1_601,
    )  # fmt: skip
    assert stored == filled
    assert await history_store.get_message("p-new") == filled
    assert await history_store.get_message("reply") is None
    assert (await stored_message(history_store, "p-old")).metadata == {"pending": True}
    assert await history_store.latest_pending("t1") == await history_store.get_message("p-old")
    assert (await stored_thread(history_store, "t1")).updated_at == 3_000
    assert await history_store.open_runs() == []
    # the search index follows the filled content
    hits, _ = await history_store.search("answer", offset=0, limit=10)
    assert [h.message_id for h in hits] == ["p-new"]
    hits, _ = await history_store.search("thinking", offset=0, limit=10)
    assert [h.message_id for h in hits] == ["p-old"]


async def test_a_filled_placeholder_keeps_its_seq_when_the_reply_has_none(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, placeholder("p", timestamp=1_500, seq=3))
    stored = await history_store.store_reply(reply(), run_id="r1", now=3_000)
    assert stored is not None and (stored.id, stored.seq) == ("p", 3)


async def test_of_two_placeholders_in_the_same_millisecond_the_greater_id_is_filled(
    history_store: HistoryStore,
) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, placeholder("p-b", timestamp=1_500), placeholder("p-a", timestamp=1_500))
    stored = await history_store.store_reply(reply(), run_id="r1", now=3_000)
    assert stored is not None and stored.id == "p-b"


async def test_a_run_is_stored_once_however_often_its_reply_arrives(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.record_run(run())
    first = await history_store.store_reply(reply("first"), run_id="r1", now=3_000)
    assert first is not None

    assert await history_store.store_reply(reply("second", content="again"), run_id="r1", now=4_000) is None
    # a restart re-records the run; its reply is still stored only once, and the record goes all the same
    await history_store.record_run(run())
    assert await history_store.store_reply(reply("first"), run_id="r1", now=5_000) is None
    assert await history_store.open_runs() == []
    assert await assistant_messages(history_store) == [first]
    assert (await stored_thread(history_store, "t1")).updated_at == 3_000  # nothing stored, nothing moved


async def test_a_filled_placeholder_counts_as_the_runs_reply(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, placeholder("p1", timestamp=1_500))
    assert await history_store.store_reply(reply(), run_id="r1", now=3_000) is not None
    await add_messages(history_store, placeholder("p2", timestamp=3_500))  # the next turn's placeholder
    assert await history_store.store_reply(reply(), run_id="r1", now=4_000) is None
    assert await history_store.latest_pending("t1") == await history_store.get_message("p2")


@pytest.mark.parametrize("with_placeholder", [False, True])
async def test_concurrent_replies_of_one_run_store_exactly_one(
    history_store: HistoryStore, with_placeholder: bool
) -> None:
    await history_store.create_thread(thread("t1"))
    if with_placeholder:
        await add_messages(history_store, placeholder("p", timestamp=1_500))
    await history_store.record_run(run())

    results = await asyncio.gather(
        *(
            history_store.store_reply(reply(f"reply-{i}", content=f"answer {i}"), run_id="r1", now=3_000)
            for i in range(20)
        )
    )
    stored = [result for result in results if result is not None]
    assert len(stored) == 1
    assert await assistant_messages(history_store) == stored
    assert stored[0].id == ("p" if with_placeholder else "reply-0")
    assert await history_store.latest_pending("t1") is None
    assert await history_store.open_runs() == []


async def test_replies_of_different_runs_are_each_stored(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, placeholder("p", timestamp=1_500))
    results = await asyncio.gather(
        history_store.store_reply(reply("a", run_id="ra"), run_id="ra", now=3_000),
        history_store.store_reply(reply("b", run_id="rb"), run_id="rb", now=3_000),
        history_store.store_reply(reply("c", "t2", run_id="ra"), run_id="ra", now=3_000),  # same run id, other thread
    )
    assert [r.id if r else None for r in results] == ["p", "b", "c"]


async def test_a_user_message_carrying_the_run_id_is_not_its_reply(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("question", metadata={"runId": "r1"}))
    stored = await history_store.store_reply(reply(), run_id="r1", now=3_000)
    assert stored is not None and stored.id == "reply"


async def test_a_reply_to_a_missing_thread_is_not_found_and_forgets_the_run(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.record_run(run())
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.store_reply(reply(thread_id="gone"), run_id="r1", now=3_000)
    assert await history_store.open_runs() == []
    assert await history_store.get_message("reply") is None


@pytest.mark.parametrize(
    "bad",
    [
        message("reply", metadata={"runId": "r1"}),  # not an assistant message
        reply(run_id="other"),
        message("reply", role=Role.ASSISTANT),  # no metadata at all
    ],
)
async def test_a_reply_that_does_not_carry_its_run_id_is_invalid_and_changes_nothing(
    history_store: HistoryStore, bad: Message
) -> None:
    await history_store.create_thread(thread("t1", updated_at=100))
    await add_messages(history_store, placeholder("p", timestamp=1_500))
    await history_store.record_run(run())
    with pytest.raises(Invalid):
        await history_store.store_reply(bad, run_id="r1", now=3_000)
    assert await run_ids(history_store) == ["r1"]
    assert (await stored_message(history_store, "p")).content == "thinking"
    assert await history_store.get_message("reply") is None


async def test_an_inserted_reply_whose_id_is_taken_conflicts_and_changes_nothing(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1", updated_at=100))
    await history_store.create_thread(thread("t2"))
    await add_messages(history_store, message("taken", "t2", content="mine"))
    await history_store.record_run(run())
    with pytest.raises(Conflict):
        await history_store.store_reply(reply("taken"), run_id="r1", now=3_000)
    assert (await stored_message(history_store, "taken")).content == "mine"
    assert await run_ids(history_store) == ["r1"]
    assert (await stored_thread(history_store, "t1")).updated_at == 100


async def test_messages_near_keep_one_role_within_the_window_both_ends_included(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    await add_messages(
        history_store,
        message("too-early", timestamp=899),
        message("low-edge", timestamp=900),
        message("b-tie", timestamp=1_000),
        message("a-tie", timestamp=1_000),
        message("assistant", timestamp=1_000, role=Role.ASSISTANT),
        message("high-edge", timestamp=1_100),
        message("too-late", timestamp=1_101),
        message("other-thread", "t2", timestamp=1_000),
    )
    near = await history_store.messages_near("t1", Role.USER, 1_000, 100)
    assert [m.id for m in near] == ["low-edge", "a-tie", "b-tie", "high-edge"]
    assert near[0] == await history_store.get_message("low-edge")
    exact = await history_store.messages_near("t1", Role.USER, 1_000, 0)
    assert [m.id for m in exact] == ["a-tie", "b-tie"]
    assistants = await history_store.messages_near("t1", Role.ASSISTANT, 950, 50)
    assert [m.id for m in assistants] == ["assistant"]
    assert await history_store.messages_near("t1", Role.SYSTEM, 1_000, 1_000) == []
    assert await history_store.messages_near("unknown", Role.USER, 1_000, 1_000) == []


@pytest.mark.parametrize(
    ("metadata", "pending"),
    [
        ({"pending": True}, True),
        ({"pending": 1}, True),
        ({"pending": "yes"}, True),
        ({"pending": False}, False),
        ({"pending": 0}, False),
        ({"pending": ""}, False),
        ({"pending": None}, False),
        ({"other": True}, False),
        (None, False),
    ],
)
async def test_latest_pending_follows_the_truthiness_of_has_pending(
    history_store: HistoryStore, metadata: JsonObject | None, pending: bool
) -> None:
    await history_store.create_thread(thread("t1"))
    await add_messages(history_store, message("m1", role=Role.ASSISTANT, metadata=metadata))
    found = await history_store.latest_pending("t1")
    assert (found is not None) == pending
    [summary] = (await history_store.list_threads(offset=0, limit=10)).threads
    assert summary.has_pending == pending


async def test_latest_pending_is_the_newest_pending_assistant_message(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    assert await history_store.latest_pending("t1") is None
    await add_messages(
        history_store,
        placeholder("old", timestamp=1_000),
        placeholder("a-newest", timestamp=2_000),
        placeholder("b-newest", timestamp=2_000),
        message("answered", timestamp=3_000, role=Role.ASSISTANT, metadata={"pending": False}),
        message("user", timestamp=4_000, metadata={"pending": True}),
        placeholder("other-thread", "t2", timestamp=5_000),
    )
    assert await history_store.latest_pending("t1") == await history_store.get_message("b-newest")
    # answering it hands the role to the next newest
    await add_messages(history_store, message("b-newest", role=Role.ASSISTANT, metadata={"pending": False}))
    assert await history_store.latest_pending("t1") == await history_store.get_message("a-newest")
    assert await history_store.latest_pending("unknown") is None


async def test_runs_are_recorded_replaced_finished_and_listed_oldest_first(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2"))
    assert await history_store.open_runs() == []
    await history_store.record_run(run("r-b", started_at=2))
    await history_store.record_run(run("r-a", "t2", started_at=2, idempotency_key="idem-a"))
    await history_store.record_run(run("r-c", started_at=1))
    assert await history_store.open_runs() == [
        run("r-c", started_at=1),
        run("r-a", "t2", started_at=2, idempotency_key="idem-a"),
        run("r-b", started_at=2),
    ]

    replaced = RunRecord("r-c", "agent:other:default:chat:t2", "t2", 3, idempotency_key="idem-c")
    await history_store.record_run(replaced)
    assert await history_store.open_runs() == [
        run("r-a", "t2", started_at=2, idempotency_key="idem-a"),
        run("r-b", started_at=2),
        replaced,
    ]

    await history_store.finish_run("r-a")
    await history_store.finish_run("r-a")
    await history_store.finish_run("never-recorded")
    assert await run_ids(history_store) == ["r-b", "r-c"]


async def test_a_run_of_a_missing_thread_is_not_found(history_store: HistoryStore) -> None:
    with pytest.raises(NotFound, match="Thread not found"):
        await history_store.record_run(run(thread_id="gone"))
    assert await history_store.open_runs() == []


async def test_runs_go_with_their_thread_and_are_not_exported(history_stores: HistoryStores) -> None:
    store = await history_stores.open("default")
    await store.create_thread(thread("t1"))
    await store.create_thread(thread("t2"))
    await store.record_run(run("r1", "t1"))
    await store.record_run(run("r2", "t2"))
    await store.delete_thread("t1")
    assert await run_ids(store) == ["r2"]

    target = await history_stores.open("copy")
    await target.import_threads(await exported(store))
    assert await target.open_runs() == []
    assert await run_ids(store) == ["r2"]


# --- session keys ---


async def test_rewrite_session_keys_points_every_thread_at_the_agent(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await history_store.create_thread(thread("t2").with_changes(session_key="legacy-key"))
    await history_store.create_thread(thread("t3").with_changes(session_key="agent:coder:default:chat:t3"))

    changed = await history_store.rewrite_session_keys("coder", "default")
    assert sorted(changed) == ["agent:main:default:chat:t1", "legacy-key"]
    for thread_id in ("t1", "t2", "t3"):
        stored = await history_store.get_thread(thread_id)
        assert stored is not None
        assert stored.session_key == SessionKey("coder", "default", thread_id).format()
    assert await history_store.rewrite_session_keys("coder", "default") == []


async def test_rewrite_session_keys_survives_keys_that_swap_between_threads(history_store: HistoryStore) -> None:
    # t1 holds the key t2 is about to get: a one-pass rewrite would trip the uniqueness of session keys
    await history_store.create_thread(thread("t1").with_changes(session_key="agent:new:default:chat:t2"))
    await history_store.create_thread(thread("t2").with_changes(session_key="agent:new:default:chat:t1"))
    assert len(await history_store.rewrite_session_keys("new", "default")) == 2
    assert (await stored_thread(history_store, "t1")).session_key == "agent:new:default:chat:t1"


async def test_rewrite_session_keys_validates_its_arguments(history_store: HistoryStore) -> None:
    with pytest.raises(Invalid):
        await history_store.rewrite_session_keys("Bad Agent", "default")
    with pytest.raises(Invalid):
        await history_store.rewrite_session_keys("main", "../x")


# --- lifecycle ---


async def test_close_is_idempotent_and_a_closed_store_is_unavailable(history_store: HistoryStore) -> None:
    await history_store.close()
    await history_store.close()
    with pytest.raises(Unavailable):
        await history_store.get_thread("t1")


async def test_concurrent_writes_are_each_atomic(history_store: HistoryStore) -> None:
    await history_store.create_thread(thread("t1"))
    await asyncio.gather(*(history_store.add_unread("t1", f"m{index}") for index in range(50)))
    assert await history_store.total_unread() == 50


async def test_each_workspace_has_its_own_store(history_stores: HistoryStores) -> None:
    first, again, other = await asyncio.gather(
        history_stores.open("default"), history_stores.open("default"), history_stores.open("other")
    )
    assert first is again
    assert first is not other
    await first.create_thread(thread("t1"))
    assert await other.get_thread("t1") is None


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", "", "UPPER", "x" * 33, "dot.name"])
async def test_workspace_names_that_could_escape_are_refused(history_stores: HistoryStores, name: str) -> None:
    with pytest.raises(Invalid):
        await history_stores.open(name)
    with pytest.raises(Invalid):
        await history_stores.drop(name)


async def test_drop_forgets_the_workspace(history_stores: HistoryStores) -> None:
    store = await history_stores.open("gone")
    await store.create_thread(thread("t1"))
    await history_stores.drop("gone")
    with pytest.raises(Unavailable):
        await store.get_thread("t1")
    fresh = await history_stores.open("gone")
    assert await fresh.count_threads() == 0
    await history_stores.drop("never-opened")


async def test_closed_stores_open_nothing(history_stores: HistoryStores) -> None:
    store = await history_stores.open("default")
    await history_stores.close()
    with pytest.raises(Unavailable):
        await store.count_threads()
    with pytest.raises(Unavailable):
        await history_stores.open("default")
