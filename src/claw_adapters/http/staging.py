"""The folder where multipart file parts land while they stream in, before a handler takes them over.

Every staged file is `upload-<32 hex>.part`, created 0600 with `O_EXCL | O_NOFOLLOW` (an unguessable name no
one else can have made, and never a link to follow); the folder is 0700. A folder of our own (the default) is
removed whole when the app stops; a configured one is kept, and only our own `upload-*.part` files are cleared
from it, at start (left by a crash) and at stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

__all__ = ["StagingArea", "discard"]

_STAGED_NAME = re.compile(r"upload-[0-9a-f]{32}\.part")
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class StagingArea:
    """A private staging folder with a start and a stop (the app's startup and cleanup)."""

    def __init__(self, directory: str | None = None) -> None:
        self._configured = Path(directory) if directory is not None else None
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RuntimeError("the staging area is not open (the app has not started)")
        return self._path

    def open(self) -> None:
        if self._configured is None:
            self._path = Path(tempfile.mkdtemp(prefix="claw-staging-"))  # 0700 by construction
            return
        self._configured.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = os.lstat(self._configured)
        if not stat.S_ISDIR(found.st_mode):
            raise ValueError(f"the staging folder {self._configured} is a link or not a folder")
        os.chmod(self._configured, 0o700)
        self._path = self._configured
        self.clear()

    def close(self) -> None:
        """Remove what is staged (and the folder itself when it is our own). Closing twice does nothing."""
        if self._path is None:
            return
        if self._configured is None:
            shutil.rmtree(self._path, ignore_errors=True)
        else:
            self.clear()
        self._path = None

    def clear(self) -> None:
        """Delete the staged files in the folder (ours only, by their name)."""
        for name in os.listdir(self.path):
            if _STAGED_NAME.fullmatch(name):
                discard(str(self.path / name))

    def create(self) -> tuple[int, str]:
        """A new, empty staged file: its descriptor (open for writing) and its path."""
        path = str(self.path / f"upload-{secrets.token_hex(16)}.part")
        return os.open(path, _NEW_FILE_FLAGS, 0o600), path


def discard(path: str) -> None:
    """Delete a staged file; nothing to do when a handler already moved it away."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
