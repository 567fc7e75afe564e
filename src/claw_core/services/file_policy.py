"""Which paths on this machine the API may touch: the pure, lexical half of the file access policy.

A client names a file with a string. Before any adapter sees it, that string is checked and normalised here:
- refused (`Invalid`, 400) when it holds what no honest client sends: NUL or another control character, a
  backslash, a percent-encoded dot, separator, percent sign or control byte that a second, naive decoder would turn
  into `..` or `/` (so `%2e%2e%2f` and the double-encoded `%252e` are refused, not decoded), overlong UTF-8 or
  `%uXXXX` forms, characters whose compatibility form is a separator or a dot segment (the fullwidth dots and
  solidus, U+FF0E and U+FF0F), a `~user` form, a path longer than PATH_MAX or a component longer than NAME_MAX;
- made absolute: `~` and `~/...` expand to HOME; a relative path (`./x`, `../x`, `x`) resolves against the agent's
  workspace, where the paths the agent writes in its answers start;
- normalised lexically: empty and `.` components dropped, `..` removes the previous component and never climbs
  above `/`;
- then checked for containment in a root by COMPONENTS (`/home/u-evil` is not inside `/home/u`), case-sensitively
  (`/TMP` and `/Tmp` are not `/tmp`).

What it cannot know is the file system: a symlink inside a root may point out of it. The file adapter therefore
re-checks the resolved real path against the resolved roots with `is_within` before each open, list, write and
delete, and walks to the file with `O_NOFOLLOW`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote

from claw_core.errors import Forbidden, Invalid

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "FilePolicy",
    "clean_upload_name",
    "is_within",
    "normalise_path",
    "numbered_name",
]

MAX_PATH_BYTES = 4096
"""Linux's PATH_MAX: nothing longer can be opened anyway."""
MAX_NAME_BYTES = 255
"""Linux's NAME_MAX, per component."""

# A percent escape that a second decoder would turn into a dot, a separator, a percent sign (double encoding), a
# control byte or the lead byte of an overlong UTF-8 form (C0/C1 always; E0 8x/9x and F0 8x are overlong too).
# Other escapes (`%20` in a downloaded file's name, say) are just characters of a name.
_DANGEROUS_ESCAPE = re.compile(
    r"%(?:2[eEfF5]|5[cC]|[01][0-9a-fA-F]|7[fF]|[cC][01]|[eE]0%[89][0-9a-fA-F]|[fF]0%8[0-9a-fA-F])|%[uU][0-9a-fA-F]{4}"
)
# Characters that may reorder how a name is displayed (an `exe.txt` that shows as `txt.exe`).
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refused_character(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Zl", "Zp", "Cs"} or char in _BIDI_CONTROLS


def _check_text(raw: str) -> None:
    """Refuse what no honest client sends (see the module docstring). Raise Invalid."""
    if any(_refused_character(char) for char in raw):
        raise Invalid("Path contains control characters")
    if "\ufffd" in raw:
        raise Invalid("Path is not valid UTF-8")  # a decoder upstream replaced bytes it could not read
    if "\\" in raw:
        raise Invalid("Path contains a backslash")
    if _DANGEROUS_ESCAPE.search(raw):
        raise Invalid("Path contains a percent-encoded separator, dot or control character")
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("Path is not valid Unicode") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise Invalid("Path is too long")
    for part in raw.split("/"):
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise Invalid("Path has a component that is too long")
        compatible = unicodedata.normalize("NFKC", part)
        if compatible != part and ("/" in compatible or "\\" in compatible or compatible in {".", ".."}):
            raise Invalid("Path contains look-alike separators or dots")


def normalise_path(raw: str, *, home: PurePosixPath, base: PurePosixPath) -> PurePosixPath:
    """The absolute, lexically normalised path that `raw` names: `~` expanded to `home`, relative paths joined to
    `base`, `.` and empty components dropped, `..` applied. Raise Invalid for an empty or malformed path.

    `home` and `base` are trusted (configuration) and must be absolute."""
    if not raw:
        raise Invalid("path is required")
    _check_text(raw)
    if raw == "~" or raw.startswith("~/"):
        start, rest = home, raw[2:]
    elif raw.startswith("~"):
        raise Invalid("Only ~ (your home) can be expanded, not ~user")
    elif raw.startswith("/"):
        start, rest = PurePosixPath("/"), raw
    else:
        start, rest = base, raw
    parts: list[str] = [p for p in start.parts[1:] if p not in ("", ".")]
    for part in rest.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return PurePosixPath("/", *parts)


def is_within(path: PurePosixPath, root: PurePosixPath) -> bool:
    """True when `path` is `root` or below it, compared component by component and case-sensitively. Both must be
    absolute and normalised (no `..`)."""
    return path.parts[: len(root.parts)] == root.parts


@dataclass(frozen=True, slots=True)
class FilePolicy:
    """The roots the API may read from and write to, and the directories relative paths start from.

    `read_roots` serve `/api/file` (default HOME and /tmp); the workspace browser reads and writes inside `home`
    only. Every root is absolute and normalised; roots come from configuration, never from a request."""

    home: PurePosixPath
    read_roots: tuple[PurePosixPath, ...]
    agent_workspace: PurePosixPath
    protected: tuple[PurePosixPath, ...] = ()
    """Directories that must survive a delete: no delete of them nor of a directory holding one (HOME and the
    roots always are; the connector adds its own data and the gateway's state)."""
    private: tuple[PurePosixPath, ...] = ()
    """Directories whose contents the file routes never read, write or delete: the connector's own data (its
    databases, which a write would corrupt under a live connection, its token and its gateway device key)."""

    @classmethod
    def create(
        cls,
        *,
        home: str,
        read_roots: Sequence[str],
        agent_workspace: str,
        protected: Sequence[str] = (),
        private: Sequence[str] = (),
    ) -> FilePolicy:
        """A policy from configured path strings, each of which must be absolute; `..` in them is normalised."""

        def absolute(text: str) -> PurePosixPath:
            if not text.startswith("/"):
                raise ValueError(f"a file root must be an absolute path: {text!r}")
            return normalise_path(text, home=PurePosixPath("/"), base=PurePosixPath("/"))

        home_path = absolute(home)
        roots = tuple(dict.fromkeys(absolute(root) for root in read_roots))
        kept = tuple(dict.fromkeys([home_path, *roots, *(absolute(p) for p in protected)]))
        hidden = tuple(dict.fromkeys(absolute(p) for p in private))
        return cls(home_path, roots, absolute(agent_workspace), tuple(dict.fromkeys([*kept, *hidden])), hidden)

    def readable(self, raw: str) -> PurePosixPath:
        """A path `/api/file` may serve: relative paths start from the agent's workspace. Raise Invalid, or
        Forbidden when it lies outside every read root."""
        path = normalise_path(raw, home=self.home, base=self.agent_workspace)
        if not any(is_within(path, root) for root in self.read_roots):
            raise Forbidden("Access denied: path is outside the allowed roots")
        self.check_not_private(path)
        return path

    def in_home(self, raw: str) -> PurePosixPath:
        """A path the workspace browser may read or write: inside HOME (relative paths start from the agent's
        workspace, as for `readable`). Raise Invalid, or Forbidden outside HOME."""
        path = normalise_path(raw, home=self.home, base=self.agent_workspace)
        if not is_within(path, self.home):
            raise Forbidden("Access denied: path is outside your home directory")
        self.check_not_private(path)
        return path

    def check_not_private(self, path: PurePosixPath) -> None:
        """Raise Forbidden for a path inside one of the `private` directories (the adapter repeats it on the
        resolved real path)."""
        if any(is_within(path, hidden) for hidden in self.private):
            raise Forbidden("Access denied: this folder holds the connector's own data")

    def deletable(self, raw: str) -> PurePosixPath:
        """A path the workspace browser may delete: inside HOME, and neither a protected directory nor one that
        holds a protected directory. Raise Invalid or Forbidden."""
        path = self.in_home(raw)
        self.check_deletable(path)
        return path

    def check_deletable(self, path: PurePosixPath) -> None:
        """Raise Forbidden when deleting `path` would delete a protected directory (the check the adapter repeats
        on the resolved real path)."""
        if any(is_within(kept, path) for kept in self.protected):
            raise Forbidden("Refusing to delete this folder: it holds your home, a file root or the connector's data")


def clean_upload_name(name: str | None) -> str:
    """The base name an uploaded file is stored under: its last component (after either separator, or either one
    percent-encoded, as some clients send them), without control, bidirectional or format characters, trimmed to
    NAME_MAX bytes. Raise Invalid when nothing usable is left (or only a dot segment, encoded or not)."""
    base = re.split(r"[/\\]|%2[fF]|%5[cC]", name or "")[-1]
    base = "".join(ch for ch in base if not _refused_character(ch) and unicodedata.category(ch) != "Cf").strip()
    if base in {"", ".", ".."} or unquote(base) in {".", ".."}:
        raise Invalid("An uploaded file has no usable name")
    while len(base.encode("utf-8")) > MAX_NAME_BYTES - 16:  # room for " (n)" and a temporary suffix
        base = base[:-1]
    return base


def numbered_name(name: str, number: int) -> str:
    """`report.pdf` -> `report (2).pdf`; a leading dot is part of the stem (`.env` -> `.env (2)`)."""
    if number == 0:
        return name
    dot = name.rfind(".")
    if dot <= 0:
        return f"{name} ({number})"
    return f"{name[:dot]} ({number}){name[dot:]}"
