import pytest
from hypothesis import given
from hypothesis import strategies as st

from claw_core.errors import Invalid
from claw_core.model import Role, SessionKey, validate_thread_id, validate_workspace_name
from claw_core.services.titles import title_from_text
from claw_core.validation import MAX_SAFE_INT, optional_bool, optional_int, query_int, require_int


def test_session_key_formats_and_parses() -> None:
    key = SessionKey("main", "work", "t-1")
    assert key.format() == "agent:main:work:chat:t-1"
    assert SessionKey.parse(key.format()) == key


@pytest.mark.parametrize(
    "text",
    ["agent:main:work:chat", "agent:main:work:dm:t1", "agent:main:Work:chat:t1", "x:main:work:chat:t1", "telegram:123"],
)
def test_session_keys_of_other_shapes_are_not_ours(text: str) -> None:
    assert SessionKey.parse(text) is None


@given(
    agent=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True),
    workspace=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
    thread=st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
def test_session_key_round_trips(agent: str, workspace: str, thread: str) -> None:
    key = SessionKey(agent, workspace, thread)
    assert SessionKey.parse(key.format()) == key


@pytest.mark.parametrize("name", ["", "A", "a b", "a/b", "..", "x" * 33, "ä"])
def test_bad_workspace_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid):
        validate_workspace_name(name)


@pytest.mark.parametrize("thread_id", ["", ".", "..", "a/b", "a:b", "a\x00", "x" * 129, "../x"])
def test_bad_thread_ids_are_refused(thread_id: str) -> None:
    with pytest.raises(Invalid):
        validate_thread_id(thread_id)


def test_role_parse() -> None:
    assert Role.parse("assistant") is Role.ASSISTANT
    with pytest.raises(Invalid):
        Role.parse("admin")
    with pytest.raises(Invalid):
        Role.parse(3)


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Hello there", "Hello there"),
        ("\n\n  first line  \nsecond", "first line"),
        ("x" * 40, "x" * 40),
        ("y" * 41, "y" * 40 + "..."),
        ("   ", ""),
    ],
)
def test_title_from_text(text: str, title: str) -> None:
    assert title_from_text(text) == title


def test_query_int_caps_and_defaults() -> None:
    assert query_int({}, "limit", default=50, minimum=1, maximum=200) == 50
    assert query_int({"limit": "999"}, "limit", default=50, minimum=1, maximum=200) == 200
    assert query_int({"limit": "-4"}, "limit", default=50, minimum=1, maximum=200) == 1
    with pytest.raises(Invalid):
        query_int({"limit": "ten"}, "limit", default=50, minimum=1)


def test_query_int_caps_numbers_beyond_the_safe_range() -> None:
    """A page of 10**30 once reached SQLite as an offset too large for it (a 500, found by fuzzing)."""
    huge = str(10**30)
    assert query_int({"page": huge}, "page", default=1, minimum=1) == MAX_SAFE_INT
    assert query_int({"before": "-" + huge}, "before", default=-1, minimum=-(2**62)) == -(2**62)


@pytest.mark.parametrize("value", [MAX_SAFE_INT + 1, -(MAX_SAFE_INT + 1), 10**30, 2**63 - 1, 1e300, float("inf")])
def test_body_integers_beyond_the_safe_range_are_refused(value: float) -> None:
    """Such a timestamp or pin order once reached SQLite and failed there (a 500, found by fuzzing)."""
    with pytest.raises(Invalid, match="out of range"):
        optional_int({"timestamp": value}, "timestamp")
    assert require_int({"timestamp": MAX_SAFE_INT}, "timestamp") == MAX_SAFE_INT
    assert require_int({"timestamp": -MAX_SAFE_INT}, "timestamp") == -MAX_SAFE_INT


def test_numbers_and_booleans_are_not_confused() -> None:
    with pytest.raises(Invalid):
        require_int({"timestamp": True}, "timestamp")
    assert require_int({"timestamp": 12.0}, "timestamp") == 12
    with pytest.raises(Invalid):
        require_int({"timestamp": 1.5}, "timestamp")
    assert optional_bool({"pinned": 1}, "pinned") is True
    with pytest.raises(Invalid):
        optional_bool({"pinned": "yes"}, "pinned")


def test_titles_skip_the_attachment_lines_the_relay_appends() -> None:
    assert title_from_text("[attachment: /home/u/x.png (image/png, 3 bytes)]\nwhat is this?") == "what is this?"
    assert title_from_text("[attachment: /home/u/x.png (image/png, 3 bytes)]") == ""
