"""Where the files users attach to threads live: `<root>/<workspace>/<threadId>/<id><ext>`, or memory for tests.

Nothing the client sends becomes part of a path: the workspace name and thread id are checked against the
model's validators, the file name is a fresh unguessable id, and the extension comes from the MIME type through
Python's built-in table (the user's file name only lends its extension when that table has none, and only when
it is a short run of letters and digits). The user's file name is metadata: it is returned, and kept beside the
file in a hidden sidecar `.<id><ext>.json` (0600, written before the file appears), so the file can be served
later under the name the user knows. Only names of the exact `<id><ext>` shape are ever looked up, so neither a
sidecar, a temporary file nor an id prefix can be asked for.

On disk, every directory below the root is opened relative to its parent with `O_NOFOLLOW`, so a symlink
planted anywhere under the root (pointing out of it, or swapped in after a check) is refused rather than
followed; the resolved path is checked to lie inside the root as well, and the opened directory is checked to be
the one that path names. Directories are 0700, files 0600, written to a temporary name, synced and renamed into
place: a reader sees a whole file or none. The blocking calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import mimetypes
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from claw_core.errors import Forbidden, Invalid, NotFound
from claw_core.model import validate_thread_id, validate_workspace_name
from claw_core.ports import StoredUpload

__all__ = [
    "FileUploadStore",
    "InMemoryUploadStore",
    "clean_file_name",
    "upload_extension",
    "upload_mime_type",
]

DEFAULT_EXTENSION = ".bin"
DEFAULT_MIME_TYPE = "application/octet-stream"
MAX_FILE_NAME_CHARS = 255
_SIDECAR_MAX_BYTES = 4096

_EXTENSION = re.compile(r"\.[a-z0-9]{1,16}")
_STORED_NAME = re.compile(r"[A-Za-z0-9_-]{22}\.[a-z0-9]{1,16}")
"""`<id><ext>`: `secrets.token_urlsafe(16)` is 22 characters; the extension is what `upload_extension` gives."""
# A fresh instance knows only Python's built-in table, not the machine's /etc/mime.types: the same MIME type
# gets the same extension everywhere.
_MIME_TYPES = mimetypes.MimeTypes()
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
"""`O_NONBLOCK` so that opening a FIFO planted under a served name cannot hang the worker thread."""


def clean_file_name(name: str | None) -> str | None:
    """The user's file name fit to show: its last path component, without control or format characters
    (a right-to-left override could disguise the extension), trimmed to 255 characters; None when nothing
    is left."""
    if name is None:
        return None
    base = re.split(r"[/\\]", name)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Zl", "Zp"}).strip()
    if base in {"", ".", ".."}:
        return None
    return base[:MAX_FILE_NAME_CHARS]


def upload_extension(mime_type: str, file_name: str | None) -> str:
    """`.png` for image/png; for a type the built-in table does not know, the extension of the user's file name
    when it is 1-16 letters and digits; else `.bin`."""
    guessed = _MIME_TYPES.guess_extension(mime_type.lower(), strict=False)
    if guessed and _EXTENSION.fullmatch(guessed):
        return guessed
    cleaned = clean_file_name(file_name)
    if cleaned and "." in cleaned.strip("."):
        candidate = "." + cleaned.rsplit(".", 1)[1].lower()
        if _EXTENSION.fullmatch(candidate):
            return candidate
    return DEFAULT_EXTENSION


def upload_mime_type(stored_name: str) -> str:
    """The MIME type a stored file is served as: read back from its extension through the same table that chose
    the extension (so it is never a type the client made up); `application/octet-stream` when the table has none."""
    guessed, _ = _MIME_TYPES.guess_type("x" + os.path.splitext(stored_name)[1], strict=False)
    return guessed or DEFAULT_MIME_TYPE


def upload_url(thread_id: str, stored_name: str) -> str:
    return f"/api/uploads/{thread_id}/{stored_name}"


def _new_name(mime_type: str, file_name: str | None) -> tuple[str, str]:
    """A fresh id and the stored name `<id><ext>` it gets."""
    upload_id = secrets.token_urlsafe(16)
    return upload_id, upload_id + upload_extension(mime_type, file_name)


def _described(
    root: str,
    workspace: str,
    thread_id: str,
    stored_name: str,
    *,
    size: int,
    mime_type: str,
    file_name: str | None,
    identity: tuple[int, int] | None = None,
) -> StoredUpload:
    device, inode = identity if identity is not None else (None, None)
    return StoredUpload(
        id=stored_name.split(".", 1)[0],
        file_name=clean_file_name(file_name),
        mime_type=mime_type,
        size=size,
        path=os.path.join(root, workspace, thread_id, stored_name),
        url=upload_url(thread_id, stored_name),
        device=device,
        inode=inode,
    )


def _check_address(workspace: str, thread_id: str) -> None:
    validate_workspace_name(workspace)
    validate_thread_id(thread_id)


def _check_stored_name(stored_name: str) -> None:
    """Only the exact `<id><ext>` shape names an upload: an id prefix, a sidecar or a temporary file is not one."""
    if not _STORED_NAME.fullmatch(stored_name):
        raise NotFound("File not found")


def _sidecar_name(stored_name: str) -> str:
    return f".{stored_name}.json"


class FileUploadStore:
    """Uploads as files under `root` (created 0700 on first use)."""

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        return self._root

    async def save(
        self, workspace: str, thread_id: str, data: bytes, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        real_root, upload = await self._new_upload(workspace, thread_id, mime_type, file_name, size=len(data))
        await asyncio.to_thread(self._write, real_root, upload, workspace, thread_id, data)
        return upload

    async def adopt(
        self, workspace: str, thread_id: str, staged_path: str, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        real_root, upload = await self._new_upload(workspace, thread_id, mime_type, file_name, size=0)
        size = await asyncio.to_thread(self._adopt, real_root, upload, workspace, thread_id, staged_path)
        return dataclasses.replace(upload, size=size)

    async def locate(self, workspace: str, thread_id: str, stored_name: str) -> StoredUpload:
        _check_address(workspace, thread_id)
        _check_stored_name(stored_name)
        real_root, found, file_name = await asyncio.to_thread(self._locate, workspace, thread_id, stored_name)
        return _described(
            str(real_root),
            workspace,
            thread_id,
            stored_name,
            size=found.st_size,
            mime_type=upload_mime_type(stored_name),
            file_name=file_name,
            identity=(found.st_dev, found.st_ino),
        )

    async def remove_thread(self, workspace: str, thread_id: str) -> None:
        _check_address(workspace, thread_id)
        await asyncio.to_thread(self._remove, workspace, thread_id)

    async def _new_upload(
        self, workspace: str, thread_id: str, mime_type: str, file_name: str | None, *, size: int
    ) -> tuple[Path, StoredUpload]:
        """The real root (created on first use) and the description of an upload about to be stored, under a
        fresh unguessable name."""
        _check_address(workspace, thread_id)
        real_root = await asyncio.to_thread(self._prepare_root)
        _, stored_name = _new_name(mime_type, file_name)
        upload = _described(
            str(real_root), workspace, thread_id, stored_name, size=size, mime_type=mime_type, file_name=file_name
        )
        return real_root, upload

    # blocking parts, run in a worker thread

    def _prepare_root(self) -> Path:
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._root.resolve(strict=True)

    def _write(self, real_root: Path, upload: StoredUpload, workspace: str, thread_id: str, data: bytes) -> None:
        stored_name = Path(upload.path).name
        with _thread_folder(real_root, workspace, thread_id) as thread_fd:
            _write_sidecar(thread_fd, stored_name, upload.file_name)
            try:
                _write_atomically(thread_fd, stored_name, data)
            except BaseException:
                _remove_sidecar(thread_fd, stored_name)
                raise

    def _adopt(self, real_root: Path, upload: StoredUpload, workspace: str, thread_id: str, staged_path: str) -> int:
        """Move the staged file in, returning its size: a rename when it is on the same filesystem, else a copy
        (synced, renamed into place) and the staged file removed. The staged file is opened without following a
        link, and what lands under the new name is checked to be the file that was opened."""
        stored_name = Path(upload.path).name
        source_fd, source = _open_staged(staged_path)
        try:
            with _thread_folder(real_root, workspace, thread_id) as thread_fd:
                _write_sidecar(thread_fd, stored_name, upload.file_name)
                try:
                    _move_in(source_fd, source, staged_path, thread_fd, stored_name)
                except BaseException:
                    _remove_sidecar(thread_fd, stored_name)
                    raise
        finally:
            os.close(source_fd)
        return source.st_size

    def _locate(self, workspace: str, thread_id: str, stored_name: str) -> tuple[Path, os.stat_result, str | None]:
        """The real root, the file's status and the user's name for it, checked afresh: every folder opened without
        following links and inside the root, the file itself a regular file and not a link."""
        if not self._root.exists():
            raise NotFound("File not found")
        real_root = self._root.resolve(strict=True)
        with _directory(real_root) as root_fd, contextlib.ExitStack() as stack:
            try:
                workspace_fd = stack.enter_context(_subdirectory(root_fd, workspace, create=False))
                thread_fd = stack.enter_context(_subdirectory(workspace_fd, thread_id, create=False))
                fd = os.open(stored_name, _READ_FLAGS, dir_fd=thread_fd)
            except FileNotFoundError:
                raise NotFound("File not found") from None
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise Forbidden("the upload is a link") from None
                raise
            try:
                _check_contained(real_root, real_root / workspace / thread_id, thread_fd)
                found = os.fstat(fd)
            finally:
                os.close(fd)
            if not stat.S_ISREG(found.st_mode):
                raise Forbidden("the upload is not a regular file")
            return real_root, found, _read_sidecar(thread_fd, stored_name)

    def _remove(self, workspace: str, thread_id: str) -> None:
        if not self._root.exists():
            return
        real_root = self._root.resolve(strict=True)
        with _directory(real_root) as root_fd, contextlib.ExitStack() as stack:
            try:
                workspace_fd = stack.enter_context(_subdirectory(root_fd, workspace, create=False))
                entry = os.stat(thread_id, dir_fd=workspace_fd, follow_symlinks=False)
            except FileNotFoundError:
                return  # nothing was ever uploaded there
            if not stat.S_ISDIR(entry.st_mode):
                raise Forbidden("the thread's upload folder is a link or not a folder")
            _check_contained(real_root, real_root / workspace, workspace_fd)
            # The fd-based rmtree never follows a symlink it meets inside the folder: it unlinks the link.
            shutil.rmtree(thread_id, dir_fd=workspace_fd)
            os.fsync(workspace_fd)


@contextlib.contextmanager
def _thread_folder(real_root: Path, workspace: str, thread_id: str) -> Iterator[int]:
    """The thread's upload folder, created (0700) and checked to lie inside the root."""
    with _directory(real_root) as root_fd:
        os.fchmod(root_fd, 0o700)
        with (
            _subdirectory(root_fd, workspace, create=True) as workspace_fd,
            _subdirectory(workspace_fd, thread_id, create=True) as thread_fd,
        ):
            _check_contained(real_root, real_root / workspace / thread_id, thread_fd)
            yield thread_fd


@contextlib.contextmanager
def _directory(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _subdirectory(parent_fd: int, name: str, *, create: bool) -> Iterator[int]:
    """The directory `name` inside `parent_fd`, never through a symlink, made private (0700); created (and
    the creation synced) when asked."""
    created = False
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            created = True
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Forbidden("an upload folder is a link or not a folder") from None
        raise
    try:
        os.fchmod(fd, 0o700)  # whoever made it, and whatever the umask
        if created:
            os.fsync(parent_fd)
        yield fd
    finally:
        os.close(fd)


def _check_contained(real_root: Path, expected: Path, fd: int) -> None:
    """The folder's resolved path lies inside the root (compared by components, so a sibling `uploads-evil` is
    not inside `uploads`), and the folder opened is the one that path names (no swap since it was opened)."""
    resolved = expected.resolve(strict=True)
    if not resolved.is_relative_to(real_root):
        raise Forbidden("the upload folder resolves outside the uploads root")
    opened, named = os.fstat(fd), os.stat(resolved)
    if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
        raise Forbidden("the upload folder changed while it was being written")


def _write_atomically(directory_fd: int, name: str, data: bytes) -> None:
    _fill_atomically(directory_fd, name, lambda file: file.write(data))


def _fill_atomically(directory_fd: int, name: str, fill: Callable[[BinaryIO], object]) -> None:
    """`name` in the folder gets what `fill` writes, whole or not at all: a 0600 temporary file, synced, renamed."""
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        with os.fdopen(fd, "wb") as file:
            fill(file)
            file.flush()
            os.fchmod(file.fileno(), 0o600)
            os.fsync(file.fileno())
        os.replace(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    os.fsync(directory_fd)  # make the rename itself durable


def _move_in(source_fd: int, source: os.stat_result, staged_path: str, directory_fd: int, name: str) -> None:
    """The opened staged file becomes `name` in the folder (0600, synced)."""
    os.fchmod(source_fd, 0o600)
    os.fsync(source_fd)
    try:
        os.rename(staged_path, name, dst_dir_fd=directory_fd)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        with os.fdopen(os.dup(source_fd), "rb") as reader:
            reader.seek(0)
            _fill_atomically(directory_fd, name, lambda file: shutil.copyfileobj(reader, file, 1024 * 1024))
        os.unlink(staged_path)
        return
    landed = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    if (landed.st_dev, landed.st_ino) != (source.st_dev, source.st_ino):
        os.unlink(name, dir_fd=directory_fd)
        raise Forbidden("the staged file changed while it was being moved")
    os.fsync(directory_fd)


def _open_staged(staged_path: str) -> tuple[int, os.stat_result]:
    """A transport's staging file opened without following a link, with its status. Invalid when it is missing, a
    link or not a regular file (it is then left where it is)."""
    try:
        fd = os.open(staged_path, _READ_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOENT):
            raise Invalid("the staged file is missing or a link") from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise Invalid("the staged file is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, status


def _write_sidecar(directory_fd: int, stored_name: str, file_name: str | None) -> None:
    if file_name is not None:
        payload = json.dumps({"fileName": file_name}, ensure_ascii=False).encode()
        _write_atomically(directory_fd, _sidecar_name(stored_name), payload)


def _remove_sidecar(directory_fd: int, stored_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_sidecar_name(stored_name), dir_fd=directory_fd)


def _read_sidecar(directory_fd: int, stored_name: str) -> str | None:
    """The user's name for the file, or None when there is no sidecar (or not a readable one)."""
    try:
        fd = os.open(_sidecar_name(stored_name), _READ_FLAGS, dir_fd=directory_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, _SIDECAR_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        name = json.loads(raw).get("fileName") if len(raw) <= _SIDECAR_MAX_BYTES else None
    except (ValueError, AttributeError):
        return None
    return clean_file_name(name) if isinstance(name, str) else None


class InMemoryUploadStore:
    """Keeps uploads in memory, for tests. Paths name where the file store would put them under `root`; nothing
    is written there."""

    def __init__(self, root: str = "/memory/uploads") -> None:
        self._root = root
        self._threads: dict[tuple[str, str], dict[str, tuple[bytes, StoredUpload]]] = {}

    async def save(
        self, workspace: str, thread_id: str, data: bytes, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        _check_address(workspace, thread_id)
        _, stored_name = _new_name(mime_type, file_name)
        upload = _described(
            self._root, workspace, thread_id, stored_name, size=len(data), mime_type=mime_type, file_name=file_name
        )
        self._threads.setdefault((workspace, thread_id), {})[stored_name] = (bytes(data), upload)
        return upload

    async def adopt(
        self, workspace: str, thread_id: str, staged_path: str, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        """Reads the staged file into memory and removes it, as the file store moves it away."""
        _check_address(workspace, thread_id)
        data = await asyncio.to_thread(_take_staged, staged_path)
        return await self.save(workspace, thread_id, data, mime_type=mime_type, file_name=file_name)

    async def locate(self, workspace: str, thread_id: str, stored_name: str) -> StoredUpload:
        _check_address(workspace, thread_id)
        _check_stored_name(stored_name)
        found = self._threads.get((workspace, thread_id), {}).get(stored_name)
        if found is None:
            raise NotFound("File not found")
        return dataclasses.replace(found[1], mime_type=upload_mime_type(stored_name))

    async def remove_thread(self, workspace: str, thread_id: str) -> None:
        _check_address(workspace, thread_id)
        self._threads.pop((workspace, thread_id), None)

    def contents(self, path: str) -> bytes | None:
        """What was saved at `path` (a `StoredUpload.path`), or None when there is nothing there."""
        for files in self._threads.values():
            for data, upload in files.values():
                if upload.path == path:
                    return data
        return None

    def count(self, workspace: str, thread_id: str) -> int:
        """How many uploads the thread has."""
        return len(self._threads.get((workspace, thread_id), {}))


def _take_staged(staged_path: str) -> bytes:
    fd, _ = _open_staged(staged_path)
    with os.fdopen(fd, "rb") as file:
        data = file.read()
    os.unlink(staged_path)
    return data
