"""Where the files users attach to threads live: `<root>/<workspace>/<threadId>/<id><ext>`, or memory for tests.

Nothing the client sends becomes part of a path: the workspace name and thread id are checked against the
model's validators, the file name is a fresh unguessable id, and the extension comes from the MIME type through
Python's built-in table (the user's file name only lends its extension when that table has none, and only when
it is a short run of letters and digits). The user's file name is kept as metadata in the returned value.

On disk, every directory below the root is opened relative to its parent with `O_NOFOLLOW`, so a symlink
planted anywhere under the root (pointing out of it, or swapped in after a check) is refused rather than
followed; the resolved path is checked to lie inside the root as well, and the opened directory is checked to be
the one that path names. Directories are 0700, files 0600, written to a temporary name, synced and renamed into
place: a reader sees a whole file or none. The blocking calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mimetypes
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from claw_core.errors import Forbidden
from claw_core.model import validate_thread_id, validate_workspace_name
from claw_core.ports import StoredUpload

__all__ = ["FileUploadStore", "InMemoryUploadStore", "clean_file_name", "upload_extension"]

DEFAULT_EXTENSION = ".bin"
MAX_FILE_NAME_CHARS = 255

_EXTENSION = re.compile(r"\.[a-z0-9]{1,16}")
# A fresh instance knows only Python's built-in table, not the machine's /etc/mime.types: the same MIME type
# gets the same extension everywhere.
_MIME_TYPES = mimetypes.MimeTypes()
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


def upload_url(thread_id: str, stored_name: str) -> str:
    return f"/api/uploads/{thread_id}/{stored_name}"


def _new_upload(
    root: str, workspace: str, thread_id: str, data: bytes, *, mime_type: str, file_name: str | None
) -> StoredUpload:
    validate_workspace_name(workspace)
    validate_thread_id(thread_id)
    upload_id = secrets.token_urlsafe(16)
    stored_name = upload_id + upload_extension(mime_type, file_name)
    return StoredUpload(
        id=upload_id,
        file_name=clean_file_name(file_name),
        mime_type=mime_type,
        size=len(data),
        path=os.path.join(root, workspace, thread_id, stored_name),
        url=upload_url(thread_id, stored_name),
    )


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
        validate_workspace_name(workspace)
        validate_thread_id(thread_id)
        real_root = await asyncio.to_thread(self._prepare_root)
        upload = _new_upload(str(real_root), workspace, thread_id, data, mime_type=mime_type, file_name=file_name)
        await asyncio.to_thread(self._write, real_root, workspace, thread_id, Path(upload.path).name, data)
        return upload

    async def remove_thread(self, workspace: str, thread_id: str) -> None:
        validate_workspace_name(workspace)
        validate_thread_id(thread_id)
        await asyncio.to_thread(self._remove, workspace, thread_id)

    # blocking parts, run in a worker thread

    def _prepare_root(self) -> Path:
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._root.resolve(strict=True)

    def _write(self, real_root: Path, workspace: str, thread_id: str, stored_name: str, data: bytes) -> None:
        with _directory(real_root) as root_fd:
            os.fchmod(root_fd, 0o700)
            with (
                _subdirectory(root_fd, workspace, create=True) as workspace_fd,
                _subdirectory(workspace_fd, thread_id, create=True) as thread_fd,
            ):
                _check_contained(real_root, real_root / workspace / thread_id, thread_fd)
                _write_atomically(thread_fd, stored_name, data)

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
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), 0o600)
            os.fsync(file.fileno())
        os.replace(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    os.fsync(directory_fd)  # make the rename itself durable


class InMemoryUploadStore:
    """Keeps uploads in memory, for tests. Paths name where the file store would put them under `root`; nothing
    is written there."""

    def __init__(self, root: str = "/memory/uploads") -> None:
        self._root = root
        self._threads: dict[tuple[str, str], dict[str, bytes]] = {}

    async def save(
        self, workspace: str, thread_id: str, data: bytes, *, mime_type: str, file_name: str | None
    ) -> StoredUpload:
        upload = _new_upload(self._root, workspace, thread_id, data, mime_type=mime_type, file_name=file_name)
        self._threads.setdefault((workspace, thread_id), {})[upload.path] = bytes(data)
        return upload

    async def remove_thread(self, workspace: str, thread_id: str) -> None:
        validate_workspace_name(workspace)
        validate_thread_id(thread_id)
        self._threads.pop((workspace, thread_id), None)

    def contents(self, path: str) -> bytes | None:
        """What was saved at `path` (a `StoredUpload.path`), or None when there is nothing there."""
        return next((files[path] for files in self._threads.values() if path in files), None)

    def count(self, workspace: str, thread_id: str) -> int:
        """How many uploads the thread has."""
        return len(self._threads.get((workspace, thread_id), {}))
