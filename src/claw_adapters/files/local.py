"""The `LocalFiles` port on this machine's file system, re-checking on disk what the core's policy checked on paper.

Every operation starts the same way: resolve the requested path with `os.path.realpath` (every symlink followed)
and the roots the same way, and refuse (403) unless the resolved path lies inside a resolved root, compared by
components. Then the file is reached from that real root ONE COMPONENT AT A TIME with `openat(..., O_NOFOLLOW)`:
the resolved path holds no link, so meeting one on the way means something was swapped in since the check, and it
is refused instead of followed. A file is opened with `O_NONBLOCK` (a FIFO planted in /tmp cannot hang a worker)
and `fstat`ed to be a regular file. Deletes never follow links: a link is removed itself, and folders go through
the fd-based `shutil.rmtree`. Writes go to a temporary file in the same folder, synced, then renamed over the
name (a rename replaces a link; it never writes through one). Every blocking call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar

from claw_core.errors import ClawError, Conflict, Forbidden, Invalid, NotFound, Unavailable
from claw_core.ports import FileEntry, FileInfo, FileListing, SavedFile
from claw_core.services.file_policy import is_within, numbered_name

__all__ = ["LocalDiskFiles"]

_T = TypeVar("_T")

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ALWAYS_SHOWN = frozenset({".openclaw"})
_NEVER_SHOWN = frozenset({"node_modules"})
_SCAN_BUDGET_FACTOR = 4
_MAX_NUMBERED = 1000
_COPY_CHUNK = 1024 * 1024


class LocalDiskFiles:
    """Files on the local disk (see the module docstring for how each path is checked).

    `private` names directories (the connector's own data) that no call reaches into, checked on the resolved real
    path, so a link elsewhere in HOME that points inside one is refused too."""

    def __init__(self, private: Sequence[str] = ()) -> None:
        self._private = tuple(PurePosixPath(p) for p in private)

    async def file_info(self, path: PurePosixPath, roots: Sequence[PurePosixPath]) -> FileInfo:
        return await asyncio.to_thread(self._guarded, _file_info, path, roots)

    async def list_tree(
        self, path: PurePosixPath, roots: Sequence[PurePosixPath], *, depth: int, hidden: bool, max_entries: int
    ) -> FileListing:
        listing = functools.partial(_list_tree, private=self._private)
        return await asyncio.to_thread(self._guarded, listing, path, roots, depth, hidden, max_entries)

    async def write(self, path: PurePosixPath, data: bytes, roots: Sequence[PurePosixPath]) -> None:
        await asyncio.to_thread(self._guarded, _write, path, data, roots)

    async def delete(
        self, path: PurePosixPath, roots: Sequence[PurePosixPath], protected: Sequence[PurePosixPath]
    ) -> str:
        return await asyncio.to_thread(self._guarded, _delete, path, roots, protected)

    async def save_uploads(
        self, directory: PurePosixPath, files: Sequence[tuple[str, str]], roots: Sequence[PurePosixPath]
    ) -> list[SavedFile]:
        return await asyncio.to_thread(self._guarded, _save_uploads, directory, files, roots)

    def _guarded(self, operation: Callable[..., _T], path: PurePosixPath, *args: Any) -> _T:
        """Refuse a path into private data, run `operation`, and turn any file system failure it lets through
        into a client error (see `_client_error`)."""
        real = _real(path)
        if any(is_within(real, _real(hidden)) for hidden in self._private):
            raise Forbidden("Access denied: this folder holds the connector's own data")
        try:
            return operation(path, *args)
        except OSError as error:
            raise _client_error(error) from None


# --- resolving and walking ------------------------------------------------------------------------------------------


def _real(path: PurePosixPath | str) -> PurePosixPath:
    return PurePosixPath(os.path.realpath(path))


def _contained(path: PurePosixPath, roots: Sequence[PurePosixPath]) -> tuple[PurePosixPath, tuple[str, ...]]:
    """The real root `path` resolves inside, and the real path's components below it. Raise Forbidden."""
    real = _real(path)
    for root in roots:
        real_root = _real(root)
        if is_within(real, real_root):
            return real_root, real.parts[len(real_root.parts) :]
    raise Forbidden("Access denied: the path resolves outside the allowed roots")


@contextlib.contextmanager
def _walk(real_root: PurePosixPath, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """An fd of the folder `real_root/parts...`, each component opened relative to the one before with
    `O_NOFOLLOW` (missing ones created 0700 when `create`)."""
    try:
        fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound("Not found") from None
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            try:
                child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as error:
                raise _walk_error(error, fd, part) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


_REFUSED = frozenset({errno.EACCES, errno.EPERM})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_BUSY = frozenset({errno.EBUSY, errno.ENOTEMPTY, errno.EEXIST, errno.ETXTBSY})


def _client_error(error: OSError) -> ClawError:
    """What a client is told of a file system failure the walk did not already turn into a client error: a fixed
    message per kind, never the error's own text (it quotes paths, maybe of something outside the roots)."""
    code = error.errno
    if code in _REFUSED:
        return Forbidden("Access denied by the file system")
    if code == errno.EROFS:
        return Forbidden("Access denied: the file system is read-only")
    if code in _FULL:
        return Unavailable("No space left on the device")
    if code in (errno.ENOENT, errno.ENOTDIR):
        return NotFound("Not found")
    if code == errno.ELOOP:
        return Forbidden("Access denied: a link appeared on the path")
    if code == errno.ENAMETOOLONG:
        return Invalid("A name on the path is too long")
    if code == errno.EISDIR:
        return Invalid("That is a folder, not a file")
    if code in _BUSY:
        return Conflict("The file system refused: the file or folder is in use or changed meanwhile")
    return Unavailable("The file system failed; try again")


def _walk_error(error: OSError, parent_fd: int | None = None, name: str = "") -> Exception:
    """The client error for a failed open. A link met where a folder is expected fails with ENOTDIR under
    `O_DIRECTORY | O_NOFOLLOW` (with ELOOP for a file): both mean a link appeared since the check."""
    if error.errno == errno.ENOTDIR and parent_fd is not None and _is_link(parent_fd, name):
        return Forbidden("Access denied: a link appeared on the path")
    if error.errno == errno.ENOENT:
        return NotFound("Not found")
    if error.errno == errno.ENOTDIR:
        return NotFound("Not found: a part of the path is a file")
    if error.errno == errno.ELOOP:
        return Forbidden("Access denied: a link appeared on the path")
    if error.errno in (errno.EACCES, errno.EPERM):
        return Forbidden("Access denied by the file system")
    return error


def _is_link(parent_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _split(parts: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    if not parts:
        raise Forbidden("Access denied: a root itself is not a file")
    return parts[:-1], parts[-1]


def _modified_ms(info: os.stat_result) -> int:
    return info.st_mtime_ns // 1_000_000


# --- reading --------------------------------------------------------------------------------------------------------


def _file_info(path: PurePosixPath, roots: Sequence[PurePosixPath]) -> FileInfo:
    real_root, parts = _contained(path, roots)
    if not parts:
        raise Invalid("That is a folder, not a file")
    parents, name = _split(parts)
    with _walk(real_root, parents) as parent_fd:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent_fd)
        except OSError as error:
            raise _walk_error(error) from None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
    if stat.S_ISDIR(info.st_mode):
        raise Invalid("That is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise Forbidden("Access denied: not a regular file")
    return FileInfo(
        str(real_root.joinpath(*parts)), info.st_size, _modified_ms(info), device=info.st_dev, inode=info.st_ino
    )


def _list_tree(
    path: PurePosixPath,
    roots: Sequence[PurePosixPath],
    depth: int,
    hidden: bool,
    max_entries: int,
    *,
    private: Sequence[PurePosixPath],
) -> FileListing:
    real_root, parts = _contained(path, roots)
    real_roots = [_real(root) for root in roots]
    with _walk(real_root, parts) as fd:
        lister = _Lister(real_roots, [_real(hidden) for hidden in private], hidden, max_entries)
        lister.scan(fd, real_root.joinpath(*parts), "", depth)
    return FileListing(lister.entries, lister.truncated)


class _Lister:
    """Walks a folder depth first. A private folder (the connector's own data) is listed, never entered, and a
    link into one is left out: its names and sizes are nobody's business."""

    def __init__(
        self, real_roots: list[PurePosixPath], real_private: Sequence[PurePosixPath], hidden: bool, max_entries: int
    ) -> None:
        self.real_roots = real_roots
        self.real_private = real_private
        self.hidden = hidden
        self.max_entries = max_entries
        self.entries: list[FileEntry] = []
        self.truncated = False
        self.budget = max_entries * _SCAN_BUDGET_FACTOR
        """Directory entries the walk may still read: a folder of a million files costs a bounded amount, and the
        listing says `truncated` (its order is then that of the entries read, not of the whole folder)."""

    def scan(self, fd: int, real_dir: PurePosixPath, prefix: str, depth: int) -> None:
        children: list[tuple[bool, str, os.stat_result, bool]] = []
        with os.scandir(fd) as found:
            for entry in found:
                if self.budget <= 0:
                    self.truncated = True
                    break
                self.budget -= 1
                name = entry.name
                if name in _NEVER_SHOWN or (name.startswith(".") and not self.hidden and name not in _ALWAYS_SHOWN):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                    is_link = stat.S_ISLNK(info.st_mode)
                    if is_link:
                        target = _real(real_dir / name)
                        if not any(is_within(target, root) for root in self.real_roots) or self._private(target):
                            continue  # a link out of the roots, or into private data, is not even shown
                        info = os.stat(target)
                except OSError:
                    continue  # vanished meanwhile, or a broken link
                children.append((stat.S_ISDIR(info.st_mode), name, info, is_link))
        children.sort(key=lambda child: (not child[0], child[1].casefold(), child[1]))
        for is_dir, name, info, is_link in children:
            if len(self.entries) >= self.max_entries:
                self.truncated = True
                return
            relative = f"{prefix}{name}"
            size = 0 if is_dir else info.st_size
            self.entries.append(FileEntry(relative, name, is_dir, size, _modified_ms(info)))
            if is_dir and not is_link and depth > 1 and not self._private(real_dir / name):
                try:
                    child = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # unreadable or swapped: listed, not entered
                try:
                    self.scan(child, real_dir / name, f"{relative}/", depth - 1)
                except PermissionError:
                    pass
                finally:
                    os.close(child)

    def _private(self, real: PurePosixPath) -> bool:
        return any(is_within(real, hidden) for hidden in self.real_private)


# --- writing --------------------------------------------------------------------------------------------------------


def _write(path: PurePosixPath, data: bytes, roots: Sequence[PurePosixPath]) -> None:
    real_root, parts = _contained(path, roots)
    parents, name = _split(parts)
    with _walk(real_root, parents, create=True) as parent_fd:
        mode = 0o600
        try:
            existing = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(existing.st_mode):
                raise Invalid("That is a folder, not a file")
            if not stat.S_ISREG(existing.st_mode):
                raise Forbidden("Access denied: not a regular file")
            mode = stat.S_IMODE(existing.st_mode)
        temporary = _write_temporary(parent_fd, name, data, mode)
        try:
            os.replace(temporary, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=parent_fd)
            raise
        os.fsync(parent_fd)


def _temporary_name() -> str:
    """A fresh hidden name for a file being written. Fixed in length: one derived from the target's name would
    exceed the file system's 255 bytes for a long multibyte name the target itself fits in."""
    return f".claw-{secrets.token_hex(8)}.tmp"


def _write_temporary(directory_fd: int, name: str, data: bytes, mode: int) -> str:
    """A new, synced file beside `name` holding `data`; its name."""
    temporary = _temporary_name()
    fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    return temporary


def _delete(path: PurePosixPath, roots: Sequence[PurePosixPath], protected: Sequence[PurePosixPath]) -> str:
    # What the entry resolves to must be inside a root (a link pointing out is refused, as for reading), but what
    # is deleted is the entry itself: its folder resolved, its own name not followed.
    _contained(path, roots)
    real_root, parent_parts = _contained(path.parent, roots)
    entry = real_root.joinpath(*parent_parts, path.name)
    real_protected = [_real(kept) for kept in protected]
    if not path.name or any(is_within(kept, entry) for kept in real_protected):
        raise Forbidden("Refusing to delete this folder: it holds your home, a file root or the connector's data")
    with _walk(real_root, parent_parts) as parent_fd:
        try:
            info = os.stat(path.name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError as error:
            raise _walk_error(error) from None
        if stat.S_ISDIR(info.st_mode):
            if not shutil.rmtree.avoids_symlink_attacks:
                raise Forbidden("Deleting folders is not supported safely on this system")
            shutil.rmtree(path.name, dir_fd=parent_fd)
            kind = "dir"
        else:
            os.unlink(path.name, dir_fd=parent_fd)
            kind = "file"
        os.fsync(parent_fd)
    return kind


def _save_uploads(
    directory: PurePosixPath, files: Sequence[tuple[str, str]], roots: Sequence[PurePosixPath]
) -> list[SavedFile]:
    real_root, parts = _contained(directory, roots)
    saved: list[SavedFile] = []
    with _walk(real_root, parts, create=True) as directory_fd:
        for name, source in files:
            size, temporary = _copy_in(directory_fd, name, source)
            try:
                final = _claim_name(directory_fd, name)
                os.replace(temporary, final, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=directory_fd)
                raise
            saved.append(SavedFile(final, size))
        os.fsync(directory_fd)
    return saved


def _copy_in(directory_fd: int, name: str, source: str) -> tuple[int, str]:
    """Copy the transport's staging file into a synced temporary file of the folder: its size and name."""
    temporary = _temporary_name()
    fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=directory_fd)
    size = 0
    try:
        with os.fdopen(fd, "wb") as target, open(source, "rb") as origin:
            while chunk := origin.read(_COPY_CHUNK):
                target.write(chunk)
                size += len(chunk)
            target.flush()
            os.fsync(target.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    return size, temporary


def _claim_name(directory_fd: int, name: str) -> str:
    """Reserve `name`, or the first free `name (n)`, by creating it exclusively (an empty placeholder the upload is
    then renamed over): two uploads at once never take the same name, and no existing file is replaced."""
    for number in range(_MAX_NUMBERED):
        candidate = numbered_name(name, number)
        try:
            os.close(os.open(candidate, _NEW_FILE_FLAGS, 0o600, dir_fd=directory_fd))
        except FileExistsError:
            continue
        return candidate
    raise Conflict(f"Too many files named like {name!r} already")
