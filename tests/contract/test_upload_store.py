"""The UploadStore contract on every adapter (save, adopt a staged file, locate by exact stored name, remove), then
what only the file store promises (modes, atomic writes, the name sidecar, and the path tricks of the security
table: traversal, symlinks inside the root pointing out, prefix siblings, links and FIFOs under a served name)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from claw_adapters.storage import uploads as uploads_module
from claw_adapters.storage.uploads import FileUploadStore, InMemoryUploadStore
from claw_core.errors import Forbidden, Invalid, NotFound
from claw_core.ports import StoredUpload, UploadStore

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@dataclass
class Uploads:
    """A store, and how to read back what it saved (the port has no read: the agent opens the path)."""

    store: UploadStore
    read: Callable[[StoredUpload], bytes | None]
    root: str


@pytest.fixture(params=["memory", "file"])
def uploads(request: pytest.FixtureRequest, tmp_path: Path) -> Uploads:
    if request.param == "memory":
        memory = InMemoryUploadStore(str(tmp_path / "uploads"))
        return Uploads(memory, lambda upload: memory.contents(upload.path), str(tmp_path / "uploads"))

    return Uploads(
        FileUploadStore(tmp_path / "uploads"), lambda upload: content(upload.path), str(real(tmp_path / "uploads"))
    )


async def save(
    uploads: Uploads,
    data: bytes = PNG,
    *,
    workspace: str = "default",
    thread_id: str = "t1",
    mime_type: str = "image/png",
    file_name: str | None = None,
) -> StoredUpload:
    return await uploads.store.save(workspace, thread_id, data, mime_type=mime_type, file_name=file_name)


async def test_a_saved_upload_describes_itself_and_reads_back(uploads: Uploads) -> None:
    upload = await save(uploads, file_name="holiday.png")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", upload.id)  # 16 random bytes at least: unguessable
    assert (upload.file_name, upload.mime_type, upload.size) == ("holiday.png", "image/png", len(PNG))
    assert upload.path == f"{uploads.root}/default/t1/{upload.id}.png"
    assert os.path.isabs(upload.path)
    assert upload.url == f"/api/uploads/t1/{upload.id}.png"
    assert uploads.read(upload) == PNG


async def test_every_save_gets_a_new_id(uploads: Uploads) -> None:
    first, second = await save(uploads), await save(uploads)
    assert first.id != second.id and first.path != second.path
    assert uploads.read(first) == uploads.read(second) == PNG


async def test_an_empty_file_is_kept(uploads: Uploads) -> None:
    upload = await save(uploads, b"", mime_type="text/plain")
    assert upload.size == 0 and uploads.read(upload) == b""


@pytest.mark.parametrize(
    ("mime_type", "file_name", "extension"),
    [
        ("image/png", None, ".png"),
        ("image/jpeg", "photo.jpeg", ".jpg"),  # the MIME type decides, not the name
        ("text/plain", "notes.md", ".txt"),
        ("application/pdf", "report.exe", ".pdf"),
        ("application/json", None, ".json"),
        ("Image/PNG", None, ".png"),
        ("application/x-claw-unknown", "Scan.HEIC", ".heic"),  # an unknown type borrows the name's extension
        ("application/x-claw-unknown", "archive.tar.gz", ".gz"),
        ("application/x-claw-unknown", None, ".bin"),
        ("application/x-claw-unknown", "README", ".bin"),
        ("application/x-claw-unknown", ".bashrc", ".bin"),
        ("application/x-claw-unknown", "x.p h p", ".bin"),
        ("application/x-claw-unknown", "x.ünï", ".bin"),
        ("application/x-claw-unknown", "x." + "a" * 17, ".bin"),
        ("application/x-claw-unknown", "evil.png/..", ".bin"),
        ("application/octet-stream", "tool.sh", ".bin"),
    ],
)
async def test_the_extension_comes_from_the_mime_type_else_a_clean_name(
    uploads: Uploads, mime_type: str, file_name: str | None, extension: str
) -> None:
    upload = await save(uploads, mime_type=mime_type, file_name=file_name)
    assert upload.path.endswith(f"/{upload.id}{extension}")
    assert upload.url == f"/api/uploads/t1/{upload.id}{extension}"


@pytest.mark.parametrize(
    ("file_name", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/path/cv.pdf", "cv.pdf"),
        ("C:\\Users\\me\\cv.pdf", "cv.pdf"),
        ("cv\x00.pdf", "cv.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a right-to-left override would disguise the extension
        ("  spaced.txt  ", "spaced.txt"),
        ("..", None),
        ("dir/", None),
        ("\n\t", None),
        ("n" * 300 + ".txt", "n" * 255),
    ],
)
async def test_the_users_file_name_is_metadata_and_never_a_path(
    uploads: Uploads, file_name: str, kept: str | None
) -> None:
    upload = await save(uploads, mime_type="application/pdf", file_name=file_name)
    assert upload.file_name == kept
    assert upload.path == f"{uploads.root}/default/t1/{upload.id}.pdf"
    assert uploads.read(upload) == PNG


TRICKY_NAMES = ["", ".", "..", "../x", "a/b", "a\\b", "/abs", "t1\x00", "%2e%2e", "..%2f", "t 1", "~", "x" * 129]


@pytest.mark.parametrize("thread_id", TRICKY_NAMES)
async def test_a_thread_id_that_could_be_a_path_trick_is_invalid(uploads: Uploads, thread_id: str) -> None:
    with pytest.raises(Invalid):
        await save(uploads, thread_id=thread_id)
    with pytest.raises(Invalid):
        await uploads.store.remove_thread("default", thread_id)


@pytest.mark.parametrize("workspace", [*TRICKY_NAMES, "Default", "a_b"])
async def test_a_workspace_name_that_could_be_a_path_trick_is_invalid(uploads: Uploads, workspace: str) -> None:
    with pytest.raises(Invalid):
        await save(uploads, workspace=workspace)
    with pytest.raises(Invalid):
        await uploads.store.remove_thread(workspace, "t1")


async def test_removing_a_thread_removes_its_uploads_only(uploads: Uploads) -> None:
    doomed = [await save(uploads), await save(uploads, b"x", mime_type="text/plain")]
    other_thread = await save(uploads, thread_id="t2")
    other_workspace = await save(uploads, workspace="work")
    await uploads.store.remove_thread("default", "t1")
    assert [uploads.read(upload) for upload in doomed] == [None, None]
    assert uploads.read(other_thread) == uploads.read(other_workspace) == PNG
    await uploads.store.remove_thread("default", "t1")  # again: nothing to do
    await uploads.store.remove_thread("nowhere", "never")  # never had any
    again = await save(uploads)  # the thread can get uploads again
    assert uploads.read(again) == PNG


async def stage(tmp_path: Path, data: bytes = PNG, name: str = "staged.part") -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    path = staging / name
    path.write_bytes(data)
    return path


async def test_an_adopted_file_is_moved_in_and_describes_itself(uploads: Uploads, tmp_path: Path) -> None:
    staged = await stage(tmp_path)
    upload = await uploads.store.adopt("default", "t1", str(staged), mime_type="image/png", file_name="../cat.png")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", upload.id)
    assert (upload.file_name, upload.mime_type, upload.size) == ("cat.png", "image/png", len(PNG))
    assert upload.path == f"{uploads.root}/default/t1/{upload.id}.png"
    assert upload.url == f"/api/uploads/t1/{upload.id}.png"
    assert uploads.read(upload) == PNG
    assert not staged.exists()


@pytest.mark.parametrize("kind", ["missing", "link", "folder"])
async def test_adopting_what_is_not_a_plain_staged_file_is_invalid(uploads: Uploads, tmp_path: Path, kind: str) -> None:
    target = await stage(tmp_path, b"precious", "target")
    staged = tmp_path / "staging" / "staged.part"
    if kind == "link":
        staged.symlink_to(target)
    elif kind == "folder":
        staged.mkdir()
    with pytest.raises(Invalid):
        await uploads.store.adopt("default", "t1", str(staged), mime_type="text/plain", file_name=None)
    assert target.read_bytes() == b"precious"
    assert staged.is_symlink() == (kind == "link")


async def test_adopting_into_an_invalid_thread_leaves_the_staged_file(uploads: Uploads, tmp_path: Path) -> None:
    staged = await stage(tmp_path)
    with pytest.raises(Invalid):
        await uploads.store.adopt("default", "../t1", str(staged), mime_type="image/png", file_name=None)
    assert staged.read_bytes() == PNG


@pytest.mark.parametrize("how", ["save", "adopt"])
async def test_a_stored_upload_is_located_by_its_exact_name(uploads: Uploads, tmp_path: Path, how: str) -> None:
    if how == "save":
        stored = await save(uploads, file_name="Ünïcode résumé.pdf", mime_type="application/pdf")
    else:
        staged = await stage(tmp_path)
        stored = await uploads.store.adopt(
            "default", "t1", str(staged), mime_type="application/pdf", file_name="Ünïcode résumé.pdf"
        )
    found = await uploads.store.locate("default", "t1", f"{stored.id}.pdf")
    assert found == stored
    assert uploads.read(found) == PNG


@pytest.mark.parametrize(
    ("mime_type", "file_name", "served_as"),
    [
        ("image/jpeg", "a.jpg", "image/jpeg"),
        ("text/plain", None, "text/plain"),
        ("application/x-claw-unknown", "Scan.HEIC", "image/heic"),  # the extension is what is served
        ("application/x-claw-unknown", "data.zzq", "application/octet-stream"),
        ("text/html", "page.html", "text/html"),
        ("application/x-claw-unknown", None, "application/octet-stream"),
    ],
)
async def test_a_located_upload_has_the_type_its_extension_says(
    uploads: Uploads, mime_type: str, file_name: str | None, served_as: str
) -> None:
    stored = await save(uploads, mime_type=mime_type, file_name=file_name)
    found = await uploads.store.locate("default", "t1", os.path.basename(stored.path))
    assert found.mime_type == served_as
    assert (found.id, found.path, found.size) == (stored.id, stored.path, stored.size)


async def test_a_nameless_upload_is_located_without_a_name(uploads: Uploads) -> None:
    stored = await save(uploads, file_name=None)
    assert (await uploads.store.locate("default", "t1", f"{stored.id}.png")).file_name is None


async def test_only_the_exact_stored_name_of_that_thread_is_found(uploads: Uploads) -> None:
    stored = await save(uploads, file_name="a.png")
    name = f"{stored.id}.png"
    await save(uploads, thread_id="t2")
    misses = [
        ("default", "t1", stored.id),  # the id alone
        ("default", "t1", stored.id[:8]),  # an id prefix
        ("default", "t1", name[:-1]),
        ("default", "t1", f"{stored.id}.jpg"),
        ("default", "t1", f"{name}.json"),
        ("default", "t1", f".{name}.json"),  # the sidecar
        ("default", "t1", ".."),
        ("default", "t1", "."),
        ("default", "t1", f"../t1/{name}"),
        ("default", "t1", f"{name}\x00"),
        ("default", "t2", name),  # another thread
        ("work", "t1", name),  # another workspace
        ("default", "never", name),
    ]
    for workspace, thread_id, file_name in misses:
        with pytest.raises(NotFound):
            await uploads.store.locate(workspace, thread_id, file_name)
    await uploads.store.remove_thread("default", "t1")
    with pytest.raises(NotFound):
        await uploads.store.locate("default", "t1", name)


@pytest.mark.parametrize("thread_id", TRICKY_NAMES)
async def test_locating_in_a_thread_id_that_could_be_a_path_trick_is_invalid(uploads: Uploads, thread_id: str) -> None:
    with pytest.raises(Invalid):
        await uploads.store.locate("default", thread_id, "A" * 22 + ".png")


# --- the file store ---


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def real(path: Path) -> Path:
    return path.resolve()


def content(path: Path | str) -> bytes | None:
    path = Path(path)
    return path.read_bytes() if path.exists() else None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "uploads"


async def test_folders_are_private_files_too_and_no_temporary_file_is_left(root: Path) -> None:
    upload = await FileUploadStore(root).save("default", "t1", PNG, mime_type="image/png", file_name="a.png")
    path = Path(upload.path)
    sidecar = path.parent / f".{path.name}.json"
    assert path.parent == real(root) / "default" / "t1"
    assert [mode(p) for p in (root, root / "default", root / "default" / "t1")] == [0o700] * 3
    assert mode(path) == mode(sidecar) == 0o600
    assert sorted(os.listdir(path.parent)) == sorted([path.name, sidecar.name])
    assert json.loads(sidecar.read_bytes()) == {"fileName": "a.png"}


async def test_an_upload_without_a_name_has_no_sidecar(root: Path) -> None:
    upload = await FileUploadStore(root).save("default", "t1", PNG, mime_type="image/png", file_name=None)
    assert os.listdir(Path(upload.path).parent) == [Path(upload.path).name]


async def test_an_adopted_file_is_renamed_in_private(root: Path, tmp_path: Path) -> None:
    staged = await stage(tmp_path)
    staged.chmod(0o644)
    inode = os.stat(staged).st_ino
    upload = await FileUploadStore(root).adopt("default", "t1", str(staged), mime_type="image/png", file_name="a.png")
    path = Path(upload.path)
    assert os.stat(path).st_ino == inode  # renamed, not copied
    assert mode(path) == 0o600
    assert sorted(os.listdir(path.parent)) == sorted([path.name, f".{path.name}.json"])


async def test_an_adopted_file_on_another_filesystem_is_copied_then_removed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = await stage(tmp_path, PNG * 5000)
    staged.chmod(0o644)

    def cross_device(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(uploads_module.os, "rename", cross_device)
    upload = await FileUploadStore(root).adopt("default", "t1", str(staged), mime_type="image/png", file_name="a.png")
    path = Path(upload.path)
    assert content(path) == PNG * 5000 and upload.size == len(PNG) * 5000
    assert mode(path) == 0o600
    assert not staged.exists()
    assert sorted(os.listdir(path.parent)) == sorted([path.name, f".{path.name}.json"])


async def test_a_failed_adoption_leaves_nothing_in_the_store_and_the_staged_file_in_place(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = await stage(tmp_path)

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads_module.os, "rename", no_space)
    with pytest.raises(OSError, match="No space"):
        await FileUploadStore(root).adopt("default", "t1", str(staged), mime_type="image/png", file_name="a.png")
    monkeypatch.undo()
    assert os.listdir(root / "default" / "t1") == []
    assert staged.read_bytes() == PNG


async def test_locating_refuses_a_link_or_a_special_file_under_a_stored_name(root: Path, tmp_path: Path) -> None:
    store = FileUploadStore(root)
    stored = await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    folder_path = Path(stored.path).parent
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    link_name, fifo_name = "L" * 22 + ".png", "F" * 22 + ".png"
    (folder_path / link_name).symlink_to(secret)
    os.mkfifo(folder_path / fifo_name)
    for name in (link_name, fifo_name):
        with pytest.raises(Forbidden):
            await store.locate("default", "t1", name)


async def test_locating_through_a_linked_thread_folder_is_refused(root: Path, tmp_path: Path) -> None:
    store = FileUploadStore(root)
    stored = await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    os.rename(root / "default" / "t1", tmp_path / "moved-out")
    (root / "default" / "t1").symlink_to(tmp_path / "moved-out")
    with pytest.raises(Forbidden):
        await store.locate("default", "t1", Path(stored.path).name)


async def test_a_broken_sidecar_only_loses_the_name(root: Path) -> None:
    store = FileUploadStore(root)
    stored = await store.save("default", "t1", PNG, mime_type="image/png", file_name="a.png")
    sidecar = Path(stored.path).parent / f".{Path(stored.path).name}.json"
    for broken in (b"not json", b"[]", b'{"fileName": 3}', b"x" * 5000):
        sidecar.write_bytes(broken)
        assert (await store.locate("default", "t1", Path(stored.path).name)).file_name is None
    sidecar.write_bytes(b'{"fileName": "../../evil\\u202e.png"}')
    assert (await store.locate("default", "t1", Path(stored.path).name)).file_name == "evil.png"


async def test_locating_with_no_root_yet_is_not_found(root: Path) -> None:
    with pytest.raises(NotFound):
        await FileUploadStore(root).locate("default", "t1", "A" * 22 + ".png")


async def test_folders_made_too_open_are_made_private_again(root: Path) -> None:
    folder(root / "default" / "t1")
    for path in (root, root / "default", root / "default" / "t1"):
        path.chmod(0o755)
    await FileUploadStore(root).save("default", "t1", PNG, mime_type="image/png", file_name=None)
    assert [mode(p) for p in (root, root / "default", root / "default" / "t1")] == [0o700] * 3


async def test_a_failed_write_leaves_nothing_behind(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileUploadStore(root)
    await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    before = sorted(os.listdir(root / "default" / "t1"))

    def broken_replace(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploads_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        await store.save("default", "t1", b"never", mime_type="text/plain", file_name=None)
    monkeypatch.undo()
    assert sorted(os.listdir(root / "default" / "t1")) == before


async def test_a_root_reached_through_a_symlink_is_used_resolved(tmp_path: Path) -> None:
    target = folder(tmp_path / "real-data")
    (tmp_path / "linked-data").symlink_to(target)
    upload = await FileUploadStore(tmp_path / "linked-data" / "uploads").save(
        "default", "t1", PNG, mime_type="image/png", file_name=None
    )
    assert upload.path == str(real(target) / "uploads" / "default" / "t1" / f"{upload.id}.png")
    assert content(upload.path) == PNG


@pytest.mark.parametrize("linked", ["workspace", "thread"])
async def test_a_symlink_inside_the_root_pointing_out_is_refused(root: Path, tmp_path: Path, linked: str) -> None:
    outside = tmp_path / "outside"
    (outside / "t1").mkdir(parents=True)
    (outside / "t1" / "keep.txt").write_bytes(b"precious")
    if linked == "workspace":
        (folder(root) / "default").symlink_to(outside)
    else:
        (folder(root / "default") / "t1").symlink_to(outside / "t1")
    store = FileUploadStore(root)
    with pytest.raises(Forbidden):
        await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    with pytest.raises(Forbidden):
        await store.remove_thread("default", "t1")
    assert os.listdir(outside / "t1") == ["keep.txt"]  # nothing written out there, nothing removed


async def test_a_symlink_to_a_sibling_sharing_the_roots_prefix_is_refused(root: Path, tmp_path: Path) -> None:
    sibling = folder(tmp_path / "data" / "uploads-evil" / "t1").parent
    (folder(root) / "default").symlink_to(sibling)
    with pytest.raises(Forbidden):
        await FileUploadStore(root).save("default", "t1", PNG, mime_type="image/png", file_name=None)
    assert os.listdir(sibling / "t1") == []


def test_containment_compares_path_components_not_string_prefixes(root: Path, tmp_path: Path) -> None:
    """`uploads-evil` starts with the string `uploads` but is not inside it."""
    sibling = folder(tmp_path / "data" / "uploads-evil" / "t1")
    folder(root)
    assert str(real(sibling)).startswith(str(real(root)))
    fd = os.open(sibling, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Forbidden, match="outside"):
            uploads_module._check_contained(real(root), sibling, fd)
    finally:
        os.close(fd)


def test_a_folder_swapped_after_opening_is_caught(root: Path) -> None:
    folder(root / "default" / "t1")
    fd = os.open(folder(root / "default" / "t2"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Forbidden, match="changed"):
            uploads_module._check_contained(real(root), root / "default" / "t1", fd)
    finally:
        os.close(fd)


async def test_a_file_where_the_thread_folder_should_be_is_refused(root: Path) -> None:
    (folder(root / "default") / "t1").write_bytes(b"not a folder")
    store = FileUploadStore(root)
    with pytest.raises(Forbidden):
        await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    with pytest.raises(Forbidden):
        await store.remove_thread("default", "t1")
    assert content(root / "default" / "t1") == b"not a folder"


async def test_removing_a_thread_never_follows_a_symlink_inside_it(root: Path, tmp_path: Path) -> None:
    outside = folder(tmp_path / "outside")
    (outside / "keep.txt").write_bytes(b"precious")
    store = FileUploadStore(root)
    await store.save("default", "t1", PNG, mime_type="image/png", file_name=None)
    (root / "default" / "t1" / "escape").symlink_to(outside)
    await store.remove_thread("default", "t1")
    assert content(root / "default" / "t1" / "escape") is None
    assert os.listdir(root / "default") == []
    assert content(outside / "keep.txt") == b"precious"


async def test_removing_with_no_root_yet_is_a_no_op(root: Path) -> None:
    await FileUploadStore(root).remove_thread("default", "t1")
    assert content(root) is None
