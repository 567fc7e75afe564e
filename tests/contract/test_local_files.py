"""The `LocalFiles` adapter on a real file system under tmp_path: what it serves, lists, writes and deletes, and the
links (planted beforehand or swapped in between the check and the use) it refuses to follow out of the roots."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest

from claw_adapters.files import LocalDiskFiles
from claw_adapters.files import local as local_module
from claw_core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from claw_core.ports import LocalFiles

CANARY = b"canary: must never be read or changed\n"


class Tree:
    """A HOME and, beside it, an outside folder with a canary file, plus a sibling `home-evil`."""

    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        self.outside = base / "outside"
        self.evil = base / "home-evil"
        for folder in (self.home, self.outside, self.evil):
            folder.mkdir()
        self.canary = self.outside / "canary.txt"
        self.canary.write_bytes(CANARY)
        (self.evil / "secret.txt").write_bytes(CANARY)
        self.canary_stat = self.canary.stat()

    @property
    def roots(self) -> tuple[PurePosixPath]:
        return (PurePosixPath(self.home),)

    def p(self, relative: str) -> PurePosixPath:
        return PurePosixPath(self.home / relative)

    def assert_outside_untouched(self) -> None:
        assert self.canary.read_bytes() == CANARY
        assert self.canary.stat().st_mtime_ns == self.canary_stat.st_mtime_ns
        assert sorted(p.name for p in self.outside.iterdir()) == ["canary.txt"]
        assert sorted(p.name for p in self.evil.iterdir()) == ["secret.txt"]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


@pytest.fixture
def files() -> LocalFiles:
    return LocalDiskFiles()


@pytest.fixture
def swap_after_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run a change right after the adapter's containment check and before it opens anything: the race a
    check-then-open implementation loses."""

    def arm(change: Callable[[], None]) -> None:
        original = local_module._contained

        def contained_then_swap(path: PurePosixPath, roots: object) -> object:
            result = original(path, roots)  # type: ignore[arg-type]
            change()
            monkeypatch.setattr(local_module, "_contained", original)
            return result

        monkeypatch.setattr(local_module, "_contained", contained_then_swap)

    yield arm


# --- reading ------------------------------------------------------------------------------------------------------


def docs_to_be_swapped_for_a_link_out(tree: Tree, *, with_file: bool = True) -> Callable[[], None]:
    """HOME/docs (holding canary.txt unless `with_file` is False), and the swap that turns it into a link out of
    the roots: what an attacker does between the check and the use."""
    docs = tree.home / "docs"
    docs.mkdir()
    if with_file:
        (docs / "canary.txt").write_text("inside")

    def swap() -> None:
        if with_file:
            (docs / "canary.txt").unlink()
        docs.rmdir()
        docs.symlink_to(tree.outside)

    return swap


async def test_file_info_of_a_regular_file(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "notes.md").write_text("hello")
    info = await files.file_info(tree.p("notes.md"), tree.roots)
    assert info.real_path == str(tree.home / "notes.md")
    assert info.size == 5
    assert info.modified_ms == (tree.home / "notes.md").stat().st_mtime_ns // 1_000_000


async def test_missing_files_and_folders_are_not_found(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "file").write_text("x")
    for missing in ("nope.txt", "no/such/dir.txt", "file/below-a-file"):
        with pytest.raises(NotFound):
            await files.file_info(tree.p(missing), tree.roots)


async def test_a_folder_is_not_a_file(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "dir").mkdir()
    with pytest.raises(Invalid):
        await files.file_info(tree.p("dir"), tree.roots)


async def test_a_link_inside_the_roots_is_followed(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "real.txt").write_text("real")
    (tree.home / "alias.txt").symlink_to(tree.home / "real.txt")
    info = await files.file_info(tree.p("alias.txt"), tree.roots)
    assert info.real_path == str(tree.home / "real.txt")


async def test_links_out_of_the_roots_are_refused(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "out.txt").symlink_to(tree.canary)
    (tree.home / "outdir").symlink_to(tree.outside)
    (tree.home / "evil").symlink_to(tree.evil)
    (tree.home / "relative").symlink_to("../outside/canary.txt")
    for name in ("out.txt", "outdir/canary.txt", "evil/secret.txt", "relative"):
        with pytest.raises(Forbidden):
            await files.file_info(tree.p(name), tree.roots)


async def test_a_sibling_sharing_the_root_prefix_is_outside(tree: Tree, files: LocalFiles) -> None:
    with pytest.raises(Forbidden):
        await files.file_info(PurePosixPath(tree.evil / "secret.txt"), tree.roots)


async def test_a_fifo_is_refused_without_hanging(tree: Tree, files: LocalFiles) -> None:
    os.mkfifo(tree.home / "pipe")
    with pytest.raises(Forbidden):
        await files.file_info(tree.p("pipe"), tree.roots)


async def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(
    tree: Tree, files: LocalFiles, swap_after_check: Callable[[Callable[[], None]], None]
) -> None:
    swap_after_check(docs_to_be_swapped_for_a_link_out(tree))
    with pytest.raises(Forbidden):
        await files.file_info(tree.p("docs/canary.txt"), tree.roots)


async def test_a_file_swapped_for_a_link_after_the_check_is_not_followed(
    tree: Tree, files: LocalFiles, swap_after_check: Callable[[Callable[[], None]], None]
) -> None:
    (tree.home / "a.txt").write_text("inside")

    def swap() -> None:
        (tree.home / "a.txt").unlink()
        (tree.home / "a.txt").symlink_to(tree.canary)

    swap_after_check(swap)
    with pytest.raises(Forbidden):
        await files.file_info(tree.p("a.txt"), tree.roots)


# --- listing ------------------------------------------------------------------------------------------------------


def _make_listing_tree(home: Path) -> None:
    for folder in ("ws/b-dir/deep/deeper", "ws/a-dir", "ws/.hidden", "ws/.openclaw", "ws/node_modules/pkg"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    for name in ("ws/Z.txt", "ws/a.txt", "ws/b-dir/inner.md", "ws/b-dir/deep/d.txt", "ws/.env", "ws/.hidden/h"):
        (home / name).write_text(name)


async def test_listing_is_folders_first_then_by_name_depth_first(tree: Tree, files: LocalFiles) -> None:
    _make_listing_tree(tree.home)
    listing = await files.list_tree(tree.p("ws"), tree.roots, depth=2, hidden=False, max_entries=100)
    assert [(e.path, e.is_dir) for e in listing.entries] == [
        (".openclaw", True),
        ("a-dir", True),
        ("b-dir", True),
        ("b-dir/deep", True),
        ("b-dir/inner.md", False),
        ("a.txt", False),
        ("Z.txt", False),
    ]
    assert not listing.truncated
    inner = next(e for e in listing.entries if e.name == "inner.md")
    assert inner.size == len("ws/b-dir/inner.md")
    assert all(e.size == 0 for e in listing.entries if e.is_dir)


async def test_hidden_files_show_when_asked_and_node_modules_never(tree: Tree, files: LocalFiles) -> None:
    _make_listing_tree(tree.home)
    listing = await files.list_tree(tree.p("ws"), tree.roots, depth=1, hidden=True, max_entries=100)
    names = [e.name for e in listing.entries]
    assert ".env" in names
    assert ".hidden" in names
    assert "node_modules" not in names


async def test_depth_limits_the_walk(tree: Tree, files: LocalFiles) -> None:
    _make_listing_tree(tree.home)
    deep = await files.list_tree(tree.p("ws"), tree.roots, depth=5, hidden=False, max_entries=100)
    assert "b-dir/deep/deeper" in [e.path for e in deep.entries]
    assert "b-dir/deep/d.txt" in [e.path for e in deep.entries]
    shallow = await files.list_tree(tree.p("ws"), tree.roots, depth=1, hidden=False, max_entries=100)
    assert all("/" not in e.path for e in shallow.entries)


async def test_a_listing_stops_at_max_entries(tree: Tree, files: LocalFiles) -> None:
    for index in range(10):
        (tree.home / f"f{index}").write_text("x")
    listing = await files.list_tree(tree.p(""), tree.roots, depth=1, hidden=False, max_entries=4)
    assert [e.name for e in listing.entries] == ["f0", "f1", "f2", "f3"]
    assert listing.truncated


async def test_a_huge_folder_costs_a_bounded_read(
    tree: Tree, files: LocalFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap bounds the work, not only the answer: a folder of 2,000 files is not read whole for 5 entries."""
    for index in range(2000):
        (tree.home / f"f{index:04d}").touch()
    read: list[str] = []
    real_scandir = os.scandir

    class CountingScandir:
        def __init__(self, target: int) -> None:
            self._inner = real_scandir(target)

        def __enter__(self) -> CountingScandir:
            return self

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            for entry in self._inner:
                read.append(entry.name)
                yield entry

    monkeypatch.setattr(os, "scandir", CountingScandir)
    listing = await files.list_tree(tree.p(""), tree.roots, depth=1, hidden=False, max_entries=5)
    assert len(listing.entries) == 5 and listing.truncated
    assert len(read) <= 5 * 4 + 1


async def test_links_are_listed_only_when_they_point_inside_and_never_entered(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "real").mkdir()
    (tree.home / "real" / "x.txt").write_text("x")
    (tree.home / "inside-link").symlink_to(tree.home / "real")
    (tree.home / "outside-link").symlink_to(tree.outside)
    (tree.home / "canary-link").symlink_to(tree.canary)
    (tree.home / "broken").symlink_to(tree.home / "nothing")
    (tree.home / "loop").symlink_to(tree.home / "loop")
    listing = await files.list_tree(tree.p(""), tree.roots, depth=3, hidden=False, max_entries=100)
    assert [(e.path, e.is_dir) for e in listing.entries] == [
        ("inside-link", True),
        ("real", True),
        ("real/x.txt", False),
    ]


async def test_listing_a_link_out_or_a_file_is_refused(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "outside-link").symlink_to(tree.outside)
    (tree.home / "file").write_text("x")
    with pytest.raises(Forbidden):
        await files.list_tree(tree.p("outside-link"), tree.roots, depth=1, hidden=False, max_entries=10)
    with pytest.raises(NotFound):
        await files.list_tree(tree.p("file"), tree.roots, depth=1, hidden=False, max_entries=10)
    with pytest.raises(NotFound):
        await files.list_tree(tree.p("missing"), tree.roots, depth=1, hidden=False, max_entries=10)


# --- writing ------------------------------------------------------------------------------------------------------


async def test_write_creates_folders_and_a_private_file_atomically(tree: Tree, files: LocalFiles) -> None:
    await files.write(tree.p("new/sub/notes.md"), "héllo".encode(), tree.roots)
    target = tree.home / "new" / "sub" / "notes.md"
    assert target.read_text() == "héllo"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tree.home / "new").stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.md"]  # no temporary file left


async def test_write_replaces_and_keeps_the_mode(tree: Tree, files: LocalFiles) -> None:
    target = tree.home / "script.sh"
    target.write_text("old")
    target.chmod(0o754)
    await files.write(tree.p("script.sh"), b"new", tree.roots)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o754


async def test_write_through_a_link_inside_changes_its_target(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "real.md").write_text("old")
    (tree.home / "alias.md").symlink_to(tree.home / "real.md")
    await files.write(tree.p("alias.md"), b"new", tree.roots)
    assert (tree.home / "real.md").read_text() == "new"
    assert (tree.home / "alias.md").is_symlink()


async def test_write_to_a_folder_is_invalid(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "dir").mkdir()
    with pytest.raises(Invalid):
        await files.write(tree.p("dir"), b"x", tree.roots)


async def test_writes_through_links_out_are_refused(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "out.txt").symlink_to(tree.canary)
    (tree.home / "outdir").symlink_to(tree.outside)
    (tree.home / "dangling").symlink_to(tree.outside / "new.txt")
    for name in ("out.txt", "outdir/canary.txt", "outdir/new.txt", "outdir/sub/new.txt", "dangling"):
        with pytest.raises(Forbidden):
            await files.write(tree.p(name), b"pwned", tree.roots)
    tree.assert_outside_untouched()


async def test_a_link_swapped_in_after_the_check_cannot_redirect_a_write(
    tree: Tree, files: LocalFiles, swap_after_check: Callable[[Callable[[], None]], None]
) -> None:
    swap_after_check(docs_to_be_swapped_for_a_link_out(tree, with_file=False))
    with pytest.raises(Forbidden):
        await files.write(tree.p("docs/canary.txt"), b"pwned", tree.roots)
    tree.assert_outside_untouched()


async def test_a_file_swapped_for_a_link_after_the_check_is_replaced_not_written_through(
    tree: Tree, files: LocalFiles, swap_after_check: Callable[[Callable[[], None]], None]
) -> None:
    (tree.home / "notes.md").write_text("old")

    def swap() -> None:
        (tree.home / "notes.md").unlink()
        (tree.home / "notes.md").symlink_to(tree.canary)

    swap_after_check(swap)
    with pytest.raises(Forbidden):
        await files.write(tree.p("notes.md"), b"pwned", tree.roots)
    tree.assert_outside_untouched()


# --- deleting -----------------------------------------------------------------------------------------------------


async def test_delete_a_file_and_a_folder(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "f.txt").write_text("x")
    (tree.home / "d" / "e").mkdir(parents=True)
    (tree.home / "d" / "e" / "g.txt").write_text("x")
    assert await files.delete(tree.p("f.txt"), tree.roots, ()) == "file"
    assert await files.delete(tree.p("d"), tree.roots, ()) == "dir"
    assert list(tree.home.iterdir()) == []


async def test_deleting_a_folder_never_follows_the_links_inside_it(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "d").mkdir()
    (tree.home / "d" / "to-outside").symlink_to(tree.outside)
    (tree.home / "d" / "to-canary").symlink_to(tree.canary)
    assert await files.delete(tree.p("d"), tree.roots, ()) == "dir"
    assert not (tree.home / "d").exists()
    tree.assert_outside_untouched()


async def test_deleting_a_link_inside_removes_the_link_only(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "real").mkdir()
    (tree.home / "real" / "keep.txt").write_text("keep")
    (tree.home / "alias").symlink_to(tree.home / "real")
    assert await files.delete(tree.p("alias"), tree.roots, ()) == "file"
    assert not (tree.home / "alias").is_symlink()
    assert (tree.home / "real" / "keep.txt").read_text() == "keep"


async def test_deleting_through_links_out_is_refused(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "out.txt").symlink_to(tree.canary)
    (tree.home / "outdir").symlink_to(tree.outside)
    for name in ("out.txt", "outdir", "outdir/canary.txt"):
        with pytest.raises(Forbidden):
            await files.delete(tree.p(name), tree.roots, ())
    assert (tree.home / "out.txt").is_symlink()
    tree.assert_outside_untouched()


async def test_protected_folders_and_their_parents_are_not_deleted(tree: Tree, files: LocalFiles) -> None:
    (tree.home / ".openclaw" / "workspace").mkdir(parents=True)
    (tree.home / "alias").symlink_to(tree.home / ".openclaw")
    protected = (tree.p(".openclaw/workspace"),)
    for name in (".openclaw", ".openclaw/workspace", ""):
        with pytest.raises(Forbidden):
            await files.delete(tree.p(name), tree.roots, protected)
    assert (tree.home / ".openclaw" / "workspace").is_dir()


async def test_deleting_a_missing_file_is_not_found(tree: Tree, files: LocalFiles) -> None:
    with pytest.raises(NotFound):
        await files.delete(tree.p("nope"), tree.roots, ())


async def test_a_folder_swapped_for_a_link_cannot_redirect_a_delete(
    tree: Tree, files: LocalFiles, swap_after_check: Callable[[Callable[[], None]], None]
) -> None:
    swap_after_check(docs_to_be_swapped_for_a_link_out(tree))
    with pytest.raises(Forbidden):
        await files.delete(tree.p("docs/canary.txt"), tree.roots, ())
    tree.assert_outside_untouched()


# --- uploads ------------------------------------------------------------------------------------------------------


async def test_uploads_keep_their_name_and_number_clashes(tree: Tree, files: LocalFiles, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.write_bytes(b"12345")
    (tree.home / "in").mkdir()
    (tree.home / "in" / "report.pdf").write_text("original")
    saved = await files.save_uploads(
        tree.p("in"), [("report.pdf", str(staged)), ("report.pdf", str(staged)), ("new.txt", str(staged))], tree.roots
    )
    assert [(s.name, s.size) for s in saved] == [("report (1).pdf", 5), ("report (2).pdf", 5), ("new.txt", 5)]
    assert (tree.home / "in" / "report.pdf").read_text() == "original"
    assert (tree.home / "in" / "report (2).pdf").read_bytes() == b"12345"
    assert sorted(p.name for p in (tree.home / "in").iterdir()) == [
        "new.txt",
        "report (1).pdf",
        "report (2).pdf",
        "report.pdf",
    ]


async def test_uploads_create_the_folder_and_refuse_links_out(tree: Tree, files: LocalFiles, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.write_bytes(b"x")
    saved = await files.save_uploads(tree.p("a/b"), [("x.txt", str(staged))], tree.roots)
    assert [s.name for s in saved] == ["x.txt"]
    assert (tree.home / "a" / "b" / "x.txt").read_bytes() == b"x"
    (tree.home / "outdir").symlink_to(tree.outside)
    with pytest.raises(Forbidden):
        await files.save_uploads(tree.p("outdir"), [("canary.txt", str(staged))], tree.roots)
    tree.assert_outside_untouched()


# --- identity, long names, file system failures, private data -----------------------------------------------------


async def test_file_info_names_the_file_it_checked(tree: Tree, files: LocalFiles) -> None:
    (tree.home / "notes.md").write_text("notes")
    info = await files.file_info(tree.p("notes.md"), tree.roots)
    found = (tree.home / "notes.md").stat()
    assert (info.device, info.inode) == (found.st_dev, found.st_ino)


async def test_a_name_of_255_bytes_in_two_byte_characters_is_written_and_uploaded(
    tree: Tree, files: LocalFiles, tmp_path: Path
) -> None:
    name = "é" * 127
    await files.write(tree.p(name), b"text", tree.roots)
    assert (tree.home / name).read_bytes() == b"text"
    staged = tmp_path / "staged"
    staged.write_bytes(b"up")
    (tree.home / "in").mkdir()
    saved = await files.save_uploads(tree.p("in"), [(name, str(staged))], tree.roots)
    assert [(s.name, s.size) for s in saved] == [(name, 2)]
    assert sorted(p.name for p in tree.home.iterdir()) == ["in", name]


def _failing(code: int) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), "/somewhere/outside/secret")

    return fail


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.EROFS, Forbidden),
        (errno.EPERM, Forbidden),
        (errno.ENOSPC, Unavailable),
        (errno.EBUSY, Conflict),
        (errno.EIO, Unavailable),
    ],
)
async def test_file_system_failures_become_client_errors_without_the_path(
    tree: Tree, files: LocalFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    """Each kind of call that changes the disk, failing as a read-only, full or busy disk makes it (we run as root,
    so a chmod would not stop us)."""
    (tree.home / "a.txt").write_text("a")
    (tree.home / "folder").mkdir()
    staged = tmp_path / "staged"
    staged.write_bytes(b"x")
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("replace", lambda: files.write(tree.p("a.txt"), b"new", tree.roots)),
        ("replace", lambda: files.save_uploads(tree.p("folder"), [("x.txt", str(staged))], tree.roots)),
        ("mkdir", lambda: files.write(tree.p("new/b.txt"), b"b", tree.roots)),
        ("unlink", lambda: files.delete(tree.p("a.txt"), tree.roots, ())),
        ("rmdir", lambda: files.delete(tree.p("folder"), tree.roots, ())),
    ]
    for failing, call in calls:
        with monkeypatch.context() as patched:
            patched.setattr(os, failing, _failing(code))
            with pytest.raises(error) as raised:
                await call()
        assert "secret" not in str(raised.value)
    assert (tree.home / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tree.home.iterdir()) == ["a.txt", "folder"]


async def test_a_listing_does_not_enter_private_data_nor_show_links_into_it(tree: Tree, tmp_path: Path) -> None:
    data = tree.home / ".openclaw" / "data"
    data.mkdir(parents=True)
    (data / "token").write_text("secret")
    (data / "db").mkdir()
    (tree.home / "token-link").symlink_to(data / "token")
    files = LocalDiskFiles(private=[str(data)])
    listing = await files.list_tree(tree.p(""), tree.roots, depth=5, hidden=True, max_entries=100)
    assert [entry.path for entry in listing.entries] == [".openclaw", ".openclaw/data"]
