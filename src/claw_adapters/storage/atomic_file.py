"""Writing a small private file so that a crash leaves either the old content or the new one, never a torn mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600, its directory created 0700): a temporary file beside it is written, synced
    and renamed over the old one, then the directory is synced so the rename itself survives a power loss.
    Blocking: call it from a worker thread."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 and a name no other writer can take.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
