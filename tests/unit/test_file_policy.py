"""The lexical file policy: what any input string may become, and the tricks it must refuse."""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claw_core.errors import ClawError, Forbidden, Invalid
from claw_core.services.file_policy import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    FilePolicy,
    clean_upload_name,
    is_within,
    normalise_path,
    numbered_name,
)

HOME = "/home/u"
POLICY = FilePolicy.create(
    home=HOME,
    read_roots=[HOME, "/tmp"],
    agent_workspace="/home/u/.openclaw/workspace",
    protected=["/home/u/.openclaw"],
)

# Path-ish text: heavy on the characters that matter (separators, dots, tildes, percent escapes, look-alikes).
_ALPHABET = st.sampled_from(
    ["/", ".", "..", "~", "%", "2e", "2f", "25", "5c", "\\", "\x00", "\n", "a", "b", "u", "home", "tmp", "TMP",
     "Tmp", "HOME", "-evil", "\uff0e", "\uff0f", " ", "é", "c0", "ae", "u002e"]
)  # fmt: skip
paths = st.lists(_ALPHABET, max_size=24).map("".join) | st.text(max_size=80)


def attempt(call: object) -> PurePosixPath | None:
    """The accepted path, or None when the policy refused with a client error (never another exception)."""
    assert callable(call)
    try:
        result = call()
    except ClawError as error:
        assert isinstance(error, Invalid | Forbidden)
        return None
    assert isinstance(result, PurePosixPath)
    return result


@given(paths)
def test_a_readable_path_is_normalised_and_inside_a_read_root(raw: str) -> None:
    path = attempt(lambda: POLICY.readable(raw))
    if path is None:
        return
    text = str(path)
    assert path.is_absolute()
    assert ".." not in path.parts
    assert "." not in path.parts
    assert "\x00" not in text
    assert "\\" not in text
    assert posixpath.normpath(text) == text
    assert any(is_within(path, root) for root in POLICY.read_roots)
    assert text in (HOME, "/tmp") or text.startswith((HOME + "/", "/tmp/"))


@given(paths)
def test_a_writable_path_is_never_outside_home(raw: str) -> None:
    path = attempt(lambda: POLICY.in_home(raw))
    if path is None:
        return
    assert ".." not in path.parts
    assert str(path) == HOME or str(path).startswith(HOME + "/")


@given(paths)
def test_a_path_and_its_normalisation_agree(raw: str) -> None:
    path = attempt(lambda: POLICY.readable(raw))
    if path is None:
        return
    assert POLICY.readable(str(path)) == path
    assert normalise_path(str(path), home=POLICY.home, base=PurePosixPath("/elsewhere")) == path


@given(paths)
def test_a_deletable_path_never_holds_a_protected_folder(raw: str) -> None:
    path = attempt(lambda: POLICY.deletable(raw))
    if path is None:
        return
    assert not any(is_within(kept, path) for kept in POLICY.protected)


_names = st.text(alphabet="ab-", min_size=1, max_size=3)


@given(st.lists(_names, max_size=4), st.lists(_names, max_size=3))
def test_containment_is_by_component_not_by_prefix(path_parts: list[str], root_parts: list[str]) -> None:
    path, root = PurePosixPath("/", *path_parts), PurePosixPath("/", *root_parts)
    text, prefix = str(path), str(root).rstrip("/")
    assert is_within(path, root) == (text == str(root) or text.startswith(prefix + "/"))


@pytest.mark.parametrize(
    "raw",
    [
        "/etc/passwd",
        "/home/u/../../etc/passwd",
        "~/../../etc/shadow",
        "/home/u-evil/secret",
        "/home/uevil",
        "/HOME/u/file",
        "/TMP/file",
        "/Tmp/file",
        "/tmpfile",
        "/",
        "//etc/passwd",
        "../../../../etc/passwd",
        "/home",
    ],
)
def test_paths_outside_the_roots_are_forbidden(raw: str) -> None:
    with pytest.raises(Forbidden):
        POLICY.readable(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/home/u/a\x00b",
        "/home/u/\nx",
        "/home/u/\x7f",
        "..\\..\\etc\\passwd",
        "/home/u\\..\\..\\etc",
        "%2e%2e%2fetc%2fpasswd",
        "/home/u/%2E%2E/%2E%2E/etc",
        "/home/u/%252e%252e/etc",
        "/home/u/a%2fb",
        "/home/u/a%5cb",
        "/home/u/a%00b",
        "/home/u/%c0%ae%c0%ae/etc",
        "/home/u/%e0%80%ae",
        "/home/u/%u002e%u002e",
        "/home/u/\uff0e\uff0e/etc",
        "/home/u/a\uff0fb",
        "/home/u/\u202egnp.exe",
        "~root/.ssh/id_rsa",
        "/home/u/" + "a" * (MAX_NAME_BYTES + 1),
        "/home/u/" + "a/" * (MAX_PATH_BYTES // 2),
        "/home/u/\ud800",
        "/home/u/\ufffd\ufffd/x",
    ],
)
def test_malformed_paths_are_invalid(raw: str) -> None:
    with pytest.raises(Invalid):
        POLICY.readable(raw)
    with pytest.raises(Invalid):
        POLICY.in_home(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("~", HOME),
        ("~/notes.md", "/home/u/notes.md"),
        ("~/a/./b//c/../d", "/home/u/a/b/d"),
        ("./MEMORY.md", "/home/u/.openclaw/workspace/MEMORY.md"),
        ("../workspace-other/x", "/home/u/.openclaw/workspace-other/x"),
        ("memory/today.md", "/home/u/.openclaw/workspace/memory/today.md"),
        ("/tmp/report 100%20.pdf", "/tmp/report 100%20.pdf"),
        ("/tmp/café/ok", "/tmp/café/ok"),
        ("/tmp/emoji \U0001f44d\u200d.txt", "/tmp/emoji \U0001f44d\u200d.txt"),
    ],
)
def test_readable_paths_resolve(raw: str, expected: str) -> None:
    assert POLICY.readable(raw) == PurePosixPath(expected)


def test_the_workspace_browser_resolves_relative_paths_like_api_file_and_stays_in_home() -> None:
    assert POLICY.in_home("notes/today.md") == PurePosixPath("/home/u/.openclaw/workspace/notes/today.md")
    assert POLICY.in_home("../other/x") == PurePosixPath("/home/u/.openclaw/other/x")
    assert POLICY.in_home("~") == PurePosixPath(HOME)
    with pytest.raises(Forbidden):
        POLICY.in_home("/tmp/x")
    with pytest.raises(Forbidden):
        POLICY.in_home("../../../x")


@pytest.mark.parametrize("raw", ["~", "/home/u", "~/.openclaw", "~/.openclaw/", "/home/u/x/../.openclaw"])
def test_home_and_protected_folders_and_their_parents_cannot_be_deleted(raw: str) -> None:
    with pytest.raises(Forbidden):
        POLICY.deletable(raw)


def test_inside_a_protected_folder_is_deletable() -> None:
    assert POLICY.deletable("~/.openclaw/workspace/old.md") == PurePosixPath("/home/u/.openclaw/workspace/old.md")


def test_roots_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        FilePolicy.create(home="home/u", read_roots=[], agent_workspace="/w")


@given(st.text(max_size=300))
def test_an_upload_name_is_one_clean_component(name: str) -> None:
    try:
        clean = clean_upload_name(name)
    except Invalid:
        return
    assert "/" not in clean
    assert "\\" not in clean
    assert clean not in {"", ".", ".."}
    assert "\x00" not in clean
    assert len(clean.encode()) <= MAX_NAME_BYTES - 16


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.pdf", "report.pdf"),
        ("a\x00b.txt", "ab.txt"),
        ("..%2F..%2fetc%2Fpasswd", "passwd"),
        ("..%5C..%5cwin.ini", "win.ini"),
        ("100%20done.txt", "100%20done.txt"),
    ],
)
def test_upload_names_keep_their_base_name(name: str, clean: str) -> None:
    assert clean_upload_name(name) == clean


@pytest.mark.parametrize("name", [None, "", "..", "dir/", " \x07 ", "a/%2e%2e", "x%2F%2E"])
def test_unusable_upload_names_are_invalid(name: str | None) -> None:
    with pytest.raises(Invalid):
        clean_upload_name(name)


def test_numbered_names() -> None:
    assert numbered_name("report.pdf", 0) == "report.pdf"
    assert numbered_name("report.pdf", 2) == "report (2).pdf"
    assert numbered_name("archive.tar.gz", 1) == "archive.tar (1).gz"
    assert numbered_name(".env", 1) == ".env (1)"
    assert numbered_name("README", 3) == "README (3)"
